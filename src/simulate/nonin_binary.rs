//! Simulated Nonin oximeters in the binary OEM data formats #8, #7 and #13
//! (docs/devices/nonin.md): the real wire bytes of one measurement per call.
//!
//! - [`Nonin8Sim`]: one 4-byte #8 frame per second for a ~15 s measurement, SmartPoint reached
//!   after 10 s, then missing-data frames with the sensor alarm (finger out).
//! - [`Nonin7Sim`]: one 25-frame #7 packet per [`Step`] every 1/3 s (45 packets, 15 s) with a
//!   16-bit pleth wave at the simulated pulse rate, then finger-out packets.
//! - [`Nonin13Sim`]: one #13 spot-check packet per measurement, stamped with the `now` it is
//!   given (the wall-clock time as passed: the device would hold local time).
//!
//! The encoders ([`frame8`], [`packet7`], [`packet13`]) are public for test rigs. Each
//! simulator keeps the `(SpO2, HR)` values of its last measurement in [`Nonin8Sim::last`] etc.
//! for round-trip tests.

use std::time::Duration;

use time::{OffsetDateTime, PrimitiveDateTime};

use super::{Simulator, Step};

/// SpO2 % and heart rate /min of one simulated frame or packet.
pub type Sample = (u8, u16);

/// The "missing data" codes.
const SPO2_MISSING: u8 = 127;
const HR_MISSING: u16 = 511;

/// A 7-bit byte.
fn b7(v: u16) -> u8 {
    u8::try_from(v & 0x7F).unwrap_or(0)
}

/// HR as the `(MSB, LSB)` pair of formats #2/#7/#8: `0 … HR8 HR7`, `0 HR6 … HR0`.
fn hr_split(hr: u16) -> (u8, u8) {
    (b7((hr >> 7) & 0x03), b7(hr))
}

/// One #8 frame. `status1` holds the OOT/LPRF/MPRF/ARTF bits (0x3C), `status2` the
/// SPA/SNSA/LOW BAT bits; other bits are set as the format requires.
pub fn frame8(spo2: u8, hr: u16, status1: u8, status2: u8) -> [u8; 4] {
    let (msb, lsb) = hr_split(hr);
    [
        0x80 | (status1 & 0x3C) | msb,
        lsb,
        spo2 & 0x7F,
        status2 & 0x29,
    ]
}

/// One #7 packet: 25 frames of `status` (bit 7 forced, SYNC on frame 1 only), pleth and
/// float bytes, each with its checksum.
pub fn packet7(status: &[u8; 25], pleth: &[u16; 25], float: &[u8; 25]) -> Vec<u8> {
    let mut out = Vec::with_capacity(125);
    for (i, ((s, p), f)) in status.iter().zip(pleth).zip(float).enumerate() {
        let s = if i == 0 { s | 0x81 } else { (s | 0x80) & !0x01 };
        let [m, l] = p.to_be_bytes();
        let f = f & 0x7F;
        let chk = s.wrapping_add(m).wrapping_add(l).wrapping_add(f);
        out.extend_from_slice(&[s, m, l, f, chk]);
    }
    out
}

/// Status bits of a #13 packet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Status13 {
    pub smartpoint: bool,
    pub no_measurement: bool,
    pub from_memory: bool,
    pub low_battery: bool,
}

