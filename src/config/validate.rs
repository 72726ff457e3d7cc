//! Validation: the file structs of [`super::file`] → the typed [`super::Config`], collecting
//! every problem with its key path and line instead of stopping at the first.

use serde::de::DeserializeOwned;

use super::file::{DaemonFile, MqttFile, PatientFile};
use super::locate::Locator;
use super::*;

mod daemon;
mod devices;
mod transport;

pub(super) struct Validator {
    loc: Locator,
    pub(super) problems: Vec<Problem>,
    pub(super) warnings: Vec<Problem>,
    /// The `[mqtt]` broker when it is plain `mqtt://` to another machine: its host and
    /// whether `[mqtt] allow_insecure` accepts that (for sinks publishing through it).
    pub(super) plain_shared_broker: Option<(String, bool)>,
}

impl Validator {
    pub(super) fn new(loc: Locator) -> Self {
        Self {
            loc,
            problems: Vec::new(),
            warnings: Vec::new(),
            plain_shared_broker: None,
        }
    }

    /// Something sent unencrypted to another machine: a problem naming `key`, or with
    /// `allowed` (the table's `allow_insecure = true`) a warning, which the daemon logs at WARN
    /// at every start (docs/network-security.md).
    pub(super) fn plaintext(&mut self, key: &str, allowed: bool, what: &str, fix: &str) {
        if allowed {
            let line = self.loc.line(key);
            self.warnings.push(Problem {
                path: key.to_string(),
                line,
                message: format!("allow_insecure = true: {what} unencrypted"),
            });
        } else {
            self.problem(
                key,
                format!("{what} unencrypted: {fix}, or set allow_insecure = true on this table to accept that"),
            );
        }
    }

    pub(super) fn problem(&mut self, path: impl Into<String>, message: impl Into<String>) {
        let path = path.into();
        let line = self.loc.line(&path);
        self.problems.push(Problem {
            path,
            line,
            message: message.into(),
        });
    }

    /// Deserializes one table, recording a problem (with the failing key's path) on error.
    ///
    /// serde stops at a table's first bad key, so after each error the offending key is taken
    /// out of a copy and the table is tried again: every bad key of the table is reported in
    /// one run (a missing key, or an error that names no key, ends the search). `None` when
    /// there was any problem.
    pub(super) fn section<T: DeserializeOwned>(
        &mut self,
        path: &str,
        value: toml::Value,
    ) -> Option<T> {
        let mut value = value;
        let mut failed = false;
        // Each round removes one key, so a table cannot loop for longer than it has keys.
        for _ in 0..64 {
            match serde_path_to_error::deserialize::<_, T>(value.clone()) {
                Ok(t) if !failed => return Some(t),
                Ok(_) => return None,
                Err(e) => {
                    failed = true;
                    let inner = e.inner().to_string();
                    let segments: Vec<String> = e
                        .path()
                        .iter()
                        .filter_map(|seg| match seg {
                            serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                            serde_path_to_error::Segment::Seq { index } => {
                                Some(format!("[{index}]"))
                            }
                            _ => None,
                        })
                        .collect();
                    let mut p = path.to_string();
                    let sub = e.path().to_string();
                    if sub != "." && !sub.is_empty() {
                        p = join(&p, &sub);
                    }
                    let mut keys = segments;
                    // Depending on the table, the unknown key may or may not be part of the
                    // path yet.
                    if let Some(rest) = inner.strip_prefix("unknown field `") {
                        if let Some(name) = rest.split('`').next() {
                            let last = p.rsplit(['.', ']']).next().unwrap_or("");
                            if last != name {
                                p = join(&p, name);
                                keys.push(name.to_string());
                            }
                        }
                    }
                    self.problem(p, inner.replace('\n', " ").trim().to_string());
                    if inner.starts_with("missing field") || !remove_key(&mut value, &keys) {
                        return None;
                    }
                }
            }
        }
        None
    }

