//! The fault matrix of issue #9, through the real binary: SIGKILL at 20 random moments of mixed
//! serial + MQTT ingest and FHIR delivery, a record system down for a whole run, a broker
//! restart during mixed ingest, a serial port unplugged in the middle of a frame.
//!
//! What "acknowledged" means here, and so what is asserted:
//! - MQTT: the publisher got its PUBACK from the broker. The broker then owes the message to
//!   vitalsd's persistent session, and vitalsd acks it only after its readings are fsynced:
//!   every acked message must reach the record system exactly once.
//! - Serial has no ack. The feeder writes a frame only while a daemon is alive, and the next
//!   one only after this frame's two readings show as stored in that daemon's `/api/status`
//!   (counted after the queue's fsync): such a frame is *confirmed* and must arrive exactly
//!   once. A frame written to a daemon that was killed before it showed as stored is *in
//!   doubt*: it arrives once or not at all (what the dead daemon did not read is thrown away,
//!   as a real UART would lose it), never twice.
//! - Everything: nothing is stored twice (by identifier, or as two identifiers for the same
//!   frame or message), and the store holds nothing that was not sent.
//!
//! The listener counts every entry POSTed to it, so a redelivery after a crash (answered
//! `200 OK` through `ifNoneExist`) shows as posted-but-not-created, not as a duplicate.
//! `FAULTS_SEED=N` repeats the kill schedule of a run (the seed is printed).

mod support;

#[path = "support/faults_ingest.rs"]
mod ingest;
#[path = "support/faults.rs"]
mod rig;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ingest::{FeedLog, Feeder, Life, Port, PubLog, Publisher};
use rig::{FhirListener, Mode, Tally};
use support::Daemon;

/// Starts the daemon and waits until its admin API, serial port and (with `mqtt`) broker
/// subscription are up; returns it with its admin address.
fn start(tmp: &Path, cfg: &Path, n: usize, mqtt: bool) -> (Daemon, String) {
    let d = Daemon::start(cfg, &tmp.join(format!("log{n}")));
    let admin = d.admin_addr();
    if n == 0 {
        // FHIR output needs a patient; contexts survive the restarts.
        support::set_patient(&admin, "exam-1");
        if mqtt {
            // The MQTT bridge's room (the admin API knows only rooms of configured devices).
            support::set_patient(&admin, "exam-4");
        }
        // The MQTT weights carry device times cut to the second: a reading is attributed only
        // when the context covers (device time − clock_skew_tolerance of 1 s) .. receipt, so
        // wait past two seconds.
        std::thread::sleep(Duration::from_millis(2500));
    }
    d.wait_log("serial port open", Duration::from_secs(15));
    if mqtt {
        d.wait_log("mqtt subscribed", Duration::from_secs(15));
    }
    (d, admin)
}

/// Waits until the listener holds every acked message and confirmed frame and the daemon has
/// nothing pending for `ehr`; then a moment longer, for late redeliveries to show.
fn drain(fhir: &FhirListener, admin: &str, pubs: &PubLog, feed: &FeedLog, within: Duration) {
    rig::wait_for("drain", within, || {
        let t = fhir.tally();
        let pending = rig::try_get(admin, "/api/status").and_then(|s| rig::sink_counts(&s, "ehr"));
        pubs.acked.iter().all(|w| t.weights.contains_key(w))
            && feed.confirmed.iter().all(|f| t.frames.contains_key(f))
            && pending.is_some_and(|(p, _)| p == 0)
    });
    std::thread::sleep(Duration::from_millis(500));
}

