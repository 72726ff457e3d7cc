//! A Bluetooth health-device gateway for the `ble-gatt` driver (docs/devices/ble-gatt.md).
//!
//! [`BleGattSim`] takes measurements in turn from a blood-pressure cuff (0x2A35, mmHg, time
//! stamp, pulse), a thermometer (0x2A1C, FLOAT in hundredths of °C, time stamp, site), a
//! spot-check pulse oximeter (0x2A5E, time stamp, status "validated data") and a scale (0x2A9D,
//! kg, time stamp, BMI and height). The values are those of one simulated patient
//! ([`super::patient`]): a baseline with small jitter, shared with the room's other devices
//! when built [`BleGattSim::measuring`] a room's patient.
//!
//! - [`BleGattSim::next_payload`] gives the characteristic and the raw value bytes, exactly what
//!   a gateway forwards in `binary` mode (MQTT).
//! - As a [`Simulator`] it emits the JSON envelope of docs/devices/ble-gatt.md#the-gateway-envelope, one line per measurement,
//!   so it can be played anywhere a `payload = "json"` device listens.
//!
//! Time stamps are the host's local wall-clock time, as a device set from a phone would send.

use std::time::Duration;

use time::{OffsetDateTime, PrimitiveDateTime};

use super::patient::RoomPatient;
use super::{Simulator, Step};
use crate::decode::ble_gatt::{BLOOD_PRESSURE, PLX_SPOT_CHECK, TEMPERATURE, WEIGHT};
use crate::decode::ieee11073::{encode_date_time, encode_float, encode_sfloat};
use crate::reading::{Decimal, Kind};

/// One simulated characteristic value and the values it encodes.
#[derive(Debug, Clone, PartialEq)]
pub struct SimPayload {
    pub chr: u16,
    pub bytes: Vec<u8>,
    /// (kind, component name, value, device unit) in the order the decoder emits them.
    pub values: Vec<(Kind, &'static str, Decimal, &'static str)>,
}

/// The simulator. See the module docs.
pub struct BleGattSim {
    rng: fastrand::Rng,
    turn: u32,
    seq: u64,
    mac: String,
    /// The one device this gateway forwards (its turn index), when not all four.
    only: Option<u32>,
    /// Whom the devices measure.
    patient: RoomPatient,
}

