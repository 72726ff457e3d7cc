//! HL7 v2.6 ORU^R01 conformance through the real binary: serial devices on pseudo-terminals
//! (a `barcode` scanner, `nonin-ascii` oximeters, `json` devices sending awkward readings) feed
//! an `hl7` file outbox and an `hl7-mllp` sink pointed at a small MLLP engine written here, in
//! hold mode (patient from a scan and from the admin API) and in location mode. Every message
//! from both sinks goes through `tests/hl7/validate.py` (hl7apy strict plus vitalsd's OBX,
//! MSH-10 and escaping checks). Last, an engine answering AE with a patient's MRN and name in
//! MSA-3 and ERR-8: neither reaches the daemon's log, `/api/status`, `/api/dead` or the page.
//!
//! Needs `python3` with `hl7apy` (installed by `scripts/test`); without them the tests fail.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use support::hl7_engine::Engine;
use support::{http, Admin, Daemon, DaemonBuilder, Device, Pty, Sink, AUTH};

const SYSTEM: &str = "urn:oid:2.16.840.1.113883.3.999";

fn ack_aa(id: &str) -> String {
    format!("MSH|^~\\&|EHR|CLINIC_A|VITALSD||20261127120000+0000||ACK^R01^ACK|EHR-{id}|P|2.6\rMSA|AA|{id}\r")
}

// ---------------------------------------------------------------------------------------------
// The validator.

/// Runs `tests/hl7/validate.py` on `input`; panics with its report unless every message passes.
#[track_caller]
fn assert_valid(what: &str, input: &str, args: &[String]) {
    let (code, report) = support::hl7_validate(input, args);
    assert_ne!(code, Some(2), "hl7apy is missing:\n{report}");
    assert!(
        code == Some(0),
        "{what}: validate.py refused:\n{report}\n{}",
        input.replace('\r', "\n")
    );
}

fn expect(specs: &[&str]) -> Vec<String> {
    specs.iter().map(|s| format!("--expect={s}")).collect()
}

/// The messages of `engine` whose OBX-18 (first OBX) is `device`, joined.
fn from_device(msgs: &[String], device: &str) -> (usize, String) {
    let mine: Vec<&String> = msgs
        .iter()
        .filter(|m| {
            m.split('\r')
                .find(|s| s.starts_with("OBX|"))
                .and_then(|s| s.split('|').nth(18))
                == Some(device)
        })
        .collect();
    (mine.len(), mine.iter().map(|m| m.as_str()).collect())
}

/// Every `*.hl7` outbox file in `dir`, concatenated.
fn outbox_text(dir: &Path) -> String {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "hl7"));
    files.sort();
    files
        .iter()
        .map(|f| std::fs::read_to_string(f).expect("read outbox"))
        .collect()
}

fn outbox_count(dir: &Path) -> usize {
    outbox_text(dir).matches("MSH|").count()
}

#[track_caller]
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------------
// Configs and device input.

struct Setup {
    tmp: tempfile::TempDir,
    scanner: Pty,
    ox: Pty,
    json: Pty,
}

impl Setup {
    fn new() -> Setup {
        Setup {
            tmp: tempfile::tempdir().expect("tempdir"),
            scanner: Pty::new(),
            ox: Pty::new(),
            json: Pty::new(),
        }
    }

    fn outbox(&self) -> std::path::PathBuf {
        self.tmp.path().join("outbox")
    }

    /// `mode` is `hold` or `location`; rooms of the oximeter and the json device.
    fn config(&self, mode: &str, ox_room: &str, json_room: &str, engine: SocketAddr) -> Daemon {
        let path = DaemonBuilder::new(self.tmp.path())
            .admin(Admin::Token)
            .patient_mode(mode)
            .device(
                Device::serial("scanner1", "barcode", ox_room, &self.scanner.path)
                    .options(&format!("system = {SYSTEM:?}")),
            )
            .device(
                Device::serial("ox1", "nonin-ascii", ox_room, &self.ox.path)
                    .options("report = \"every\""),
            )
            .device(Device::serial("bp2", "json", json_room, &self.json.path))
            .sink(Sink::file("outbox", &self.outbox(), "hl7"))
            .sink(
                Sink::mllp("engine", &engine.to_string())
                    .line("ack_timeout = \"2s\"")
                    .line("sending_facility = \"CLINIC_A\"")
                    .line("receiving_application = \"EHR\""),
            )
            .write();
        Daemon::start(&path, &self.tmp.path().join("log"))
    }

