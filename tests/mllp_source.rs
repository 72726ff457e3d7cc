//! The `mllp` device transport through the real binary: a monitor pushing HL7 v2 ORU^R01
//! over TCP (docs/hl7-inbound.md#mllp-framing), the ACK rules (AA only once durable, AE/AR with ERR), the
//! framing edge cases, a SIGKILL right after an AA, and `hl7v2` over a serial port (no ACK).
//!
//! The daemon listens on `127.0.0.1:0`; the tests read the bound address from its
//! "MLLP listener ready" log line.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use support::{wait_outbox, Daemon, DaemonBuilder, Device, Pty};
use vitalsd::net::hl7::{mllp_frame, parse_ack, Ack, AckCode};

const WAIT: Duration = Duration::from_secs(15);

/// docs/hl7-inbound.md#a-complete-example, segments ending in CR: five readings for patient MRN123456.
const EXAMPLE: &str = "MSH|^~\\&|VITALSD^0012345678ABCDEF^EUI-64|CLINIC_A|EHR|CLINIC_A|20240315103005+0100||ORU^R01^ORU_R01|VD-20240315-000042|P|2.6|||AL|NE||UNICODE UTF-8|||IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO\r\
PID|||MRN123456^^^CLINIC_A^MR||DOE^JANE^^^^^L||19800101|F\r\
PV1||O|CLINIC_A^EXAM1^1\r\
OBR|1|VD-20240315-000042^VITALSD^0012345678ABCDEF^EUI-64|VD-20240315-000042^VITALSD^0012345678ABCDEF^EUI-64|182777000^monitoring of patient^SCT|||20240315102930+0100\r\
OBX|1|NM|150021^MDC_PRESS_BLD_NONINV_SYS^MDC^8480-6^Systolic blood pressure^LN|1.1.1.1|120|266016^MDC_DIM_MMHG^MDC^mm[Hg]^mm[Hg]^UCUM|||||R|||20240315102930+0100||||0012345678ABCDEF^^0012345678ABCDEF^EUI-64\r\
OBX|2|NM|150022^MDC_PRESS_BLD_NONINV_DIA^MDC^8462-4^Diastolic blood pressure^LN|1.1.1.2|80|266016^MDC_DIM_MMHG^MDC^mm[Hg]^mm[Hg]^UCUM|||||R|||20240315102930+0100||||0012345678ABCDEF^^0012345678ABCDEF^EUI-64\r\
OBX|3|NM|150023^MDC_PRESS_BLD_NONINV_MEAN^MDC^8478-0^Mean blood pressure^LN|1.1.1.3|93|266016^MDC_DIM_MMHG^MDC^mm[Hg]^mm[Hg]^UCUM|||||R|||20240315102930+0100||||0012345678ABCDEF^^0012345678ABCDEF^EUI-64\r\
OBX|4|NM|149546^MDC_PULS_RATE_NON_INV^MDC^8867-4^Heart rate^LN|1.1.1.4|72|264864^MDC_DIM_BEAT_PER_MIN^MDC^/min^/min^UCUM|||||R|||20240315102930+0100||||0012345678ABCDEF^^0012345678ABCDEF^EUI-64\r\
OBX|5|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC^59408-5^Oxygen saturation in Arterial blood by Pulse oximetry^LN|1.2.1.1|97|262688^MDC_DIM_PERCENT^MDC^%^%^UCUM|||||R|||20240315102945+0100||||0012345678ABCDEF^^0012345678ABCDEF^EUI-64\r\
OBX|6|NM|188424^MDC_TEMP_ORAL^MDC^8310-5^Body temperature^LN|1.3.1.1|37.0|268192^MDC_DIM_DEGC^MDC^Cel^Cel^UCUM|||||R|||20240315102810+0100||||0012345678ABCDEF^^0012345678ABCDEF^EUI-64\r\
OBX|7|NM|188736^MDC_MASS_BODY_ACTUAL^MDC^29463-7^Body weight^LN|1.4.1.1|72.5|263875^MDC_DIM_KILO_G^MDC^kg^kg^UCUM|||||R|||20240315102500+0100||||0012345678ABCDEF^^0012345678ABCDEF^EUI-64\r";
const EXAMPLE_READINGS: usize = 5;

