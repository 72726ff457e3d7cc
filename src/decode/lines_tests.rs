use super::*;
use crate::decode::{OptionError, Options};
use proptest::prelude::*;

fn opts(pairs: &[(&str, &str)]) -> Options {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const BP: [(&str, &str); 5] = [
    (
        "pattern",
        r"^(?P<t>\d\d:\d\d:\d\d) SYS=(?P<sys>\S+) DIA=(?P<dia>\S+)(?: MAP=(?P<map>\S+))?$",
    ),
    ("kind", "blood_pressure"),
    ("value.sys", "systolic:mm[Hg]"),
    ("value.dia", "diastolic:mm[Hg]"),
    ("value.map", "mean"),
];

fn bp_opts(extra: &[(&str, &str)]) -> Options {
    let mut o = opts(&BP);
    o.extend(opts(extra));
    o
}

fn decode_with(o: &Options, t: Transport, chunks: &[&[u8]]) -> Vec<DecodeEvent> {
    let mut d = Lines::new(LinesConfig::from_options(o).unwrap(), t);
    let mut out = Vec::new();
    for c in chunks {
        d.feed(c, &mut out);
    }
    d.finish(&mut out);
    out
}

fn message(ev: &DecodeEvent) -> &DeviceMessage {
    match ev {
        DecodeEvent::Message(m) => m,
        other => panic!("expected a message, got {other:?}"),
    }
}

fn value(m: &DeviceMessage, i: usize) -> Option<String> {
    match &m.values[i].value {
        Measured::Value(d) => Some(d.to_string()),
        Measured::Absent(_) => None,
    }
}

fn keys(errors: &[OptionError]) -> Vec<&str> {
    errors.iter().map(|e| e.key.as_str()).collect()
}

#[test]
fn a_configured_blood_pressure_line_decodes_into_one_message() {
    let o = bp_opts(&[("time", "t"), ("time_format", "[hour]:[minute]:[second]")]);
    let out = decode_with(
        &o,
        Transport::Serial,
        &[b"10:31:07 SYS=120 DIA=80 MAP=93\r\n"],
    );
    assert_eq!(out.len(), 1);
    let m = message(&out[0]);
    assert_eq!(m.kind, Kind::BloodPressure);
    let names: Vec<&str> = m.values.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, vec!["systolic", "diastolic", "mean"]);
    assert_eq!(value(m, 0).as_deref(), Some("120"));
    assert_eq!(value(m, 2).as_deref(), Some("93"));
    assert_eq!(m.values[2].unit.as_str(), "mm[Hg]");
    let t = time::Time::from_hms(10, 31, 7).unwrap();
    assert_eq!(m.device_time, Some(DeviceTime::TimeOfDay(t)));
}

#[test]
fn a_group_that_did_not_match_is_absent_and_the_others_are_kept() {
    let out = decode_with(
        &bp_opts(&[]),
        Transport::Serial,
        &[b"10:31:07 SYS=121 DIA=79\n"],
    );
    let m = message(&out[0]);
    assert_eq!(value(m, 1).as_deref(), Some("79"));
    assert_eq!(m.values[2].value, Measured::Absent(AbsentReason::Unknown));
    assert_eq!(m.device_time, None);
}

#[test]
fn the_absent_text_is_no_reading_and_an_all_absent_line_ends_the_episode() {
    let o = bp_opts(&[("absent", "---")]);
    let out = decode_with(
        &o,
        Transport::Serial,
        &[b"10:00:00 SYS=--- DIA=80\r\n10:00:01 SYS=--- DIA=---\r\n"],
    );
    assert_eq!(
        message(&out[0]).values[0].value,
        Measured::Absent(AbsentReason::Unknown)
    );
    assert_eq!(out[1], DecodeEvent::Idle { episode_end: true });
}

#[test]
fn precision_is_kept_and_units_and_sites_are_the_configured_ones() {
    let o = opts(&[
        ("pattern", r"^TEMP (?P<t>[0-9.]+) F$"),
        ("kind", "body_temperature"),
        ("value.t", "temperature:[degF]"),
        ("site", "sublingual"),
    ]);
    let out = decode_with(&o, Transport::Mqtt, &[b"TEMP 98.60 F\r\n"]);
    let m = message(&out[0]);
    assert_eq!(value(m, 0).as_deref(), Some("98.60"));
    assert_eq!(m.values[0].unit.as_str(), "[degF]");
    assert_eq!(m.values[0].site.as_deref(), Some("oral"));
}