/// One #13 packet with the 14-byte data section, stamped `at` in BCD.
pub fn packet13(at: PrimitiveDateTime, status: Status13, spo2: u8, hr: u16) -> Vec<u8> {
    let bcd = |v: u16| {
        let v = v % 100;
        u8::try_from(((v / 10) << 4) | (v % 10)).unwrap_or(0)
    };
    let year = u16::try_from(at.year().clamp(0, 9999)).unwrap_or(0);
    let st_msb = u8::from(status.smartpoint) << 1 | u8::from(status.no_measurement);
    let st_lsb = u8::from(status.from_memory) << 4 | u8::from(status.low_battery);
    let data = [
        bcd(year / 100),
        bcd(year),
        bcd(u16::from(u8::from(at.month()))),
        bcd(u16::from(at.day())),
        bcd(u16::from(at.hour())),
        bcd(u16::from(at.minute())),
        bcd(u16::from(at.second())),
        0x00,
        st_msb,
        st_lsb,
        u8::from(hr & 0x100 != 0),
        u8::try_from(hr & 0xFF).unwrap_or(0),
        0x00,
        spo2 & 0x7F,
    ];
    let mut out = vec![0x00, 0x02, 0x00, 0x0D, 0x00, 0x0E];
    out.extend_from_slice(&data);
    out.push(data.iter().fold(0u8, |a, b| a.wrapping_add(*b)));
    out.push(0x03);
    out
}

/// A value near `base`, `spread` either way.
fn near(rng: &mut fastrand::Rng, base: u16, spread: u16) -> u16 {
    (base + rng.u16(0..=2 * spread)).saturating_sub(spread)
}

/// A Nonin oximeter in data format #8. See the module docs.
pub struct Nonin8Sim {
    rng: fastrand::Rng,
    /// Frames with values per measurement (1/s).
    pub frames: usize,
    /// Finger-out frames after them.
    pub idle_frames: usize,
    last: Vec<Sample>,
}

impl Nonin8Sim {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: fastrand::Rng::with_seed(seed),
            frames: 15,
            idle_frames: 3,
            last: Vec::new(),
        }
    }

    /// The values of the last measurement's frames, in order.
    pub fn last(&self) -> &[Sample] {
        &self.last
    }
}

impl Simulator for Nonin8Sim {
    fn measurement(&mut self, _now: OffsetDateTime) -> Vec<Step> {
        let (spo2, hr) = (self.rng.u16(95..=98), self.rng.u16(58..=95));
        self.last.clear();
        let mut steps = Vec::new();
        for i in 0..self.frames {
            let s = u8::try_from(near(&mut self.rng, spo2, 1)).unwrap_or(97);
            let h = near(&mut self.rng, hr, 2);
            // Marginal perfusion while the probe settles; SmartPoint after 10 s.
            let status1 = if i == 0 { 0x08 } else { 0 };
            let status2 = if i >= 10 { 0x20 } else { 0 };
            self.last.push((s, h));
            steps.push(Step {
                after: Duration::from_secs(1),
                bytes: frame8(s, h, status1, status2).to_vec(),
            });
        }
        for _ in 0..self.idle_frames {
            steps.push(Step {
                after: Duration::from_secs(1),
                bytes: frame8(SPO2_MISSING, HR_MISSING, 0, 0x08).to_vec(),
            });
        }
        steps
    }
}

/// A Nonin oximeter in data format #7. See the module docs.
pub struct Nonin7Sim {
    rng: fastrand::Rng,
    /// Packets with values per measurement (3/s).
    pub packets: usize,
    /// Finger-out packets after them.
    pub idle_packets: usize,
    /// The 1/3-s timer (14 bits on the wire) and the frame count, kept across measurements.
    timer: u16,
    frame_no: u64,
    last: Vec<Sample>,
}

/// The pause between #7 packets: 1/3 s.
pub const PACKET_PERIOD: Duration = Duration::from_nanos(333_333_333);

