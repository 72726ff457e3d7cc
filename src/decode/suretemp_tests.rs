//! Tests of `suretemp`: the docs/devices/suretemp.md blocks literally, a fake module that answers polls,
//! the forwarding rule, framing errors and resync.

use super::*;
use proptest::prelude::*;

fn hex(s: &str) -> Vec<u8> {
    hex::decode(s.replace(' ', "")).unwrap()
}

const VECTOR_1: &str =
    "03 02 10 94 1C 02 13 00 00 00 00 00 76 AF 99 43 4E 00 00 00 00 00 02 00 00 01 00 D4";
const VECTOR_2: &str =
    "03 02 10 94 1C 02 13 00 33 13 9B 43 76 AF 99 43 4E 00 00 00 00 00 02 00 00 01 00 B0";

fn decode_all(d: &mut SureTemp, bytes: &[u8]) -> Vec<DecodeEvent> {
    let mut out = Vec::new();
    d.feed(bytes, &mut out);
    out
}

fn decode(bytes: &[u8]) -> Vec<DecodeEvent> {
    let mut d = SureTemp::new(DEFAULT_POLL);
    let mut out = decode_all(&mut d, bytes);
    d.finish(&mut out);
    out
}

fn temperature(ev: &DecodeEvent) -> (Decimal, Option<String>, Vec<Flag>) {
    match ev {
        DecodeEvent::Message(m) => {
            assert_eq!(m.kind, Kind::BodyTemperature);
            assert_eq!(m.values.len(), 1);
            let v = &m.values[0];
            assert_eq!(v.name, "temperature");
            assert_eq!(v.unit.as_str(), "Cel");
            let Measured::Value(d) = v.value else {
                panic!("absent value in {m:?}")
            };
            (d, v.site.clone(), m.flags.clone())
        }
        other => panic!("expected a temperature, got {other:?}"),
    }
}

const IDLE: DecodeEvent = DecodeEvent::Idle { episode_end: false };

#[test]
fn the_poll_is_the_published_0x941c_command_block() {
    assert_eq!(POLL.to_vec(), hex("03 02 10 94 1C 01 00 00 3A"));
    assert_eq!(block(0x941C, TYPE_COMMAND, &[]).unwrap(), POLL.to_vec());
    let mut d = SureTemp::new(DEFAULT_POLL);
    assert_eq!(d.poll(), POLL.to_vec());
    assert_eq!(d.poll_every(), Some(Duration::from_secs(1)));
    assert!(d.on_connect().is_empty(), "no init command is needed");
}

#[test]
fn every_published_command_block_has_the_documented_checksum() {
    for (cmd, data, literal) in [
        (0x9434, &[0x01][..], "03 02 10 94 34 01 01 00 01 20"),
        (0x2A12, &[0x01], "03 02 10 2A 12 01 01 00 01 AC"),
        (0x3503, &[0x01], "03 02 10 35 03 01 01 00 01 B0"),
        (0x2936, &[0x02], "03 02 10 29 36 01 01 00 02 88"),
    ] {
        assert_eq!(
            block(cmd, TYPE_COMMAND, data).unwrap(),
            hex(literal),
            "{literal}"
        );
    }
}

#[test]
fn the_published_responses_to_other_commands_are_idle() {
    for literal in [
        "03 02 10 94 34 02 00 00 21",
        "03 02 10 2A 12 02 00 00 AD",
        "03 02 10 35 03 02 00 00 B1",
        "03 02 10 29 36 02 04 00 37 2E 35 00 EC",
    ] {
        assert_eq!(decode(&hex(literal)), vec![IDLE], "{literal}");
    }
    assert_eq!(
        block(0x2936, TYPE_RESPONSE, b"7.5\0").unwrap(),
        hex("03 02 10 29 36 02 04 00 37 2E 35 00 EC")
    );
}

#[test]
fn protocols_vector_1_has_no_final_reading_and_forwards_nothing() {
    let bytes = hex(VECTOR_1);
    let frame = &bytes[HEADER..bytes.len() - 1];
    let rec = TempRecord::parse(frame).unwrap();
    assert!(!rec.has_final());
    assert_eq!(rec.current_k, 0x4399_AF76);
    assert_eq!(kelvin_bits_to_centi_celsius(rec.current_k), Some(3422));
    assert_eq!(rec.sample_counter, 78);
    assert_eq!(
        (
            rec.method,
            rec.algorithm,
            rec.state,
            rec.error,
            rec.active,
            rec.probe
        ),
        (0, 0, 2, 0, 1, 0)
    );
    assert_eq!(rec.to_bytes(), frame);
    assert_eq!(decode(&bytes), vec![IDLE]);
}

#[test]
fn protocols_vector_2_forwards_the_final_37_degrees_not_the_probe_value() {
    let out = decode(&hex(VECTOR_2));
    assert_eq!(out.len(), 1, "{out:?}");
    let (value, site, flags) = temperature(&out[0]);
    assert_eq!(value, Decimal::new(3700, 2));
    assert_eq!(value.to_string(), "37.00");
    assert_eq!(site.as_deref(), Some("oral"));
    assert!(flags.is_empty());
}