impl BleGattSim {
    pub fn new(seed: u64) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mac = (0..6)
            .map(|_| format!("{:02X}", rng.u8(..)))
            .collect::<Vec<_>>()
            .join(":");
        let patient = RoomPatient::new(rng.u64(..));
        Self {
            rng,
            turn: 0,
            seq: 0,
            mac,
            only: None,
            patient,
        }
    }

    /// The same gateway measuring the patient in `room` (shared with the room's other devices).
    #[must_use]
    pub fn measuring(self, room: RoomPatient) -> Self {
        Self {
            patient: room,
            ..self
        }
    }

    /// A gateway with one device behind it: every measurement is of characteristic `chr`
    /// (0x2A35 cuff, 0x2A1C thermometer, 0x2A5E oximeter, 0x2A9D scale); `None` for another.
    pub fn only(seed: u64, chr: u16) -> Option<Self> {
        let turn = match chr {
            BLOOD_PRESSURE => 0,
            TEMPERATURE => 1,
            PLX_SPOT_CHECK => 2,
            WEIGHT => 3,
            _ => return None,
        };
        Some(Self {
            only: Some(turn),
            ..Self::new(seed)
        })
    }

    /// The characteristic and raw value bytes of the next measurement.
    pub fn next_payload(&mut self, now: OffsetDateTime) -> (u16, Vec<u8>) {
        let p = self.next(now);
        (p.chr, p.bytes)
    }

    /// The next measurement with the values it encodes.
    pub fn next(&mut self, now: OffsetDateTime) -> SimPayload {
        let local = now.to_offset(crate::model::zone::local_zone().offset_at(now));
        let wall = PrimitiveDateTime::new(local.date(), local.time())
            .replace_nanosecond(0)
            .unwrap_or(PrimitiveDateTime::new(local.date(), time::Time::MIDNIGHT));
        let stamp = encode_date_time(wall);
        let p = match self.only.unwrap_or(self.turn % 4) {
            0 => self.blood_pressure(stamp),
            1 => self.temperature(stamp),
            2 => self.oximeter(stamp),
            _ => self.scale(stamp),
        };
        self.turn = self.turn.wrapping_add(1);
        p
    }

    fn blood_pressure(&mut self, stamp: [u8; 7]) -> SimPayload {
        let who = self.patient.get();
        let (sys, dia, map) = who.blood_pressure(&mut self.rng);
        let pulse = i16::try_from(who.pulse(&mut self.rng)).unwrap_or(70);
        let mut bytes = vec![0x06]; // mmHg, time stamp, pulse rate
        for v in [sys, dia, map] {
            bytes.extend(sfloat(v, 0));
        }
        bytes.extend(stamp);
        bytes.extend(sfloat(pulse, 0));
        let bp = |name, v: i16| {
            (
                Kind::BloodPressure,
                name,
                Decimal::from_int(v.into()),
                "mm[Hg]",
            )
        };
        SimPayload {
            chr: BLOOD_PRESSURE,
            bytes,
            values: vec![
                bp("systolic", sys),
                bp("diastolic", dia),
                bp("mean", map),
                (
                    Kind::HeartRate,
                    "heart_rate",
                    Decimal::from_int(pulse.into()),
                    "/min",
                ),
            ],
        }
    }

    fn temperature(&mut self, stamp: [u8; 7]) -> SimPayload {
        let who = self.patient.get();
        let hundredths = who.temperature(&mut self.rng);
        let site = who.temperature_site.ble_code();
        let raw = encode_float(hundredths, -2).unwrap_or(0);
        let mut bytes = vec![0x06]; // Celsius, time stamp, temperature type
        bytes.extend(raw.to_le_bytes());
        bytes.extend(stamp);
        bytes.push(site);
        let value = Decimal::new(hundredths.into(), 2);
        SimPayload {
            chr: TEMPERATURE,
            bytes,
            values: vec![(Kind::BodyTemperature, "temperature", value, "Cel")],
        }
    }

    fn oximeter(&mut self, stamp: [u8; 7]) -> SimPayload {
        let who = self.patient.get();
        let spo2 = i16::try_from(who.spo2(&mut self.rng)).unwrap_or(97);
        let pr = i16::try_from(who.pulse(&mut self.rng)).unwrap_or(70);
        let mut bytes = vec![0x03]; // time stamp, measurement status
        bytes.extend(sfloat(spo2, 0));
        bytes.extend(sfloat(pr, 0));
        bytes.extend(stamp);
        bytes.extend(0x0080u16.to_le_bytes()); // validated data
        SimPayload {
            chr: PLX_SPOT_CHECK,
            bytes,
            values: vec![
                (Kind::Spo2, "spo2", Decimal::from_int(spo2.into()), "%"),
                (
                    Kind::HeartRate,
                    "heart_rate",
                    Decimal::from_int(pr.into()),
                    "/min",
                ),
            ],
        }
    }

    fn scale(&mut self, stamp: [u8; 7]) -> SimPayload {
        let who = self.patient.get();
        // Weight in steps of 0.005 kg.
        let raw = u16::try_from(who.weight(&mut self.rng) / 5).unwrap_or(14_000);
        let height_mm = who.height(&mut self.rng);
        // BMI in tenths: (raw × 0.005 kg) / (mm / 1000)² × 10, rounded.
        let h2 = u64::from(height_mm) * u64::from(height_mm);
        let bmi = u16::try_from((u64::from(raw) * 50_000 + h2 / 2) / h2).unwrap_or(0);
        let mut bytes = vec![0x0A]; // kg, time stamp, BMI and height
        bytes.extend(raw.to_le_bytes());
        bytes.extend(stamp);
        bytes.extend(bmi.to_le_bytes());
        bytes.extend(height_mm.to_le_bytes());
        SimPayload {
            chr: WEIGHT,
            bytes,
            values: vec![
                (
                    Kind::BodyWeight,
                    "weight",
                    Decimal::new(i64::from(raw) * 5, 3),
                    "kg",
                ),
                (Kind::Bmi, "bmi", Decimal::new(bmi.into(), 1), "kg/m2"),
            ],
        }
    }

    /// The JSON envelope line (docs/devices/ble-gatt.md#the-gateway-envelope) of a payload received at `now`.
    pub fn envelope(&mut self, p: &SimPayload, now: OffsetDateTime) -> String {
        self.seq = self.seq.wrapping_add(1);
        let (svc, op) = match p.chr {
            BLOOD_PRESSURE => ("1810", "indicate"),
            TEMPERATURE => ("1809", "indicate"),
            PLX_SPOT_CHECK => ("1822", "indicate"),
            _ => ("181d", "indicate"),
        };
        let rx = now
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let mut line = serde_json::json!({
            "gw": "vitalsd-sim", "mac": self.mac, "svc": svc, "chr": format!("{:04x}", p.chr),
            "op": op, "rx_time": rx, "seq": self.seq, "data_hex": hex::encode(&p.bytes),
        })
        .to_string();
        line.push('\n');
        line
    }
}

