//! Tests of `suntech`: the docs/devices/suntech.md frames literally, a fake module answering polls,
//! the forwarding rule, status and error codes, framing errors and resync.

use super::*;
use proptest::prelude::*;

fn hex(s: &str) -> Vec<u8> {
    hex::decode(s.replace(' ', "")).unwrap()
}

const VECTOR: &str = "3E 18 78 00 50 00 00 00 00 00 00 00 00 00 00 00 48 00 5D 00 00 00 00 3D";
const IDLE: DecodeEvent = DecodeEvent::Idle { episode_end: false };

fn fresh() -> Suntech {
    Suntech::new(DEFAULT_POLL, None)
}

fn feed(d: &mut Suntech, bytes: &[u8]) -> Vec<DecodeEvent> {
    let mut out = Vec::new();
    d.feed(bytes, &mut out);
    out
}

fn decode(bytes: &[u8]) -> Vec<DecodeEvent> {
    let mut d = fresh();
    let mut out = feed(&mut d, bytes);
    d.finish(&mut out);
    out
}

/// (systolic, diastolic, mean, pulse) of a BP message pair.
fn bp(out: &[DecodeEvent]) -> (i64, i64, i64, Option<i64>) {
    let ints = |m: &DeviceMessage| -> Vec<i64> {
        m.values
            .iter()
            .map(|v| match v.value {
                Measured::Value(d) => d.mantissa(),
                Measured::Absent(_) => panic!("absent in {m:?}"),
            })
            .collect()
    };
    let DecodeEvent::Message(b) = &out[0] else {
        panic!("expected BP, got {out:?}")
    };
    assert_eq!(b.kind, Kind::BloodPressure);
    let names: Vec<&str> = b.values.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["systolic", "diastolic", "mean"]);
    assert!(b.values.iter().all(|v| v.unit.as_str() == "mm[Hg]"));
    let v = ints(b);
    let pulse = out.get(1).map(|e| {
        let DecodeEvent::Message(h) = e else {
            panic!("expected heart rate, got {e:?}")
        };
        assert_eq!(h.kind, Kind::HeartRate);
        assert_eq!(h.values[0].name, "heart_rate");
        assert_eq!(h.values[0].unit.as_str(), "/min");
        assert_eq!(h.values[0].mdc, Some(149_546));
        ints(h)[0]
    });
    (v[0], v[1], v[2], pulse)
}

/// A BP frame with the documented fields set and the checksum computed.
fn bp_frame(sys: i16, dia: i16, pulse: i16, map: i16, code: u8, filler: u8) -> Vec<u8> {
    let mut f = vec![MODULE_START, LEN_BP];
    f.extend_from_slice(&sys.to_le_bytes());
    f.extend_from_slice(&dia.to_le_bytes());
    f.extend_from_slice(&[filler; 10]);
    f.extend_from_slice(&pulse.to_le_bytes());
    f.extend_from_slice(&map.to_le_bytes());
    f.extend_from_slice(&[code, filler, 0]);
    f.push(checksum(&f));
    f
}

fn status_frame(c: u8) -> Vec<u8> {
    let mut f = vec![MODULE_START, 4, c];
    f.push(checksum(&f));
    f
}

#[test]
fn protocols_vector_decodes_to_120_over_80_map_93_pulse_72() {
    let out = decode(&hex(VECTOR));
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(bp(&out), (120, 80, 93, Some(72)));
    assert_eq!(bp_frame(120, 80, 72, 93, 0, 0), hex(VECTOR));
}

#[test]
fn every_command_of_the_table_is_literal_and_follows_the_checksum_rule() {
    for (frame, literal) in [
        (&START_ADULT[..], "3A 20 A6"),
        (&START_PEDIATRIC, "3A 87 3F"),
        (&START_NEONATAL, "3A 28 9E"),
        (&ABORT, "3A 79 01 00 4C"),
        (&GET_CUFF_PRESSURE, "3A 79 05 00 48"),
        (&GET_BP_DATA, "3A 79 03 00 4A"),
        (&GET_MODULE_DATA, "3A 00 C6"),
        (&GET_VERSION, "3A 79 02 40 0B"),
        (&RESET, "3A 8A 3C"),
    ] {
        assert_eq!(frame, hex(literal), "{literal}");
        assert_eq!(
            command(&frame[1..frame.len() - 1]),
            hex(literal),
            "{literal}"
        );
    }
}

#[test]
fn by_default_the_driver_only_reads_and_never_starts_a_measurement() {
    let mut d = (INFO.build)(Transport::Serial, &Options::new()).unwrap();
    assert!(d.on_connect().is_empty(), "no start command unless asked");
    assert_eq!(d.poll(), GET_BP_DATA.to_vec());
    assert_eq!(d.poll_every(), Some(Duration::from_secs(2)));
    assert!(INFO.experimental);
}