#[test]
fn kelvin_conversion_is_exact_and_rounds_half_away_from_zero() {
    assert_eq!(
        kelvin_bits_to_centi_celsius(310.15f32.to_bits()),
        Some(3700)
    );
    assert_eq!(kelvin_bits_to_centi_celsius(273.15f32.to_bits()), Some(0));
    // 310.125 K is exactly representable: 36.975 °C rounds up to 36.98.
    assert_eq!(
        kelvin_bits_to_centi_celsius(310.125f32.to_bits()),
        Some(3698)
    );
    assert_eq!(kelvin_bits_to_centi_celsius(1.0f32.to_bits()), Some(-27215));
    assert_eq!(
        kelvin_bits_to_centi_celsius(f32::MIN_POSITIVE.to_bits()),
        Some(-27315)
    );
    for bad in [0.0f32, -0.0, -310.0, f32::NAN, f32::INFINITY, 2.0e6] {
        assert_eq!(kelvin_bits_to_centi_celsius(bad.to_bits()), None, "{bad}");
    }
}

/// A SureTemp module on the other end of the cable: answers every 0x941C poll with a
/// temperature record block, anything else with a NAK.
struct FakeModule {
    rec: TempRecord,
}

impl FakeModule {
    fn new() -> Self {
        Self {
            rec: TempRecord {
                final_k: 0,
                current_k: 300.0f32.to_bits(),
                sample_counter: 0,
                method: 0,
                algorithm: 0,
                state: 2,
                error: 0,
                active: 0,
                probe: 0,
            },
        }
    }

    fn answer(&mut self, request: &[u8]) -> Vec<u8> {
        self.rec.sample_counter += 1;
        if request == POLL {
            block(CMD_TEMPERATURE, TYPE_RESPONSE, &self.rec.to_bytes()).unwrap()
        } else {
            let cmd = u16::from_be_bytes([request[3], request[4]]);
            block(cmd, TYPE_NAK, &[]).unwrap()
        }
    }

    fn set_final(&mut self, kelvin: f32) {
        self.rec.final_k = kelvin.to_bits();
    }
}