#[track_caller]
fn assert_exactly_once(t: &Tally, pubs: &PubLog, feed: &FeedLog) {
    assert!(t.recreated.is_empty(), "created twice: {:?}", t.recreated);
    assert!(
        t.unpaired.is_empty(),
        "serial Observations not one SpO2 + one HR per frame: {:?}",
        t.unpaired
    );
    assert!(t.other.is_empty(), "unexpected Observations: {:?}", t.other);
    let twice: Vec<_> = t.weights.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        twice.is_empty(),
        "MQTT readings stored more than once: {twice:?}"
    );
    let twice: Vec<_> = t.frames.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        twice.is_empty(),
        "serial readings stored more than once: {twice:?}"
    );
    let unsent: Vec<_> = t
        .weights
        .keys()
        .filter(|w| !pubs.sent.contains(w))
        .collect();
    assert!(unsent.is_empty(), "stored but never published: {unsent:?}");
    let unsent: Vec<_> = t
        .frames
        .keys()
        .filter(|f| !feed.written.contains(f))
        .collect();
    assert!(unsent.is_empty(), "stored but never written: {unsent:?}");
    let lost: Vec<_> = pubs
        .acked
        .iter()
        .filter(|w| !t.weights.contains_key(w))
        .collect();
    assert!(lost.is_empty(), "acked MQTT messages lost: {lost:?}");
    let lost: Vec<_> = feed
        .confirmed
        .iter()
        .filter(|f| !t.frames.contains_key(f))
        .collect();
    assert!(lost.is_empty(), "confirmed serial frames lost: {lost:?}");
}

fn summary(what: &str, t: &Tally, pubs: &PubLog, feed: &FeedLog) {
    println!(
        "{what}: mqtt {} sent, {} acked, {} stored; serial {} frames written, {} confirmed, {} stored; \
         listener: {} entries posted, {} Observations created",
        pubs.sent.len(),
        pubs.acked.len(),
        t.weights.len(),
        feed.written.len(),
        feed.confirmed.len(),
        t.frames.len(),
        t.entries,
        t.stored
    );
}

struct Rig {
    tmp: tempfile::TempDir,
    port: Arc<Port>,
    life: Arc<Life>,
}

impl Rig {
    fn new() -> Rig {
        Rig {
            tmp: tempfile::tempdir().expect("tempdir"),
            port: Arc::new(Port::new()),
            life: Arc::default(),
        }
    }

    fn config(&self, broker: Option<&str>, fhir: &FhirListener, batch: usize) -> PathBuf {
        rig::config(
            self.tmp.path(),
            &self.port.path,
            broker,
            &fhir.base_url(),
            batch,
        )
    }

    fn feeder(&self, pace: Duration) -> Feeder {
        Feeder::start(self.port.clone(), self.life.clone(), pace)
    }
}

