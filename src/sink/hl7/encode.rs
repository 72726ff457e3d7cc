//! Reading → HL7 v2.6 ORU^R01 (IHE PCD-01 style, `docs/hl7.md`), unframed ER7 text whose
//! segments each end with CR.
//!
//! Layout (one message per reading):
//! ```text
//! MSH|^~\&|<app>|<fac>|<recv app>|<recv fac>|<received_at>||ORU^R01^ORU_R01|<reading id>|P|2.6|||AL|NE||UNICODE UTF-8|||IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO
//! PID|||<id>^^^&<oid>&ISO^MR||^^^^^^U
//! PV1||O|^<room>                        (PL: component 2 is the room)
//! OBR|1|<reading id>^<app>|<reading id>^<app>|182777000^monitoring of patient^SCT|||<observed_at>
//! NTE|1||<flag>                          (one per data-quality flag: clock_untrusted, ...)
//! OBX|n|NM|<mdc>^<MDC ref>^MDC^<loinc>^<display>^LN|1.1.1.n|<value>|<mdc unit>^<ref>^MDC^<ucum>^<ucum>^UCUM||<A>|||F|||<observed_at>||||<device id>
//! ```
//! The message conforms to HL7 v2.6 ORU^R01 as a strict validator checks it (`docs/hl7.md`):
//! - PID-3 and PID-5 are always present. PID-5 is an empty name of type `U` (unspecified):
//!   [`UNKNOWN_NAME`], unless the patient lookup confirmed the patient with the record system
//!   (docs/patient-lookup.md): then the record's name (type `L`) and, when known, its birth
//!   date in PID-7. A reading without a patient (location
//!   mode) gets the placeholder PID-3 [`NO_PATIENT_ID`] in the assigning authority
//!   [`NO_PATIENT_AUTHORITY`] with identifier type `U`: an identifier no record system issues,
//!   so it never matches a real patient; the room stays in PV1-3.
//! - PV1-3.2 (room, at most 20 characters once escaped) holds the room; a longer room is cut
//!   there (never inside an escape sequence) and sent whole in PV1-3.9 (location description).
//! - MSH-7 is the reading's `received_at` (when the message was, in effect, created — the same
//!   moment the control id was assigned), so encoding is a pure function: every resend of a
//!   reading, even after a restart, is byte-identical.
//! - OBX-5 keeps the device's precision (`37.0`, not `37`). A value the device reported as
//!   absent is sent as an OBX with an empty OBX-5 and result status `X` ("results cannot be
//!   obtained", the HL7 v2 counterpart of FHIR `dataAbsentReason`), followed by an NTE with the
//!   reason (`data absent: not-a-number`). Consumers that ignore `X` rows (as PCD-01 device-level
//!   rows use `X`) simply skip it.
//! - OBX-8 is `A` (abnormal) for a value named in an `out_of_range:<name>` flag.
//! - A reading with a `rejected:<reason>` flag failed a hard plausibility limit; it reaches a
//!   sink only after an MA released it from quarantine. Its rows get OBX-11 `P` (preliminary)
//!   instead of `F`, OBX-8 `A` on the values the reason names (all values when it names none),
//!   and the flag's NTE says it failed a hard plausibility limit and was released after review.
//! - An ECG strip (`Reading::waveform`) is sent only when [`Header::waveform`] is on (the sink's
//!   `waveform = true`): waveform OBX rows need the receiver's agreement. Then one `NA`
//!   row per lead plus its sample-rate row follow the value rows ([`super::waveform`]); when
//!   off the message is exactly as without a strip. The strip's derived values in `values` are
//!   always sent.
//! - Every data field (patient id and system, room, device id, configured names, flags) is
//!   escaped with [`Delimiters::escape`]; CR/LF in data become spaces.

use std::fmt::Write;

use super::Header;
use crate::net::hl7::{format_dtm, Delimiters};
use crate::normalize::codes::{self, Mdc};
use crate::reading::{PatientRecord, Reading, Value};

/// MSH-21 message profile (IHE PCD-01).
pub const PROFILE: &str = "IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO";
/// OBR-4 universal service id used by GE, Mindray and Continua.
pub const SERVICE: &str = "182777000^monitoring of patient^SCT";

/// PID-3 of a message whose reading has no patient (location mode): the model's placeholder,
/// the one the HL7 decoder recognises as no patient.
pub use crate::model::hl7::{NO_PATIENT_AUTHORITY, NO_PATIENT_ID};
/// PID-5: present but without a name, name type `U` (unspecified; HL7 table 0200).
pub const UNKNOWN_NAME: &str = "^^^^^^U";
/// Most characters (escaped) of an IS component such as PV1-3.2, the room.
const IS_MAX: usize = 20;

const D: Delimiters = Delimiters::STANDARD;

fn esc(s: &str) -> String {
    D.escape(s)
}

