use proptest::prelude::*;
use time::macros::datetime;
use time::{OffsetDateTime, UtcOffset};

use super::*;
use crate::model::fixtures;
use crate::reading::{
    Decimal, DeviceId, Flag, Kind, PatientRecord, ReadingId, Ucum, Waveform, MAX_SCALE,
};

/// Asserts `back` is `want` exactly: field by field, and by both encodings (which also compare
/// what `PartialEq` does not: a time's offset, a number's scale, a float's bits).
fn assert_same(back: &Reading, want: &Reading) {
    assert_eq!(back, want);
    assert_eq!(encode(back), encode(want));
    assert_eq!(encode_json(back), encode_json(want));
}

fn ecg() -> Reading {
    fixtures::reading(Kind::Ecg)
        .value(fixtures::value(
            "8867-4",
            147_842,
            "heart_rate",
            "72",
            "/min",
        ))
        .waveform(Waveform {
            fs_hz: 130.0,
            t0: datetime!(2026-11-27 11:59:50.123456789 +01:00),
            leads: vec![
                Lead {
                    mdc: 131_329,
                    name: "lead_i".into(),
                    scale_uv: 1.0,
                    samples: vec![
                        0,
                        -1,
                        1,
                        63,
                        -64,
                        64,
                        -65,
                        8_388_607,
                        -8_388_608,
                        i32::MAX,
                        i32::MIN,
                    ],
                },
                Lead {
                    mdc: 131_330,
                    name: "lead_ii".into(),
                    scale_uv: 0.381_469_726_562_5,
                    samples: (0..1300).map(|i| (i * 37) % 2001 - 1000).collect(),
                },
            ],
            r_peaks: vec![12, 97, 181],
            rr_ms: vec![654, 646],
        })
        .build()
}

/// One reading of every kind and shape the queue stores.
fn every_shape() -> Vec<(&'static str, Reading)> {
    let mut weight = fixtures::reading(Kind::BodyWeight)
        .value(fixtures::value("29463-7", 188_736, "weight", "72.40", "kg"))
        .build();
    weight.device.model = Some("scale-9".into());
    weight.device.serial = Some("SN 0042".into());
    let mut absent = fixtures::spo2(97).build();
    absent.values[0].value = None;
    absent.values[0].absent = Some(AbsentReason::NotANumber);
    let mut site = fixtures::temperature("37.60").build();
    site.values[0].site = Some("tympanic".into());
    let mut record = fixtures::heart_rate(72)
        .patient("MRN0012345", "urn:oid:2.16.840.1.113883.3.999")
        .build();
    record.patient_record = Some(PatientRecord {
        id: "pat-1".into(),
        family: Some("Müller".into()),
        given: vec!["Anna".into(), "Maria".into()],
        birth_date: Some("1970-01-31".into()),
    });
    let mut empty_record = fixtures::heart_rate(60).build();
    empty_record.patient_record = Some(PatientRecord {
        id: "pat-2".into(),
        family: None,
        given: Vec::new(),
        birth_date: None,
    });
    let mut no_mdc = fixtures::blood_pressure("120", "80", "93").build();
    no_mdc.values[2].mdc = None;
    // i64::MIN itself has no JSON form that parses back (its digits overflow as a positive).
    no_mdc.values[0].value = Some(Decimal::new(i64::MIN + 1, MAX_SCALE));
    no_mdc.values[1].value = Some(Decimal::new(i64::MAX, 0));
    let mut ecg_patient = ecg();
    ecg_patient.patient = Some(PatientRef {
        id: "MRN-7".into(),
        system: "urn:oid:1.2.3".into(),
    });
    let mut empty_strip = ecg();
    if let Some(w) = empty_strip.waveform.as_mut() {
        w.leads.clear();
        w.r_peaks.clear();
        w.rr_ms.clear();
    }
    vec![
        (
            "blood pressure",
            fixtures::blood_pressure("121", "79", "93").build(),
        ),
        (
            "blood pressure with patient and device time",
            fixtures::blood_pressure("140", "90", "107")
                .patient("MRN0012345", "urn:oid:2.16.840.1.113883.3.999")
                .device_time(Some(datetime!(2026-11-27 11:59:58.5 -05:00)))
                .received(datetime!(2026-11-27 12:00:00.000001 UTC))
                .build(),
        ),
        ("temperature with site", site),
        ("spo2 with an absent value", absent),
        ("pulse with patient record", record),
        ("pulse with an empty patient record", empty_record),
        ("weight with model and serial", weight),
        ("blood pressure without an mdc, extreme decimals", no_mdc),
        ("ecg with samples", ecg()),
        ("ecg with samples and patient", ecg_patient),
        ("ecg with an empty strip", empty_strip),
        (
            "quarantined (rejected) with flags",
            fixtures::spo2(20)
                .flags(vec![
                    Flag::new("rejected:spo2 below 50"),
                    Flag::out_of_range("spo2"),
                    Flag::clock_untrusted(),
                ])
                .build(),
        ),
        (
            "no id, no room",
            fixtures::temperature("36.9").no_id().room(None).build(),
        ),
        (
            "every kind's empty reading",
            fixtures::reading(Kind::Bmi).room(Some("")).build(),
        ),
    ]
}

