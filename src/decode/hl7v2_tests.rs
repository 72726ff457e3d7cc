use super::*;
// MLLP framing and ACKs are the net layer's; the decoder's tests build and read them too.
use crate::decode::{DeviceMessage, DeviceTime, Measured};
use crate::net::hl7::*;
use crate::reading::{Flag, Kind};
use proptest::prelude::*;
use time::OffsetDateTime;

/// docs/hl7-inbound.md#a-complete-example, segment by segment (joined with CR on the wire).
const EXAMPLE: [&str; 11] = [
    r"MSH|^~\&|VITALSD^0012345678ABCDEF^EUI-64|CLINIC_A|EHR|CLINIC_A|20240315103005+0100||ORU^R01^ORU_R01|VD-20240315-000042|P|2.6|||AL|NE||UNICODE UTF-8|||IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO",
    "PID|||MRN123456^^^CLINIC_A^MR||DOE^JANE^^^^^L||19800101|F",
    "PV1||O|CLINIC_A^EXAM1^1",
    "OBR|1|VD-20240315-000042^VITALSD^0012345678ABCDEF^EUI-64|VD-20240315-000042^VITALSD^0012345678ABCDEF^EUI-64|182777000^monitoring of patient^SCT|||20240315102930+0100",
    "OBX|1|NM|150021^MDC_PRESS_BLD_NONINV_SYS^MDC^8480-6^Systolic blood pressure^LN|1.1.1.1|120|266016^MDC_DIM_MMHG^MDC^mm[Hg]^mm[Hg]^UCUM|||||R|||20240315102930+0100||||0012345678ABCDEF^^0012345678ABCDEF^EUI-64",
    "OBX|2|NM|150022^MDC_PRESS_BLD_NONINV_DIA^MDC^8462-4^Diastolic blood pressure^LN|1.1.1.2|80|266016^MDC_DIM_MMHG^MDC^mm[Hg]^mm[Hg]^UCUM|||||R|||20240315102930+0100||||0012345678ABCDEF^^0012345678ABCDEF^EUI-64",
    "OBX|3|NM|150023^MDC_PRESS_BLD_NONINV_MEAN^MDC^8478-0^Mean blood pressure^LN|1.1.1.3|93|266016^MDC_DIM_MMHG^MDC^mm[Hg]^mm[Hg]^UCUM|||||R|||20240315102930+0100||||0012345678ABCDEF^^0012345678ABCDEF^EUI-64",
    "OBX|4|NM|149546^MDC_PULS_RATE_NON_INV^MDC^8867-4^Heart rate^LN|1.1.1.4|72|264864^MDC_DIM_BEAT_PER_MIN^MDC^/min^/min^UCUM|||||R|||20240315102930+0100||||0012345678ABCDEF^^0012345678ABCDEF^EUI-64",
    "OBX|5|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC^59408-5^Oxygen saturation in Arterial blood by Pulse oximetry^LN|1.2.1.1|97|262688^MDC_DIM_PERCENT^MDC^%^%^UCUM|||||R|||20240315102945+0100||||0012345678ABCDEF^^0012345678ABCDEF^EUI-64",
    "OBX|6|NM|188424^MDC_TEMP_ORAL^MDC^8310-5^Body temperature^LN|1.3.1.1|37.0|268192^MDC_DIM_DEGC^MDC^Cel^Cel^UCUM|||||R|||20240315102810+0100||||0012345678ABCDEF^^0012345678ABCDEF^EUI-64",
    "OBX|7|NM|188736^MDC_MASS_BODY_ACTUAL^MDC^29463-7^Body weight^LN|1.4.1.1|72.5|263875^MDC_DIM_KILO_G^MDC^kg^kg^UCUM|||||R|||20240315102500+0100||||0012345678ABCDEF^^0012345678ABCDEF^EUI-64",
];

fn message(segments: &[&str]) -> Vec<u8> {
    let mut m = segments.join("\r").into_bytes();
    m.push(CR);
    m
}

fn framed(segments: &[&str]) -> Vec<u8> {
    mllp_frame(&message(segments))
}

/// The §4.4 MSH/PID/OBR followed by `obx` rows.
fn with_obx(obx: &[&str]) -> Vec<u8> {
    let mut segs: Vec<&str> = EXAMPLE[..4].to_vec();
    segs.extend_from_slice(obx);
    message(&segs)
}

fn decode(bytes: &[u8]) -> Vec<DecodeEvent> {
    let mut d = Hl7v2::new(Transport::Mllp);
    let mut out = Vec::new();
    d.feed(bytes, &mut out);
    d.finish(&mut out);
    out
}

fn values(m: &DeviceMessage) -> Vec<(String, String, String)> {
    m.values
        .iter()
        .map(|v| {
            let val = match &v.value {
                Measured::Value(d) => d.to_string(),
                Measured::Absent(r) => format!("absent:{}", r.as_str()),
            };
            (v.name.clone(), val, v.unit.as_str().to_string())
        })
        .collect()
}

fn t(s: &str) -> (String, String, String) {
    let mut p = s.split(' ');
    let mut next = || p.next().unwrap_or("").to_string();
    (next(), next(), next())
}

#[path = "hl7v2_tests/messages_and_acks_tests.rs"]
mod messages_and_acks;
#[path = "hl7v2_tests/patient_tests.rs"]
mod patient;
#[path = "hl7v2_tests/values_and_framing_tests.rs"]
mod values_and_framing;
