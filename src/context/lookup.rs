//! Confirming a scanned identifier against the record system (`[patient] lookup`,
//! docs/patient-lookup.md).
//!
//! Receives the identifier of every scan, patient-topic message and API set; asks a
//! [`Directory`] — in production [`FhirDirectory`]: `GET [base]/Patient?identifier=<system>|<value>`
//! on the named FHIR sink's server, with the FHIR client the sink uses too (`crate::net::http`:
//! TLS trust, timeouts, no redirects) and the sink's token source (`crate::net::oauth`, handed
//! in by the app: one access token for both) — and answers [`Answer`]: exactly one Patient
//! (`Found`, with its logical id, name and birth date), none, more than one, or no answer.
//! Promises:
//! - answers are cached, at most [`CACHE_ENTRIES`] identifiers: a found Patient for
//!   `lookup_cache_ttl`, "none" and "more than one" for at most [`NEGATIVE_TTL`] (a patient
//!   registered a moment ago can be scanned again soon); "no answer" is never cached, and a
//!   cached Patient is still used while the server is down;
//! - the identifier, the name and the birth date never reach the log or an error text: the
//!   request URL is not logged, and a failure is described by its kind and HTTP status only.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::{FhirSinkConfig, LookupConfig, LookupUnavailable};
use crate::net::http::ClientError;
use crate::net::oauth::TokenSource;
use crate::reading::{PatientRecord, PatientRef};

mod fhir;

pub use fhir::FhirDirectory;
// The test module names it through `use super::*`.
#[cfg(test)]
use fhir::patients;

/// Identifiers whose answer is kept.
pub const CACHE_ENTRIES: usize = 1024;
/// The longest a "no such patient" or "more than one" answer is reused.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(60);
/// The most bytes of a search answer that are read.
const MAX_ANSWER_BYTES: usize = 1 << 20;
/// The longest name part or birth date kept from a Patient.
const MAX_PART: usize = 100;

pub use crate::model::audit::{LookupChoice, RefusalReason, Verification};

/// What the record system says about one identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Found(PatientRecord),
    NotFound,
    Ambiguous,
    /// No answer (unreachable, timed out, an error status); the reason names no identifier.
    Unavailable(String),
}

/// A future a [`Directory`] returns.
pub type SearchFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<PatientRecord>, String>> + Send + 'a>>;

/// Where Patients are searched by identifier.
pub trait Directory: Send + Sync {
    /// Every Patient with this identifier (at most two are needed), or why there is no answer
    /// (without the identifier).
    fn search<'a>(&'a self, patient: &'a PatientRef) -> SearchFuture<'a>;
}

struct Cached {
    at: Instant,
    answer: Answer,
}

/// The lookup: a directory, the cache and what to do when the directory cannot answer.
pub struct Lookup {
    directory: Arc<dyn Directory>,
    unavailable: LookupUnavailable,
    ttl: Duration,
    cache: Mutex<HashMap<PatientRef, Cached>>,
}

