//! One token source per credential set: every FHIR sink and the patient lookup that
//! authenticate with the same credentials (same token URL, client, credential and scope; or the
//! same token file) share one [`TokenSource`], so with OAuth one access token is fetched for
//! all of them, and a renewal after a 401 or at expiry is fetched once (docs/patient-lookup.md).
//! The clients' trust (`ca_file`) is part of the set: a token is fetched through the client of
//! whichever user asks first, so only clients that trust the same CAs share it.
//!
//! Receives the credentials and trust of each client the app builds, at start-up and on
//! reload; promises the same `Arc` for equal ones as long as any client still holds it (a sink
//! restarted by a reload is built before the old one stops, so it keeps the cached token), and
//! a fresh source for credentials nobody holds any more.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use crate::net::oauth::{Credentials, TokenSource};

/// What clients share a token source by: their credentials and the CA file they trust.
type Key = (Credentials, Option<PathBuf>);

/// The live token sources, by credentials.
#[derive(Debug, Default)]
pub struct TokenSources {
    live: Mutex<HashMap<Key, Weak<TokenSource>>>,
}

impl TokenSources {
    /// The source every client with `credentials` that trusts `ca_file` (`None`: the system
    /// store) shares.
    pub fn get(&self, credentials: &Credentials, ca_file: Option<&Path>) -> Arc<TokenSource> {
        let key: Key = (credentials.clone(), ca_file.map(Path::to_path_buf));
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.retain(|_, w| w.strong_count() > 0);
        if let Some(source) = live.get(&key).and_then(Weak::upgrade) {
            return source;
        }
        let source = Arc::new(TokenSource::new(credentials));
        live.insert(key, Arc::downgrade(&source));
        source
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::oauth::{ClientCredential, OAuthSettings};

    fn oauth(scope: &str) -> Credentials {
        Credentials::OAuth(OAuthSettings {
            token_url: "https://idp.example/token".into(),
            client_id: "vitalsd".into(),
            credential: ClientCredential::SecretFile("/etc/vitalsd/secret".into()),
            scope: scope.into(),
        })
    }

    #[test]
    fn equal_credentials_share_one_source_and_others_get_their_own() {
        let tokens = TokenSources::default();
        let a = tokens.get(&oauth("system/Observation.write"), None);
        let b = tokens.get(&oauth("system/Observation.write"), None);
        assert!(Arc::ptr_eq(&a, &b));
        let other = tokens.get(&oauth("system/Patient.read"), None);
        assert!(!Arc::ptr_eq(&a, &other));
        let file = tokens.get(&Credentials::TokenFile("/t".into()), None);
        assert!(!Arc::ptr_eq(&a, &file));
        // Another trust: the token is fetched through another client, so not shared.
        let ca = Path::new("/etc/vitalsd/ehr-ca.pem");
        let trusted = tokens.get(&oauth("system/Observation.write"), Some(ca));
        assert!(!Arc::ptr_eq(&a, &trusted));
        assert!(Arc::ptr_eq(
            &trusted,
            &tokens.get(&oauth("system/Observation.write"), Some(ca))
        ));
        assert_eq!(file.credentials(), &Credentials::TokenFile("/t".into()));
    }

    #[test]
    fn a_source_nobody_holds_is_built_anew() {
        let tokens = TokenSources::default();
        let a = tokens.get(&oauth("s"), None);
        let weak = Arc::downgrade(&a);
        drop(a);
        assert!(weak.upgrade().is_none());
        let b = tokens.get(&oauth("s"), None);
        assert_eq!(b.credentials(), &oauth("s"));
        assert_eq!(tokens.live.lock().unwrap().len(), 1);
    }
}
