//! The canonical reading: what every stage after `normalize` speaks.
//!
//! A [`Reading`] is one measurement event of one device (a blood-pressure panel, one SpO2 value,
//! one temperature) with its codes (LOINC + IEEE 11073 MDC), UCUM units, times, room, patient and
//! data-quality flags. Its JSON form is the public contract of docs/ARCHITECTURE.md#the-reading-json: `vitalsd decode` prints
//! it and the `reading` outbox format writes it. The queue stores a compact binary form of the
//! same fields and still reads this JSON in stores of earlier versions (docs/store-format.md).
//!
//! Numbers are [`Decimal`]s, not floats, so the device's precision survives from decode to the
//! forwarded value (a thermometer's `37.60` is written as `37.60`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

mod decimal;
mod dedupe;
pub mod mask;

pub use decimal::{Decimal, DecimalError, MAX_SCALE};

/// A configured device's stable id (`[[device]] id`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeviceId(String);

impl DeviceId {
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A configured sink's stable id (`[[sink]] id`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SinkId(String);

impl SinkId {
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SinkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The stable id of a reading, a UUIDv7 assigned once at capture. It is the FHIR
/// `Observation.identifier` and the HL7 MSH-10, so retries and resends stay idempotent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ReadingId(Uuid);

impl ReadingId {
    /// A new time-ordered id.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
    pub fn from_uuid(u: Uuid) -> Self {
        Self(u)
    }
    pub fn uuid(&self) -> Uuid {
        self.0
    }
    /// 16 bytes, big-endian: sorts by capture time.
    pub fn to_bytes(&self) -> [u8; 16] {
        *self.0.as_bytes()
    }
    pub fn from_bytes(b: [u8; 16]) -> Self {
        Self(Uuid::from_bytes(b))
    }
}

impl Default for ReadingId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for ReadingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for ReadingId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// What was measured. The kinds of docs/ARCHITECTURE.md#the-reading-json.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    BloodPressure,
    HeartRate,
    BodyTemperature,
    Spo2,
    RespiratoryRate,
    BodyWeight,
    BodyHeight,
    Bmi,
    Ecg,
}

impl Kind {
    pub const ALL: [Kind; 9] = [
        Kind::BloodPressure,
        Kind::HeartRate,
        Kind::BodyTemperature,
        Kind::Spo2,
        Kind::RespiratoryRate,
        Kind::BodyWeight,
        Kind::BodyHeight,
        Kind::Bmi,
        Kind::Ecg,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::BloodPressure => "blood_pressure",
            Kind::HeartRate => "heart_rate",
            Kind::BodyTemperature => "body_temperature",
            Kind::Spo2 => "spo2",
            Kind::RespiratoryRate => "respiratory_rate",
            Kind::BodyWeight => "body_weight",
            Kind::BodyHeight => "body_height",
            Kind::Bmi => "bmi",
            Kind::Ecg => "ecg",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown reading kind `{s}`"))
    }
}

/// A UCUM unit code (`mm[Hg]`, `Cel`, `/min`, `%`, `kg`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Ucum(String);

impl Ucum {
    pub fn new(code: impl Into<String>) -> Self {
        Self(code.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Ucum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a value that was expected is absent (FHIR `dataAbsentReason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AbsentReason {
    Unknown,
    Error,
    NotANumber,
    PositiveInfinity,
    NegativeInfinity,
}

impl AbsentReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            AbsentReason::Unknown => "unknown",
            AbsentReason::Error => "error",
            AbsentReason::NotANumber => "not-a-number",
            AbsentReason::PositiveInfinity => "positive-infinity",
            AbsentReason::NegativeInfinity => "negative-infinity",
        }
    }
}

/// One coded value of a reading (a component of a panel, or the single value).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Value {
    /// LOINC code (`8480-6`).
    pub code: String,
    /// IEEE 11073-10101 MDC code (`150021`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mdc: Option<u32>,
    /// Short name used in flags and readable output (`systolic`).
    pub name: String,
    /// `null` when the device reported a special value; then `absent` says why.
    pub value: Option<Decimal>,
    pub unit: Ucum,
    /// Measurement site for temperatures (`oral`, `axillary`, `tympanic`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub absent: Option<AbsentReason>,
}

/// The device that produced a reading.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceInfo {
    pub id: DeviceId,
    pub driver: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
}

/// A patient identifier: an MRN and the system (OID/URI) that issued it.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatientRef {
    pub id: String,
    pub system: String,
}

impl fmt::Debug for PatientRef {
    /// Patient identifiers never reach the ordinary log: `Debug` shows a short hash only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PatientRef(#{})", self.masked())
    }
}

impl PatientRef {
    /// A short tag for logs and pages: the first 12 hex digits of HMAC-SHA-256 of the system
    /// and id under the install's secret key ([`mask`]), stable while the key is, and not
    /// reversible without it (docs/security.md).
    pub fn masked(&self) -> String {
        mask::tag(mask::key(), &self.system, &self.id)
    }
}

/// The record system's Patient that a looked-up identifier names (`[patient] lookup`,
/// docs/patient-lookup.md): its logical id, and its name and birth date for display and for
/// HL7 PID-5/PID-7. `Debug` shows none of it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatientRecord {
    /// The Patient's logical id on the server (`Patient/<id>`).
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub given: Vec<String>,
    /// FHIR `date`: `YYYY`, `YYYY-MM` or `YYYY-MM-DD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<String>,
}

impl fmt::Debug for PatientRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PatientRecord(<redacted>)")
    }
}

impl PatientRecord {
    /// "Given Family" for display; `None` when the record has no name.
    pub fn display_name(&self) -> Option<String> {
        let mut parts: Vec<&str> = self.given.iter().map(String::as_str).collect();
        parts.extend(self.family.as_deref());
        let name = parts.join(" ");
        (!name.trim().is_empty()).then_some(name)
    }
}

/// A data-quality fact about a reading (`clock_untrusted`, `out_of_range:systolic`,
/// `device:artifact`, `rejected:...`). Flags starting with `rejected:` mean the reading
/// failed a hard limit: it is quarantined, and reaches a sink only when a named person
/// releases it (then as a preliminary result; `docs/quarantine.md`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Flag(String);

impl Flag {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn clock_untrusted() -> Self {
        Self::new("clock_untrusted")
    }
    pub fn out_of_range(name: &str) -> Self {
        Self(format!("out_of_range:{name}"))
    }
    pub fn device(what: &str) -> Self {
        Self(format!("device:{what}"))
    }
}

impl fmt::Display for Flag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The canonical reading (docs/ARCHITECTURE.md#the-reading-json).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reading {
    /// Assigned at capture; `null` in `vitalsd decode` output.
    pub id: Option<ReadingId>,
    pub device: DeviceInfo,
    pub room: Option<String>,
    pub patient: Option<PatientRef>,
    /// The record system's Patient for `patient`, when a lookup confirmed it
    /// (docs/patient-lookup.md); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient_record: Option<PatientRecord>,
    pub kind: Kind,
    /// When the measurement was taken, as vitalsd trusts it (device time when trusted, else
    /// receipt time).
    #[serde(with = "time::serde::rfc3339")]
    pub observed_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    /// The time the device reported, if it reports one.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub device_time: Option<OffsetDateTime>,
    pub values: Vec<Value>,
    #[serde(default)]
    pub flags: Vec<Flag>,
    /// The strip of an `ecg` reading; `None` (and absent from the JSON) for every other kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waveform: Option<Waveform>,
}

/// An ECG strip (docs/ecg.md#the-canonical-sample-form canonical form): integer counts plus a µV scale per lead,
/// sampled at `fs_hz` from `t0` (the first sample's time).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Waveform {
    pub fs_hz: f64,
    #[serde(with = "time::serde::rfc3339")]
    pub t0: OffsetDateTime,
    pub leads: Vec<Lead>,
    /// Detected R peaks, as sample indices into the leads.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub r_peaks: Vec<u32>,
    /// Every RR interval ending in this strip, in ms (for HRV); the median is a value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rr_ms: Vec<u32>,
}

/// One lead of a [`Waveform`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lead {
    /// MDC lead code (131328 family).
    pub mdc: u32,
    /// Component name (`ecg`, `lead_ii`, ...).
    pub name: String,
    /// µV per count.
    pub scale_uv: f64,
    pub samples: Vec<i32>,
}