#[test]
fn start_on_connect_sends_one_start_in_the_chosen_mode() {
    let opts: Options = [("start_on_connect".to_string(), "true".to_string())].into();
    let mut d = (INFO.build)(Transport::Serial, &opts).unwrap();
    assert_eq!(d.on_connect(), START_ADULT.to_vec());
    let mut opts = opts;
    opts.insert("start_mode".into(), "neonatal".into());
    opts.insert("poll_every".into(), "1s".into());
    let mut d = (INFO.build)(Transport::Serial, &opts).unwrap();
    assert_eq!(d.on_connect(), START_NEONATAL.to_vec());
    assert_eq!(d.poll_every(), Some(Duration::from_secs(1)));
    assert_eq!(parse_start_mode("pediatric"), Ok(START_PEDIATRIC));
    for (key, bad) in [
        ("start_on_connect", "yes"),
        ("start_mode", "horse"),
        ("poll_every", "1h"),
    ] {
        let spec = OPTIONS.iter().find(|o| o.key == key).unwrap();
        assert!((spec.check)(bad).is_err(), "{key}={bad}");
    }
}

/// A SunTech module: answers "Get BP data" with its last record, anything else with 'N'.
struct FakeModule {
    record: Vec<u8>,
}

impl FakeModule {
    fn answer(&self, request: &[u8]) -> Vec<u8> {
        if request == GET_BP_DATA {
            self.record.clone()
        } else {
            status_frame(b'N')
        }
    }
}

/// Polls `n` times; returns the (systolic, pulse) pairs forwarded.
fn poll(d: &mut Suntech, m: &FakeModule, n: usize) -> Vec<(i64, Option<i64>)> {
    let mut got = Vec::new();
    for _ in 0..n {
        let ask = d.poll();
        let out = feed(d, &m.answer(&ask));
        if matches!(out.first(), Some(DecodeEvent::Message(_))) {
            let (s, _, _, p) = bp(&out);
            got.push((s, p));
        } else {
            assert_eq!(out, vec![IDLE]);
        }
    }
    got
}

#[test]
fn a_polled_module_forwards_each_result_once_and_not_the_stale_one_at_connect() {
    let mut d = fresh();
    let mut m = FakeModule {
        record: bp_frame(131, 85, 66, 100, 0, 1),
    };
    assert!(d.on_connect().is_empty());
    assert_eq!(poll(&mut d, &m, 3), vec![], "stale result at connect");
    m.record = bp_frame(118, 76, 70, 90, 0, 2);
    assert_eq!(poll(&mut d, &m, 4), vec![(118, Some(70))]);
    // The same numbers again after the module said 'K' are a new measurement.
    assert_eq!(feed(&mut d, &status_frame(b'K')), vec![IDLE]);
    assert_eq!(poll(&mut d, &m, 3), vec![(118, Some(70))]);
    // Undocumented bytes changing alone do not make a new reading.
    m.record = bp_frame(118, 76, 70, 90, 0, 9);
    assert_eq!(poll(&mut d, &m, 2), vec![]);
}

#[test]
fn a_completed_status_before_the_first_record_makes_it_new_after_connect() {
    let mut d = fresh();
    d.on_connect();
    feed(&mut d, &status_frame(b'O'));
    feed(&mut d, &status_frame(b'K'));
    let m = FakeModule {
        record: bp_frame(125, 82, 0, 96, 0, 0),
    };
    assert_eq!(
        poll(&mut d, &m, 2),
        vec![(125, None)],
        "pulse 0 is not sent"
    );
}

#[test]
fn bp_out_of_range_and_other_failures_are_errors_and_never_readings() {
    for (code, reason) in [
        (3u8, "suntech: measurement failed: BP out of range (code 3)"),
        (1, "suntech: measurement failed: weak signal (code 1)"),
        (
            87,
            "suntech: measurement failed: inflation timeout / leak / loose cuff (code 87)",
        ),
        (200, "suntech: measurement failed: unknown code (code 200)"),
    ] {
        let out = decode(&bp_frame(300, 10, 60, 90, code, 0));
        assert_eq!(
            out,
            vec![DecodeEvent::Error(DecodeError::Unsupported(reason.into()))]
        );
    }
    let out = decode(&bp_frame(120, 80, 70, 93, CODE_ABORTED, 0));
    assert_eq!(out, vec![DecodeEvent::Idle { episode_end: true }]);
}