    pub(super) fn run(&mut self, src: &str) -> Option<Config> {
        let mut root: toml::Table = match toml::from_str(src) {
            Ok(t) => t,
            Err(e) => {
                let line = e.span().map(|s| self.loc.line_of(s.start));
                self.problems.push(Problem {
                    path: String::new(),
                    line,
                    message: format!("not valid TOML: {}", e.message()),
                });
                return None;
            }
        };
        let daemon: Option<DaemonFile> = match root.remove("daemon") {
            Some(t) => self.section("daemon", t),
            None => Some(DaemonFile::default()),
        };
        let patient: Option<PatientFile> = match root.remove("patient") {
            Some(t) => self.section("patient", t),
            None => Some(PatientFile::default()),
        };
        let devices = self.array(root.remove("device"), "device");
        let sinks = self.array(root.remove("sink"), "sink");
        let mqtt = match root.remove("mqtt") {
            Some(t) => self
                .section::<MqttFile>("mqtt", t)
                .and_then(|m| self.mqtt(m)),
            None => None,
        };
        for key in root.keys() {
            self.problem(
                key.clone(),
                format!(
                    "unknown table `{key}`, expected one of daemon, patient, mqtt, device, sink"
                ),
            );
        }

        let daemon = daemon.and_then(|d| self.daemon(d));
        let patient = patient.and_then(|p| self.patient(p));
        let has_mqtt = mqtt.is_some();
        let devices: Vec<_> = devices
            .into_iter()
            .enumerate()
            .filter_map(|(i, v)| self.device(i, v, has_mqtt))
            .collect();
        let sinks: Vec<_> = sinks
            .into_iter()
            .enumerate()
            .filter_map(|(i, v)| self.sink(i, v, has_mqtt).map(|s| (i, s)))
            .collect();
        if patient
            .as_ref()
            .is_some_and(|p| p.mode == PatientMode::Location)
        {
            self.location_without_fhir(&sinks);
        }
        self.check_lookup_sink(patient.as_ref(), &sinks);
        let sinks: Vec<_> = sinks.into_iter().map(|(_, s)| s).collect();
        self.unique("device", devices.iter().map(|d| d.id.as_str().to_string()));
        self.unique("sink", sinks.iter().map(|s| s.id().as_str().to_string()));
        if sinks.is_empty() && !self.problems.iter().any(|p| p.path.starts_with("sink")) {
            self.problem(
                "sink",
                "no [[sink]] configured: readings would have nowhere to go",
            );
        }
        Some(Config {
            daemon: daemon?,
            patient: patient?,
            mqtt,
            devices,
            sinks,
            warnings: Vec::new(),
        })
    }

    /// Location mode sends Observations whose subject is the room (a Location). FHIR R4 makes
    /// every Observation with a vital-sign LOINC code conform to the vital-signs profile, whose
    /// subject must be a Patient: no FHIR output may run in location mode (docs/fhir.md).
    fn location_without_fhir(&mut self, sinks: &[(usize, SinkConfig)]) {
        for (i, s) in sinks {
            let key = match s {
                SinkConfig::Fhir(_) => format!("sink[{i}].type"),
                SinkConfig::File(f) if f.format == OutboxFormat::Fhir => {
                    format!("sink[{i}].format")
                }
                SinkConfig::Mqtt(m) if m.format == PublishFormat::Fhir => {
                    format!("sink[{i}].format")
                }
                _ => continue,
            };
            let at = self
                .loc
                .line(&key)
                .map_or_else(String::new, |l| format!(" (line {l})"));
            self.problem(
                "patient.mode",
                format!(
                    "mode = \"location\" cannot be used with FHIR output: {key}{at} of sink `{}` sends \
                     FHIR Observations, and FHIR R4 requires the subject of a vital-sign Observation \
                     to be a Patient, not a room; use mode = \"hold\", or a non-FHIR format",
                    s.id()
                ),
            );
        }
    }

    fn array(&mut self, v: Option<toml::Value>, name: &str) -> Vec<toml::Value> {
        match v {
            None => Vec::new(),
            Some(toml::Value::Array(a)) => a,
            Some(_) => {
                self.problem(
                    name,
                    format!("must be an array of tables: write [[{name}]]"),
                );
                Vec::new()
            }
        }
    }

    fn unique(&mut self, what: &str, ids: impl Iterator<Item = String>) {
        let mut seen = std::collections::HashSet::new();
        for (i, id) in ids.enumerate() {
            if !seen.insert(id.clone()) {
                self.problem(
                    format!("{what}[{i}].id"),
                    format!("duplicate {what} id `{id}`"),
                );
            }
        }
    }
}

/// Takes the key at `keys` (table keys and `[i]` array indexes) out of `v`; false when there
/// is no such key (or `keys` is empty: the whole table failed).
fn remove_key(v: &mut toml::Value, keys: &[String]) -> bool {
    let Some((last, parents)) = keys.split_last() else {
        return false;
    };
    let mut cur = v;
    for k in parents {
        let next = match (k.strip_prefix('[').and_then(|r| r.strip_suffix(']')), cur) {
            (Some(i), toml::Value::Array(a)) => i.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
            (None, toml::Value::Table(t)) => t.get_mut(k.as_str()),
            _ => None,
        };
        match next {
            Some(n) => cur = n,
            None => return false,
        }
    }
    match (
        last.strip_prefix('[').and_then(|r| r.strip_suffix(']')),
        cur,
    ) {
        (Some(i), toml::Value::Array(a)) => match i.parse::<usize>() {
            Ok(i) if i < a.len() => {
                a.remove(i);
                true
            }
            _ => false,
        },
        (None, toml::Value::Table(t)) => t.remove(last.as_str()).is_some(),
        _ => false,
    }
}

fn join(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_string()
    } else if b.starts_with('[') {
        format!("{a}{b}")
    } else {
        format!("{a}.{b}")
    }
}

/// Ids appear in file names, metric labels and store keys: keep them plain.
pub(super) fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod location_mode_tests;

#[cfg(test)]
#[path = "transport_tests.rs"]
mod transport_tests;
