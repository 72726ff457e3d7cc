//! ECG end to end through the public API: simulator bytes → decoder → strips → readings →
//! FHIR Observation; `vitalsd simulate openbci --hr --fs` through the real binary; and the
//! 12-lead 500 Hz throughput benchmark (`--ignored`).

mod support;

use std::io::Read;
use std::process::Command;
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use vitalsd::decode::{self, DecodeEvent, Options, SampleChunk};
use vitalsd::ecg::{readings, StripBuilder, StripOptions};
use vitalsd::normalize::NormalizeContext;
use vitalsd::reading::{DeviceId, Kind};
use vitalsd::simulate::openbci::OpenBciSim;

fn ctx() -> NormalizeContext {
    NormalizeContext {
        device: DeviceId::new("bench-ecg"),
        driver: "openbci".into(),
        room: Some("exam-1".into()),
        clock_skew_tolerance: std::time::Duration::from_secs(300),
        zone: vitalsd::normalize::LocalZone::utc(),
    }
}

fn opts(kv: &[(&str, &str)]) -> Options {
    kv.iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

#[test]
fn an_openbci_stream_becomes_ecg_strips_with_the_simulated_heart_rate_and_fhir_observations() {
    let mut sim = OpenBciSim::with_rate(250.0, 72.0, 24);
    let mut dec = decode::build("openbci", &opts(&[("channels", "1:I,2:II,3:III")])).unwrap();
    let mut strips = StripBuilder::new(StripOptions::default());
    let mut out = Vec::new();
    let mut rs = Vec::new();
    let t = OffsetDateTime::now_utc();
    for _ in 0..(25 * 10) {
        dec.feed(&sim.bytes(25), &mut out);
        for ev in out.drain(..) {
            let DecodeEvent::Samples(c) = ev else {
                panic!("{ev:?}")
            };
            for s in strips.push(&c, t) {
                rs.extend(readings(s, &ctx(), t));
            }
        }
    }
    for s in strips.finish() {
        rs.extend(readings(s, &ctx(), t));
    }
    let kinds: Vec<Kind> = rs.iter().map(|r| r.kind).collect();
    assert_eq!(
        kinds,
        [
            Kind::Ecg,
            Kind::HeartRate,
            Kind::Ecg,
            Kind::HeartRate,
            Kind::Ecg,
            Kind::HeartRate
        ]
    );
    for hr in rs.iter().filter(|r| r.kind == Kind::HeartRate) {
        let v = hr.values[0].value.unwrap().to_f64();
        assert!((v - 72.0).abs() <= 2.0, "{v}");
    }
    assert!(rs[4].has_flag("ecg:partial"));
    let obs = serde_json::to_value(vitalsd::sink::fhir::observation(&rs[0])).unwrap();
    let comps = obs["component"].as_array().unwrap();
    assert_eq!(comps.len(), 4, "3 leads + the RR interval");
    let data = comps[1]["valueSampledData"]["data"].as_str().unwrap();
    assert_eq!(data.split(' ').count(), 2500);
    assert_eq!(comps[1]["code"]["coding"][0]["code"], "131330");
}

/// One 12-lead stream: a Cyton (8 channels) and a second board (4 channels) at 500 Hz.
struct Stream {
    a: Box<dyn decode::Decoder>,
    b: Box<dyn decode::Decoder>,
    strips: StripBuilder,
}

fn vitalsd(args: &[&str]) -> std::process::Output {
    support::vitalsd(args)
}

#[test]
fn simulate_refuses_a_heart_rate_or_sample_rate_out_of_range_and_for_other_drivers() {
    let out = vitalsd(&[
        "simulate",
        "openbci",
        "--serial",
        "/dev/null",
        "--hr",
        "300",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("from 30 to 240"), "{err}");
    let out = vitalsd(&[
        "simulate",
        "polar-ecg",
        "--serial",
        "/dev/null",
        "--fs",
        "200",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("130, 250 or 500"), "{err}");
    let out = vitalsd(&[
        "simulate",
        "nonin-ascii",
        "--serial",
        "/dev/null",
        "--hr",
        "72",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--hr and --fs apply to the ECG simulators only"),
        "{err}"
    );
}

#[test]
fn simulate_openbci_streams_the_chosen_heart_rate_at_500_hz() {
    let pty = support::Pty::new();
    let mut child = Command::new(env!("CARGO_BIN_EXE_vitalsd"))
        .env(crate::support::KEY_ENV, crate::support::store_key_file())
        .args(["simulate", "openbci", "--serial"])
        .arg(&pty.path)
        .args([
            "--hr", "110", "--fs", "500", "--count", "1", "--every", "1s",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn vitalsd simulate");
    // One measurement is 12 s of packets: 240 steps of 25 packets of 33 bytes.
    let want = 240 * 25 * 33;
    let (tx, rx) = std::sync::mpsc::channel();
    let mut master = pty.master.try_clone().expect("clone pty");
    std::thread::spawn(move || {
        let mut got = Vec::with_capacity(want);
        let mut buf = [0u8; 8192];
        while got.len() < want {
            match master.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        let _ = tx.send(got);
    });
    let bytes = rx
        .recv_timeout(Duration::from_secs(40))
        .expect("12 s of ECG within 40 s");
    assert!(child.wait().expect("wait").success());
    let mut dec = decode::build("openbci", &opts(&[("sample_rate", "500")])).unwrap();
    let mut strips = StripBuilder::new(StripOptions::default());
    let mut out = Vec::new();
    let t = OffsetDateTime::now_utc();
    dec.feed(&bytes, &mut out);
    let mut rs = Vec::new();
    for ev in out.drain(..) {
        let DecodeEvent::Samples(c) = ev else {
            panic!("{ev:?}")
        };
        assert!((c.fs_hz - 500.0).abs() < 1e-9);
        for s in strips.push(&c, t) {
            rs.extend(readings(s, &ctx(), t));
        }
    }
    let hr = rs
        .iter()
        .find(|r| r.kind == Kind::HeartRate)
        .and_then(|r| r.values[0].value)
        .map(|d| d.to_string().parse::<f64>().unwrap_or(0.0))
        .expect("a heart rate from the first 10 s strip");
    assert!((hr - 110.0).abs() <= 2.0, "heart rate {hr}");
}

#[test]
#[ignore = "benchmark: cargo test --release --test ecg -- --ignored --nocapture"]
fn twelve_lead_500_hz_streams_decoded_detected_and_encoded_faster_than_real_time() {
    const STREAMS: usize = 200;
    const SECONDS: usize = 30;
    const READS_PER_S: usize = 10;
    let per_read = 500 / READS_PER_S;
    // 64 s of packets: a whole number of sample-number wraps (32000 = 125 × 256).
    let mut sim = OpenBciSim::with_rate(500.0, 75.0, 24);
    let board = sim.bytes(32_000);
    let read_len = per_read * 33;
    let a_opts = opts(&[
        ("channels", "1:I,2:II,3:III,4:aVR,5:aVL,6:aVF,7:V1,8:V2"),
        ("sample_rate", "500"),
    ]);
    let b_opts = opts(&[("channels", "1:V3,2:V4,3:V5,4:V6"), ("sample_rate", "500")]);
    let started = Instant::now();
    let threads = 2;
    let totals: Vec<(usize, usize)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (board, a_opts, b_opts) = (&board, &a_opts, &b_opts);
                scope.spawn(move || {
                    let mut streams: Vec<Stream> = (0..STREAMS / threads)
                        .map(|_| Stream {
                            a: decode::build("openbci", a_opts).unwrap(),
                            b: decode::build("openbci", b_opts).unwrap(),
                            strips: StripBuilder::new(StripOptions::default()),
                        })
                        .collect();
                    let (mut strips, mut bytes) = (0usize, 0usize);
                    let t = OffsetDateTime::now_utc();
                    let (mut ea, mut eb) = (Vec::new(), Vec::new());
                    for read in 0..SECONDS * READS_PER_S {
                        let off = (read * read_len) % board.len();
                        let chunk = &board[off..off + read_len];
                        for s in &mut streams {
                            s.a.feed(chunk, &mut ea);
                            s.b.feed(chunk, &mut eb);
                            for (x, y) in ea.drain(..).zip(eb.drain(..)) {
                                let (DecodeEvent::Samples(mut x), DecodeEvent::Samples(y)) = (x, y)
                                else {
                                    continue;
                                };
                                x.leads.extend(y.leads);
                                let merged: SampleChunk = x;
                                for st in s.strips.push(&merged, t) {
                                    for r in readings(st, &ctx(), t) {
                                        let obs = vitalsd::sink::fhir::observation(&r);
                                        bytes += serde_json::to_vec(&obs).unwrap().len();
                                    }
                                    strips += 1;
                                }
                            }
                        }
                    }
                    (strips, bytes)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let wall = started.elapsed().as_secs_f64();
    let strips: usize = totals.iter().map(|t| t.0).sum();
    let bytes: usize = totals.iter().map(|t| t.1).sum();
    #[allow(clippy::cast_precision_loss)]
    let realtime = (STREAMS * SECONDS) as f64 / wall;
    println!(
        "ecg bench: {STREAMS} streams × {SECONDS} s of 12-lead 500 Hz in {wall:.2} s on {threads} threads; \
         {strips} strips, {} MB FHIR JSON; streams in real time: {realtime:.0}",
        bytes / 1_000_000
    );
    assert!(strips >= STREAMS * 2, "{strips}");
}
