//! Spot-check reduction for continuous devices (oximeters stream one value per second while a
//! finger is in; a clinic wants one reading per measurement, not 3,600 an hour).
//!
//! Receives the decoder's events with their arrival instants and emits device messages:
//! - An **episode** starts at the first message that holds a value (all-absent messages are
//!   ignored).
//! - The first message that arrives once `settle` has elapsed since the episode start triggers
//!   the report: **one message per kind**, each value the median of that component's values in
//!   the last [`WINDOW`] (the lower middle of an even count, so the result is a value the device
//!   actually sent, with its scale). The newest message of the kind in the window provides the
//!   device time; flags are the union of the window's flags.
//! - Then nothing until the episode ends: `Idle { episode_end: true }`, or no valued message for
//!   [`GAP`] (checked on every feed and by [`SpotCheck::tick`], which the source calls
//!   periodically). An episode that ended before it was reported counts as `too_short`.
//!
//! [`Reporter`] picks between this and `report = every` (pass-through). Pure and
//! deterministic: time only comes in through the arguments.

use std::time::{Duration, Instant};

use crate::model::{DecodeEvent, DeviceMessage, Measured, Report};
use crate::reading::{Decimal, Kind};

/// The values considered for the median: those received this long before the report.
pub const WINDOW: Duration = Duration::from_secs(5);
/// An episode ends after this long without a valued message.
pub const GAP: Duration = Duration::from_secs(3);
/// At most this many samples are kept per episode (bounds memory for fast streams).
const MAX_SAMPLES: usize = 512;

#[derive(Debug, Clone)]
struct Episode {
    start: Instant,
    last: Instant,
    reported: bool,
    samples: Vec<(Instant, DeviceMessage)>,
}

/// The spot-check state machine. See the module docs.
#[derive(Debug, Clone)]
pub struct SpotCheck {
    settle: Duration,
    episode: Option<Episode>,
    too_short: u64,
    reported: u64,
}

impl SpotCheck {
    pub fn new(settle: Duration) -> Self {
        Self {
            settle,
            episode: None,
            too_short: 0,
            reported: 0,
        }
    }

    /// Episodes that ended before `settle` elapsed (nothing was reported for them).
    pub fn too_short(&self) -> u64 {
        self.too_short
    }

    /// Episodes reported so far.
    pub fn reported(&self) -> u64 {
        self.reported
    }

    /// True while an episode is open.
    pub fn in_episode(&self) -> bool {
        self.episode.is_some()
    }

    /// Feeds one decoder event that arrived at `at`; returns the messages to normalize.
    pub fn feed(&mut self, ev: &DecodeEvent, at: Instant) -> Vec<DeviceMessage> {
        self.tick(at);
        match ev {
            DecodeEvent::Message(m) if !m.is_empty_reading() => self.message(m, at),
            DecodeEvent::Idle { episode_end: true } => {
                self.end();
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// Ends the episode when no valued message arrived for [`GAP`]. Never emits: an episode
    /// is reported by a message, so a finger pulled out before `settle` yields nothing.
    pub fn tick(&mut self, now: Instant) -> Vec<DeviceMessage> {
        if self
            .episode
            .as_ref()
            .is_some_and(|e| now.saturating_duration_since(e.last) >= GAP)
        {
            self.end();
        }
        Vec::new()
    }

    fn message(&mut self, m: &DeviceMessage, at: Instant) -> Vec<DeviceMessage> {
        let ep = self.episode.get_or_insert_with(|| Episode {
            start: at,
            last: at,
            reported: false,
            samples: Vec::new(),
        });
        ep.last = at;
        if ep.reported {
            return Vec::new();
        }
        ep.samples.push((at, m.clone()));
        ep.samples
            .retain(|(t, _)| at.saturating_duration_since(*t) <= WINDOW);
        if ep.samples.len() > MAX_SAMPLES {
            let excess = ep.samples.len() - MAX_SAMPLES;
            ep.samples.drain(..excess);
        }
        if at.saturating_duration_since(ep.start) < self.settle {
            return Vec::new();
        }
        ep.reported = true;
        self.reported += 1;
        let samples = std::mem::take(&mut ep.samples);
        report(&samples)
    }

    fn end(&mut self) {
        if let Some(ep) = self.episode.take() {
            if !ep.reported {
                self.too_short += 1;
            }
        }
    }
}

/// One message per kind from the window's samples (already limited to [`WINDOW`]).
fn report(samples: &[(Instant, DeviceMessage)]) -> Vec<DeviceMessage> {
    let mut kinds: Vec<Kind> = Vec::new();
    for (_, m) in samples {
        if !kinds.contains(&m.kind) {
            kinds.push(m.kind);
        }
    }
    let mut out = Vec::new();
    for kind in kinds {
        let of_kind: Vec<&DeviceMessage> = samples
            .iter()
            .map(|(_, m)| m)
            .filter(|m| m.kind == kind && !m.is_empty_reading())
            .collect();
        let Some(newest) = of_kind.last() else {
            continue;
        };
        let mut msg = (*newest).clone();
        for v in &mut msg.values {
            let seen: Vec<Decimal> = of_kind
                .iter()
                .flat_map(|m| m.values.iter())
                .filter(|x| x.name == v.name && x.unit == v.unit)
                .filter_map(|x| match x.value {
                    Measured::Value(d) => Some(d),
                    Measured::Absent(_) => None,
                })
                .collect();
            if let Some(med) = lower_median(seen) {
                v.value = Measured::Value(med);
            }
        }
        msg.flags.clear();
        for f in of_kind.iter().flat_map(|m| m.flags.iter()) {
            if !msg.flags.contains(f) {
                msg.flags.push(f.clone());
            }
        }
        out.push(msg);
    }
    out
}

fn lower_median(mut v: Vec<Decimal>) -> Option<Decimal> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.to_f64().total_cmp(&b.to_f64()));
    Some(v[(v.len() - 1) / 2])
}

/// How a device's messages reach normalize: every message, or one spot check per episode.
#[derive(Debug, Clone)]
pub enum Reporter {
    Every,
    Spot(SpotCheck),
}

impl Reporter {
    pub fn new(report: Report, settle: Duration) -> Self {
        match report {
            Report::Every => Reporter::Every,
            Report::Spot => Reporter::Spot(SpotCheck::new(settle)),
        }
    }

    /// Feeds one decoder event; returns the device messages to normalize now.
    pub fn feed(&mut self, ev: &DecodeEvent, at: Instant) -> Vec<DeviceMessage> {
        match self {
            Reporter::Every => match ev {
                DecodeEvent::Message(m) => vec![m.clone()],
                _ => Vec::new(),
            },
            Reporter::Spot(s) => s.feed(ev, at),
        }
    }

    /// Periodic call (e.g. each second) so episodes end without a further frame.
    pub fn tick(&mut self, now: Instant) -> Vec<DeviceMessage> {
        match self {
            Reporter::Every => Vec::new(),
            Reporter::Spot(s) => s.tick(now),
        }
    }
}

#[cfg(test)]
#[path = "spot_tests.rs"]
mod tests;