impl Reading {
    pub fn has_flag(&self, prefix: &str) -> bool {
        self.flags.iter().any(|f| f.as_str().starts_with(prefix))
    }

    /// The hard-limit rejection reason, if normalisation rejected this reading.
    pub fn rejection(&self) -> Option<&str> {
        self.flags
            .iter()
            .find_map(|f| f.as_str().strip_prefix("rejected:"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_keeps_trailing_zeros() {
        let d: Decimal = "37.60".parse().unwrap();
        assert_eq!(d.to_string(), "37.60");
        assert_eq!(serde_json::to_string(&d).unwrap(), "37.60");
        let back: Decimal = serde_json::from_str("37.60").unwrap();
        assert_eq!(back, d);
    }

    #[test]
    fn decimal_handles_signs_and_small_values() {
        assert_eq!("-0.05".parse::<Decimal>().unwrap().to_string(), "-0.05");
        assert_eq!("120".parse::<Decimal>().unwrap().to_string(), "120");
        assert!("1e5".parse::<Decimal>().is_err());
        assert!("".parse::<Decimal>().is_err());
        assert!("--1".parse::<Decimal>().is_err());
        assert_eq!(Decimal::from_f64(37.0, 1).unwrap().to_string(), "37.0");
        assert_eq!(Decimal::from_f64(-0.25, 1).unwrap().to_string(), "-0.3");
    }

    #[test]
    fn patient_debug_never_shows_the_identifier() {
        let p = PatientRef {
            id: "MRN0012345".into(),
            system: "urn:oid:1.2.3".into(),
        };
        let shown = format!("{p:?}");
        assert!(!shown.contains("MRN0012345"), "{shown}");
    }

    #[test]
    fn kind_round_trips_through_its_name() {
        for k in Kind::ALL {
            assert_eq!(k.as_str().parse::<Kind>().unwrap(), k);
        }
    }
}
