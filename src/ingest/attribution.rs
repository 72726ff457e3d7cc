//! Patient attribution of the Ingest stage: whose reading is it, and is it held?
//!
//! Receives normalised readings of one device and the daemon's [`PatientLink`]; promises each
//! reading that did not name its patient the patient whose room context covers the whole time
//! it could have been measured in (mapping the device user it names, if any), else none and a
//! flag (`patient_ambiguous`, `patient_user_unmapped`, `patient_unknown`, `patient_unverified`:
//! see `ContextStore::attach`); in `hold` mode a reading without a
//! patient (and not failing a hard limit) goes to the held list. No I/O.

use std::time::Duration;

use super::PatientLink;
use crate::config::PatientMode;
use crate::context::history::Window;
use crate::normalize::NormalizeContext;
use crate::reading::Reading;

/// Attaches each reading's patient (unless its message named one) and splits them into
/// readings for the sinks and readings to hold.
pub fn route(
    readings: Vec<Reading>,
    link: &PatientLink,
    ctx: &NormalizeContext,
) -> (Vec<Reading>, Vec<Reading>) {
    let tolerance = ctx.clock_skew_tolerance;
    let mut ready = Vec::with_capacity(readings.len());
    let mut held = Vec::new();
    for mut r in readings {
        if r.patient.is_none() {
            if let Some(room) = r.room.clone() {
                let window = reading_window(&r, tolerance);
                let user = device_user(&r);
                link.contexts.attach(&room, &mut r, window, user);
            }
        }
        link.quality.check(&mut r);
        if r.patient.is_none() && link.mode == PatientMode::Hold && r.rejection().is_none() {
            held.push(r);
        } else {
            ready.push(r);
        }
    }
    if !held.is_empty() {
        let why = |flag: &str| held.iter().filter(|r| r.has_flag(flag)).count();
        tracing::info!(
            device = %ctx.device,
            count = held.len(),
            ambiguous = why("patient_ambiguous"),
            user_unmapped = why("patient_user_unmapped"),
            "readings without a patient held for review"
        );
    }
    (ready, held)
}

/// The time `r` could have been measured in. A reading carries a device time when it has one
/// or its device time was refused (`clock_untrusted`: a clock not set or off is still a clock,
/// and the value may come from the device's memory).
fn reading_window(r: &Reading, tolerance: Duration) -> Window {
    let has_device_time = r.device_time.is_some() || r.has_flag("clock_untrusted");
    Window::of_reading(r.observed_at, r.received_at, has_device_time, tolerance)
}

/// The device user a multi-user cuff or scale named (the decoders' `device:user:<n>` flag).
fn device_user(r: &Reading) -> Option<u8> {
    r.flags
        .iter()
        .find_map(|f| f.as_str().strip_prefix("device:user:")?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures;
    use crate::reading::{Flag, Kind};
    use time::macros::datetime;
    use time::OffsetDateTime;

    fn reading(device_time: Option<&str>, flags: &[&str]) -> Reading {
        let parse = |t: &str| {
            OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).unwrap()
        };
        fixtures::reading(Kind::BloodPressure)
            .no_id()
            .device("cuff", "ble-gatt")
            .room(Some("exam-1"))
            .observed(datetime!(2026-11-27 12:00:00 UTC))
            .received(datetime!(2026-11-27 12:00:10 UTC))
            .device_time(device_time.map(parse))
            .flags(flags.iter().map(|f| Flag::new(*f)).collect())
            .build()
    }

    #[test]
    fn a_reading_with_a_device_time_or_an_untrusted_clock_gets_the_tolerance_window() {
        let tol = Duration::from_secs(60);
        let received = datetime!(2026-11-27 12:00:10 UTC);
        let clockless = reading(None, &[]);
        assert_eq!(reading_window(&clockless, tol), Window::at(received));
        let timed = reading(Some("2026-11-27T12:00:00Z"), &[]);
        assert_eq!(
            reading_window(&timed, tol),
            Window {
                from: datetime!(2026-11-27 11:59:00 UTC),
                to: received
            }
        );
        let not_set = reading(None, &["clock_untrusted"]);
        assert_eq!(
            reading_window(&not_set, tol).from,
            datetime!(2026-11-27 11:59:00 UTC)
        );
    }

    #[test]
    fn the_device_user_comes_from_the_decoders_flag() {
        assert_eq!(device_user(&reading(None, &["device:user:2"])), Some(2));
        assert_eq!(
            device_user(&reading(None, &["device:cuff_loose", "device:user:17"])),
            Some(17)
        );
        assert_eq!(device_user(&reading(None, &["device:cuff_loose"])), None);
        assert_eq!(device_user(&reading(None, &["device:user:x"])), None);
    }
}
