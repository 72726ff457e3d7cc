//! Simulated devices: the real bytes a device puts on the wire, for the demo, test rigs and
//! onboarding (`vitalsd simulate DRIVER --serial PATH`).
//!
//! A [`Simulator`] produces one measurement at a time as timed [`Step`]s (a continuous
//! oximeter sends a line per second while a finger is in; a bridge sends one JSON line). The
//! values are plausible and vary a little from one measurement to the next; the demo's devices
//! measure simulated patients ([`patient`]) whose values stay consistent across devices.

pub mod barcode;
pub mod ble_gatt;
pub mod ecg;
pub mod hl7v2;
pub mod masimo;
pub mod mqtt;
pub mod nonin_binary;
pub mod openbci;
pub mod patient;
pub mod polar_ecg;

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use time::OffsetDateTime;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::reading::Decimal;

/// Bytes to write after a pause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub after: Duration,
    pub bytes: Vec<u8>,
}

/// A device that can be imitated.
pub trait Simulator: Send {
    /// The steps of the next measurement, starting now.
    fn measurement(&mut self, now: OffsetDateTime) -> Vec<Step>;
}

/// The simulator for `driver`, if the driver's devices push data on their own.
pub fn for_driver(driver: &str, seed: u64) -> Option<Box<dyn Simulator>> {
    match driver {
        "nonin-ascii" => Some(Box::new(NoninAscii::new(seed, Duration::from_secs(1)))),
        "json" => Some(Box::new(JsonBridge::new(seed))),
        "ble-gatt" => Some(Box::new(ble_gatt::BleGattSim::new(seed))),
        "barcode" => Some(Box::new(barcode::BarcodeSim::new(seed))),
        "masimo-ascii" => Some(Box::new(masimo::MasimoSim::new(seed))),
        "nonin-8" => Some(Box::new(nonin_binary::Nonin8Sim::new(seed))),
        "nonin-7" => Some(Box::new(nonin_binary::Nonin7Sim::new(seed))),
        "nonin-13" => Some(Box::new(nonin_binary::Nonin13Sim::new(seed))),
        "hl7v2" => Some(Box::new(hl7v2::Hl7v2Sim::new(seed))),
        "polar-ecg" => Some(Box::new(polar_ecg::PolarEcgSim::new(seed))),
        "openbci" => Some(Box::new(openbci::OpenBciSim::new(seed))),
        _ => None,
    }
}

/// Names of the drivers [`for_driver`] can imitate.
pub const SIMULATED: &[&str] = &[
    "nonin-ascii",
    "json",
    "ble-gatt",
    "barcode",
    "hl7v2",
    "masimo-ascii",
    "nonin-8",
    "nonin-7",
    "nonin-13",
    "polar-ecg",
    "openbci",
];

/// A Nonin oximeter in ASCII mode: `SPO2=097 HR=072` once per second while the finger is in,
/// then `SPO2=--- HR=---` when it is taken out.
pub struct NoninAscii {
    rng: fastrand::Rng,
    period: Duration,
    /// Lines with a value per measurement.
    pub lines: usize,
    /// Whom the oximeter measures.
    patient: patient::RoomPatient,
}

impl NoninAscii {
    pub fn new(seed: u64, period: Duration) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        let patient = patient::RoomPatient::new(rng.u64(..));
        Self {
            rng,
            period,
            lines: 14,
            patient,
        }
    }

    /// The same oximeter measuring the patient in `room` (shared with the room's other
    /// devices).
    #[must_use]
    pub fn measuring(self, room: patient::RoomPatient) -> Self {
        Self {
            patient: room,
            ..self
        }
    }
}

impl Simulator for NoninAscii {
    fn measurement(&mut self, _now: OffsetDateTime) -> Vec<Step> {
        let who = self.patient.get();
        let spo2 = who.spo2(&mut self.rng).unsigned_abs();
        let hr = who.pulse(&mut self.rng).unsigned_abs();
        let mut steps: Vec<Step> = (0..self.lines)
            .map(|i| {
                let s = spo2 - u32::from(i < 2 && spo2 > 96) * 2;
                let h = (hr + self.rng.u32(0..=2)).saturating_sub(1);
                Step {
                    after: self.period,
                    bytes: format!("SPO2={s:03} HR={h:03}\r\n").into_bytes(),
                }
            })
            .collect();
        for _ in 0..3 {
            steps.push(Step {
                after: self.period,
                bytes: b"SPO2=--- HR=---\r\n".to_vec(),
            });
        }
        steps
    }
}

/// A bridge that forwards readings as vitalsd reading JSON, one line each: blood pressure,
/// body temperature and body weight in turn.
pub struct JsonBridge {
    rng: fastrand::Rng,
    turn: u32,
}

impl JsonBridge {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: fastrand::Rng::with_seed(seed),
            turn: 0,
        }
    }
}