    /// Three oximeter lines (six readings: SpO2 and pulse rate each) and three awkward json
    /// readings: a blood pressure outside the
    /// soft range, one with delimiters in a flag and an absent mean, a temperature `37.0`.
    fn send_readings(&self) {
        for line in [
            "SPO2=097 HR=072\r\n",
            "SPO2=096 HR=075\r\n",
            "SPO2=098 HR=070\r\n",
        ] {
            self.ox.send(line.as_bytes());
            std::thread::sleep(Duration::from_millis(30));
        }
        let lines = [
            r#"{"kind":"blood_pressure","values":[{"name":"systolic","value":260,"unit":"mm[Hg]"},{"name":"diastolic","value":79,"unit":"mm[Hg]"}]}"#,
            r#"{"kind":"blood_pressure","values":[{"name":"systolic","value":118,"unit":"mm[Hg]"},{"name":"diastolic","value":79,"unit":"mm[Hg]"},{"name":"mean","value":null,"absent":"not-a-number","unit":"mm[Hg]"}],"flags":["device:cuff|loose^x~y\\z&w"]}"#,
            r#"{"kind":"body_temperature","values":[{"name":"temperature","value":37.0,"unit":"Cel"}]}"#,
        ];
        for l in lines {
            self.json.send(format!("{l}\n").as_bytes());
            std::thread::sleep(Duration::from_millis(30));
        }
    }
}

fn status_json(addr: &str) -> serde_json::Value {
    let (st, body) = http(addr, "GET", "/api/status", &[], "");
    assert_eq!(st, 200, "{body}");
    serde_json::from_str(&body).expect("status JSON")
}

fn room_has_patient(addr: &str, room: &str) -> bool {
    status_json(addr)["rooms"].as_array().is_some_and(|r| {
        r.iter()
            .any(|x| x["room"] == room && x["patient"].is_string())
    })
}

// ---------------------------------------------------------------------------------------------

#[test]
fn hold_mode_messages_with_a_scanned_and_an_assigned_patient_pass_strict_validation() {
    let engine = Engine::start(ack_aa);
    let s = Setup::new();
    let d = s.config("hold", "exam-1", "exam-2", engine.addr);
    let addr = d.admin_addr();
    d.wait_log("vitalsd ready", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));

    s.scanner.send(b"MRN0012345\r");
    wait_for("exam-1's patient", || room_has_patient(&addr, "exam-1"));
    let body = r#"{"id":"MRN|77^x&y","system":"https://clinic.example/mrn","by":"ma-jo"}"#;
    let (st, b) = http(&addr, "PUT", "/api/rooms/exam-2/patient", &[AUTH], body);
    assert_eq!(st, 200, "{b}");
    wait_for("exam-2's patient", || room_has_patient(&addr, "exam-2"));
    std::thread::sleep(Duration::from_millis(100));

    s.send_readings();
    wait_for("9 messages at the engine", || engine.messages().len() >= 9);
    wait_for("9 outbox records", || outbox_count(&s.outbox()) >= 9);
    std::thread::sleep(Duration::from_millis(200));

    let msgs = engine.messages();
    assert_eq!(msgs.len(), 9, "each reading once");
    let all: String = msgs.concat();
    assert_valid("MLLP, hold mode", &all, &["--min".into(), "9".into()]);
    let (n, ox) = from_device(&msgs, "ox1");
    assert_eq!(n, 6);
    assert_valid(
        "the scanned patient",
        &ox,
        &expect(&[
            "PID-3.1=MRN0012345",
            "PID-3.4=&2.16.840.1.113883.3.999&ISO",
            "PID-3.5=MR",
            "PID-5.7=U",
            "PV1-3.2=exam-1",
            "OBX-11=F",
        ]),
    );
    let (n, json) = from_device(&msgs, "bp2");
    assert_eq!(n, 3);
    assert_valid(
        "the patient set through the admin API",
        &json,
        &expect(&[
            "PID-3.1=MRN|77^x&y",
            "PID-5.7=U",
            "PV1-3.2=exam-2",
            "OBX-18=bp2",
        ]),
    );
    assert!(
        json.contains(r"NTE|1||device:cuff\F\loose\S\x\R\y\E\z\T\w"),
        "the flag escaped in its NTE: {json:?}"
    );
    assert!(json.contains("|||||X|||"), "the absent mean is an X row");
    assert!(
        json.contains("|A|||F|||"),
        "the out-of-range systolic is abnormal"
    );

    let outbox = outbox_text(&s.outbox());
    assert_eq!(outbox_count(&s.outbox()), 9);
    assert_valid(
        "hl7 outbox, hold mode",
        &outbox,
        &["--min".into(), "9".into()],
    );
    let log = d.log();
    assert!(
        !log.contains("MRN0012345") && !log.contains("MRN|77"),
        "patient ids in the log"
    );
}

