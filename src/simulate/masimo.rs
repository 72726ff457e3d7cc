//! A simulated Masimo Rad-8 in "ASCII 1" mode (docs/devices/masimo.md), for `masimo-ascii`.
//!
//! One measurement is: a pulse-search line (values dashed, `EXC=000808`), [`MasimoSim::lines`]
//! (15 by default) lines with a finger in, one per second, with plausible, slowly varying SpO2,
//! pulse rate and perfusion index, then three "sensor off patient" lines (`EXC=000820`). Each
//! line carries the device clock (the host's local time, like a device set by hand), the
//! simulator's serial number and the Rad-8 field layout of test vector 1 of docs/devices/masimo.md#vectors.

use std::time::Duration;

use time::{OffsetDateTime, PrimitiveDateTime};

use super::{Simulator, Step};

/// SET mode: the normal exception word.
const EXC_SET: u32 = 0x00_0800;
/// SET mode + pulse search.
const EXC_SEARCH: u32 = 0x00_0808;
/// SET mode + sensor off patient.
const EXC_OFF: u32 = 0x00_0820;

/// The contents of one simulated line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub time: PrimitiveDateTime,
    pub serial: String,
    /// `None` is sent as dashes.
    pub spo2: Option<u16>,
    pub bpm: Option<u16>,
    /// Perfusion index in hundredths of a percent.
    pub pi_centi: Option<u16>,
    pub alarm: u16,
    pub exc: u32,
}

impl Sample {
    /// The line as a Rad-8 sends it, CR LF included.
    pub fn line(&self) -> String {
        let t = self.time;
        let spo2 = self.spo2.map_or("---".to_string(), |v| format!("{v:03}"));
        let bpm = self.bpm.map_or("---".to_string(), |v| format!("{v:03}"));
        let pi = self.pi_centi.map_or("--.--".to_string(), |v| {
            format!("{:02}.{:02}", v / 100, v % 100)
        });
        format!(
            "{:02}/{:02}/{:02} {:02}:{:02}:{:02} SN={} SPO2={spo2}% BPM={bpm} PI={pi}% \
             SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM={:04X} EXC={:06X}\r\n",
            u8::from(t.month()),
            t.day(),
            t.year().rem_euclid(100),
            t.hour(),
            t.minute(),
            t.second(),
            self.serial,
            self.alarm,
            self.exc,
        )
    }
}

/// A Rad-8 oximeter. See the module docs.
pub struct MasimoSim {
    rng: fastrand::Rng,
    serial: String,
    /// Lines with a finger in per measurement.
    pub lines: usize,
    /// The samples of the last measurement, in line order.
    pub last: Vec<Sample>,
}

impl MasimoSim {
    pub fn new(seed: u64) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        let serial = format!("{:010}", rng.u64(1..10_000_000_000));
        Self {
            rng,
            serial,
            lines: 15,
            last: Vec::new(),
        }
    }

    /// The samples of one measurement starting at device-clock time `start`.
    pub fn samples(&mut self, start: PrimitiveDateTime) -> Vec<Sample> {
        let serial = self.serial.clone();
        let mut at = start;
        let next = |at: &mut PrimitiveDateTime| {
            *at = at.saturating_add(time::Duration::SECOND);
            *at
        };
        let mut out = vec![Sample {
            time: next(&mut at),
            serial: serial.clone(),
            spo2: None,
            bpm: None,
            pi_centi: None,
            alarm: 0,
            exc: EXC_SEARCH,
        }];
        let mut spo2 = self.rng.u16(95..=99);
        let mut bpm = self.rng.u16(58..=92);
        let mut pi = self.rng.u16(80..=900);
        for _ in 0..self.lines {
            spo2 = (spo2 + self.rng.u16(0..=2))
                .saturating_sub(1)
                .clamp(93, 100);
            bpm = (bpm + self.rng.u16(0..=4)).saturating_sub(2).clamp(50, 110);
            pi = (pi + self.rng.u16(0..=40))
                .saturating_sub(20)
                .clamp(30, 2000);
            out.push(Sample {
                time: next(&mut at),
                serial: serial.clone(),
                spo2: Some(spo2),
                bpm: Some(bpm),
                pi_centi: Some(pi),
                alarm: 0,
                exc: EXC_SET,
            });
        }
        for _ in 0..3 {
            out.push(Sample {
                time: next(&mut at),
                serial: serial.clone(),
                spo2: None,
                bpm: None,
                pi_centi: None,
                alarm: 0,
                exc: EXC_OFF,
            });
        }
        out
    }
}

