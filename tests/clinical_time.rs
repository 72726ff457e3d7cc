//! Whole-daemon tests of device wall-clock times: the real binary, run with `TZ` set, reading a
//! Bluetooth thermometer (through a serial BLE gateway) whose time stamps are local wall-clock
//! time without an offset.

mod support;

use std::time::Duration;

use support::{wait_outbox, Daemon, DaemonBuilder, Device, Pty};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};
use vitalsd::normalize::LocalZone;

/// A BLE gateway's JSON line carrying a Health Thermometer measurement (0x2A1C): 37.00 Cel,
/// taken in the mouth, stamped with the wall-clock time `wall` (no offset on the wire).
fn thermometer_line(wall: PrimitiveDateTime, seq: u32) -> String {
    let mut data = vec![0x06]; // Celsius, time stamp, temperature type
    data.extend([0x74, 0x0E, 0x00, 0xFE]); // FLOAT 3700 × 10^-2
    data.extend(u16::try_from(wall.year()).unwrap().to_le_bytes());
    data.extend([
        u8::from(wall.month()),
        wall.day(),
        wall.hour(),
        wall.minute(),
        wall.second(),
    ]);
    data.push(6); // mouth
    let rx = OffsetDateTime::now_utc().format(&Rfc3339).unwrap();
    format!(
        "{{\"gw\":\"test\",\"mac\":\"00:11:22:33:44:55\",\"svc\":\"1809\",\"chr\":\"2a1c\",\"op\":\"indicate\",\"rx_time\":\"{rx}\",\"seq\":{seq},\"data_hex\":\"{}\"}}\n",
        hex::encode(data)
    )
}

fn wall_at(t: OffsetDateTime, offset: UtcOffset) -> PrimitiveDateTime {
    let l = t.to_offset(offset);
    PrimitiveDateTime::new(l.date(), l.time().replace_nanosecond(0).unwrap())
}

fn utc(v: &serde_json::Value, field: &str) -> Option<OffsetDateTime> {
    v[field]
        .as_str()
        .map(|s| OffsetDateTime::parse(s, &Rfc3339).unwrap())
}

fn flags(v: &serde_json::Value) -> Vec<String> {
    v["flags"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

struct Rig {
    _tmp: tempfile::TempDir,
    outbox: std::path::PathBuf,
    pty: Pty,
    daemon: Daemon,
}

fn rig(tz: &str) -> Rig {
    let tmp = tempfile::tempdir().unwrap();
    let outbox = tmp.path().join("outbox");
    let pty = Pty::new();
    let cfg = DaemonBuilder::new(tmp.path())
        .patient_mode("location")
        .device(
            Device::serial("exam2-thermometer", "ble-gatt", "exam-2", &pty.path)
                .options(r#"payload = "json""#),
        )
        .outbox("reading")
        .write();
    // The daemon in `tz`: its wall-clock reading of device time stamps is under test.
    let daemon = Daemon::start_with_env(&cfg, &tmp.path().join("vitalsd.log"), &[("TZ", tz)]);
    daemon.wait_log("serial port open", Duration::from_secs(20));
    Rig {
        _tmp: tmp,
        outbox,
        pty,
        daemon,
    }
}

/// New York's current offset and its offset in the other season: a local time stamp of now is
/// exact and trusted; one from the other season keeps its exact instant (with that season's
/// offset) as `device_time`, flagged `clock_untrusted` only for being months from receipt.
#[test]
fn local_device_times_take_the_zone_offset_of_their_own_date() {
    let zone = LocalZone::named("America/New_York").unwrap();
    let r = rig("America/New_York");
    let now = OffsetDateTime::now_utc();
    let now_offset = zone.offset_at(now);
    // Six months away the other season's offset applies (EST -5 / EDT -4).
    let other = now + time::Duration::days(182);
    let other_offset = zone.offset_at(other);
    assert_ne!(
        now_offset, other_offset,
        "New York changes offset twice a year"
    );

    let fresh = wall_at(now, now_offset);
    r.pty.send(thermometer_line(fresh, 1).as_bytes());
    let lines = wait_outbox(&r.outbox, 1, Duration::from_secs(20));
    let want = fresh.assume_offset(now_offset);
    assert_eq!(utc(&lines[0], "observed_at"), Some(want), "{}", lines[0]);
    assert_eq!(utc(&lines[0], "device_time"), Some(want));
    assert!(flags(&lines[0]).is_empty(), "{}", lines[0]);

    let away = wall_at(other, other_offset);
    r.pty.send(thermometer_line(away, 2).as_bytes());
    let lines = wait_outbox(&r.outbox, 2, Duration::from_secs(20));
    assert_eq!(
        utc(&lines[1], "device_time"),
        Some(away.assume_offset(other_offset)),
        "the other season's wall time is read with the other season's offset: {}",
        lines[1]
    );
    assert_eq!(flags(&lines[1]), ["clock_untrusted"]);
    drop(r.daemon);
}

/// The clocks change while the daemon runs: a zone (a POSIX `TZ` rule) whose daylight saving
/// starts a few seconds after the daemon started. A device stamping the new local time is
/// read with the new offset: exact and trusted, no restart needed.
#[test]
fn a_clock_change_while_running_needs_no_restart() {
    // Standard time UTC+0 ("AAA0"), daylight time UTC+1 ("BBB"), starting at `change` and
    // ending 30 days later (a rule crossing New Year is allowed, as in the southern hemisphere).
    let change = OffsetDateTime::now_utc() + time::Duration::seconds(20);
    let end = change + time::Duration::days(30);
    let rule = |t: OffsetDateTime| {
        format!(
            "{}/{:02}:{:02}:{:02}",
            t.ordinal() - 1,
            t.hour(),
            t.minute(),
            t.second()
        )
    };
    let tz = format!("AAA0BBB,{},{}", rule(change), rule(end));
    let r = rig(&tz);
    assert!(
        OffsetDateTime::now_utc() < change - time::Duration::seconds(1),
        "the daemon must be running before the clocks change; it took too long to start"
    );
    let before = wall_at(OffsetDateTime::now_utc(), UtcOffset::UTC);
    r.pty.send(thermometer_line(before, 1).as_bytes());
    wait_outbox(&r.outbox, 1, Duration::from_secs(20));

    let wait = change - OffsetDateTime::now_utc() + time::Duration::seconds(1);
    std::thread::sleep(wait.try_into().unwrap_or(Duration::ZERO));
    let summer = UtcOffset::from_hms(1, 0, 0).unwrap();
    let after = wall_at(OffsetDateTime::now_utc(), summer);
    r.pty.send(thermometer_line(after, 2).as_bytes());
    let lines = wait_outbox(&r.outbox, 2, Duration::from_secs(20));

    assert_eq!(
        utc(&lines[0], "observed_at"),
        Some(before.assume_offset(UtcOffset::UTC)),
        "{}",
        lines[0]
    );
    let want = after.assume_offset(summer);
    assert_eq!(utc(&lines[1], "observed_at"), Some(want), "{}", lines[1]);
    assert_eq!(utc(&lines[1], "device_time"), Some(want));
    for l in &lines {
        assert!(flags(l).is_empty(), "{l}");
    }
    drop(r.daemon);
}
