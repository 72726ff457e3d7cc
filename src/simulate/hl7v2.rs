//! A vital-signs monitor for the `hl7v2` driver: one MLLP-framed ORU^R01 per spot check in
//! the IHE PCD-01 style of docs/hl7-inbound.md#a-complete-example (blood pressure with mean, cuff pulse rate, SpO2,
//! oral temperature; MDC codes with LOINC alternates, MDC and UCUM units, status `R`).

use std::time::Duration;

use time::OffsetDateTime;

use super::{Simulator, Step};
use crate::net::hl7::{format_dtm, mllp_frame};

/// The equipment id (EUI-64) the simulated monitor reports in MSH-3 and OBX-18.
pub const EUI64: &str = "0012345678ABCDEF";

/// The values of one simulated spot check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spot {
    pub systolic: u32,
    pub diastolic: u32,
    pub mean: u32,
    pub pulse: u32,
    pub spo2: u32,
    /// Oral temperature in tenths of a degree Celsius (`371` → `37.1`).
    pub temp_tenths: u32,
    /// The patient's MRN digits (`MRN00` + 5 digits in PID-3).
    pub mrn: u32,
}

/// Simulated monitor; values come from a seeded generator.
pub struct Hl7v2Sim {
    rng: fastrand::Rng,
    sequence: u32,
}

impl Hl7v2Sim {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: fastrand::Rng::with_seed(seed),
            sequence: 0,
        }
    }

    /// The values of the next spot check.
    pub fn next_spot(&mut self) -> Spot {
        let systolic = self.rng.u32(100..=160);
        let diastolic = self.rng.u32(60..=95);
        Spot {
            systolic,
            diastolic,
            mean: diastolic + (systolic - diastolic) / 3,
            pulse: self.rng.u32(55..=110),
            spo2: self.rng.u32(92..=100),
            temp_tenths: self.rng.u32(361..=383),
            mrn: self.rng.u32(0..100_000),
        }
    }
}

/// The ORU^R01 message (segments ending in CR, no framing) reporting `spot` at `now`.
pub fn oru(spot: &Spot, control_id: &str, now: OffsetDateTime) -> String {
    let t = format_dtm(now);
    let eq = format!("{EUI64}^^{EUI64}^EUI-64");
    let obx = |n: u32, code: &str, sub: &str, value: String, unit: &str| {
        format!("OBX|{n}|NM|{code}|{sub}|{value}|{unit}|||||R|||{t}||||{eq}\r")
    };
    let mmhg = "266016^MDC_DIM_MMHG^MDC^mm[Hg]^mm[Hg]^UCUM";
    let mut m = format!(
        "MSH|^~\\&|VITALSD_SIM^{EUI64}^EUI-64|CLINIC_A|EHR|CLINIC_A|{t}||ORU^R01^ORU_R01|{control_id}|P|2.6|||AL|NE||UNICODE UTF-8|||IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO\r\
         PID|||MRN00{:05}^^^CLINIC_A^MR\r\
         PV1||O|CLINIC_A^EXAM1^1\r\
         OBR|1|{control_id}^VITALSD_SIM^{EUI64}^EUI-64|{control_id}^VITALSD_SIM^{EUI64}^EUI-64|182777000^monitoring of patient^SCT|||{t}\r",
        spot.mrn
    );
    m.push_str(&obx(
        1,
        "150021^MDC_PRESS_BLD_NONINV_SYS^MDC^8480-6^Systolic blood pressure^LN",
        "1.1.1.1",
        spot.systolic.to_string(),
        mmhg,
    ));
    m.push_str(&obx(
        2,
        "150022^MDC_PRESS_BLD_NONINV_DIA^MDC^8462-4^Diastolic blood pressure^LN",
        "1.1.1.2",
        spot.diastolic.to_string(),
        mmhg,
    ));
    m.push_str(&obx(
        3,
        "150023^MDC_PRESS_BLD_NONINV_MEAN^MDC^8478-0^Mean blood pressure^LN",
        "1.1.1.3",
        spot.mean.to_string(),
        mmhg,
    ));
    m.push_str(&obx(
        4,
        "149546^MDC_PULS_RATE_NON_INV^MDC^8867-4^Heart rate^LN",
        "1.1.1.4",
        spot.pulse.to_string(),
        "264864^MDC_DIM_BEAT_PER_MIN^MDC^/min^/min^UCUM",
    ));
    m.push_str(&obx(5, "150456^MDC_PULS_OXIM_SAT_O2^MDC^59408-5^Oxygen saturation in Arterial blood by Pulse oximetry^LN", "1.2.1.1", spot.spo2.to_string(), "262688^MDC_DIM_PERCENT^MDC^%^%^UCUM"));
    let temp = format!("{}.{}", spot.temp_tenths / 10, spot.temp_tenths % 10);
    m.push_str(&obx(
        6,
        "188424^MDC_TEMP_ORAL^MDC^8310-5^Body temperature^LN",
        "1.3.1.1",
        temp,
        "268192^MDC_DIM_DEGC^MDC^Cel^Cel^UCUM",
    ));
    m
}

