//! A wristband scanner for the `barcode` driver: one `MRN00xxxxx` scan ending in CR per
//! measurement, as a Honeywell-style scanner in serial mode sends it.

use std::time::Duration;

use time::OffsetDateTime;

use super::patient::RoomPatient;
use super::{Simulator, Step};

/// Simulated wristband scanner; the MRNs come from a seeded generator.
pub struct BarcodeSim {
    rng: fastrand::Rng,
    /// The room whose next patient each scan after the first brings in, if any.
    room: Option<(RoomPatient, fastrand::Rng)>,
    scans: u64,
}

impl BarcodeSim {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: fastrand::Rng::with_seed(seed),
            room: None,
            scans: 0,
        }
    }

    /// A scanner in `room`: its first scan is of the patient already there, each later scan
    /// brings the next patient in (new values for the room's devices).
    #[must_use]
    pub fn in_room(self, room: RoomPatient, seed: u64) -> Self {
        Self {
            room: Some((room, fastrand::Rng::with_seed(seed))),
            ..self
        }
    }

    /// The next medical record number the scanner will read (`MRN00` + 5 digits).
    pub fn next_mrn(&mut self) -> String {
        format!("MRN00{:05}", self.rng.u32(0..100_000))
    }
}

impl Simulator for BarcodeSim {
    fn measurement(&mut self, _now: OffsetDateTime) -> Vec<Step> {
        if let Some((room, rng)) = &mut self.room {
            if self.scans > 0 {
                room.next(rng);
            }
        }
        self.scans += 1;
        let mut bytes = self.next_mrn().into_bytes();
        bytes.push(b'\r');
        vec![Step {
            after: Duration::ZERO,
            bytes,
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::barcode::Barcode;
    use crate::decode::{DecodeEvent, Decoder, Options};
    use proptest::prelude::*;

    #[test]
    fn a_scan_is_an_mrn_ending_in_cr() {
        let steps = BarcodeSim::new(7).measurement(OffsetDateTime::UNIX_EPOCH);
        assert_eq!(steps.len(), 1);
        let b = &steps[0].bytes;
        assert_eq!(b.len(), 11);
        assert!(b.starts_with(b"MRN00") && b.ends_with(b"\r"));
        assert!(b[3..10].iter().all(u8::is_ascii_digit));
    }

    proptest! {
        #[test]
        fn simulated_scans_decode_back_to_the_same_mrn(seed: u64, n in 1usize..5) {
            let mut sim = BarcodeSim::new(seed);
            let mut expect = BarcodeSim::new(seed);
            let opts: Options = [
                ("system".to_string(), "urn:oid:2.16.840.1.113883.3.999".to_string()),
                ("pattern".to_string(), r"MRN[0-9]{7}".to_string()),
            ]
            .into_iter()
            .collect();
            let mut d = Barcode::from_options(&opts).unwrap();
            let mut out = Vec::new();
            for _ in 0..n {
                for step in sim.measurement(OffsetDateTime::UNIX_EPOCH) {
                    d.feed(&step.bytes, &mut out);
                }
            }
            d.finish(&mut out);
            let want: Vec<DecodeEvent> = (0..n).map(|_| DecodeEvent::Scan(expect.next_mrn())).collect();
            prop_assert_eq!(out, want);
        }
    }
}