#[test]
fn location_mode_messages_carry_the_placeholder_patient_and_pass_strict_validation() {
    let engine = Engine::start(ack_aa);
    let s = Setup::new();
    let long_room = "cardiology-exam-room-12";
    let odd_room = r"|a^b~c\d&e"; // 20 characters escaped: fits PL-2
    let d = s.config("location", long_room, odd_room, engine.addr);
    d.wait_log("vitalsd ready", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));

    s.send_readings();
    wait_for("9 messages at the engine", || engine.messages().len() >= 9);
    wait_for("9 outbox records", || outbox_count(&s.outbox()) >= 9);
    std::thread::sleep(Duration::from_millis(200));

    let msgs = engine.messages();
    assert_eq!(msgs.len(), 9, "each reading once");
    let placeholder = [
        "PID-3.1=VITALSD-UNKNOWN",
        "PID-3.4=VITALSD-NO-PATIENT",
        "PID-3.5=U",
        "PID-5.7=U",
    ];
    let mut args = expect(&placeholder);
    args.extend(["--min".into(), "9".into()]);
    assert_valid("MLLP, location mode", &msgs.concat(), &args);
    let (n, ox) = from_device(&msgs, "ox1");
    assert_eq!(n, 6);
    assert_valid(
        "a room longer than PL-2",
        &ox,
        &expect(&[
            "PV1-3.2=cardiology-exam-room",
            "PV1-3.9=cardiology-exam-room-12",
        ]),
    );
    let (n, json) = from_device(&msgs, "bp2");
    assert_eq!(n, 3);
    assert_valid(
        "delimiters in the room",
        &json,
        &expect(&[r"PV1-3.2=|a^b~c\d&e", "PV1-3.9="]),
    );
    assert_valid(
        "hl7 outbox, location mode",
        &outbox_text(&s.outbox()),
        &args,
    );
}

#[test]
fn patient_data_in_an_engines_error_ack_stays_out_of_the_log_status_and_dead_letters() {
    // An engine that quotes the patient back in MSA-3 and ERR-8 (escaped as ER7 requires),
    // after a first ACK whose MSA-2 is the patient's MRN instead of the message's id.
    let engine = Engine::start(|id| {
        format!(
            "MSH|^~\\&|EHR|CLINIC_A|VITALSD||20261127120000+0000||ACK^R01^ACK|EHR-0|P|2.6\r\
             MSA|AA|MRN0099999 JANE DOE\r\x1c\r\x0b\
             MSH|^~\\&|EHR|CLINIC_A|VITALSD||20261127120000+0000||ACK^R01^ACK|EHR-{id}|P|2.6\r\
             MSA|AE|{id}|No match for DOE\\S\\JANE MRN0099999\r\
             ERR||PID^1^3|204^Unknown key identifier^HL70357|E||||Patient JANE DOE (MRN0099999, born 19800101) not found\r"
        )
    });
    let s = Setup::new();
    let d = s.config("location", "exam-1", "exam-2", engine.addr);
    let addr = d.admin_addr();
    d.wait_log("vitalsd ready", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    s.ox.send(b"SPO2=097 HR=072\r\n");
    wait_for("both readings (SpO2, pulse rate) dead-lettered", || {
        status_json(&addr)["sinks"].as_array().is_some_and(|a| {
            a.iter()
                .any(|x| x["sink"] == "engine" && x["dead"].as_u64() == Some(2))
        })
    });
    std::thread::sleep(Duration::from_millis(200));

    let (_, status) = http(&addr, "GET", "/api/status", &[], "");
    let (_, page) = http(&addr, "GET", "/", &[AUTH], "");
    let (st, dead) = http(&addr, "GET", "/api/dead?sink=engine", &[AUTH], "");
    assert_eq!(st, 200, "{dead}");
    let log = d.log();
    for (place, text) in [
        ("log", &log),
        ("/api/status", &status),
        ("status page", &page),
        ("/api/dead", &dead),
    ] {
        for secret in ["MRN0099999", "JANE", "DOE", "19800101"] {
            assert!(!text.contains(secret), "{secret} in the {place}:\n{text}");
        }
    }
    // The coded reason did reach them (so the checks above look at the right text).
    assert!(
        status.contains("ERR 204 Unknown key identifier"),
        "{status}"
    );
    assert!(dead.contains("ERR 204 Unknown key identifier"), "{dead}");
    assert!(page.contains("ERR 204"), "{page}");
    assert!(
        log.contains("ignoring an ACK for another message"),
        "the mismatched ACK was seen: {log}"
    );
    assert_eq!(engine.messages().len(), 2, "an AE is never resent");
}
