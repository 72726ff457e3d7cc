//! Tests of what the three Nonin binary drivers share: driver entries, options, host commands
//! and host-reply handling.

use super::test_support::{error_labels, messages, run};
use super::*;
use crate::decode::{DecodeError, Decoder};
use time::macros::datetime;

fn opts(pairs: &[(&str, &str)]) -> Options {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const FRAME8: [u8; 4] = [0x80, 0x48, 0x61, 0x00];

#[test]
fn the_protocols_format_select_example_for_format_7_is_built_literally() {
    assert_eq!(
        format_select_command(Format::F7),
        [0x02, 0x70, 0x02, 0x02, 0x07, 0x03]
    );
    assert_eq!(format_select_command(Format::F8)[4], 0x08);
    assert_eq!(format_select_command(Format::F13)[4], 0x0D);
}

#[test]
fn the_protocols_set_clock_example_for_2050_12_31_14_30_15_is_built_literally() {
    assert_eq!(
        set_clock_command(datetime!(2050-12-31 14:30:15 UTC)),
        Some([0x02, 0x72, 0x06, 0x32, 0x0C, 0x1F, 0x0E, 0x1E, 0x0F, 0x03])
    );
}

#[test]
fn the_clock_cannot_be_set_outside_2000_to_2099() {
    assert_eq!(set_clock_command(datetime!(2100-01-01 00:00:00 UTC)), None);
    assert_eq!(set_clock_command(datetime!(1999-12-31 23:59:59 UTC)), None);
    assert!(set_clock_command(datetime!(2000-01-01 00:00:00 UTC)).is_some());
}

#[test]
fn by_default_connecting_selects_the_drivers_own_format_and_does_not_set_the_clock() {
    let host = HostOptions::default();
    assert_eq!(
        Nonin8::new(host).on_connect(),
        format_select_command(Format::F8)
    );
    assert_eq!(
        Nonin7::new(host).on_connect(),
        format_select_command(Format::F7)
    );
    assert_eq!(
        Nonin13::new(host).on_connect(),
        format_select_command(Format::F13)
    );
}

#[test]
fn select_format_false_sends_nothing_on_connect() {
    let host = HostOptions::from_options(&opts(&[("select_format", "false")])).unwrap();
    assert!(Nonin8::new(host).on_connect().is_empty());
    assert!(Nonin7::new(host).on_connect().is_empty());
    assert!(Nonin13::new(host).on_connect().is_empty());
}

#[test]
fn set_clock_true_on_nonin_13_appends_the_set_clock_command_with_the_current_utc_time() {
    let host = HostOptions::from_options(&opts(&[("set_clock", "true")])).unwrap();
    let before = time::OffsetDateTime::now_utc();
    let bytes = Nonin13::new(host).on_connect();
    assert_eq!(bytes.len(), 16);
    assert_eq!(bytes[..6], format_select_command(Format::F13));
    let clock = &bytes[6..];
    assert_eq!(clock[..3], [0x02, 0x72, 0x06]);
    assert_eq!(clock[9], 0x03);
    assert_eq!(i32::from(clock[3]) + 2000, before.year());
    assert_eq!(clock[4], u8::from(before.month()));
}

#[test]
fn set_clock_alone_sends_only_the_clock_command() {
    let host = HostOptions {
        select_format: false,
        set_clock: true,
    };
    let bytes = Nonin13::new(host).on_connect();
    assert_eq!(bytes.len(), 10);
    assert_eq!(bytes[..3], [0x02, 0x72, 0x06]);
}

#[test]
fn options_reject_values_other_than_true_and_false() {
    let errs = HostOptions::from_options(&opts(&[("select_format", "yes"), ("set_clock", "1")]))
        .unwrap_err();
    let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["select_format", "set_clock"]);
    assert!(errs[0].reason.contains("`yes`"));
    for info in [&INFO_8, &INFO_7, &INFO_13] {
        for spec in info.options {
            assert!((spec.check)("true").is_ok());
            assert!((spec.check)("false").is_ok());
            assert!((spec.check)("TRUE").is_err());
        }
    }
}