/// The ORU^R01 message of one reading (see the module doc), unframed, segments ending CR.
pub fn oru_r01(reading: &Reading, header: &Header) -> Vec<u8> {
    let mut m = String::with_capacity(1024);
    let control = reading.id.map(|i| i.to_string()).unwrap_or_default();
    let app = esc(&header.sending_application);
    // MSH: field numbers in the comments count MSH-1 as the separator.
    let _ = write!(
        m,
        "MSH|^~\\&|{app}|{}|{}|{}|{}||ORU^R01^ORU_R01|{}|{}|2.6|||AL|NE||UNICODE UTF-8|||{PROFILE}\r",
        esc(&header.sending_facility),
        esc(&header.receiving_application),
        esc(&header.receiving_facility),
        format_dtm(reading.received_at),
        esc(&control),
        esc(&header.processing_id),
    );
    let pid3 = match &reading.patient {
        Some(p) => pid3(&p.id, &p.system),
        None => format!("{NO_PATIENT_ID}^^^{NO_PATIENT_AUTHORITY}^U"),
    };
    let record = reading
        .patient
        .as_ref()
        .and(reading.patient_record.as_ref());
    let name = record
        .and_then(pid5)
        .unwrap_or_else(|| UNKNOWN_NAME.to_string());
    match record.and_then(|r| r.birth_date.as_deref()).map(pid7) {
        Some(born) => {
            let _ = write!(m, "PID|||{pid3}||{name}||{born}\r");
        }
        None => {
            let _ = write!(m, "PID|||{pid3}||{name}\r");
        }
    }
    m.push_str("PV1||O|");
    if let Some(room) = &reading.room {
        m.push_str(&pv1_3(room));
    }
    m.push('\r');
    let observed = format_dtm(reading.observed_at);
    let order = format!("{}^{app}", esc(&control));
    let _ = write!(m, "OBR|1|{order}|{order}|{SERVICE}|||{observed}\r");
    let rejections: Vec<&str> = reading
        .flags
        .iter()
        .filter_map(|f| f.as_str().strip_prefix("rejected:"))
        .collect();
    for (i, flag) in reading.flags.iter().enumerate() {
        let note = match flag.as_str().strip_prefix("rejected:") {
            Some(why) => format!(
                "failed a hard plausibility limit ({why}); released from quarantine after review"
            ),
            None => flag.as_str().to_string(),
        };
        let _ = write!(m, "NTE|{}||{}\r", i + 1, esc(&note));
    }
    let released = !rejections.is_empty();
    // The values a rejection names (`heart_rate 450 /min > 300`, `systolic <= diastolic`).
    let named = |name: &str| {
        rejections
            .iter()
            .any(|r| r.split_whitespace().any(|w| w == name))
    };
    let none_named = !reading.values.iter().any(|v| named(&v.name));
    let final_status = if released { "P" } else { "F" };
    let device = esc(reading.device.id.as_str());
    for (i, v) in reading.values.iter().enumerate() {
        let n = i + 1;
        let out_of_range = reading
            .flags
            .iter()
            .any(|f| f.as_str().strip_prefix("out_of_range:") == Some(v.name.as_str()));
        let implausible = released && v.value.is_some() && (none_named || named(&v.name));
        let abnormal = if out_of_range || implausible { "A" } else { "" };
        let (value, status) = match v.value {
            Some(d) => (d.to_string(), final_status),
            None => (String::new(), "X"),
        };
        let _ = write!(
            m,
            "OBX|{n}|NM|{}|1.1.1.{n}|{value}|{}||{abnormal}|||{status}|||{observed}||||{device}\r",
            obx3(reading, v),
            obx6(reading, v),
        );
        if v.value.is_none() {
            let why = v.absent.map_or("unknown", |a| a.as_str());
            let _ = write!(m, "NTE|1||data absent: {why}\r");
        }
    }
    if let Some(w) = reading.waveform.as_ref().filter(|_| header.waveform) {
        let first = reading.values.len() + 1;
        super::waveform::append(&mut m, w, first, &observed, &device, final_status);
    }
    m.into_bytes()
}

/// PV1-3 (PL) for a room: `^<room>`; a room longer than PL-2 allows is cut there and sent
/// whole in PL-9 (location description).
fn pv1_3(room: &str) -> String {
    let full = esc(room);
    if full.chars().count() <= IS_MAX {
        return format!("^{full}");
    }
    let mut cut = String::new();
    let mut used = 0;
    for c in room.chars() {
        let e = esc(c.encode_utf8(&mut [0u8; 4]));
        let n = e.chars().count();
        if used + n > IS_MAX {
            break;
        }
        used += n;
        cut.push_str(&e);
    }
    format!("^{cut}^^^^^^^{full}")
}

/// Most characters of a name component kept (before escaping): the v2.6 lengths of XPN's
/// family name (FN.1) and given names.
const FAMILY_MAX: usize = 50;
const GIVEN_MAX: usize = 30;

fn cut(s: &str, max: usize) -> String {
    esc(&s.chars().take(max).collect::<String>())
}