#[test]
fn every_shape_round_trips_through_the_binary_form() {
    let mut min = fixtures::temperature("1").build();
    min.values[0].value = Some(Decimal::new(i64::MIN, MAX_SCALE));
    assert_same(&decode(&encode(&min)).unwrap(), &min);
    for (what, r) in every_shape() {
        let bytes = encode(&r);
        assert_eq!(bytes[0], BINARY_V1, "{what}");
        let back = decode(&bytes).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_same(&back, &r);
    }
    for kind in Kind::ALL {
        let r = fixtures::reading(kind).build();
        assert_same(&decode(&encode(&r)).unwrap(), &r);
    }
    for a in ABSENT {
        let mut r = fixtures::spo2(1).build();
        r.values[0].absent = Some(a);
        assert_same(&decode(&encode(&r)).unwrap(), &r);
    }
}

#[test]
fn the_json_form_of_earlier_versions_is_still_read() {
    for (what, r) in every_shape() {
        let json = encode_json(&r);
        assert_eq!(json[0], b'{', "{what}");
        let back = decode(&json).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_same(&back, &r);
    }
    // Written by hand, as an earlier version's serde wrote it (no optional members).
    let json = br#"{"id":"019ad0c4-7a00-7000-8000-000000000001","device":{"id":"d","driver":"json"},"room":null,"patient":null,"kind":"heart_rate","observed_at":"2026-11-27T12:00:00Z","received_at":"2026-11-27T12:00:00.5+01:00","values":[{"code":"8867-4","name":"heart_rate","value":72.0,"unit":"/min"}]}"#;
    let r = decode(json).unwrap();
    assert_eq!(
        r.values[0].value.map(|d| d.to_string()),
        Some("72.0".into())
    );
    assert_eq!(
        r.received_at.offset(),
        UtcOffset::from_hms(1, 0, 0).unwrap()
    );
    assert!(r.flags.is_empty());
    assert_same(&decode(&encode(&r)).unwrap(), &r);
}

#[test]
fn the_binary_form_is_smaller_than_the_json_form() {
    for (what, r) in every_shape() {
        let (bin, json) = (encode(&r).len(), encode_json(&r).len());
        assert!(bin * 2 < json, "{what}: {bin} bytes binary, {json} JSON");
    }
}

#[test]
fn damaged_entries_are_errors_never_other_readings() {
    let r = fixtures::blood_pressure("121", "79", "93")
        .patient("MRN0012345", "urn:oid:1.2.3")
        .build();
    let bytes = encode(&r);
    assert_eq!(decode(&[]), Err(EntryError::Empty));
    assert_eq!(decode(&[7]), Err(EntryError::Format(7)));
    assert_eq!(decode(&[0xff, 1, 2]), Err(EntryError::Format(0xff)));
    // Every cut is refused.
    for n in 1..bytes.len() {
        assert!(decode(&bytes[..n]).is_err(), "cut at {n} decoded");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(decode(&longer), Err(EntryError::Trailing(1)));
    // A flipped bit either fails or gives a reading whose binary form is the damaged bytes
    // (a changed character or number): never a panic, never bytes that do not round-trip.
    for i in 1..bytes.len() {
        for bit in 0..8 {
            let mut b = bytes.clone();
            b[i] ^= 1 << bit;
            if let Ok(back) = decode(&b) {
                assert_eq!(encode(&back), b, "byte {i} bit {bit}");
            }
        }
    }
    // A count far beyond the bytes left is refused before anything is allocated.
    let mut huge = vec![BINARY_V1, 0];
    huge.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
    assert_eq!(decode(&huge), Err(EntryError::Truncated("device id")));
}

#[test]
fn errors_never_quote_stored_values() {
    let mut json = encode_json(
        &fixtures::heart_rate(72)
            .patient("MRN0012345", "sys")
            .build(),
    );
    let at = json.windows(10).position(|w| w == b"MRN0012345").unwrap();
    json.splice(at - 1..at - 1, b"1,".iter().copied());
    let e = decode(&json).unwrap_err().to_string();
    assert!(!e.contains("MRN"), "{e}");
    assert!(e.contains("line 1 column"), "{e}");
    let mut bin = encode(&fixtures::heart_rate(72).patient("MRN\u{e9}", "sys").build());
    let at = bin.windows(3).position(|w| w == b"MRN").unwrap();
    bin[at + 3] = 0xff;
    let e = decode(&bin).unwrap_err();
    assert_eq!(e, EntryError::Invalid("patient"));
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z0-9:_ -]{0,12}", "\\PC{0,6}", Just(String::new())]
}

