//! Reading → HL7 v2.6 ORU^R01 (IHE PCD-01 style, PROTOCOLS §4.2–§4.4), unframed ER7 text whose
//! segments each end with CR.
//!
//! Layout (one message per reading):
//! ```text
//! MSH|^~\&|<app>|<fac>|<recv app>|<recv fac>|<received_at>||ORU^R01^ORU_R01|<reading id>|P|2.6|||AL|NE||UNICODE UTF-8|||IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO
//! PID|||<id>^^^&<oid>&ISO^MR            (PID-3 empty when the reading has no patient)
//! PV1||O|^<room>                        (PL: component 2 is the room)
//! OBR|1|<reading id>^<app>|<reading id>^<app>|182777000^monitoring of patient^SCT|||<observed_at>
//! NTE|1||<flag>                          (one per data-quality flag: clock_untrusted, ...)
//! OBX|n|NM|<mdc>^<MDC ref>^MDC^<loinc>^<display>^LN|1.1.1.n|<value>|<mdc unit>^<ref>^MDC^<ucum>^<ucum>^UCUM||<A>|||F|||<observed_at>||||<device id>
//! ```
//! - MSH-7 is the reading's `received_at` (when the message was, in effect, created — the same
//!   moment the control id was assigned), so encoding is a pure function: every resend of a
//!   reading, even after a restart, is byte-identical (PROTOCOLS §4.7 rule 2).
//! - OBX-5 keeps the device's precision (`37.0`, not `37`). A value the device reported as
//!   absent is sent as an OBX with an empty OBX-5 and result status `X` ("results cannot be
//!   obtained", the HL7 v2 counterpart of FHIR `dataAbsentReason`), followed by an NTE with the
//!   reason (`data absent: not-a-number`). Consumers that ignore `X` rows (as PCD-01 device-level
//!   rows use `X`) simply skip it.
//! - OBX-8 is `A` (abnormal) for a value named in an `out_of_range:<name>` flag.
//! - An ECG strip (`Reading::waveform`) is sent only when [`Header::waveform`] is on (the sink's
//!   `waveform = true`): waveform OBX rows need the receiver's agreement (§4.4). Then one `NA`
//!   row per lead plus its sample-rate row follow the value rows ([`super::waveform`]); when
//!   off the message is exactly as without a strip. The strip's derived values in `values` are
//!   always sent.
//! - Every data field (patient id and system, room, device id, configured names, flags) is
//!   escaped with [`Delimiters::escape`]; CR/LF in data become spaces.

use std::fmt::Write;

use super::Header;
use crate::decode::hl7v2::{format_dtm, Delimiters};
use crate::normalize::codes::{self, Mdc};
use crate::reading::{Reading, Value};

/// MSH-21 message profile (PROTOCOLS §4.3).
pub const PROFILE: &str = "IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO";
/// OBR-4 universal service id used by GE, Mindray and Continua.
pub const SERVICE: &str = "182777000^monitoring of patient^SCT";

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
    m.push_str("PID|||");
    if let Some(p) = &reading.patient {
        m.push_str(&pid3(&p.id, &p.system));
    }
    m.push('\r');
    m.push_str("PV1||O|");
    if let Some(room) = &reading.room {
        let _ = write!(m, "^{}", esc(room));
    }
    m.push('\r');
    let observed = format_dtm(reading.observed_at);
    let order = format!("{}^{app}", esc(&control));
    let _ = write!(m, "OBR|1|{order}|{order}|{SERVICE}|||{observed}\r");
    for (i, flag) in reading.flags.iter().enumerate() {
        let _ = write!(m, "NTE|{}||{}\r", i + 1, esc(flag.as_str()));
    }
    let device = esc(reading.device.id.as_str());
    for (i, v) in reading.values.iter().enumerate() {
        let n = i + 1;
        let abnormal = if reading
            .flags
            .iter()
            .any(|f| f.as_str().strip_prefix("out_of_range:") == Some(v.name.as_str()))
        {
            "A"
        } else {
            ""
        };
        let (value, status) = match v.value {
            Some(d) => (d.to_string(), "F"),
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
        super::waveform::append(&mut m, w, reading.values.len() + 1, &observed, &device);
    }
    m.into_bytes()
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