/// A one-SpO2 ORU with control id `id`, value `spo2`, measured `secs` seconds after 10:00.
fn spo2_oru(id: &str, spo2: u32, secs: u32) -> String {
    let t = format!("2024031510{:02}{:02}+0100", secs / 60 % 60, secs % 60);
    format!(
        "MSH|^~\\&|MON|WARD|EHR|CLINIC_A|{t}||ORU^R01^ORU_R01|{id}|P|2.6\r\
         PID|||MRN777^^^CLINIC_A^MR\r\
         OBR|1|{id}|{id}|182777000^monitoring of patient^SCT|||{t}\r\
         OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.2.1.1|{spo2}|262688^MDC_DIM_PERCENT^MDC|||||R|||{t}\r"
    )
}

/// A test directory with the daemon's config: one `hl7v2` device on `listen`, a `reading`
/// file outbox.
struct Site {
    tmp: tempfile::TempDir,
    config: PathBuf,
    outbox: PathBuf,
}

impl Site {
    fn new(listen: &str) -> Site {
        let tmp = tempfile::tempdir().expect("tempdir");
        let outbox = tmp.path().join("outbox");
        let config = DaemonBuilder::new(tmp.path())
            .device(Device::mllp("ward-monitor", "hl7v2", "exam-5", listen))
            .outbox("reading")
            .write();
        Site {
            tmp,
            config,
            outbox,
        }
    }

    /// Starts the daemon (log file `name`) and returns it with its MLLP address.
    fn start(&self, name: &str) -> (Daemon, SocketAddr) {
        let d = Daemon::start(&self.config, &self.tmp.path().join(name));
        d.wait_log("MLLP listener ready", WAIT);
        let addr = support::mllp_addr(&d.log()).expect("listen= in the log");
        (d, addr)
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect to the MLLP listener");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    s.set_nodelay(true).expect("nodelay");
    s
}

/// Reads one MLLP-framed answer, framing removed.
#[track_caller]
fn read_frame(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut b = [0u8; 1024];
    while !got.ends_with(&[0x1c, 0x0d]) {
        let n = s.read(&mut b).expect("an answer before the timeout");
        assert!(n > 0, "connection closed before an answer");
        got.extend_from_slice(&b[..n]);
    }
    assert_eq!(got.first(), Some(&0x0b), "MLLP start block");
    String::from_utf8(got[1..got.len() - 2].to_vec()).expect("UTF-8 answer")
}

/// Reads one MLLP-framed ACK.
#[track_caller]
fn read_ack(s: &mut TcpStream) -> Ack {
    parse_ack(read_frame(s).as_bytes()).expect("an HL7 ACK")
}

#[track_caller]
fn send_and_ack(s: &mut TcpStream, message: &str) -> Ack {
    s.write_all(&mllp_frame(message.as_bytes())).expect("write");
    read_ack(s)
}

#[track_caller]
fn assert_aa(ack: &Ack, control_id: &str) {
    assert_eq!(ack.code, AckCode::AA, "{ack:?}");
    assert_eq!(ack.acked_control_id, control_id);
    assert!(ack.error.is_none(), "{ack:?}");
}

#[test]
fn the_protocols_example_is_acknowledged_aa_and_its_readings_reach_the_outbox_with_the_pid_3_patient(
) {
    let site = Site::new("127.0.0.1:0");
    let (d, addr) = site.start("log");
    let mut s = connect(addr);
    assert_aa(&send_and_ack(&mut s, EXAMPLE), "VD-20240315-000042");

    let lines = wait_outbox(&site.outbox, EXAMPLE_READINGS, WAIT);
    assert_eq!(lines.len(), EXAMPLE_READINGS);
    let mut kinds: Vec<&str> = lines.iter().filter_map(|r| r["kind"].as_str()).collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        [
            "blood_pressure",
            "body_temperature",
            "body_weight",
            "heart_rate",
            "spo2"
        ]
    );
    for r in &lines {
        assert_eq!(r["patient"]["id"], "MRN123456", "{r}");
        assert_eq!(r["patient"]["system"], "CLINIC_A", "{r}");
        assert_eq!(r["device"]["id"], "ward-monitor");
        assert_eq!(r["room"], "exam-5");
    }
    assert!(
        !d.plain_log().contains("MRN123456"),
        "the patient id reached the log"
    );

    let (status, took) = d.stop();
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(6), "stop took {took:?}");
}

