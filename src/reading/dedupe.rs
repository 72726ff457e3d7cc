//! The dedupe key of a reading: what makes two readings the same measurement.
//!
//! Receives a [`Reading`]; promises a key that is equal for a device's resend of one
//! measurement (memory recall, a gateway's replay after a reconnect) and different for any two
//! measurements that differ in anything the device reported about them. The queue stores the
//! key of every new reading for a bounded window and answers a reading with a known key as a
//! duplicate (see the queue's module docs).
//!
//! The key is made of, in order and each field escaped so no two field lists give one string:
//! - the configured device id and the reading kind;
//! - the physical device's serial number when it reports one (a gateway forwards several
//!   devices under one configured id);
//! - the device's user index (`device:user:<n>` on multi-user cuffs and scales: two users
//!   weighed in one second are two measurements);
//! - the device time, to the nanosecond the device reported (a resend carries the same time);
//! - per value: its name, LOINC code, IEEE 11073 MDC code, UCUM unit, measurement site, the
//!   value as the device wrote it (precision kept) or why it is absent. A cuff's pulse (MDC
//!   149546) and an oximeter's pulse (149530) of the same second and value therefore stay two
//!   readings;
//! - for an ECG strip, the first sample's time.
//!
//! A reading without a device time cannot be told from a new measurement of the same value (an
//! oximeter reports 97 % every second), so its key is its own id: it is never merged with
//! another reading, and only a resend of the same reading (same id) is recognised.
//!
//! What the key leaves out on purpose: the id of a reading with a device time (a resend gets a
//! new id), the receipt time, room, patient, and vitalsd's own flags (a resend can arrive under
//! another context or clock judgement and is still the same measurement).

use std::fmt::Write;

use super::Reading;

/// Appends `s` so that the separator `|` and the escape `\` inside it cannot fake a boundary.
fn field(k: &mut String, s: &str) {
    k.push('|');
    for c in s.chars() {
        if matches!(c, '|' | '\\' | '=' | ';') {
            k.push('\\');
        }
        k.push(c);
    }
}

impl Reading {
    /// The dedupe key; see the module docs for what it holds and why.
    pub fn dedupe_key(&self) -> String {
        let mut k = String::with_capacity(64 + 48 * self.values.len());
        field(&mut k, self.device.id.as_str());
        field(&mut k, self.kind.as_str());
        let t = match (self.device_time, self.id) {
            (Some(t), _) => t,
            (None, Some(id)) => {
                let _ = write!(k, "|id={id}");
                return k;
            }
            (None, None) => self.received_at,
        };
        field(&mut k, self.device.serial.as_deref().unwrap_or(""));
        let user = self
            .flags
            .iter()
            .find_map(|f| f.as_str().strip_prefix("device:user:"))
            .unwrap_or("");
        field(&mut k, user);
        let _ = write!(k, "|{}", t.unix_timestamp_nanos());
        for v in &self.values {
            k.push_str("|;");
            field(&mut k, &v.name);
            field(&mut k, &v.code);
            let _ = write!(k, "|{}", v.mdc.map(|m| m.to_string()).unwrap_or_default());
            field(&mut k, v.unit.as_str());
            field(&mut k, v.site.as_deref().unwrap_or(""));
            match (&v.value, v.absent) {
                (Some(d), _) => {
                    let _ = write!(k, "|={d}");
                }
                (None, Some(a)) => {
                    let _ = write!(k, "|!{}", a.as_str());
                }
                (None, None) => k.push_str("|!"),
            }
        }
        if let Some(w) = &self.waveform {
            // Two strips of a clockless device can complete in the same second (at a gap):
            // the first sample's time tells them apart.
            let _ = write!(k, "|t0={}", w.t0.unix_timestamp_nanos());
        }
        k
    }
}

#[cfg(test)]
mod tests;