/// Polls `n` times and returns the temperatures forwarded.
fn poll(d: &mut SureTemp, m: &mut FakeModule, n: usize) -> Vec<Decimal> {
    let mut temps = Vec::new();
    for _ in 0..n {
        let ask = d.poll();
        for ev in decode_all(d, &m.answer(&ask)) {
            match ev {
                DecodeEvent::Message(_) => temps.push(temperature(&ev).0),
                DecodeEvent::Idle { .. } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    temps
}

#[test]
fn a_polled_module_forwards_each_final_once_and_not_the_stale_one_at_connect() {
    let mut d = SureTemp::new(DEFAULT_POLL);
    let mut m = FakeModule::new();
    m.set_final(309.65); // 36.50 °C left over from an earlier patient
    assert!(d.on_connect().is_empty());
    assert_eq!(poll(&mut d, &mut m, 5), vec![], "stale result at connect");
    m.set_final(0.0); // probe out of the well: measuring
    assert_eq!(poll(&mut d, &mut m, 3), vec![]);
    m.set_final(310.15);
    assert_eq!(poll(&mut d, &mut m, 10), vec![Decimal::new(3700, 2)]);
    m.set_final(0.0);
    assert_eq!(poll(&mut d, &mut m, 2), vec![]);
    m.set_final(310.15); // the same temperature measured again is a new reading
    assert_eq!(poll(&mut d, &mut m, 4), vec![Decimal::new(3700, 2)]);
    m.set_final(311.15); // a new result without a zero record in between
    assert_eq!(poll(&mut d, &mut m, 4), vec![Decimal::new(3800, 2)]);
}

#[test]
fn a_reconnect_keeps_the_memory_and_forwards_a_result_that_finished_meanwhile() {
    let mut d = SureTemp::new(DEFAULT_POLL);
    let mut m = FakeModule::new();
    d.on_connect();
    m.set_final(310.15);
    assert_eq!(
        poll(&mut d, &mut m, 2),
        vec![],
        "first record is the baseline"
    );
    d.finish(&mut Vec::new());
    d.on_connect();
    assert_eq!(
        poll(&mut d, &mut m, 2),
        vec![],
        "same result after a reconnect"
    );
    d.finish(&mut Vec::new());
    m.set_final(310.65);
    d.on_connect();
    assert_eq!(poll(&mut d, &mut m, 2), vec![Decimal::new(3750, 2)]);
}

#[test]
fn a_module_error_is_reported_once_and_forwards_no_temperature() {
    let mut d = SureTemp::new(DEFAULT_POLL);
    let mut m = FakeModule::new();
    m.set_final(310.15);
    m.rec.error = 7;
    let mut errors = 0;
    for _ in 0..3 {
        for ev in decode_all(&mut d, &m.answer(&POLL)) {
            match ev {
                DecodeEvent::Error(DecodeError::Unsupported(r)) => {
                    assert!(r.contains("error code 7"), "{r}");
                    errors += 1;
                }
                DecodeEvent::Idle { .. } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert_eq!(errors, 1);
    m.rec.error = 0;
    assert_eq!(poll(&mut d, &mut m, 2), vec![Decimal::new(3700, 2)]);
}

#[test]
fn non_oral_algorithm_probe_and_monitor_mode_become_flags_without_a_site() {
    let mut m = FakeModule::new();
    m.set_final(310.15);
    m.rec.method = 1;
    m.rec.algorithm = 2;
    m.rec.probe = 1;
    let out = decode(&m.answer(&POLL));
    let (_, site, flags) = temperature(&out[0]);
    assert_eq!(site, None);
    assert_eq!(
        flags,
        vec![
            Flag::new("device:monitor_mode"),
            Flag::new("device:algorithm_2"),
            Flag::new("device:probe_type_1")
        ]
    );
}

#[test]
fn a_nak_is_an_error_naming_the_command() {
    let out = decode(&FakeModule::new().answer(&hex("03 02 10 2A 12 01 01 00 01 AC")));
    assert_eq!(
        out,
        vec![DecodeEvent::Error(DecodeError::Unsupported(
            "suretemp: module answered NAK to command 0x2A12".into()
        ))]
    );
}

#[test]
fn a_bad_checksum_is_reported_and_the_next_block_decodes() {
    let mut bytes = hex(VECTOR_2);
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    bytes.extend(hex(VECTOR_2));
    let out = decode(&bytes);
    assert!(
        matches!(out[0], DecodeEvent::Error(DecodeError::Checksum(_))),
        "{out:?}"
    );
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(temperature(&out[1]).0, Decimal::new(3700, 2));
}

#[test]
fn garbage_before_a_block_is_reported_once_and_skipped() {
    let mut bytes = vec![0x00, 0x03, 0xFF, 0x10, 0x03, 0x02];
    bytes.extend(hex(VECTOR_2));
    let mut d = SureTemp::new(DEFAULT_POLL);
    let mut out = Vec::new();
    for b in &bytes {
        d.feed(std::slice::from_ref(b), &mut out);
    }
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(
        out[0],
        DecodeEvent::Error(DecodeError::Malformed(
            "suretemp: skipped 6 bytes without a block preamble".into()
        ))
    );
    assert_eq!(temperature(&out[1]).0, Decimal::new(3700, 2));
}

#[test]
fn a_record_of_the_wrong_length_is_malformed() {
    let b = block(CMD_TEMPERATURE, TYPE_RESPONSE, &[0u8; 18]).unwrap();
    assert!(matches!(
        decode(&b)[..],
        [DecodeEvent::Error(DecodeError::Malformed(_))]
    ));
}

#[test]
fn an_oversized_or_unknown_header_is_rejected_without_waiting() {
    let out = decode(&hex("03 02 10 94 1C 02 FF 00"));
    assert_eq!(
        out[0],
        DecodeEvent::Error(DecodeError::Oversized(MAX_BLOCK))
    );
    let out = decode(&hex("03 02 10 94 1C 07 00 00 00"));
    assert!(
        matches!(out[0], DecodeEvent::Error(DecodeError::Malformed(_))),
        "{out:?}"
    );
}

#[test]
fn a_truncated_block_is_reported_at_finish() {
    let bytes = hex(VECTOR_2);
    let out = decode(&bytes[..20]);
    assert!(
        matches!(out[..], [DecodeEvent::Error(DecodeError::Malformed(ref r))] if r.contains("ended inside")),
        "{out:?}"
    );
}

#[test]
fn the_registry_entry_builds_a_poller_with_the_configured_period() {
    assert_eq!(INFO.name, "suretemp");
    assert!(!INFO.continuous);
    assert_eq!(INFO.serial, Some(SERIAL_9600_8N1));
    let opts = [("poll_every".to_string(), "500ms".to_string())].into();
    let d = (INFO.build)(Transport::Serial, &opts).unwrap();
    assert_eq!(d.poll_every(), Some(Duration::from_millis(500)));
    assert!(parse_poll_every("10ms").is_err());
    assert!(parse_poll_every("2m").is_err());
    assert!(parse_poll_every("soon").is_err());
}

proptest! {
    #[test]
    fn arbitrary_bytes_in_arbitrary_chunks_never_panic_and_stay_bounded(
        chunks in proptest::collection::vec(proptest::collection::vec(
            prop_oneof![Just(0x03u8), Just(0x02), Just(0x10), any::<u8>()], 0..200), 0..10)) {
        let mut d = SureTemp::new(DEFAULT_POLL);
        let mut out = Vec::new();
        for c in &chunks {
            d.feed(c, &mut out);
            prop_assert!(d.buf.len() < MAX_BLOCK);
        }
        d.finish(&mut out);
    }

    #[test]
    fn any_final_temperature_round_trips_through_a_block(centi in 2000i64..4500) {
        #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
        let k = ((centi as f64 + 27_315.0) / 100.0) as f32;
        let mut m = FakeModule::new();
        m.rec.final_k = k.to_bits();
        let out = decode(&m.answer(&POLL));
        prop_assert_eq!(out.len(), 1);
        prop_assert_eq!(temperature(&out[0]).0, Decimal::new(centi, 2));
    }
}
