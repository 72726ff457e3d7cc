//! One token source per credential set: every FHIR sink and the patient lookup that
//! authenticate with the same credentials (same token URL, client, credential and scope; or the
//! same token file) share one [`TokenSource`], so with OAuth one access token is fetched for
//! all of them, and a renewal after a 401 or at expiry is fetched once (docs/patient-lookup.md).
//!
//! Receives the credentials of each client the app builds, at start-up and on reload; promises
//! the same `Arc` for equal credentials as long as any client still holds it (a sink restarted
//! by a reload is built before the old one stops, so it keeps the cached token), and a fresh
//! source for credentials nobody holds any more.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use crate::net::oauth::{Credentials, TokenSource};

/// The live token sources, by credentials.
#[derive(Debug, Default)]
pub struct TokenSources {
    live: Mutex<HashMap<Credentials, Weak<TokenSource>>>,
}

impl TokenSources {
    /// The source every client with `credentials` shares.
    pub fn get(&self, credentials: &Credentials) -> Arc<TokenSource> {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.retain(|_, w| w.strong_count() > 0);
        if let Some(source) = live.get(credentials).and_then(Weak::upgrade) {
            return source;
        }
        let source = Arc::new(TokenSource::new(credentials));
        live.insert(credentials.clone(), Arc::downgrade(&source));
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
        let a = tokens.get(&oauth("system/Observation.write"));
        let b = tokens.get(&oauth("system/Observation.write"));
        assert!(Arc::ptr_eq(&a, &b));
        let other = tokens.get(&oauth("system/Patient.read"));
        assert!(!Arc::ptr_eq(&a, &other));
        let file = tokens.get(&Credentials::TokenFile("/t".into()));
        assert!(!Arc::ptr_eq(&a, &file));
        assert_eq!(file.credentials(), &Credentials::TokenFile("/t".into()));
    }

    #[test]
    fn a_source_nobody_holds_is_built_anew() {
        let tokens = TokenSources::default();
        let a = tokens.get(&oauth("s"));
        let weak = Arc::downgrade(&a);
        drop(a);
        assert!(weak.upgrade().is_none());
        let b = tokens.get(&oauth("s"));
        assert_eq!(b.credentials(), &oauth("s"));
        assert_eq!(tokens.live.lock().unwrap().len(), 1);
    }
}