#[test]
fn the_driver_entries_describe_three_serial_oximeter_drivers() {
    for (info, name, continuous) in [
        (&INFO_8, "nonin-8", true),
        (&INFO_7, "nonin-7", true),
        (&INFO_13, "nonin-13", false),
    ] {
        assert_eq!(info.name, name);
        assert_eq!(info.transports, &[Transport::Serial]);
        assert_eq!(info.kinds, &[Kind::Spo2, Kind::HeartRate]);
        assert_eq!(info.continuous, continuous);
        assert_eq!(info.serial, Some(SERIAL_9600_8N1));
        assert!(!info.experimental);
    }
    let keys = |i: &DriverInfo| i.options.iter().map(|o| o.key).collect::<Vec<_>>();
    assert_eq!(keys(&INFO_8), ["select_format"]);
    assert_eq!(keys(&INFO_7), ["select_format"]);
    assert_eq!(keys(&INFO_13), ["select_format", "set_clock"]);
}

#[test]
fn the_build_functions_make_working_decoders_and_ignore_the_common_spot_options() {
    let o = opts(&[("select_format", "false"), ("report", "every")]);
    let mut d = (INFO_8.build)(Transport::Serial, &o).unwrap();
    assert!(d.on_connect().is_empty());
    assert_eq!(messages(&run(d.as_mut(), &FRAME8)).len(), 2);
    let mut d = (INFO_7.build)(Transport::Serial, &opts(&[])).unwrap();
    assert_eq!(d.on_connect(), format_select_command(Format::F7));
    let mut d = (INFO_13.build)(Transport::Serial, &opts(&[("set_clock", "false")])).unwrap();
    assert_eq!(d.on_connect().len(), 6);
    assert!((INFO_13.build)(Transport::Serial, &opts(&[("set_clock", "maybe")])).is_err());
}

#[test]
fn an_ack_before_the_first_frame_is_skipped_silently_by_every_decoder() {
    let mut bytes = vec![ACK];
    bytes.extend_from_slice(&FRAME8);
    let out = run(&mut Nonin8::default(), &bytes);
    assert!(error_labels(&out).is_empty(), "{out:?}");
    assert_eq!(messages(&out).len(), 2);
    for d in [
        &mut Nonin7::default() as &mut dyn Decoder,
        &mut Nonin13::default(),
    ] {
        assert!(run(d, &[ACK]).is_empty());
    }
}

#[test]
fn a_nak_after_connecting_is_one_unsupported_error_and_framing_continues() {
    let mut d = Nonin8::default();
    d.on_connect();
    let mut bytes = vec![NAK];
    bytes.extend_from_slice(&FRAME8);
    let out = run(&mut d, &bytes);
    assert_eq!(
        out[0],
        DecodeEvent::Error(DecodeError::Unsupported(
            "device refused format select".into()
        ))
    );
    assert_eq!(out.len(), 3);
    for d in [
        &mut Nonin7::default() as &mut dyn Decoder,
        &mut Nonin13::default(),
    ] {
        d.on_connect();
        assert_eq!(error_labels(&run(d, &[NAK])), ["unsupported"]);
    }
}

#[test]
fn a_nak_when_no_reply_is_expected_is_skipped_garbage() {
    let host = HostOptions {
        select_format: false,
        set_clock: false,
    };
    let mut bytes = vec![NAK];
    bytes.extend_from_slice(&FRAME8);
    let out = run(&mut Nonin8::new(host), &bytes);
    assert!(
        matches!(&out[0], DecodeEvent::Error(DecodeError::Malformed(r)) if r.contains("skipped 1 bytes"))
    );
    let mut d = Nonin8::default();
    d.on_connect();
    let mut twice = vec![ACK, NAK];
    twice.extend_from_slice(&FRAME8);
    assert_eq!(error_labels(&run(&mut d, &twice)), ["malformed"]);
}

#[test]
fn quality_flags_come_out_in_the_documented_order() {
    let all = Quality {
        out_of_track: true,
        low_perfusion: true,
        marginal_perfusion: true,
        artifact: true,
        sensor_alarm: true,
        smartpoint: true,
        low_battery: true,
        from_memory: true,
    };
    let names: Vec<String> = all.flags().iter().map(|f| f.to_string()).collect();
    assert_eq!(
        names,
        [
            "device:out_of_track",
            "device:low_perfusion",
            "device:marginal_perfusion",
            "device:artifact",
            "device:sensor_alarm",
            "device:smartpoint",
            "device:low_battery",
            "device:from_memory"
        ]
    );
    assert!(Quality::default().flags().is_empty());
}