#[test]
fn rfc3339_and_local_times_are_read_from_the_time_group() {
    let o = opts(&[
        ("pattern", r"^(?P<at>\S+) W=(?P<w>[0-9.]+)$"),
        ("kind", "body_weight"),
        ("value.w", "weight:kg"),
        ("time", "at"),
    ]);
    let out = decode_with(
        &o,
        Transport::Serial,
        &[b"2026-11-27T12:00:00+01:00 W=72.5\n"],
    );
    let at = time::macros::datetime!(2026-11-27 12:00:00 +01:00);
    assert_eq!(message(&out[0]).device_time, Some(DeviceTime::Absolute(at)));

    let mut o = o.clone();
    o.insert(
        "time_format".into(),
        "[day].[month].[year]-[hour]:[minute]".into(),
    );
    let out = decode_with(&o, Transport::Serial, &[b"27.11.2026-12:05 W=72.5\n"]);
    let local = time::macros::datetime!(2026-11-27 12:05);
    assert_eq!(message(&out[0]).device_time, Some(DeviceTime::Local(local)));
}

#[test]
fn a_time_that_does_not_parse_is_malformed() {
    let o = bp_opts(&[("time", "t")]);
    let out = decode_with(&o, Transport::Serial, &[b"99:99:99 SYS=120 DIA=80\n"]);
    assert_eq!(
        out,
        vec![DecodeEvent::Error(DecodeError::Malformed(
            "lines: group `t` does not match time_format".into()
        ))]
    );
}

#[test]
fn a_value_that_is_not_a_number_is_malformed_without_the_text() {
    let out = decode_with(
        &bp_opts(&[]),
        Transport::Serial,
        &[b"10:00:00 SYS=12x0 DIA=80\n"],
    );
    let DecodeEvent::Error(DecodeError::Malformed(r)) = &out[0] else {
        panic!("expected an error, got {out:?}");
    };
    assert_eq!(r, "lines: group `sys` is not a number");
}

#[test]
fn other_text_is_idle_and_binary_garbage_is_malformed() {
    let out = decode_with(
        &bp_opts(&[]),
        Transport::Serial,
        &[b"OMRON HBP-1300 READY\r\n\x00\xfe\x81\r\n10:00:00 SYS=120 DIA=80\r\n"],
    );
    assert_eq!(out[0], DecodeEvent::Idle { episode_end: false });
    assert!(matches!(
        out[1],
        DecodeEvent::Error(DecodeError::Malformed(_))
    ));
    assert!(matches!(out[2], DecodeEvent::Message(_)));
}

#[test]
fn an_overlong_line_is_oversized_and_the_next_decodes() {
    let mut bytes = vec![b'x'; MAX_LINE + 5];
    bytes.extend_from_slice(b"\n10:00:00 SYS=120 DIA=80\n");
    let out = decode_with(&bp_opts(&[]), Transport::Serial, &[&bytes]);
    assert_eq!(out[0], DecodeEvent::Error(DecodeError::Oversized(MAX_LINE)));
    assert!(matches!(out[1], DecodeEvent::Message(_)));
    let out = decode_with(&bp_opts(&[]), Transport::Mqtt, &[&bytes]);
    assert_eq!(
        out,
        vec![DecodeEvent::Error(DecodeError::Oversized(MAX_LINE))]
    );
}

#[test]
fn mqtt_messages_are_one_line_each_and_need_no_newline() {
    let out = decode_with(
        &bp_opts(&[]),
        Transport::Mqtt,
        &[b"10:00:00 SYS=120 DIA=80", b"10:00:05 SYS=118 DIA=79\n"],
    );
    assert_eq!(out.len(), 2);
    assert_eq!(value(message(&out[1]), 0).as_deref(), Some("118"));
}

#[test]
fn pattern_and_kind_are_required_and_one_value_is_needed() {
    let errs = validate(&opts(&[]));
    assert_eq!(keys(&errs), vec!["pattern", "kind", "value"]);
    let errs = validate(&opts(&[("pattern", "(?P<x>.)"), ("kind", "spo2")]));
    assert_eq!(keys(&errs), vec!["value"]);
}

#[test]
fn a_pattern_that_does_not_compile_or_has_no_named_group_is_refused() {
    let errs = validate(&opts(&[
        ("pattern", "(unclosed"),
        ("kind", "spo2"),
        ("value.s", "spo2"),
    ]));
    assert_eq!(keys(&errs), vec!["pattern"]);
    assert!(errs[0].reason.starts_with("not a valid regex"));
    let errs = validate(&opts(&[("pattern", r"SPO2=(\d+)"), ("kind", "spo2")]));
    assert!(
        errs[0].reason.contains("no named group"),
        "{}",
        errs[0].reason
    );
}

#[test]
fn a_pattern_beyond_the_size_limit_is_refused() {
    let errs = validate(&opts(&[
        ("pattern", r"(?P<x>(?:\w{100}){100})"),
        ("kind", "spo2"),
    ]));
    assert_eq!(errs[0].key, "pattern");
    assert!(errs[0].reason.contains("size limit"), "{}", errs[0].reason);
}

#[test]
fn an_unknown_component_names_the_accepted_ones() {
    let errs = validate(&bp_opts(&[("value.sys", "sistolic:mm[Hg]")]));
    assert_eq!(keys(&errs), vec!["value.sys"]);
    assert_eq!(
        errs[0].reason,
        "`sistolic` is not a component of blood_pressure; expected one of: systolic, diastolic, mean"
    );
}

