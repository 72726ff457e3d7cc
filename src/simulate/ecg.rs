//! `vitalsd simulate polar-ecg|openbci --hr N --fs N`: the heart rate and sample rate of the
//! synthetic ECG ([`EcgSettings`]), checked before anything is opened.
//!
//! - `--hr`: beats per minute, a whole number from [`HR_MIN`] to [`HR_MAX`] (default: a rate
//!   from 58 to 92 picked at random).
//! - `--fs`: samples per second, one of [`FS_CHOICES`] (default: the device's own rate, 130 Hz
//!   for a Polar H10, 250 Hz for an OpenBCI Cyton). The receiving device's `sample_rate` option
//!   must name the same rate: the wire formats do not carry it.
//!
//! Both flags are refused for drivers that do not stream an ECG.

use super::{openbci::OpenBciSim, polar_ecg::PolarEcgSim, Simulator};

/// Lowest heart rate accepted by `--hr`.
pub const HR_MIN: u32 = 30;
/// Highest heart rate accepted by `--hr`.
pub const HR_MAX: u32 = 240;
/// Sample rates accepted by `--fs`: the H10's 130 Hz and the common ECG rates 250 and 500 Hz.
pub const FS_CHOICES: [u32; 3] = [130, 250, 500];
/// The drivers whose simulators stream an ECG.
pub const ECG_DRIVERS: [&str; 2] = ["polar-ecg", "openbci"];

/// `--hr` and `--fs` as given (each optional).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EcgSettings {
    pub hr: Option<u32>,
    pub fs: Option<u32>,
}

impl EcgSettings {
    pub fn is_set(&self) -> bool {
        self.hr.is_some() || self.fs.is_some()
    }
}

/// Parses `--hr` (for clap's `value_parser`).
pub fn parse_hr(v: &str) -> Result<u32, String> {
    match v.trim().parse::<u32>() {
        Ok(hr) if (HR_MIN..=HR_MAX).contains(&hr) => Ok(hr),
        _ => Err(format!(
            "`{v}` is not a heart rate: give beats per minute from {HR_MIN} to {HR_MAX}"
        )),
    }
}

/// Parses `--fs` (for clap's `value_parser`).
pub fn parse_fs(v: &str) -> Result<u32, String> {
    match v.trim().parse::<u32>() {
        Ok(fs) if FS_CHOICES.contains(&fs) => Ok(fs),
        _ => Err(format!(
            "`{v}` is not a supported sample rate: give 130, 250 or 500 (Hz)"
        )),
    }
}

/// The ECG simulator of `driver` at the chosen rates; `Ok(None)` for a driver that is not an
/// ECG (then `settings` must be empty); an error names the flag that does not apply.
pub fn simulator(
    driver: &str,
    seed: u64,
    settings: EcgSettings,
) -> Result<Option<Box<dyn Simulator>>, String> {
    if !ECG_DRIVERS.contains(&driver) {
        if settings.is_set() {
            return Err(format!(
                "--hr and --fs apply to the ECG simulators only ({}), not to `{driver}`",
                ECG_DRIVERS.join(", ")
            ));
        }
        return Ok(None);
    }
    let hr = f64::from(
        settings
            .hr
            .unwrap_or_else(|| fastrand::Rng::with_seed(seed).u32(58..=92)),
    );
    Ok(Some(match driver {
        "polar-ecg" => Box::new(PolarEcgSim::with_rate(
            f64::from(settings.fs.unwrap_or(130)),
            hr,
        )),
        _ => Box::new(OpenBciSim::with_rate(
            f64::from(settings.fs.unwrap_or(250)),
            hr,
            24,
        )),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::registry::build;
    use crate::decode::{DecodeEvent, Options};
    use crate::ecg::detector::Detector;
    use time::OffsetDateTime;

    #[test]
    fn hr_and_fs_outside_their_ranges_are_refused_with_the_range() {
        assert_eq!(parse_hr("72"), Ok(72));
        assert!(parse_hr("29").unwrap_err().contains("30 to 240"));
        assert!(parse_hr("fast").is_err());
        assert_eq!(parse_fs("500"), Ok(500));
        assert!(parse_fs("200").unwrap_err().contains("130, 250 or 500"));
    }

    #[test]
    fn hr_and_fs_are_refused_for_a_driver_that_is_not_an_ecg() {
        let s = EcgSettings {
            hr: Some(72),
            fs: None,
        };
        assert!(simulator("nonin-ascii", 1, s)
            .err()
            .is_some_and(|e| e.contains("nonin-ascii")));
        assert!(simulator("nonin-ascii", 1, EcgSettings::default()).is_ok_and(|s| s.is_none()));
    }

    /// Plays one measurement (12 s) into the driver's decoder and runs the R-peak detector
    /// over the decoded lead; returns the median heart rate.
    fn decoded_hr(driver: &str, hr: u32, fs: u32) -> f64 {
        let settings = EcgSettings {
            hr: Some(hr),
            fs: Some(fs),
        };
        let mut sim = simulator(driver, 5, settings).unwrap().unwrap();
        let opts: Options = [("sample_rate".to_string(), fs.to_string())]
            .into_iter()
            .collect();
        let mut dec = build(driver, &opts).unwrap();
        let mut events = Vec::new();
        for step in sim.measurement(OffsetDateTime::now_utc()) {
            dec.feed(&step.bytes, &mut events);
        }
        dec.finish(&mut events);
        let mut det = Detector::new(f64::from(fs));
        let mut beats = Vec::new();
        for ev in &events {
            let DecodeEvent::Samples(c) = ev else {
                continue;
            };
            assert!((c.fs_hz - f64::from(fs)).abs() < 1e-9);
            let lead = &c.leads[0];
            for s in &lead.samples {
                det.push(f64::from(*s) * lead.scale_uv, &mut beats);
            }
        }
        det.finish(&mut beats);
        let rr: Vec<f64> = beats.iter().filter_map(|b| b.rr_ms).collect();
        assert!(
            rr.len() >= 5,
            "{driver} {hr}/min at {fs} Hz: {} RRs",
            rr.len()
        );
        60_000.0 / crate::ecg::readings::median(&rr).unwrap_or(f64::NAN)
    }

    #[test]
    fn the_simulators_stream_the_chosen_heart_rate_at_every_sample_rate() {
        for driver in ECG_DRIVERS {
            for (hr, fs) in [(72, 130), (45, 250), (150, 500), (72, 500)] {
                let got = decoded_hr(driver, hr, fs);
                assert!(
                    (got - f64::from(hr)).abs() <= 2.0,
                    "{driver} {hr}/min at {fs} Hz: detector found {got:.1}/min"
                );
            }
        }
    }
}