impl Lookup {
    pub fn new(
        directory: Arc<dyn Directory>,
        unavailable: LookupUnavailable,
        ttl: Duration,
    ) -> Self {
        Self {
            directory,
            unavailable,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The lookup of `[patient] lookup` on the FHIR sink it names, authenticating through
    /// `tokens` (the source of the sink's credentials, shared with the sink).
    pub fn from_config(
        cfg: &LookupConfig,
        sink: &FhirSinkConfig,
        tokens: Arc<TokenSource>,
    ) -> Result<Self, ClientError> {
        Ok(Self::new(
            Arc::new(FhirDirectory::with_tokens(sink, tokens)?),
            cfg.unavailable,
            cfg.cache_ttl,
        ))
    }

    /// What a scan does while the directory cannot answer.
    pub fn on_unavailable(&self) -> LookupUnavailable {
        self.unavailable
    }

    fn lifetime(&self, a: &Answer) -> Duration {
        match a {
            Answer::Found(_) => self.ttl,
            _ => self.ttl.min(NEGATIVE_TTL),
        }
    }

    fn cached(&self, p: &PatientRef, now: Instant) -> Option<Answer> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .get(p)
            .filter(|c| now.duration_since(c.at) < self.lifetime(&c.answer))
            .map(|c| c.answer.clone())
    }

    /// A found Patient within its lifetime, even while the directory is down.
    fn cached_found(&self, p: &PatientRef, now: Instant) -> Option<Answer> {
        self.cached(p, now)
            .filter(|a| matches!(a, Answer::Found(_)))
    }

    fn remember(&self, p: &PatientRef, answer: &Answer, now: Instant) {
        if self.lifetime(answer).is_zero() {
            return;
        }
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_ENTRIES && !cache.contains_key(p) {
            cache.retain(|_, c| now.duration_since(c.at) < self.lifetime(&c.answer));
            if cache.len() >= CACHE_ENTRIES {
                let oldest = cache
                    .iter()
                    .min_by_key(|(_, c)| c.at)
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    cache.remove(&k);
                }
            }
        }
        cache.insert(
            p.clone(),
            Cached {
                at: now,
                answer: answer.clone(),
            },
        );
    }

    /// How many identifiers the cache holds (for tests and the status).
    pub fn cached_entries(&self) -> usize {
        self.cache.lock().map_or(0, |c| c.len())
    }

