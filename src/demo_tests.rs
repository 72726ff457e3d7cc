//! The demo's devices through their real drivers and normalisation, round after round.

use std::collections::HashMap;
use std::time::Instant;

use super::*;
use crate::decode::DecodeEvent;
use crate::normalize::spot::SpotCheck;
use crate::normalize::{LocalZone, NormalizeContext};
use crate::reading::PatientRef;

/// Plays many rounds of every demo device (a new patient per room every five rounds),
/// decodes each through its real driver (the oximeter as spot checks), normalizes it and
/// runs the cross-device checks with the room's patient attached: no normal demo reading
/// carries a flag, and one patient's height and weight stay put between weighings.
#[test]
fn demo_readings_carry_no_flags_and_each_patient_keeps_their_size() {
    let mut sims = simulators().unwrap();
    let quality = crate::context::quality::Quality::new();
    let t0 = time::OffsetDateTime::now_utc();
    let clock = Instant::now();
    let mut scans: HashMap<&str, u32> = HashMap::new();
    let mut sizes: HashMap<(&str, u32, String), Vec<f64>> = HashMap::new();
    let mut readings = 0;
    for round in 0..60u32 {
        let now = t0 + time::Duration::seconds(i64::from(round) * 60);
        for (d, sim) in DEVICES.iter().zip(sims.iter_mut()) {
            if d.driver == "barcode" {
                // A scan every five rounds; each after the first brings a new patient in.
                if round % 5 == 0 {
                    sim.measurement(now);
                    *scans.entry(d.room).or_default() += 1;
                }
                continue;
            }
            let options: crate::decode::Options = d
                .options
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect();
            let mut decoder = crate::decode::build(d.driver, &options).unwrap();
            let mut spot = SpotCheck::new(Duration::from_secs(8));
            let mut msgs = Vec::new();
            let mut at = clock + Duration::from_secs(u64::from(round) * 60);
            for step in sim.measurement(now) {
                at += step.after;
                let mut events = Vec::new();
                decoder.feed(&step.bytes, &mut events);
                for ev in events {
                    match (&ev, d.driver) {
                        (_, "nonin-ascii") => msgs.extend(spot.feed(&ev, at)),
                        (DecodeEvent::Message(m), _) => msgs.push(m.clone()),
                        _ => {}
                    }
                }
            }
            msgs.extend(spot.tick(at + Duration::from_secs(30)));
            let ctx = NormalizeContext {
                device: DeviceId::new(d.id),
                driver: d.driver.to_string(),
                room: Some(d.room.to_string()),
                clock_skew_tolerance: Duration::from_secs(60),
                zone: LocalZone::utc(),
            };
            let patient = scans.get(d.room).copied().unwrap_or(0);
            for m in msgs {
                let mut r = crate::normalize::normalize(m, now, &ctx).unwrap();
                r.patient = Some(PatientRef {
                    id: format!("{}-{patient}", d.room),
                    system: WRISTBAND_SYSTEM.into(),
                });
                quality.check(&mut r);
                assert!(r.flags.is_empty(), "{}", describe(&r));
                readings += 1;
                for v in &r.values {
                    if let (Some(x), "weight" | "height") = (v.value, v.name.as_str()) {
                        let key = (d.room, patient, v.name.clone());
                        sizes.entry(key).or_default().push(x.to_f64());
                    }
                }
            }
        }
    }
    assert!(readings > 400, "{readings} readings");
    assert_eq!(scans.get("exam-3"), Some(&12));
    assert!(sizes.values().all(|v| v.len() >= 5), "{sizes:?}");
    for ((room, patient, name), v) in &sizes {
        let lo = v.iter().copied().fold(f64::MAX, f64::min);
        let hi = v.iter().copied().fold(f64::MIN, f64::max);
        // Weight within ±200 g, height within ±3 mm (in cm) of the patient's baseline.
        let allowed = if name == "weight" { 0.4 } else { 0.6 };
        assert!(
            hi - lo <= allowed + 1e-9,
            "{room} patient {patient} {name}: {v:?}"
        );
    }
}
