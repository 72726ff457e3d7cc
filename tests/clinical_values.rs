//! Clinical safety, values: two real measurements are never merged, a scale's stored height is
//! never charted as measured, and the soft plausibility ranges fire on alarming values — each
//! through the real daemon, a BLE gateway on a pseudo-terminal and a `reading` outbox.

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::Value as Json;
use support::{wait_outbox, DaemonBuilder, Running};
use time::OffsetDateTime;

/// A BLE Date Time (7 bytes) of `t` in UTC.
fn ble_time(t: OffsetDateTime) -> String {
    let y = t.year().to_le_bytes();
    format!(
        "{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        y[0],
        y[1],
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// One gateway JSON envelope line for characteristic `chr` with value `hex`.
fn envelope(chr: &str, hex: &str) -> Vec<u8> {
    let mut l = serde_json::json!({"gw": "gw-3", "chr": chr, "data_hex": hex}).to_string();
    l.push('\n');
    l.into_bytes()
}

/// The BLE gateway `exam3-gateway` (JSON envelopes) on a pseudo-terminal and a `reading`
/// outbox; the daemon in UTC, so the gateway's wall-clock time stamps mean what the test wrote.
fn gateway_daemon(dir: &Path) -> Running {
    let d = DaemonBuilder::new(dir)
        .patient_mode("location")
        .serial_device("exam3-gateway", "ble-gatt", "exam-3", "payload = \"json\"")
        .outbox("reading")
        .start_with_env(&[("TZ", "UTC")]);
    d.wait_log("serial port open", Duration::from_secs(10));
    d
}

fn kind<'a>(lines: &'a [Json], kind: &str) -> Vec<&'a Json> {
    lines.iter().filter(|l| l["kind"] == kind).collect()
}

fn flags(r: &Json) -> Vec<String> {
    r["flags"]
        .as_array()
        .map(|a| a.iter().map(|f| f.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

#[test]
fn a_cuff_pulse_and_an_oximeter_pulse_of_the_same_second_and_value_are_both_charted() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = gateway_daemon(dir.path());
    let pty = d.pty("exam3-gateway");
    let t = ble_time(OffsetDateTime::now_utc() - Duration::from_secs(20));
    // Cuff: 120/80 (93), time stamp, pulse 72 (MDC 149546).
    pty.send(&envelope(
        "2a35",
        &format!("0678005000 5d00{t}4800").replace(' ', ""),
    ));
    // Oximeter spot check: 98 %, pulse 72 (MDC 149530), the same time stamp.
    pty.send(&envelope("2a5e", &format!("0162004800{t}")));
    let lines = wait_outbox(&dir.path().join("outbox"), 4, Duration::from_secs(15));
    std::thread::sleep(Duration::from_millis(500));
    let lines = support::outbox_lines(&dir.path().join("outbox")).max_by_len(lines);
    let pulses = kind(&lines, "heart_rate");
    let mut mdcs: Vec<u64> = pulses
        .iter()
        .map(|r| r["values"][0]["mdc"].as_u64().unwrap())
        .collect();
    mdcs.sort_unstable();
    assert_eq!(mdcs, [149_530, 149_546], "both pulses, not one: {lines:#?}");
    assert!(pulses.iter().all(|r| r["values"][0]["value"] == 72));
    assert_eq!(kind(&lines, "blood_pressure").len(), 1);
    assert_eq!(kind(&lines, "spo2").len(), 1);
    // A gateway replay of both values (same frames again) is still recognised as such.
    pty.send(&envelope(
        "2a35",
        &format!("0678005000 5d00{t}4800").replace(' ', ""),
    ));
    pty.send(&envelope("2a5e", &format!("0162004800{t}")));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        support::outbox_lines(&dir.path().join("outbox")).len(),
        4,
        "a replay is stored once"
    );
    d.stop();
}

#[test]
fn a_weighing_charts_weight_and_bmi_but_never_the_scales_stored_height() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = gateway_daemon(dir.path());
    let pty = d.pty("exam3-gateway");
    // 72.500 kg, BMI 23.7, stored height 1.750 m; then 80.000 kg, BMI 26.1, same height.
    pty.send(&envelope("2a9d", "08a438ed00d606"));
    pty.send(&envelope("2a9d", "08803e0501d606"));
    let lines = wait_outbox(&dir.path().join("outbox"), 4, Duration::from_secs(15));
    std::thread::sleep(Duration::from_millis(500));
    let lines = support::outbox_lines(&dir.path().join("outbox")).max_by_len(lines);
    assert_eq!(kind(&lines, "body_weight").len(), 2);
    assert_eq!(kind(&lines, "bmi").len(), 2);
    assert!(
        kind(&lines, "body_height").is_empty(),
        "the stored height is a profile value, not a measurement: {lines:#?}"
    );
    assert!(lines.iter().all(|r| flags(r).is_empty()), "{lines:#?}");
    d.stop();
}

#[test]
fn alarming_values_are_flagged_and_ordinary_ones_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = gateway_daemon(dir.path());
    let pty = d.pty("exam3-gateway");
    // 192/100 (124): a hypertensive crisis, flagged; 124/78 (93): nothing.
    pty.send(&envelope(
        "2a35",
        "00c0006400 7c00".replace(' ', "").as_str(),
    ));
    pty.send(&envelope("2a35", "007c004e005d00"));
    // An oximeter spot check of 89 % (flagged) with pulse 135 (flagged).
    pty.send(&envelope("2a5e", "0059008700"));
    let lines = wait_outbox(&dir.path().join("outbox"), 4, Duration::from_secs(15));
    let bp = kind(&lines, "blood_pressure");
    let crisis = bp
        .iter()
        .find(|r| r["values"][0]["value"] == 192)
        .expect("192/100");
    assert_eq!(flags(crisis), ["out_of_range:systolic"]);
    let ordinary = bp
        .iter()
        .find(|r| r["values"][0]["value"] == 124)
        .expect("124/78");
    assert!(flags(ordinary).is_empty(), "{ordinary}");
    assert_eq!(flags(kind(&lines, "spo2")[0]), ["out_of_range:spo2"]);
    assert_eq!(
        flags(kind(&lines, "heart_rate")[0]),
        ["out_of_range:heart_rate"]
    );
    d.stop();
}

trait MaxByLen {
    fn max_by_len(self, other: Vec<Json>) -> Vec<Json>;
}

impl MaxByLen for Vec<Json> {
    /// The longer of two reads of a growing outbox.
    fn max_by_len(self, other: Vec<Json>) -> Vec<Json> {
        if self.len() >= other.len() {
            self
        } else {
            other
        }
    }
}
