//! Waveform OBX rows: off is byte-identical to no strip; on parses with `hl7-parser` with one
//! `NA` row per lead and its sample-rate row; the size bound leaves out whole leads.

use time::macros::datetime;

use super::*;
use crate::decode::hl7v2::parse_oru;
use crate::model::fixtures;
use crate::reading::{Kind, Lead, Reading, Waveform};
use crate::sink::hl7::{oru_r01, Header};

fn lead(mdc: u32, name: &str, scale_uv: f64, samples: Vec<i32>) -> Lead {
    Lead {
        mdc,
        name: name.into(),
        scale_uv,
        samples,
    }
}

fn strip(leads: Vec<Lead>, fs_hz: f64) -> Reading {
    let t0 = datetime!(2026-11-27 12:00:00 +01:00);
    fixtures::reading(Kind::Ecg)
        .id("01938f4e-7b2a-7c4d-9a51-3f0c2b1d9e77"
            .parse()
            .expect("uuid"))
        .device("exam3-ecg", "openbci")
        .patient("MRN0012345", "urn:oid:2.16.840.1.113883.3.999")
        .observed(t0)
        .received(datetime!(2026-11-27 12:00:11 +01:00))
        .value(fixtures::value(
            "147240",
            147_240,
            "rr_interval",
            "833",
            "ms",
        ))
        .waveform(Waveform {
            fs_hz,
            t0,
            leads,
            r_peaks: vec![1],
            rr_ms: Vec::new(),
        })
        .build()
}

fn header(waveform: bool) -> Header {
    Header {
        waveform,
        ..Header::default()
    }
}

fn text(r: &Reading, h: &Header) -> String {
    String::from_utf8(oru_r01(r, h)).expect("UTF-8")
}

/// (OBX-2, OBX-3, OBX-4, OBX-5, OBX-6) of every OBX, read by `hl7-parser`.
fn obx_rows(msg: &str) -> Vec<[String; 5]> {
    let m = hl7_parser::Message::parse(msg).expect("hl7-parser accepts the message");
    m.segments()
        .filter(|s| s.name == "OBX")
        .map(|s| {
            let f = |n| {
                s.field(n)
                    .map(|f| f.raw_value().to_string())
                    .unwrap_or_default()
            };
            [f(2), f(3), f(4), f(5), f(6)]
        })
        .collect()
}

#[test]
fn with_waveform_off_a_strip_is_encoded_exactly_as_without_it() {
    let r = strip(vec![lead(131_330, "lead_ii", 1.0, vec![1, 2, 3])], 130.0);
    let mut bare = r.clone();
    bare.waveform = None;
    assert_eq!(oru_r01(&r, &header(false)), oru_r01(&bare, &header(false)));
    assert_eq!(
        oru_r01(&r, &Header::default()),
        oru_r01(&bare, &header(false))
    );
    // A reading without a strip is the same either way.
    assert_eq!(
        oru_r01(&bare, &header(true)),
        oru_r01(&bare, &header(false))
    );
}

#[test]
fn with_waveform_on_each_lead_is_an_na_row_in_microvolts_followed_by_its_sample_rate() {
    let r = strip(
        vec![
            lead(131_329, "lead_i", 0.02235, vec![1000, -1000, 0, 44_739]),
            lead(131_330, "lead_ii", 1.0, vec![-30, 16, 1190, -512]),
        ],
        250.0,
    );
    let msg = text(&r, &header(true));
    assert!(!msg.contains('\n'));
    let rows = obx_rows(&msg);
    assert_eq!(rows.len(), 5, "{rows:?}");
    assert_eq!(rows[0][0], "NM"); // the RR interval stays first
    assert_eq!(
        rows[1],
        [
            "NA".to_string(),
            "131329^MDC_ECG_ELEC_POTL_I^MDC".into(),
            "1.1.2.1".into(),
            "22.35^-22.35^0^999.917".into(),
            "266419^MDC_DIM_MICRO_VOLT^MDC^uV^uV^UCUM".into(),
        ]
    );
    assert_eq!(
        rows[2],
        [
            "NM".to_string(),
            "0^MDC_ATTR_SAMP_RATE^MDC".into(),
            "1.1.2.1.1".into(),
            "250".into(),
            "264608^MDC_DIM_PER_SEC^MDC^/s^/s^UCUM".into(),
        ]
    );
    assert_eq!(rows[3][1], "131330^MDC_ECG_ELEC_POTL_II^MDC");
    assert_eq!(rows[3][3], "-30^16^1190^-512");
    assert_eq!(rows[4][3], "250");
    // OBX-1 counts on without a gap, and OBX-14 is the first sample's time.
    let set_ids: Vec<String> = msg
        .split('\r')
        .filter(|s| s.starts_with("OBX|"))
        .map(|s| s.split('|').nth(1).unwrap_or("").to_string())
        .collect();
    assert_eq!(set_ids, ["1", "2", "3", "4", "5"]);
    assert!(msg
        .split('\r')
        .filter(|s| s.starts_with("OBX|"))
        .all(|s| s.split('|').nth(14) == Some("20261127120000+0100")));
    // vitalsd's own ORU parser still reads the message: it skips the four waveform rows and
    // the RR interval (no vital-sign kind of its own).
    let oru = parse_oru(msg.as_bytes()).expect("ORU");
    assert_eq!(oru.skipped, 5);
}

#[test]
fn a_130_hz_rate_is_sent_with_its_decimals() {
    let r = strip(vec![lead(131_328, "ecg", 1.0, vec![5])], 1000.0 / 7.5);
    let rows = obx_rows(&text(&r, &header(true)));
    assert_eq!(rows[2][3], "133.333333");
}

#[test]
fn leads_past_the_size_bound_are_left_out_whole_and_named_in_an_nte() {
    // 60 s at 500 Hz, 12 leads of 7-character values: ~2.5 MB of samples.
    let samples: Vec<i32> = (0..30_000).map(|i| -100_000 - (i % 7)).collect();
    let leads: Vec<Lead> = (0..12)
        .map(|k| lead(131_329 + k, "lead", 1.0, samples.clone()))
        .collect();
    let r = strip(leads, 500.0);
    let msg = text(&r, &header(true));
    assert!(
        msg.len() <= MAX_WAVEFORM_BYTES + 4096,
        "{} bytes",
        msg.len()
    );
    let rows = obx_rows(&msg);
    let na: Vec<_> = rows.iter().filter(|r| r[0] == "NA").collect();
    assert!(!na.is_empty() && na.len() < 12, "{} leads sent", na.len());
    for row in &na {
        assert_eq!(row[3].split('^').count(), samples.len(), "a lead was cut");
    }
    let notes = msg
        .split('\r')
        .filter(|s| s.starts_with("NTE|") && s.contains("left out: message size bound"))
        .count();
    assert_eq!(notes + na.len(), 12);
    // The message is still one that a 1 MiB MLLP listener (ours) accepts.
    assert!(parse_oru(msg.as_bytes()).is_ok());
}

#[test]
fn microvolts_keep_three_decimals_and_integers_stay_integers() {
    assert_eq!(microvolts(1190, 1.0), "1190");
    assert_eq!(microvolts(-512, 1.0), "-512");
    assert_eq!(microvolts(1000, 0.02235), "22.35");
    assert_eq!(microvolts(-1, 0.0001), "0");
    assert_eq!(microvolts(3, 0.5), "1.5");
}