impl Simulator for JsonBridge {
    fn measurement(&mut self, now: OffsetDateTime) -> Vec<Step> {
        let t = now
            .replace_nanosecond(0)
            .unwrap_or(now)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let v = |code, mdc, name, value, unit| BridgeValue {
            code,
            mdc,
            name,
            value,
            unit,
            site: None,
        };
        let body = match self.turn % 3 {
            0 => {
                let sys = self.rng.i64(108..=138);
                let dia = self.rng.i64(66..=88);
                let map = dia + (sys - dia) / 3;
                BridgeLine {
                    kind: "blood_pressure",
                    device_time: t,
                    values: vec![
                        v(
                            "8480-6",
                            150_021,
                            "systolic",
                            Decimal::from_int(sys),
                            "mm[Hg]",
                        ),
                        v(
                            "8462-4",
                            150_022,
                            "diastolic",
                            Decimal::from_int(dia),
                            "mm[Hg]",
                        ),
                        v("8478-0", 150_023, "mean", Decimal::from_int(map), "mm[Hg]"),
                    ],
                }
            }
            1 => {
                // A thermometer that reports hundredths: 37.30 must reach the record as 37.30.
                let temp = Decimal::new(self.rng.i64(364..=374) * 10, 2);
                let mut value = v("8310-5", 150_364, "temperature", temp, "Cel");
                value.site = Some("oral");
                BridgeLine {
                    kind: "body_temperature",
                    device_time: t,
                    values: vec![value],
                }
            }
            _ => BridgeLine {
                kind: "body_weight",
                device_time: t,
                values: vec![v(
                    "29463-7",
                    188_736,
                    "weight",
                    Decimal::new(self.rng.i64(550..=950), 1),
                    "kg",
                )],
            },
        };
        let mut line = serde_json::to_vec(&body).unwrap_or_default();
        line.push(b'\n');
        self.turn += 1;
        vec![Step {
            after: Duration::ZERO,
            bytes: line,
        }]
    }
}

/// One line of the bridge: the reading JSON shape of docs/ARCHITECTURE.md#the-reading-json (serialised directly, so a
/// [`Decimal`] keeps its digits).
#[derive(serde::Serialize)]
struct BridgeLine {
    kind: &'static str,
    device_time: String,
    values: Vec<BridgeValue>,
}

#[derive(serde::Serialize)]
struct BridgeValue {
    code: &'static str,
    mdc: u32,
    name: &'static str,
    value: Decimal,
    unit: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    site: Option<&'static str>,
}

/// Plays measurements to `out`: one every `every` (measured from the start of the previous
/// one), `count` times or until `cancel`.
pub async fn play<W: AsyncWrite + Unpin>(
    sim: &mut dyn Simulator,
    out: &mut W,
    every: Duration,
    count: Option<u64>,
    cancel: &CancellationToken,
) -> std::io::Result<u64> {
    let mut done = 0u64;
    while count.is_none_or(|c| done < c) {
        let started = tokio::time::Instant::now();
        for step in sim.measurement(OffsetDateTime::now_utc()) {
            tokio::select! {
                () = cancel.cancelled() => return Ok(done),
                () = tokio::time::sleep(step.after) => {}
            }
            out.write_all(&step.bytes).await?;
            out.flush().await?;
        }
        done += 1;
        if count.is_some_and(|c| done >= c) {
            break;
        }
        tokio::select! {
            () = cancel.cancelled() => return Ok(done),
            () = tokio::time::sleep_until(started + every) => {}
        }
    }
    Ok(done)
}

pub use ecg::EcgSettings;
pub use mqtt::run_mqtt;

/// The simulator of `driver` for `vitalsd simulate`, with the ECG flags applied (an error
/// names the driver or flag that does not fit).
pub fn simulator(driver: &str, seed: u64, ecg: EcgSettings) -> anyhow::Result<Box<dyn Simulator>> {
    if let Some(sim) = ecg::simulator(driver, seed, ecg).map_err(anyhow::Error::msg)? {
        return Ok(sim);
    }
    match for_driver(driver, seed) {
        Some(sim) => Ok(sim),
        None => bail!(
            "no simulator for driver `{driver}`; simulated drivers: {}",
            SIMULATED.join(", ")
        ),
    }
}

/// `vitalsd simulate DRIVER --serial PATH` (`--hr`/`--fs` for the ECG drivers).
pub async fn run_serial(
    driver: &str,
    path: &Path,
    every: Duration,
    count: Option<u64>,
    ecg: EcgSettings,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let mut sim = simulator(driver, fastrand::u64(..), ecg)?;
    let mut port = tokio::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .await
        .with_context(|| format!("cannot open {}", path.display()))?;
    let n = play(sim.as_mut(), &mut port, every, count, &cancel)
        .await
        .with_context(|| format!("writing to {}", path.display()))?;
    tracing::info!(driver, measurements = n, "simulation finished");
    Ok(())
}