fn sfloat(mantissa: i16, exponent: i8) -> [u8; 2] {
    encode_sfloat(mantissa, exponent)
        .unwrap_or(0x07FF)
        .to_le_bytes()
}

impl Simulator for BleGattSim {
    fn measurement(&mut self, now: OffsetDateTime) -> Vec<Step> {
        let p = self.next(now);
        vec![Step {
            after: Duration::ZERO,
            bytes: self.envelope(&p, now).into_bytes(),
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::ble_gatt::{decode_value, BleGatt, PayloadFormat};
    use crate::decode::{DecodeEvent, Decoder, DeviceTime, Measured};
    use proptest::prelude::*;

    fn decoded(events: &[DecodeEvent]) -> Vec<(Kind, String, Decimal, String)> {
        events
            .iter()
            .flat_map(|e| match e {
                DecodeEvent::Message(m) => m
                    .values
                    .iter()
                    .map(|v| match v.value {
                        Measured::Value(d) => (m.kind, v.name.clone(), d, v.unit.to_string()),
                        Measured::Absent(r) => panic!("absent {r:?}"),
                    })
                    .collect::<Vec<_>>(),
                other => panic!("expected messages, got {other:?}"),
            })
            .collect()
    }

    fn expected(p: &SimPayload) -> Vec<(Kind, String, Decimal, String)> {
        p.values
            .iter()
            .map(|(k, n, d, u)| (*k, n.to_string(), *d, u.to_string()))
            .collect()
    }

    #[test]
    fn the_simulator_cycles_cuff_thermometer_oximeter_and_scale() {
        let mut sim = BleGattSim::new(7);
        let now = time::macros::datetime!(2026-11-27 12:00:00 UTC);
        let chrs: Vec<u16> = (0..8).map(|_| sim.next_payload(now).0).collect();
        assert_eq!(
            chrs,
            [0x2A35, 0x2A1C, 0x2A5E, 0x2A9D, 0x2A35, 0x2A1C, 0x2A5E, 0x2A9D]
        );
    }

    #[test]
    fn a_gateway_with_one_device_sends_only_its_characteristic_over_serial_lines() {
        let now = time::macros::datetime!(2026-11-27 12:00:00 UTC);
        for chr in [0x2A35, 0x2A1C, 0x2A5E, 0x2A9D] {
            let mut sim = BleGattSim::only(3, chr).unwrap();
            let mut d = crate::decode::ble_gatt::SerialLines::new(None, None).unwrap();
            let mut out = Vec::new();
            for _ in 0..3 {
                let p = sim.next(now);
                assert_eq!(p.chr, chr);
                let line = sim.envelope(&p, now);
                // Written to the port in two pieces, as a UART delivers it.
                let (a, b) = line.as_bytes().split_at(line.len() / 2);
                d.feed(a, &mut out);
                d.feed(b, &mut out);
                assert_eq!(decoded(&out), expected(&p));
                out.clear();
            }
        }
        assert!(BleGattSim::only(3, 0x2A37).is_none());
    }

    #[test]
    fn the_temperature_site_is_one_the_code_table_knows() {
        use crate::simulate::patient::TemperatureSite;
        for site in [
            TemperatureSite::Armpit,
            TemperatureSite::Ear,
            TemperatureSite::Mouth,
        ] {
            let t = site.ble_code();
            assert!(
                crate::normalize::codes::site_for_ble_type(t).is_some(),
                "type {t}"
            );
        }
    }

    proptest! {
        #[test]
        fn simulated_payloads_decode_back_to_the_simulated_values(seed: u64, n in 1usize..12) {
            let mut sim = BleGattSim::new(seed);
            let now = OffsetDateTime::now_utc();
            for _ in 0..n {
                let p = sim.next(now);
                let mut out = Vec::new();
                decode_value(p.chr, &p.bytes, None, &mut out);
                prop_assert_eq!(decoded(&out), expected(&p));
                for e in &out {
                    if let DecodeEvent::Message(m) = e {
                        prop_assert!(matches!(m.device_time, Some(DeviceTime::Local(_))));
                        prop_assert!(m.flags.is_empty());
                    }
                }
            }
        }

        #[test]
        fn simulated_envelope_lines_decode_in_json_mode(seed: u64) {
            let mut sim = BleGattSim::new(seed);
            let mut d = BleGatt::new(None, PayloadFormat::Json);
            let now = OffsetDateTime::now_utc();
            for _ in 0..4 {
                let p = sim.next(now);
                let line = sim.envelope(&p, now);
                prop_assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
                let mut out = Vec::new();
                d.feed(line.as_bytes(), &mut out);
                prop_assert_eq!(decoded(&out), expected(&p));
            }
            let steps = sim.measurement(now);
            prop_assert_eq!(steps.len(), 1);
        }
    }
}