#[test]
fn a_unit_that_does_not_convert_is_refused_with_the_usable_ones() {
    let errs = validate(&bp_opts(&[("value.sys", "systolic:mmHg")]));
    assert_eq!(
        errs[0].reason,
        "unit `mmHg` cannot be converted to `mm[Hg]`; use one of: mm[Hg], kPa"
    );
}

#[test]
fn value_and_time_keys_must_name_groups_of_the_pattern() {
    let errs = validate(&bp_opts(&[("value.pulse", "systolic"), ("time", "when")]));
    assert_eq!(keys(&errs), vec!["time", "value.pulse"]);
    assert!(errs[1].reason.contains("no group `(?P<pulse>...)`"));
}

#[test]
fn a_component_mapped_twice_and_a_time_group_used_as_value_are_refused() {
    let errs = validate(&bp_opts(&[("value.t", "systolic")]));
    assert_eq!(keys(&errs), vec!["value.t"]);
    assert!(errs[0].reason.contains("already read from group `sys`"));
    let errs = validate(&bp_opts(&[("time", "sys")]));
    assert_eq!(keys(&errs), vec!["time"]);
}

#[test]
fn bad_kind_site_time_format_absent_and_unknown_keys_are_each_reported() {
    let errs = validate(&bp_opts(&[
        ("site", "oral"),
        ("time_format", "[hour"),
        ("absent", "0"),
        ("colour", "red"),
    ]));
    assert_eq!(
        keys(&errs),
        vec!["absent", "colour", "site", "time_format", "time_format"]
    );
    let errs = validate(&opts(&[
        ("pattern", "(?P<x>.)"),
        ("kind", "ecg"),
        ("value.x", "ecg"),
    ]));
    assert_eq!(keys(&errs), vec!["kind"]);
    assert!(errs[0].reason.contains("blood_pressure, heart_rate"));
}

#[test]
fn every_single_key_checker_accepts_good_values_and_refuses_bad_ones() {
    let check = |k: &str, v: &str| (OPTIONS.iter().find(|o| o.key == k).unwrap().check)(v);
    assert!(check("pattern", "(?P<a>x)").is_ok());
    assert!(check("kind", "heart_rate").is_ok());
    assert!(check("kind", "pulse").is_err());
    assert!(check("value.*", "systolic:mm[Hg]").is_ok());
    assert!(check("value.*", "systolic:").is_err());
    assert!(check("time", "t1").is_ok());
    assert!(check("time", "1t").is_err());
    assert!(check("time_format", "rfc3339").is_ok());
    assert!(check("absent", "---").is_ok());
    assert!(check("site", "axilla").is_ok());
    assert!(check("site", "elbow").is_err());
}

#[test]
fn the_driver_entry_builds_for_serial_and_mqtt() {
    let mut d = (INFO.build)(Transport::Mqtt, &bp_opts(&[])).unwrap();
    let mut out = Vec::new();
    d.feed(b"10:00:00 SYS=120 DIA=80", &mut out);
    assert!(matches!(out[..], [DecodeEvent::Message(_)]));
    assert!((INFO.build)(Transport::Serial, &opts(&[])).is_err());
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(chunks in proptest::collection::vec(
        proptest::collection::vec(any::<u8>(), 0..300), 0..8), mqtt: bool) {
        let t = if mqtt { Transport::Mqtt } else { Transport::Serial };
        let o = bp_opts(&[("time", "t"), ("absent", "---")]);
        let mut d = Lines::new(LinesConfig::from_options(&o).unwrap(), t);
        let mut out = Vec::new();
        for c in &chunks {
            d.feed(c, &mut out);
        }
        d.finish(&mut out);
    }

    #[test]
    fn generated_lines_decode_back_to_their_exact_values(
        sys in 0i64..400, dia_m in 0i64..100_000, scale in 0u8..4, map: Option<u16>) {
        let dia = Decimal::new(dia_m, scale);
        let mut line = format!("01:02:03 SYS={sys} DIA={dia}");
        if let Some(m) = map {
            line.push_str(&format!(" MAP={m}"));
        }
        line.push_str("\r\n");
        let out = decode_with(&bp_opts(&[]), Transport::Serial, &[line.as_bytes()]);
        prop_assert_eq!(out.len(), 1);
        let m = message(&out[0]);
        prop_assert_eq!(&m.values[0].value, &Measured::Value(Decimal::from_int(sys)));
        prop_assert_eq!(&m.values[1].value, &Measured::Value(dia));
        let want_map = map.map_or(Measured::Absent(AbsentReason::Unknown),
            |v| Measured::Value(Decimal::from_int(i64::from(v))));
        prop_assert_eq!(&m.values[2].value, &want_map);
    }
}