fn time() -> impl Strategy<Value = OffsetDateTime> {
    (
        0i64..4_102_444_800,
        0u32..1_000_000_000,
        -(23 * 60 + 59)..=(23 * 60 + 59),
    )
        .prop_map(|(s, n, off_min)| {
            OffsetDateTime::from_unix_timestamp(s)
                .unwrap()
                .replace_nanosecond(n)
                .unwrap()
                .to_offset(UtcOffset::from_whole_seconds(off_min * 60).unwrap())
        })
}

fn value() -> impl Strategy<Value = Value> {
    (
        text(),
        proptest::option::of(any::<u32>()),
        text(),
        proptest::option::of((any::<i64>(), 0..=MAX_SCALE)),
        text(),
        proptest::option::of(text()),
        proptest::option::of(0..ABSENT.len()),
    )
        .prop_map(|(code, mdc, name, v, unit, site, absent)| Value {
            code,
            mdc,
            name,
            value: v.map(|(m, s)| Decimal::new(m, s)),
            unit: Ucum::new(unit),
            site,
            absent: absent.map(|i| ABSENT[i]),
        })
}

fn waveform() -> impl Strategy<Value = Waveform> {
    let lead = (
        any::<u32>(),
        text(),
        -1e6f64..1e6,
        proptest::collection::vec(any::<i32>(), 0..40),
    )
        .prop_map(|(mdc, name, scale_uv, samples)| Lead {
            mdc,
            name,
            scale_uv,
            samples,
        });
    (
        0.0f64..10_000.0,
        time(),
        proptest::collection::vec(lead, 0..3),
        proptest::collection::vec(any::<u32>(), 0..5),
        proptest::collection::vec(any::<u32>(), 0..5),
    )
        .prop_map(|(fs_hz, t0, leads, r_peaks, rr_ms)| Waveform {
            fs_hz,
            t0,
            leads,
            r_peaks,
            rr_ms,
        })
}

fn reading() -> impl Strategy<Value = Reading> {
    let who = (
        proptest::option::of(any::<[u8; 16]>()),
        (
            text(),
            text(),
            proptest::option::of(text()),
            proptest::option::of(text()),
        ),
        proptest::option::of(text()),
        proptest::option::of((text(), text())),
        proptest::option::of((
            text(),
            proptest::option::of(text()),
            proptest::collection::vec(text(), 0..3),
            proptest::option::of(text()),
        )),
    );
    let what = (
        0..Kind::ALL.len(),
        time(),
        time(),
        proptest::option::of(time()),
        proptest::collection::vec(value(), 0..4),
        proptest::collection::vec(text(), 0..3),
        proptest::option::of(waveform()),
    );
    (who, what).prop_map(
        |(
            (id, (dev, driver, model, serial), room, patient, record),
            (kind, observed_at, received_at, device_time, values, flags, waveform),
        )| Reading {
            id: id.map(ReadingId::from_bytes),
            device: DeviceInfo {
                id: DeviceId::new(dev),
                driver,
                model,
                serial,
            },
            room,
            patient: patient.map(|(id, system)| PatientRef { id, system }),
            patient_record: record.map(|(id, family, given, birth_date)| PatientRecord {
                id,
                family,
                given,
                birth_date,
            }),
            kind: Kind::ALL[kind],
            observed_at,
            received_at,
            device_time,
            values,
            flags: flags.into_iter().map(Flag::new).collect(),
            waveform,
        },
    )
}

proptest! {
    #[test]
    fn any_reading_round_trips_through_both_forms(r in reading()) {
        let back = decode(&encode(&r)).unwrap();
        assert_same(&back, &r);
        // The JSON form reads exactly as an earlier version read it (serde's float parsing
        // may move a waveform float by one unit in the last place; the binary form does not).
        let json = encode_json(&r);
        let earlier = serde_json::from_slice::<Reading>(&json).ok();
        let now = decode(&json).ok();
        prop_assert_eq!(now.as_ref().map(encode), earlier.as_ref().map(encode));
    }

    #[test]
    fn any_bytes_decode_or_fail_without_panicking(b in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut bytes = vec![BINARY_V1];
        bytes.extend_from_slice(&b);
        if let Ok(r) = decode(&bytes) {
            prop_assert_eq!(encode(&r), bytes);
        }
    }
}