#[test]
fn a_malformed_message_is_answered_with_an_error_ack_and_stores_nothing() {
    let site = Site::new("127.0.0.1:0");
    let (d, addr) = site.start("log");
    let mut s = connect(addr);

    let adt = spo2_oru("BAD-TYPE", 97, 1).replace("ORU^R01^ORU_R01", "ADT^A01^ADT_A01");
    let ack = send_and_ack(&mut s, &adt);
    assert_eq!(
        (ack.code, ack.acked_control_id.as_str()),
        (AckCode::AR, "BAD-TYPE")
    );
    assert_eq!(ack.error.as_ref().map(|e| e.code), Some(200), "{ack:?}");

    let text_value = spo2_oru("BAD-VALUE", 97, 2).replace("|97|", "|ninety|");
    let ack = send_and_ack(&mut s, &text_value);
    assert_eq!(
        (ack.code, ack.acked_control_id.as_str()),
        (AckCode::AE, "BAD-VALUE")
    );
    assert_eq!(ack.error.as_ref().map(|e| e.code), Some(102), "{ack:?}");

    // No MSH-10 to echo: MSA-2 stays empty, the ERR segment says why.
    s.write_all(&mllp_frame(spo2_oru("", 97, 3).as_bytes()))
        .expect("write");
    let raw = read_frame(&mut s);
    assert!(raw.contains("\rMSA|AE|\r"), "{raw:?}");
    assert!(raw.contains("\rERR||MSH^1^10|101^"), "{raw:?}");
    s.write_all(&mllp_frame(b"this is not HL7 at all"))
        .expect("write");
    let raw = read_frame(&mut s);
    assert!(
        raw.starts_with("MSH|^~\\&|") && raw.contains("\rMSA|AE|"),
        "{raw:?}"
    );

    // Delivery is in queue order: once the good reading is out, nothing else was stored.
    assert_aa(&send_and_ack(&mut s, &spo2_oru("GOOD", 95, 4)), "GOOD");
    let lines = wait_outbox(&site.outbox, 1, WAIT);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["values"][0]["value"], 95);
    d.wait_log("HL7 message refused", WAIT);
}

#[test]
fn the_same_message_sent_twice_is_acknowledged_twice_and_stored_once() {
    let site = Site::new("127.0.0.1:0");
    let (_d, addr) = site.start("log");
    let mut s = connect(addr);
    assert_aa(&send_and_ack(&mut s, EXAMPLE), "VD-20240315-000042");
    // A resend after a lost ACK comes on a new connection, unchanged.
    let mut again = connect(addr);
    assert_aa(&send_and_ack(&mut again, EXAMPLE), "VD-20240315-000042");
    assert_aa(&send_and_ack(&mut again, &spo2_oru("LAST", 99, 5)), "LAST");

    let lines = wait_outbox(&site.outbox, EXAMPLE_READINGS + 1, WAIT);
    assert_eq!(lines.len(), EXAMPLE_READINGS + 1, "stored once");
    assert_eq!(lines[EXAMPLE_READINGS]["values"][0]["value"], 99);
}

#[test]
fn two_senders_on_two_connections_are_both_acknowledged_and_stored() {
    let site = Site::new("127.0.0.1:0");
    let (_d, addr) = site.start("log");
    let senders: Vec<_> = [0u32, 1]
        .into_iter()
        .map(|k| {
            std::thread::spawn(move || {
                let mut s = connect(addr);
                for i in 0..10 {
                    let id = format!("S{k}-{i}");
                    let ack = send_and_ack(&mut s, &spo2_oru(&id, 90 + i, k * 100 + i));
                    assert_aa(&ack, &id);
                }
            })
        })
        .collect();
    for t in senders {
        t.join().expect("sender");
    }
    let lines = wait_outbox(&site.outbox, 20, WAIT);
    assert_eq!(lines.len(), 20);
}