impl Simulator for Hl7v2Sim {
    fn measurement(&mut self, now: OffsetDateTime) -> Vec<Step> {
        let spot = self.next_spot();
        self.sequence = self.sequence.wrapping_add(1);
        let now = now.replace_nanosecond(0).unwrap_or(now);
        let control_id = format!(
            "SIM-{:04}{:02}{:02}-{:06}",
            now.year(),
            u8::from(now.month()),
            now.day(),
            self.sequence
        );
        vec![Step {
            after: Duration::ZERO,
            bytes: mllp_frame(oru(&spot, &control_id, now).as_bytes()),
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::hl7v2::{parse_oru, Hl7v2};
    use crate::decode::registry::Transport;
    use crate::decode::{DecodeEvent, Decoder, DeviceTime, Measured};
    use crate::reading::{Decimal, Kind};
    use proptest::prelude::*;

    fn int(v: u32) -> Measured {
        Measured::Value(Decimal::from_int(i64::from(v)))
    }

    #[test]
    fn a_spot_check_is_one_mllp_frame_holding_an_oru() {
        let steps = Hl7v2Sim::new(1).measurement(OffsetDateTime::UNIX_EPOCH);
        let b = &steps[0].bytes;
        assert_eq!((b[0], &b[b.len() - 2..]), (0x0B, &[0x1C, 0x0D][..]));
        let oru = parse_oru(b).unwrap();
        assert_eq!(oru.control_id, "SIM-19700101-000001");
        assert_eq!(oru.messages.len(), 4);
        assert!(oru.patient.unwrap().id.starts_with("MRN00"));
    }

    proptest! {
        #[test]
        fn simulated_messages_decode_back_to_the_simulated_values(seed: u64, secs in 0i64..4_000_000_000) {
            let now = OffsetDateTime::from_unix_timestamp(secs).unwrap();
            let mut sim = Hl7v2Sim::new(seed);
            let spot = Hl7v2Sim::new(seed).next_spot();
            let mut d = Hl7v2::new(Transport::Mllp);
            let mut out = Vec::new();
            for step in sim.measurement(now) {
                d.feed(&step.bytes, &mut out);
            }
            d.finish(&mut out);
            let msgs: Vec<_> = out.iter().map(|e| match e {
                DecodeEvent::Message(m) => Ok(m),
                other => Err(format!("{other:?}")),
            }).collect::<Result<_, _>>().map_err(TestCaseError::fail)?;
            prop_assert_eq!(msgs.len(), 4);
            let kinds: Vec<Kind> = msgs.iter().map(|m| m.kind).collect();
            prop_assert_eq!(kinds, vec![Kind::BloodPressure, Kind::HeartRate, Kind::Spo2, Kind::BodyTemperature]);
            let bp: Vec<Measured> = msgs[0].values.iter().map(|v| v.value.clone()).collect();
            prop_assert_eq!(bp, vec![int(spot.systolic), int(spot.diastolic), int(spot.mean)]);
            prop_assert_eq!(&msgs[1].values[0].value, &int(spot.pulse));
            prop_assert_eq!(&msgs[2].values[0].value, &int(spot.spo2));
            let temp = Measured::Value(Decimal::new(i64::from(spot.temp_tenths), 1));
            prop_assert_eq!(&msgs[3].values[0].value, &temp);
            prop_assert_eq!(msgs[3].values[0].site.as_deref(), Some("oral"));
            for m in &msgs {
                prop_assert_eq!(m.device_time, Some(DeviceTime::Absolute(now)));
                prop_assert_eq!(m.serial.as_deref(), Some(EUI64));
            }
        }
    }
}
