//! The demo's devices: which simulated device sits in which exam room, on which driver and
//! serial settings, and the simulators that play them for the room's made-up patient.

use std::time::Duration;

use crate::simulate::patient::RoomPatient;
use crate::simulate::{self, Simulator};
use anyhow::Context;

pub(super) struct DemoDevice {
    pub(super) id: &'static str,
    pub(super) driver: &'static str,
    pub(super) room: &'static str,
    pub(super) every: Duration,
    pub(super) options: &'static [(&'static str, &'static str)],
    /// The simulator playing this device's wire bytes (seeded), measuring the room's patient.
    pub(super) sim: fn(u64, &RoomPatient) -> Option<Box<dyn Simulator>>,
}

/// The identifier system of the demo's wristbands.
pub(super) const WRISTBAND_SYSTEM: &str = "urn:oid:2.16.840.1.113883.3.999";

/// A room's scanner: each scan after the first brings the room's next patient in.
pub(super) fn scanner(seed: u64, room: &RoomPatient) -> Option<Box<dyn Simulator>> {
    Some(Box::new(
        simulate::barcode::BarcodeSim::new(seed).in_room(room.clone(), seed ^ 0x5eed),
    ))
}

pub(super) fn nonin(seed: u64, room: &RoomPatient) -> Option<Box<dyn Simulator>> {
    Some(Box::new(
        simulate::NoninAscii::new(seed, Duration::from_secs(1)).measuring(room.clone()),
    ))
}

/// A BLE gateway on a serial port forwarding one device: the characteristic's real value
/// bytes (IEEE 11073 SFLOAT/FLOAT), one JSON envelope per line.
pub(super) fn gateway(chr: u16, seed: u64, room: &RoomPatient) -> Option<Box<dyn Simulator>> {
    simulate::ble_gatt::BleGattSim::only(seed, chr)
        .map(|s| Box::new(s.measuring(room.clone())) as Box<dyn Simulator>)
}

pub(super) fn cuff(seed: u64, room: &RoomPatient) -> Option<Box<dyn Simulator>> {
    gateway(crate::decode::ble_gatt::BLOOD_PRESSURE, seed, room)
}

pub(super) fn thermometer(seed: u64, room: &RoomPatient) -> Option<Box<dyn Simulator>> {
    gateway(crate::decode::ble_gatt::TEMPERATURE, seed, room)
}

pub(super) fn scale(seed: u64, room: &RoomPatient) -> Option<Box<dyn Simulator>> {
    gateway(crate::decode::ble_gatt::WEIGHT, seed, room)
}

/// Scanners first: each room's wristband is scanned before its vitals are taken (devices
/// start one after the other), so every reading carries the room's patient.
pub(super) const DEVICES: &[DemoDevice] = &[
    DemoDevice {
        id: "exam1-scanner",
        driver: "barcode",
        room: "exam-1",
        every: Duration::from_secs(15 * 60),
        options: &[("system", WRISTBAND_SYSTEM)],
        sim: scanner,
    },
    DemoDevice {
        id: "exam2-scanner",
        driver: "barcode",
        room: "exam-2",
        every: Duration::from_secs(15 * 60),
        options: &[("system", WRISTBAND_SYSTEM)],
        sim: scanner,
    },
    DemoDevice {
        id: "exam3-scanner",
        driver: "barcode",
        room: "exam-3",
        every: Duration::from_secs(15 * 60),
        options: &[("system", WRISTBAND_SYSTEM)],
        sim: scanner,
    },
    DemoDevice {
        id: "exam1-oximeter",
        driver: "nonin-ascii",
        room: "exam-1",
        every: Duration::from_secs(20),
        options: &[("report", "spot"), ("settle", "8s")],
        sim: nonin,
    },
    DemoDevice {
        id: "exam1-cuff",
        driver: "ble-gatt",
        room: "exam-1",
        every: Duration::from_secs(30),
        options: &[("payload", "json")],
        sim: cuff,
    },
    DemoDevice {
        id: "exam2-thermometer",
        driver: "ble-gatt",
        room: "exam-2",
        every: Duration::from_secs(30),
        options: &[("payload", "json")],
        sim: thermometer,
    },
    DemoDevice {
        id: "exam3-scale",
        driver: "ble-gatt",
        room: "exam-3",
        every: Duration::from_secs(45),
        options: &[("payload", "json")],
        sim: scale,
    }, // No scanner in exam-4: nobody's wristband is scanned, so its readings are held for an
    // MA to assign on the status page.
    DemoDevice {
        id: "exam4-thermometer",
        driver: "ble-gatt",
        room: "exam-4",
        every: Duration::from_secs(40),
        options: &[("payload", "json")],
        sim: thermometer,
    },
];

/// The simulators of [`DEVICES`], in order (seeded): one simulated patient per room at a time,
/// measured by all of the room's devices.
pub(super) fn simulators() -> anyhow::Result<Vec<Box<dyn Simulator>>> {
    let mut rooms: Vec<(&str, RoomPatient)> = Vec::new();
    let mut sims = Vec::with_capacity(DEVICES.len());
    for (i, d) in DEVICES.iter().enumerate() {
        let room = match rooms.iter().find(|(r, _)| *r == d.room) {
            Some((_, p)) => p.clone(),
            None => {
                let p = RoomPatient::new(100 + rooms.len() as u64);
                rooms.push((d.room, p.clone()));
                p
            }
        };
        let sim = (d.sim)(7 + i as u64, &room);
        sims.push(sim.with_context(|| format!("no simulator for {}", d.id))?);
    }
    Ok(sims)
}
