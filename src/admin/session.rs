//! Status-page sessions: signing in with the admin token gives the browser a random session id
//! in a cookie; the daemon keeps only a hash of each id with its expiry, in memory (a restart
//! signs everyone out).
//!
//! Receives sign-ins and sign-outs from the page's `/login` and `/logout`. Promises:
//! - a session id is 32 random bytes (64 hex digits), valid for [`SESSION_TTL`] from sign-in;
//! - at most [`MAX_SESSIONS`] live at once: expired ones are dropped first, then the oldest;
//! - the cookie is `HttpOnly; SameSite=Strict; Path=/` (no `Secure`: the admin speaks plain
//!   HTTP on loopback, where a browser would drop a `Secure` cookie; docs/security.md).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ring::digest;

/// The session cookie's name.
pub const COOKIE: &str = "vitalsd_session";
/// How long a sign-in lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// The most sessions kept at once.
pub const MAX_SESSIONS: usize = 256;

/// The live sessions, by SHA-256 of the id.
#[derive(Default)]
pub struct Sessions {
    live: Mutex<HashMap<[u8; 32], Instant>>,
}

fn digest_of(id: &str) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, id.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl Sessions {
    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Instant>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new session; `None` only without a random source.
    pub fn create(&self) -> Option<String> {
        let id = hex::encode(crate::reading::mask::random_key().ok()?);
        let now = Instant::now();
        let mut live = self.live();
        live.retain(|_, until| *until > now);
        while live.len() >= MAX_SESSIONS {
            let oldest = live
                .iter()
                .min_by_key(|(_, until)| **until)
                .map(|(k, _)| *k);
            match oldest {
                Some(k) => live.remove(&k),
                None => break,
            };
        }
        live.insert(digest_of(&id), now + SESSION_TTL);
        Some(id)
    }

    /// Whether `id` names a live session.
    pub fn valid(&self, id: &str) -> bool {
        if id.len() != 64 {
            return false;
        }
        let now = Instant::now();
        self.live()
            .get(&digest_of(id))
            .is_some_and(|until| *until > now)
    }

    /// Ends the session `id` (signing out).
    pub fn remove(&self, id: &str) {
        self.live().remove(&digest_of(id));
    }

    /// The `Set-Cookie` value for a new session.
    pub fn cookie_for(id: &str) -> String {
        format!(
            "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
            SESSION_TTL.as_secs()
        )
    }

    /// The `Set-Cookie` value that removes the cookie.
    pub fn cookie_cleared() -> String {
        format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_valid_until_removed_and_capped_in_number() {
        let s = Sessions::default();
        let id = s.create().unwrap();
        assert_eq!(id.len(), 64);
        assert!(s.valid(&id));
        assert!(!s.valid(&"0".repeat(64)));
        s.remove(&id);
        assert!(!s.valid(&id));
        let first = s.create().unwrap();
        for _ in 0..MAX_SESSIONS {
            s.create().unwrap();
        }
        assert_eq!(s.live().len(), MAX_SESSIONS);
        assert!(!s.valid(&first), "the oldest session makes room");
        assert!(Sessions::cookie_for(&id).contains("HttpOnly; SameSite=Strict; Path=/"));
    }
}