#[test]
fn sigkill_at_twenty_random_moments_of_mixed_ingest_and_delivery_loses_and_duplicates_nothing() {
    let seed = std::env::var("FAULTS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    println!("kill schedule seed {seed} (FAULTS_SEED={seed} repeats it)");
    let mut rng = fastrand::Rng::with_seed(seed);
    let r = Rig::new();
    let broker = ingest::Broker::start(&r.tmp.path().join("broker"));
    let fhir = FhirListener::start(Mode::Up);
    // Small Bundles answered a little slowly: delivery lags ingest, so kills land mid-delivery.
    fhir.with(|l| l.delay = Duration::from_millis(15));
    let cfg = r.config(Some(&broker.url()), &fhir, 5);
    let (mut d, admin) = start(r.tmp.path(), &cfg, 0, true);
    r.life.up(admin);
    let publisher = Publisher::start(
        broker.port,
        "bridge/exam4",
        (10_000..14_000).collect(),
        Duration::from_millis(10),
    );
    let feeder = r.feeder(Duration::from_millis(15));

    for kill in 1..=20 {
        std::thread::sleep(Duration::from_millis(rng.u64(30..=1200)));
        r.life.down(|| {
            d.child.kill().expect("SIGKILL");
            let _ = d.child.wait();
            r.port.drop_unread();
        });
        let (next, admin) = start(r.tmp.path(), &cfg, kill, true);
        d = next;
        r.life.up(admin);
    }
    std::thread::sleep(Duration::from_millis(500));
    let pubs = publisher.finish();
    let feed = feeder.finish();
    let admin = d.admin_addr();
    drain(&fhir, &admin, &pubs, &feed, Duration::from_secs(60));
    let t = fhir.tally();
    summary("sigkill x20", &t, &pubs, &feed);
    assert!(
        pubs.acked.len() > 100 && feed.confirmed.len() > 50,
        "too little traffic to prove anything"
    );
    assert_exactly_once(&t, &pubs, &feed);
    let (status, _) = d.stop();
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_record_system_down_for_the_whole_run_gets_every_reading_once_when_it_returns() {
    let r = Rig::new();
    let broker = ingest::Broker::start(&r.tmp.path().join("broker"));
    let fhir = FhirListener::reserve(); // nothing listens: connection refused
    let cfg = r.config(Some(&broker.url()), &fhir, 10);
    let (d, admin) = start(r.tmp.path(), &cfg, 0, true);
    r.life.up(admin.clone());
    let queued = |n: u64| {
        rig::wait_for(
            &format!("{n} pending, none dead"),
            Duration::from_secs(20),
            || {
                let s = rig::try_get(&admin, "/api/status");
                s.and_then(|s| rig::sink_counts(&s, "ehr")) == Some((n, 0))
            },
        );
    };

    let first = Publisher::start(
        broker.port,
        "bridge/exam4",
        (20_000..20_040).collect(),
        Duration::ZERO,
    )
    .join();
    let feeder = r.feeder(Duration::ZERO);
    rig::wait_for("10 serial frames stored", Duration::from_secs(20), || {
        feeder.confirmed() >= 10
    });
    let feed = feeder.finish();
    let readings = 40 + 2 * feed.written.len() as u64;
    queued(readings);
    d.wait_log("sink is failing", Duration::from_secs(10));

    // Up again but answering 503 for a while; more readings arrive meanwhile.
    fhir.listen(Mode::Unavailable);
    rig::wait_for(
        "a transaction answered 503",
        Duration::from_secs(20),
        || fhir.with(|l| l.refused) > 0,
    );
    let second = Publisher::start(
        broker.port,
        "bridge/exam4",
        (20_040..20_050).collect(),
        Duration::ZERO,
    )
    .join();
    queued(readings + 10);
    assert_eq!(fhir.with(|l| l.stored.len()), 0);
    assert_eq!(
        rig::metric(&admin, "vitalsd_queue_pending", "sink=\"ehr\""),
        Some((readings + 10) as f64)
    );
    assert_eq!(
        rig::metric(&admin, "vitalsd_queue_dead", "sink=\"ehr\""),
        Some(0.0)
    );

    fhir.set_mode(Mode::Up);
    let mut pubs = first;
    pubs.sent.extend(second.sent);
    pubs.acked.extend(second.acked);
    assert_eq!(pubs.acked.len(), 50);
    drain(&fhir, &admin, &pubs, &feed, Duration::from_secs(40));
    let t = fhir.tally();
    summary("record system down", &t, &pubs, &feed);
    assert_exactly_once(&t, &pubs, &feed);
    assert_eq!(
        t.frames.len(),
        feed.written.len(),
        "a serial frame was lost"
    );
    let s = rig::try_get(&admin, "/api/status").expect("status");
    assert_eq!(rig::sink_counts(&s, "ehr"), Some((0, 0)));
    d.wait_log("sink recovered", Duration::from_secs(5));
    let (status, _) = d.stop();
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_broker_restart_during_mixed_ingest_loses_and_duplicates_nothing() {
    let r = Rig::new();
    let mut broker = ingest::Broker::start(&r.tmp.path().join("broker"));
    let fhir = FhirListener::start(Mode::Up);
    let cfg = r.config(Some(&broker.url()), &fhir, 10);
    let (d, admin) = start(r.tmp.path(), &cfg, 0, true);
    r.life.up(admin.clone());
    let publisher = Publisher::start(
        broker.port,
        "bridge/exam4",
        (30_000..30_300).collect(),
        Duration::from_millis(5),
    );
    let feeder = r.feeder(Duration::from_millis(10));
    rig::wait_for("100 messages acked", Duration::from_secs(30), || {
        publisher.acked() >= 100
    });
    broker.restart();
    let frames_before = feeder.confirmed();
    rig::wait_for("vitalsd reconnected", Duration::from_secs(30), || {
        d.log().matches("mqtt connected").count() >= 2
    });
    let pubs = publisher.join();
    rig::wait_for(
        "serial frames after the restart",
        Duration::from_secs(20),
        || feeder.confirmed() >= frames_before + 10,
    );
    let feed = feeder.finish();
    assert_eq!(
        pubs.acked.len(),
        300,
        "the publisher's session lost messages"
    );
    drain(&fhir, &admin, &pubs, &feed, Duration::from_secs(40));
    let t = fhir.tally();
    summary("broker restart", &t, &pubs, &feed);
    assert_exactly_once(&t, &pubs, &feed);
    // One daemon throughout: every frame written was confirmed.
    assert_eq!(feed.confirmed, feed.written);
    let (status, _) = d.stop();
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_serial_port_unplugged_mid_frame_drops_the_half_frame_and_delivers_what_follows() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let link = tmp.path().join("ttyUSB-oximeter");
    let first = Port::new();
    std::os::unix::fs::symlink(&first.path, &link).expect("symlink");
    let fhir = FhirListener::start(Mode::Up);
    let cfg = rig::config(tmp.path(), &link, None, &fhir.base_url(), 10);
    let (d, admin) = start(tmp.path(), &cfg, 0, false);
    let frames = |n: usize| {
        rig::wait_for(
            &format!("{n} frames delivered"),
            Duration::from_secs(15),
            || fhir.tally().frames.len() >= n,
        );
    };
    let bad = || {
        rig::metric(
            &admin,
            "vitalsd_frames_total",
            "device=\"ox\",result=\"bad\"",
        )
    };
    // One frame at a time: a frame's two Observations pair up by their receipt time.
    first.send(&ingest::nonin_line(ingest::frame(0)));
    frames(1);
    first.send(&ingest::nonin_line(ingest::frame(1)));
    frames(2);
    assert_eq!(bad(), Some(0.0));

    // Half a frame, then the adapter is pulled: the device side and its name go away.
    first.send(b"SPO2=09");
    // Nothing observable says the daemon read the half frame: give it the time to.
    std::thread::sleep(Duration::from_millis(300));
    drop(first);
    std::fs::remove_file(&link).expect("unlink");
    d.wait_log("serial device disconnected", Duration::from_secs(10));
    rig::wait_for(
        "the half frame counted as garbled",
        Duration::from_secs(5),
        || bad() == Some(1.0),
    );

    // Replugged at the same path: the next frame starts clean.
    let second = Port::new();
    std::os::unix::fs::symlink(&second.path, &link).expect("symlink");
    rig::wait_for("port reopened", Duration::from_secs(40), || {
        d.log().matches("serial port open").count() >= 2
    });
    second.send(&ingest::nonin_line(ingest::frame(2)));
    frames(3);
    second.send(&ingest::nonin_line(ingest::frame(3)));
    frames(4);
    std::thread::sleep(Duration::from_millis(300));
    let t = fhir.tally();
    let want: Vec<_> = (0..4).map(ingest::frame).collect();
    assert_eq!(t.frames.keys().copied().collect::<Vec<_>>(), want, "{t:?}");
    assert!(t.frames.values().all(|n| *n == 1), "{t:?}");
    assert!(t.unpaired.is_empty() && t.recreated.is_empty(), "{t:?}");
    assert_eq!(bad(), Some(1.0));
    let (status, _) = d.stop();
    assert!(status.success(), "{status:?}");
}
