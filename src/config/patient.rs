//! Validation of the `[patient]` lookup keys (`lookup`, `lookup_unavailable`,
//! `lookup_cache_ttl`; docs/patient-lookup.md).
//!
//! Receives the `[patient]` table and, once every sink is read, the sinks; records a problem
//! (key path and line) for an unknown `lookup_unavailable`, a cache lifetime over a day, and a
//! `lookup` that does not name a configured `type = "fhir"` sink. Promises: without `lookup`
//! the other two keys change nothing.

use std::time::Duration;

use super::file::PatientFile;
use super::validate::Validator;
use super::{LookupConfig, LookupUnavailable, PatientConfig, SinkConfig};
use crate::reading::SinkId;

/// The longest `lookup_cache_ttl`: an answer older than a day is not an answer about today.
const MAX_CACHE_TTL: Duration = Duration::from_secs(24 * 3600);

impl Validator {
    /// The lookup settings of `[patient]` (`None` without `lookup`); the sink it names is
    /// checked by [`Validator::check_lookup_sink`] once the sinks are read.
    pub(super) fn patient_lookup(&mut self, p: &PatientFile) -> Option<LookupConfig> {
        let unavailable = match p.lookup_unavailable.as_str() {
            "hold" => Some(LookupUnavailable::Hold),
            "identifier" => Some(LookupUnavailable::Identifier),
            other => {
                self.problem(
                    "patient.lookup_unavailable",
                    format!("unknown value `{other}`, expected hold or identifier"),
                );
                None
            }
        };
        let cache_ttl = p.lookup_cache_ttl.0;
        if cache_ttl > MAX_CACHE_TTL {
            self.problem(
                "patient.lookup_cache_ttl",
                "at most 24h: a cached answer older than that may no longer be true",
            );
        }
        let sink = p.lookup.trim();
        if sink.is_empty() {
            return None;
        }
        Some(LookupConfig {
            sink: SinkId::new(sink),
            unavailable: unavailable?,
            cache_ttl: cache_ttl.min(MAX_CACHE_TTL),
            server: None,
        })
    }

    /// `[patient] lookup` must name a configured `type = "fhir"` sink.
    pub(super) fn check_lookup_sink(
        &mut self,
        patient: Option<&PatientConfig>,
        sinks: &[(usize, SinkConfig)],
    ) {
        let Some(lookup) = patient.and_then(|p| p.lookup.as_ref()) else {
            return;
        };
        match sinks.iter().find(|(_, s)| s.id() == &lookup.sink) {
            Some((_, SinkConfig::Fhir(_))) => {}
            Some((i, _)) => self.problem(
                "patient.lookup",
                format!(
                    "sink `{}` (sink[{i}]) is not a type = \"fhir\" sink: the lookup asks a FHIR \
                     server for the Patient",
                    lookup.sink
                ),
            ),
            None => self.problem(
                "patient.lookup",
                format!(
                    "no [[sink]] with id `{}`: name a configured type = \"fhir\" sink, whose \
                     server, credentials and TLS trust the lookup uses",
                    lookup.sink
                ),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    const BASE: &str = "[[device]]\nid = \"scan\"\ndriver = \"barcode\"\nroom = \"exam-1\"\n\
        serial = { path = \"/dev/ttyUSB0\" }\noptions = { system = \"urn:oid:1.2.3\" }\n\n\
        [[sink]]\nid = \"ehr\"\ntype = \"fhir\"\nbase_url = \"https://ehr.example/fhir\"\n\n\
        [[sink]]\nid = \"box\"\ntype = \"file\"\ndir = \"/tmp/box\"\nformat = \"reading\"\n";

    fn parse(patient: &str) -> Result<crate::config::Config, Vec<String>> {
        let src = format!("[patient]\n{patient}\n{BASE}");
        crate::config::parse(&src, "test.toml")
            .map_err(|e| e.problems.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn lookup_names_a_fhir_sink_with_its_settings() {
        let cfg = parse(
            "lookup = \"ehr\"\nlookup_unavailable = \"identifier\"\nlookup_cache_ttl = \"2m\"",
        )
        .unwrap();
        let l = cfg.patient.lookup.unwrap();
        assert_eq!(l.sink.as_str(), "ehr");
        assert_eq!(l.unavailable, super::LookupUnavailable::Identifier);
        assert_eq!(l.cache_ttl, std::time::Duration::from_secs(120));
        let l = parse("lookup = \"ehr\"").unwrap().patient.lookup.unwrap();
        assert_eq!(l.unavailable, super::LookupUnavailable::Hold);
        assert_eq!(l.cache_ttl, std::time::Duration::from_secs(600));
        assert!(parse("").unwrap().patient.lookup.is_none());
    }

    #[test]
    fn lookup_must_name_a_configured_fhir_sink() {
        let p = parse("lookup = \"nope\"").unwrap_err();
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("patient.lookup (line 2): no [[sink]] with id `nope`"),
            "{p:?}"
        );
        let p = parse("lookup = \"box\"").unwrap_err();
        assert!(
            p[0].starts_with(
                "patient.lookup (line 2): sink `box` (sink[1]) is not a type = \"fhir\" sink"
            ),
            "{p:?}"
        );
    }

    #[test]
    fn bad_lookup_settings_are_named_with_their_line() {
        let p =
            parse("lookup = \"ehr\"\nlookup_unavailable = \"guess\"\nlookup_cache_ttl = \"3d\"")
                .unwrap_err();
        assert!(
            p.iter().any(
                |m| m.starts_with("patient.lookup_unavailable (line 3): unknown value `guess`")
            ),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|m| m.starts_with("patient.lookup_cache_ttl (line 4): at most 24h")),
            "{p:?}"
        );
    }
}