impl Nonin7Sim {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: fastrand::Rng::with_seed(seed),
            packets: 45,
            idle_packets: 3,
            timer: 0,
            frame_no: 0,
            last: Vec::new(),
        }
    }

    /// The display values (SpO2-D, HR-D) of the last measurement's valued packets, in order.
    pub fn last(&self) -> &[Sample] {
        &self.last
    }

    /// One packet: `status` on every frame, display values `spo2`/`hr`, pleth at `pulse`.
    fn packet(&mut self, status: u8, spo2: u8, hr: u16, pulse: u16) -> Vec<u8> {
        let (hr_msb, hr_lsb) = hr_split(hr);
        let (t_msb, t_lsb) = (b7(self.timer >> 7), b7(self.timer));
        self.timer = (self.timer + 1) & 0x3FFF;
        let s = spo2 & 0x7F;
        #[rustfmt::skip]
        let float = [
            hr_msb, hr_lsb, s, 0x29, 0, t_msb, t_lsb, 0x00, // 1-8: HR, SpO2, SREV, R, TMR, STAT2
            s, s, s, 0, 0, hr_msb, hr_lsb, s, s, 0, 0,       // 9-19: SpO2-D/fast/B-B, E-HR, E-SpO2(-D)
            hr_msb, hr_lsb, hr_msb, hr_lsb, 0, 0,            // 20-25: HR-D, E-HR-D
        ];
        let mut pleth = [0u16; 25];
        for p in &mut pleth {
            *p = pleth_at(self.frame_no, pulse);
            self.frame_no = self.frame_no.wrapping_add(1);
        }
        packet7(&[status; 25], &pleth, &float)
    }
}

/// A pulse wave: a fast upstroke over the first fifth of each beat, then a slow decay.
fn pleth_at(frame_no: u64, pulse: u16) -> u16 {
    // 75 frames/s: a beat lasts 4500 / pulse frames.
    let phase = (frame_no.wrapping_mul(u64::from(pulse.max(1)))) % 4500;
    let v = if phase < 900 {
        20_000 + phase * 40
    } else {
        56_000 - (phase - 900) * 10
    };
    u16::try_from(v).unwrap_or(u16::MAX)
}

impl Simulator for Nonin7Sim {
    fn measurement(&mut self, _now: OffsetDateTime) -> Vec<Step> {
        let (spo2, hr) = (self.rng.u16(95..=98), self.rng.u16(58..=95));
        self.last.clear();
        let mut steps = Vec::new();
        for i in 0..self.packets {
            // Display values are 4-beat averages updated every 1.5 s: change every 4 packets.
            let (s, h) = match self.last.last() {
                Some(&prev) if i % 4 != 0 => prev,
                _ => (
                    u8::try_from(near(&mut self.rng, spo2, 1)).unwrap_or(97),
                    near(&mut self.rng, hr, 2),
                ),
            };
            self.last.push((s, h));
            // Green perfusion (GPRF).
            let bytes = self.packet(0x02, s, h, h);
            steps.push(Step {
                after: PACKET_PERIOD,
                bytes,
            });
        }
        for _ in 0..self.idle_packets {
            // Finger out: SNSA with red perfusion, missing data.
            let bytes = self.packet(0x08 | 0x04, SPO2_MISSING, HR_MISSING, hr);
            steps.push(Step {
                after: PACKET_PERIOD,
                bytes,
            });
        }
        steps
    }
}

/// A Nonin oximeter in data format #13 (SmartPoint spot checks). See the module docs.
pub struct Nonin13Sim {
    rng: fastrand::Rng,
    last: Vec<Sample>,
}

impl Nonin13Sim {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: fastrand::Rng::with_seed(seed),
            last: Vec::new(),
        }
    }

    /// The values of the last packet.
    pub fn last(&self) -> &[Sample] {
        &self.last
    }
}

impl Simulator for Nonin13Sim {
    fn measurement(&mut self, now: OffsetDateTime) -> Vec<Step> {
        let spo2 = u8::try_from(self.rng.u16(94..=99)).unwrap_or(97);
        let hr = self.rng.u16(55..=110);
        let status = Status13 {
            smartpoint: self.rng.u8(0..5) != 0,
            ..Status13::default()
        };
        self.last = vec![(spo2, hr)];
        let at = PrimitiveDateTime::new(now.date(), now.time());
        vec![Step {
            after: Duration::ZERO,
            bytes: packet13(at, status, spo2, hr),
        }]
    }
}

#[cfg(test)]
#[path = "nonin_binary_tests.rs"]
mod tests;