/// PID-5 (XPN) from a looked-up Patient (docs/patient-lookup.md):
/// `family^given^further given names^^^^L` (name type `L`, legal; HL7 table 0200); `None`
/// when the record has no name.
fn pid5(r: &PatientRecord) -> Option<String> {
    if r.family.is_none() && r.given.is_empty() {
        return None;
    }
    let family = r
        .family
        .as_deref()
        .map_or(String::new(), |f| cut(f, FAMILY_MAX));
    let given = r.given.first().map_or(String::new(), |g| cut(g, GIVEN_MAX));
    let more = cut(
        &r.given
            .iter()
            .skip(1)
            .cloned()
            .collect::<Vec<_>>()
            .join(" "),
        GIVEN_MAX,
    );
    Some(format!("{family}^{given}^{more}^^^^L"))
}

/// PID-7 (DTM, date of birth) from a FHIR date (`1970-01-02` → `19700102`).
fn pid7(date: &str) -> String {
    date.chars().filter(char::is_ascii_digit).collect()
}

/// PID-3 (CX): `id^^^&<universal id>&<type>^MR`. A `urn:oid:` system is sent as its bare OID
/// with type `ISO`; any other system (a URL) as itself with type `URI`.
fn pid3(id: &str, system: &str) -> String {
    let (universal, kind) = match system.strip_prefix("urn:oid:") {
        Some(oid) => (oid, "ISO"),
        None => (system, "URI"),
    };
    if universal.is_empty() {
        return format!("{}^^^^MR", esc(id));
    }
    format!("{}^^^&{}&{kind}^MR", esc(id), esc(universal))
}

/// The MDC observation code of a value: the device's own, else the table's (a temperature's
/// site code replaces the generic MDC_TEMP_BODY).
fn value_mdc(reading: &Reading, v: &Value) -> Option<Mdc> {
    let table = codes::component(reading.kind, &v.name);
    let site = v.site.as_deref().and_then(codes::site).and_then(|s| s.mdc);
    let code = v.mdc.or(table.map(|c| c.mdc.code))?;
    if let Some(s) = site {
        if table.is_some_and(|c| c.mdc.code == code) {
            return Some(s);
        }
    }
    let reference = codes::mdc_reference(code)
        .or(table
            .filter(|c| c.mdc.code == code)
            .map(|c| c.mdc.reference))
        .unwrap_or("");
    Some(Mdc { code, reference })
}

/// OBX-3 (CWE): MDC code first, LOINC as the alternate (components 4–6).
fn obx3(reading: &Reading, v: &Value) -> String {
    let table = codes::component(reading.kind, &v.name);
    let loinc = table
        .and_then(|c| c.loinc.map(|l| (l, c.display)))
        .or_else(|| {
            // A value not in the table: its code is LOINC unless it is an MDC number.
            (!v.code.is_empty() && v.code.contains('-')).then_some((v.code.as_str(), ""))
        });
    let mut out = match value_mdc(reading, v) {
        Some(m) => format!("{}^{}^MDC", m.code, esc(m.reference)),
        None => String::new(),
    };
    if let Some((code, display)) = loinc {
        if !out.is_empty() {
            out.push('^');
        }
        let _ = write!(out, "{}^{}^LN", esc(code), esc(display));
    }
    out
}

/// OBX-6 (CWE): MDC unit code first, UCUM as the alternate.
fn obx6(reading: &Reading, v: &Value) -> String {
    let ucum = v.unit.as_str();
    let mdc = codes::component(reading.kind, &v.name)
        .filter(|c| c.ucum == ucum)
        .map(|c| (c.mdc_unit.code, c.mdc_unit.reference))
        .or_else(|| codes::mdc_unit(ucum));
    let u = esc(ucum);
    match mdc {
        Some((code, reference)) => format!("{code}^{reference}^MDC^{u}^{u}^UCUM"),
        None => format!("{u}^{u}^UCUM"),
    }
}

#[cfg(test)]
mod lookup_tests {
    use super::*;

    fn record(family: Option<&str>, given: &[&str], born: Option<&str>) -> PatientRecord {
        PatientRecord {
            id: "pat-1".into(),
            family: family.map(Into::into),
            given: given.iter().map(|g| (*g).to_string()).collect(),
            birth_date: born.map(Into::into),
        }
    }

    #[test]
    fn a_looked_up_name_fills_pid5_escaped_and_the_birth_date_pid7() {
        let r = record(Some("O|Brien"), &["Mary", "Ann", "Lou"], Some("1970-01-02"));
        assert_eq!(pid5(&r).unwrap(), "O\\F\\Brien^Mary^Ann Lou^^^^L");
        assert_eq!(pid7("1970-01-02"), "19700102");
        assert_eq!(pid7("1970"), "1970");
        assert_eq!(pid5(&record(None, &[], None)), None);
        let long = "x".repeat(80);
        let r = record(Some(&long), &[&long], None);
        assert_eq!(
            pid5(&r).unwrap(),
            format!("{}^{}^^^^^L", "x".repeat(50), "x".repeat(30))
        );
    }
}