    /// What the record system says about `p` (from the cache when it is fresh).
    pub async fn check(&self, p: &PatientRef) -> Answer {
        let now = Instant::now();
        if let Some(a) = self.cached(p, now) {
            return a;
        }
        let answer = match self.directory.search(p).await {
            Ok(mut found) => match found.len() {
                0 => Answer::NotFound,
                1 => Answer::Found(found.remove(0)),
                _ => Answer::Ambiguous,
            },
            Err(reason) => {
                if let Some(a) = self.cached_found(p, now) {
                    return a;
                }
                return Answer::Unavailable(reason);
            }
        };
        self.remember(p, &answer, Instant::now());
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A directory answering from a list, or failing; counts the searches.
    struct Fake {
        patients: Mutex<Vec<(PatientRef, PatientRecord)>>,
        down: std::sync::atomic::AtomicBool,
        searches: AtomicUsize,
    }

    impl Directory for Fake {
        fn search<'a>(&'a self, p: &'a PatientRef) -> SearchFuture<'a> {
            self.searches.fetch_add(1, Ordering::SeqCst);
            let down = self.down.load(Ordering::SeqCst);
            let found: Vec<PatientRecord> = self
                .patients
                .lock()
                .unwrap()
                .iter()
                .filter(|(k, _)| k == p)
                .map(|(_, r)| r.clone())
                .collect();
            Box::pin(async move {
                if down {
                    Err("cannot connect".to_string())
                } else {
                    Ok(found)
                }
            })
        }
    }

    fn mrn(id: &str) -> PatientRef {
        PatientRef {
            id: id.into(),
            system: "urn:oid:1.2.3".into(),
        }
    }

    fn rec(id: &str) -> PatientRecord {
        PatientRecord {
            id: id.into(),
            family: Some("Doe".into()),
            given: vec!["Jane".into()],
            birth_date: Some("1970-01-02".into()),
        }
    }

    fn fake(list: &[(&str, &str)]) -> Arc<Fake> {
        Arc::new(Fake {
            patients: Mutex::new(list.iter().map(|(m, r)| (mrn(m), rec(r))).collect()),
            down: false.into(),
            searches: AtomicUsize::new(0),
        })
    }

    #[tokio::test]
    async fn one_none_or_two_patients_and_a_down_server() {
        let f = fake(&[("A", "p1"), ("B", "p2"), ("B", "p3")]);
        let l = Lookup::new(f.clone(), LookupUnavailable::Hold, Duration::from_secs(600));
        assert_eq!(l.check(&mrn("A")).await, Answer::Found(rec("p1")));
        assert_eq!(l.check(&mrn("B")).await, Answer::Ambiguous);
        assert_eq!(l.check(&mrn("C")).await, Answer::NotFound);
        f.down.store(true, Ordering::SeqCst);
        assert_eq!(
            l.check(&mrn("D")).await,
            Answer::Unavailable("cannot connect".into())
        );
        // A found Patient is reused while the server is down; nothing new is asked for it.
        let before = f.searches.load(Ordering::SeqCst);
        assert_eq!(l.check(&mrn("A")).await, Answer::Found(rec("p1")));
        assert_eq!(f.searches.load(Ordering::SeqCst), before);
    }

    #[tokio::test]
    async fn answers_are_cached_for_their_lifetime_only() {
        let f = fake(&[("A", "p1")]);
        let l = Lookup::new(
            f.clone(),
            LookupUnavailable::Hold,
            Duration::from_millis(200),
        );
        l.check(&mrn("A")).await;
        l.check(&mrn("A")).await;
        assert_eq!(
            f.searches.load(Ordering::SeqCst),
            1,
            "second answer from the cache"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        l.check(&mrn("A")).await;
        assert_eq!(
            f.searches.load(Ordering::SeqCst),
            2,
            "asked again after the ttl"
        );
        // No answer is never cached.
        f.down.store(true, Ordering::SeqCst);
        l.check(&mrn("Z")).await;
        l.check(&mrn("Z")).await;
        assert_eq!(f.searches.load(Ordering::SeqCst), 4);
        // A zero ttl caches nothing.
        let l0 = Lookup::new(
            fake(&[("A", "p1")]),
            LookupUnavailable::Hold,
            Duration::ZERO,
        );
        l0.check(&mrn("A")).await;
        assert_eq!(l0.cached_entries(), 0);
    }

    #[tokio::test]
    async fn the_cache_is_bounded() {
        let f = fake(&[]);
        let l = Lookup::new(f, LookupUnavailable::Hold, Duration::from_secs(600));
        for i in 0..(CACHE_ENTRIES + 50) {
            l.check(&mrn(&format!("M{i}"))).await;
        }
        assert_eq!(l.cached_entries(), CACHE_ENTRIES);
    }

    #[test]
    fn a_searchset_gives_its_matching_patients_with_name_and_birth_date() {
        let body = br#"{"resourceType":"Bundle","type":"searchset","entry":[
            {"resource":{"resourceType":"Patient","id":"p1","birthDate":"1970-01-02",
              "name":[{"use":"nickname","given":["J"]},{"use":"official","family":"Doe","given":["Jane","Q"]}]},
             "search":{"mode":"match"}},
            {"resource":{"resourceType":"OperationOutcome","issue":[]},"search":{"mode":"outcome"}},
            {"resource":{"resourceType":"Patient","id":"x","birthDate":"not a date"},"search":{"mode":"include"}}]}"#;
        let p = patients(body).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].id, "p1");
        assert_eq!(p[0].family.as_deref(), Some("Doe"));
        assert_eq!(p[0].given, vec!["Jane", "Q"]);
        assert_eq!(p[0].birth_date.as_deref(), Some("1970-01-02"));
        assert_eq!(p[0].display_name().as_deref(), Some("Jane Q Doe"));
        let empty = patients(br#"{"resourceType":"Bundle","type":"searchset"}"#).unwrap();
        assert!(empty.is_empty());
        assert!(patients(b"<html>").is_err());
        assert!(patients(br#"{"resourceType":"OperationOutcome"}"#).is_err());
        let odd = patients(br#"{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient","id":"q","birthDate":"1970-13"}}]}"#).unwrap();
        assert_eq!(
            odd[0].birth_date.as_deref(),
            Some("1970-13"),
            "the shape, not the calendar"
        );
        let bad = patients(br#"{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient","id":"q","birthDate":"70-1-2"}}]}"#).unwrap();
        assert_eq!(bad[0].birth_date, None);
        assert!(format!("{:?}", p[0]).contains("redacted"));
    }
}