#[test]
fn a_frame_split_across_tcp_writes_and_one_after_garbage_are_both_acknowledged() {
    let site = Site::new("127.0.0.1:0");
    let (d, addr) = site.start("log");
    let mut s = connect(addr);
    let frame = mllp_frame(EXAMPLE.as_bytes());
    let (a, rest) = frame.split_at(1);
    let (b, c) = rest.split_at(300);
    for piece in [a, b, c] {
        s.write_all(piece).expect("write");
        // Separate TCP segments: the receiver must wait for the end block.
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_aa(&read_ack(&mut s), "VD-20240315-000042");

    let mut noisy = b"\r\nnoise on the line\x1c\r".to_vec();
    noisy.extend(mllp_frame(spo2_oru("AFTER-NOISE", 96, 6).as_bytes()));
    s.write_all(&noisy).expect("write");
    assert_aa(&read_ack(&mut s), "AFTER-NOISE");
    d.wait_log("MLLP bytes skipped", WAIT);
    let lines = wait_outbox(&site.outbox, EXAMPLE_READINGS + 1, WAIT);
    assert_eq!(lines.len(), EXAMPLE_READINGS + 1);
}

#[test]
fn an_acknowledged_message_survives_sigkill_and_is_delivered_once_after_restart() {
    // The kill only proves something when it lands before the sink wrote the readings:
    // try a few times and require that it did at least once.
    let mut killed_before_delivery = 0;
    for round in 0..5 {
        let site = Site::new("127.0.0.1:0");
        let (d, addr) = site.start("log1");
        let mut s = connect(addr);
        assert_aa(&send_and_ack(&mut s, EXAMPLE), "VD-20240315-000042");
        drop(d); // SIGKILL right after the AA
        if support::outbox_lines(&site.outbox).is_empty() {
            killed_before_delivery += 1;
        }

        let (_d, _) = site.start("log2");
        let lines = wait_outbox(&site.outbox, EXAMPLE_READINGS, WAIT);
        assert!(lines.iter().all(|r| r["patient"]["id"] == "MRN123456"));
        let mut ids: Vec<&str> = lines.iter().filter_map(|r| r["id"].as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(
            ids.len(),
            EXAMPLE_READINGS,
            "round {round}: each reading once"
        );
        if killed_before_delivery >= 2 {
            return;
        }
    }
    assert!(killed_before_delivery > 0, "every kill came after delivery");
}

#[test]
fn a_listen_address_in_use_stops_start_up_with_an_error_naming_the_key() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let site = Site::new(&taken.local_addr().expect("addr").to_string());
    let mut d = Daemon::start(&site.config, &site.tmp.path().join("log"));
    let until = std::time::Instant::now() + WAIT;
    let status = loop {
        if let Some(st) = d.child.try_wait().expect("wait") {
            break st;
        }
        assert!(std::time::Instant::now() < until, "daemon kept running");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success());
    assert!(
        d.plain_log().contains("device[0].mllp.listen"),
        "{}",
        d.log()
    );
}

#[test]
fn hl7v2_over_a_serial_port_is_stored_and_nothing_is_answered() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let outbox = tmp.path().join("outbox");
    let mut pty = Pty::new();
    let cfg_path = DaemonBuilder::new(tmp.path())
        .patient_mode("location")
        .device(Device::serial("monitor", "hl7v2", "exam-5", &pty.path))
        .outbox("reading")
        .write();

    // `vitalsd simulate` writes what a monitor sends on its serial port.
    let wire = tmp.path().join("wire.bin");
    std::fs::write(&wire, b"").expect("wire file");
    let sim = std::process::Command::new(env!("CARGO_BIN_EXE_vitalsd"))
        .env(crate::support::KEY_ENV, crate::support::store_key_file())
        .args([
            "simulate", "hl7v2", "--every", "1s", "--count", "2", "--serial",
        ])
        .arg(&wire)
        .output()
        .expect("simulate");
    assert!(sim.status.success(), "{sim:?}");
    let bytes = std::fs::read(&wire).expect("wire");
    assert_eq!(
        bytes.iter().filter(|&&b| b == 0x0b).count(),
        2,
        "two frames"
    );

    let d = Daemon::start(&cfg_path, &tmp.path().join("log"));
    d.wait_log("serial port open", WAIT);
    pty.send(&bytes);
    let lines = wait_outbox(&outbox, 8, WAIT);
    assert_eq!(lines.len(), 8, "4 readings per simulated spot check");
    assert!(lines.iter().all(|r| r["device"]["id"] == "monitor"));

    nix::fcntl::fcntl(
        &pty.master,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .expect("nonblocking");
    let mut b = [0u8; 64];
    match pty.master.read(&mut b) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the serial transport answered something: {other:?}"),
    }
}