#[test]
fn statuses_map_to_idle_episode_end_or_named_errors() {
    let cases = [
        (b'O', IDLE),
        (b'B', IDLE),
        (b'S', IDLE),
        (b'K', IDLE),
        (b'A', DecodeEvent::Idle { episode_end: true }),
    ];
    for (c, want) in cases {
        assert_eq!(decode(&status_frame(c)), vec![want], "{}", char::from(c));
    }
    for c in [b'E', b'N', b'D', b'T'] {
        let out = decode(&status_frame(c));
        assert!(
            matches!(out[..], [DecodeEvent::Error(DecodeError::Unsupported(_))]),
            "{out:?}"
        );
    }
    assert!(matches!(
        decode(&status_frame(b'Z'))[..],
        [DecodeEvent::Error(DecodeError::Malformed(_))]
    ));
}

#[test]
fn cuff_pressure_is_idle_and_an_all_zero_record_is_no_measurement() {
    let mut f = vec![MODULE_START, 5, 0x2C, 0x01];
    f.push(checksum(&f));
    assert_eq!(decode(&f), vec![IDLE]);
    assert_eq!(decode(&bp_frame(0, 0, 0, 0, 0, 0)), vec![IDLE]);
}

#[test]
fn the_version_string_names_the_model_on_later_readings() {
    let mut f = vec![MODULE_START, LEN_VERSION];
    f.extend_from_slice(b"SB");
    f.resize(usize::from(LEN_VERSION) - 1, b' ');
    f.push(checksum(&f));
    let mut d = fresh();
    assert_eq!(feed(&mut d, &f), vec![IDLE]);
    let out = feed(&mut d, &hex(VECTOR));
    let DecodeEvent::Message(m) = &out[0] else {
        panic!("{out:?}")
    };
    assert_eq!(m.model.as_deref(), Some("Advantage+"));
}

#[test]
fn an_echo_of_our_own_poll_is_skipped_quietly() {
    let mut bytes = GET_BP_DATA.to_vec();
    bytes.extend(hex(VECTOR));
    let out = decode(&bytes);
    assert_eq!(out[0], IDLE);
    assert_eq!(bp(&out[1..]), (120, 80, 93, Some(72)));
}

#[test]
fn a_bad_checksum_is_reported_and_the_next_frame_decodes() {
    let mut bytes = hex(VECTOR);
    bytes[23] = 0x3C;
    bytes.extend(hex(VECTOR));
    let out = decode(&bytes);
    assert!(
        matches!(out[0], DecodeEvent::Error(DecodeError::Checksum(_))),
        "{out:?}"
    );
    assert_eq!(out.len(), 3, "{out:?}");
    assert_eq!(bp(&out[1..]), (120, 80, 93, Some(72)));
}

#[test]
fn garbage_is_reported_once_and_the_next_frame_decodes_even_byte_by_byte() {
    let mut bytes = vec![0x00, 0x3E, 0x99, 0x3A, 0x79, 0xFF];
    bytes.extend(hex(VECTOR));
    let mut d = fresh();
    let mut out = Vec::new();
    for b in &bytes {
        d.feed(std::slice::from_ref(b), &mut out);
    }
    d.finish(&mut out);
    assert_eq!(
        out[0],
        DecodeEvent::Error(DecodeError::Malformed(
            "suntech: skipped 6 bytes without a frame start".into()
        ))
    );
    assert_eq!(bp(&out[1..]), (120, 80, 93, Some(72)));
}

#[test]
fn a_truncated_frame_is_reported_at_finish() {
    let out = decode(&hex(VECTOR)[..10]);
    assert!(
        matches!(out[..], [DecodeEvent::Error(DecodeError::Malformed(ref r))] if r.contains("ended inside")),
        "{out:?}"
    );
}

proptest! {
    #[test]
    fn arbitrary_bytes_in_arbitrary_chunks_never_panic_and_stay_bounded(
        chunks in proptest::collection::vec(proptest::collection::vec(
            prop_oneof![Just(0x3Eu8), Just(0x3A), Just(0x18), Just(0x04), any::<u8>()], 0..200),
            0..10)) {
        let mut d = fresh();
        let mut out = Vec::new();
        for c in &chunks {
            d.feed(c, &mut out);
            prop_assert!(d.buf.len() < MAX_FRAME);
        }
        d.finish(&mut out);
    }

    #[test]
    fn any_successful_record_decodes_to_its_values(
        sys in 60i16..260, dia in 30i16..150, pulse in 1i16..250, map in 40i16..200) {
        let out = decode(&bp_frame(sys, dia, pulse, map, 0, 0x55));
        prop_assert_eq!(bp(&out), (i64::from(sys), i64::from(dia), i64::from(map), Some(i64::from(pulse))));
    }
}