impl Simulator for MasimoSim {
    fn measurement(&mut self, now: OffsetDateTime) -> Vec<Step> {
        let local = now.to_offset(crate::model::zone::local_zone().offset_at(now));
        let start = PrimitiveDateTime::new(local.date(), local.time())
            .replace_nanosecond(0)
            .unwrap_or(PrimitiveDateTime::new(local.date(), local.time()));
        self.last = self.samples(start);
        self.last
            .iter()
            .map(|s| Step {
                after: Duration::from_secs(1),
                bytes: s.line().into_bytes(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::masimo::MasimoAscii;
    use crate::decode::{DecodeEvent, Decoder, DeviceTime, Measured};
    use proptest::prelude::*;
    use time::macros::datetime;

    fn decode(bytes: &[u8]) -> Vec<DecodeEvent> {
        let mut d = MasimoAscii::new();
        let mut out = Vec::new();
        d.feed(bytes, &mut out);
        d.finish(&mut out);
        out
    }

    fn int(m: &Measured) -> Option<u16> {
        match m {
            Measured::Value(d) => u16::try_from(d.mantissa()).ok().filter(|_| d.scale() == 0),
            Measured::Absent(_) => None,
        }
    }

    #[test]
    fn a_sample_is_written_in_the_rad8_layout() {
        let s = Sample {
            time: datetime!(2016-02-22 22:47:45),
            serial: "0000056661".into(),
            spo2: Some(98),
            bpm: Some(97),
            pi_centi: Some(360),
            alarm: 0,
            exc: 0x800,
        };
        assert_eq!(
            s.line(),
            "02/22/16 22:47:45 SN=0000056661 SPO2=098% BPM=097 PI=03.60% SPCO=--.-% \
             SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800\r\n"
        );
    }

    #[test]
    fn a_measurement_is_search_then_fifteen_seconds_of_values_then_sensor_off() {
        let mut sim = MasimoSim::new(7);
        let steps = sim.measurement(OffsetDateTime::now_utc());
        assert_eq!(steps.len(), 1 + 15 + 3);
        assert!(steps.iter().all(|s| s.after == Duration::from_secs(1)));
        let bytes: Vec<u8> = steps.iter().flat_map(|s| s.bytes.clone()).collect();
        let out = decode(&bytes);
        let messages = out
            .iter()
            .filter(|e| matches!(e, DecodeEvent::Message(_)))
            .count();
        assert_eq!(messages, 30);
        assert_eq!(out[0], DecodeEvent::Idle { episode_end: true });
        assert_eq!(out.last(), Some(&DecodeEvent::Idle { episode_end: true }));
    }

    proptest! {
        #[test]
        fn the_simulators_lines_decode_back_to_the_simulated_values(seed: u64) {
            let mut sim = MasimoSim::new(seed);
            let steps = sim.measurement(OffsetDateTime::now_utc());
            let mut d = MasimoAscii::new();
            let mut out = Vec::new();
            for (step, sample) in steps.iter().zip(&sim.last) {
                out.clear();
                d.feed(&step.bytes, &mut out);
                if sample.exc != EXC_SET {
                    prop_assert_eq!(&out, &vec![DecodeEvent::Idle { episode_end: true }]);
                    continue;
                }
                prop_assert_eq!(out.len(), 2);
                for (ev, want) in out.iter().zip([sample.spo2, sample.bpm]) {
                    let DecodeEvent::Message(m) = ev else {
                        return Err(TestCaseError::fail(format!("not a message: {ev:?}")));
                    };
                    prop_assert_eq!(int(&m.values[0].value), want);
                    prop_assert_eq!(m.device_time, Some(DeviceTime::Local(sample.time)));
                    prop_assert_eq!(m.serial.as_deref(), Some(sample.serial.as_str()));
                    prop_assert!(m.flags.is_empty());
                }
            }
        }

        #[test]
        fn any_sample_round_trips_through_the_decoder(
            spo2 in proptest::option::of(0u16..=100), bpm in proptest::option::of(0u16..=300),
            pi in proptest::option::of(0u16..=9999), secs in 0i64..3_000_000_000) {
            let time = datetime!(2000-01-01 0:00) + time::Duration::seconds(secs);
            let s = Sample {
                time, serial: "0123456789".into(), spo2, bpm, pi_centi: pi, alarm: 0, exc: EXC_SET,
            };
            let out = decode(s.line().as_bytes());
            if spo2.is_none() && bpm.is_none() {
                prop_assert_eq!(out, vec![DecodeEvent::Idle { episode_end: true }]);
            } else {
                prop_assert_eq!(out.len(), 2);
                let vals: Vec<Option<u16>> = out.iter().filter_map(|e| match e {
                    DecodeEvent::Message(m) => Some(int(&m.values[0].value)),
                    _ => None,
                }).collect();
                prop_assert_eq!(vals, vec![spo2, bpm]);
            }
        }
    }
}
