//! SIGHUP reload against the real binary: the config file is rewritten between SIGHUPs and
//! the effects are observed where a user sees them — outboxes, the log, the admin API, the
//! audit trail, `vitalsd queue stats` — with real PTYs and a real Mosquitto.

#[path = "../support/mod.rs"]
mod support;

mod mqtt_devices;
mod sinks;
mod storms;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use support::mosquitto::Mosquitto;
use support::{outbox_lines, Admin, Daemon, DaemonBuilder, Device, Pty, Sink};

// ---------------------------------------------------------------------------------------------
// Helpers.

fn signal(d: &Daemon, sig: Signal) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(d.child.id()).unwrap());
    nix::sys::signal::kill(pid, sig).unwrap();
}

/// Log lines holding every needle.
fn lines_with(d: &Daemon, needles: &[&str]) -> usize {
    d.plain_log()
        .lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .count()
}

/// Waits until `n` log lines hold every needle.
#[track_caller]
fn wait_lines(d: &Daemon, needles: &[&str], n: usize, within: Duration) {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if lines_with(d, needles) >= n {
            return;
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    panic!(
        "fewer than {n} log lines with {needles:?}:\n{}",
        d.plain_log()
    );
}

/// Waits until the outbox holds at least `n` lines; panics with the daemon's log.
#[track_caller]
fn wait_out(d: &Daemon, dir: &Path, n: usize, within: Duration) {
    let until = Instant::now() + within;
    while outbox_lines(dir).len() < n {
        assert!(
            Instant::now() < until,
            "{} has {} of {n} lines:\n{}",
            dir.display(),
            outbox_lines(dir).len(),
            d.plain_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A reload test's config in `dir`: data in `<dir>/data`, patients by location, the admin API
/// (with a token) when `admin`, `devices` and `sinks`.
fn site(dir: &Path, admin: bool, devices: &[Device], sinks: &[Sink]) -> DaemonBuilder {
    let b = DaemonBuilder::new(dir)
        .admin(if admin { Admin::Token } else { Admin::Off })
        .patient_mode("location");
    let b = devices.iter().cloned().fold(b, DaemonBuilder::device);
    sinks.iter().cloned().fold(b, DaemonBuilder::sink)
}

/// An oximeter on a serial port, every frame a reading.
fn serial_device(id: &str, room: &str, path: &Path) -> Device {
    Device::serial(id, "nonin-ascii", room, path).options(r#"report = "every""#)
}

fn file_sink(id: &str, dir: &Path) -> Sink {
    Sink::file(id, dir, "reading")
}

/// An HL7 sink whose receiver refuses connections: its readings stay pending.
fn refused_mllp_sink(id: &str) -> Sink {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    Sink::mllp(id, &format!("127.0.0.1:{port}"))
}

/// Heart rates in an outbox of `reading` lines.
fn heart_rates(dir: &Path) -> Vec<i64> {
    outbox_lines(dir)
        .iter()
        .filter(|l| l["kind"] == "heart_rate")
        .filter_map(|l| l["values"][0]["value"].as_f64())
        .map(whole)
        .collect()
}

/// `v` rounded to a whole number (without a lossy cast).
fn whole(v: f64) -> i64 {
    format!("{v:.0}").parse().unwrap_or(i64::MIN)
}

/// A Nonin line whose SpO2 differs with `hr` too (equal values in the same second are one
/// measurement to the dedupe key).
fn nonin(hr: u32) -> Vec<u8> {
    format!("SPO2={:03} HR={hr:03}\r\n", 50 + hr % 50).into_bytes()
}

/// `vitalsd <args> --config <config>` with the daemon stopped; its stdout.
fn vitalsd(args: &[&str], config: &Path) -> String {
    let out = support::vitalsd_with_config(config, args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
