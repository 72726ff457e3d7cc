//! Transport security through the real binary (docs/network-security.md): who may send to an
//! MLLP listener and for how long, plaintext to another machine refused by `check-config`
//! unless `allow_insecure = true` (then a WARN at every start), and a FHIR server's redirect
//! never followed.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{wait_outbox, Daemon};
use vitalsd::decode::hl7v2::{mllp_frame, parse_ack, AckCode};

const WAIT: Duration = Duration::from_secs(15);

/// A one-SpO2 ORU with control id `id`.
fn oru(id: &str) -> Vec<u8> {
    let t = "20240315100000+0100";
    mllp_frame(
        format!(
            "MSH|^~\\&|MON|WARD|EHR|CLINIC_A|{t}||ORU^R01^ORU_R01|{id}|P|2.6\r\
             PID|||MRN777^^^CLINIC_A^MR\r\
             OBR|1|{id}|{id}|182777000^monitoring of patient^SCT|||{t}\r\
             OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.2.1.1|97|262688^MDC_DIM_PERCENT^MDC|||||R|||{t}\r"
        )
        .as_bytes(),
    )
}

/// The log without colour codes.
fn plain(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn listen_addr(log: &str) -> SocketAddr {
    let log = plain(log);
    let line = log
        .lines()
        .find(|l| l.contains("MLLP listener ready"))
        .expect("ready line");
    let at = line.find("listen=").expect("listen=") + "listen=".len();
    line[at..]
        .split_whitespace()
        .next()
        .and_then(|a| a.parse().ok())
        .expect("an address")
}

/// A blocking connection to `to` from the loopback source address `from`.
fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let s = rt.block_on(async {
        let sock = tokio::net::TcpSocket::new_v4().expect("socket");
        sock.bind(format!("{from}:0").parse().expect("addr"))
            .expect("bind the source address");
        sock.connect(to).await.expect("connect")
    });
    let s = s.into_std().expect("std stream");
    s.set_nonblocking(false).expect("blocking");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    s
}

/// Sends one message and reads the answer: `Some(code)`, or `None` when the listener closed
/// the connection without answering.
fn send(s: &mut TcpStream, frame: &[u8]) -> Option<AckCode> {
    if s.write_all(frame).is_err() {
        return None;
    }
    let mut got = Vec::new();
    let mut b = [0u8; 1024];
    while !got.ends_with(&[0x1c, 0x0d]) {
        match s.read(&mut b) {
            Ok(0) | Err(_) => return None,
            Ok(n) => got.extend_from_slice(&b[..n]),
        }
    }
    let ack = parse_ack(&got[1..got.len() - 2]).expect("an HL7 ACK");
    Some(ack.code)
}

/// Whether the listener closed `s` (EOF or reset) within `within`, without a byte of answer.
fn closed_unanswered(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).expect("timeout");
    let mut b = [0u8; 64];
    match s.read(&mut b) {
        Ok(n) => n == 0,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

struct Site {
    tmp: tempfile::TempDir,
    config: PathBuf,
    outbox: PathBuf,
}

/// One `hl7v2` device listening on loopback with `mllp_extra` keys, a `reading` file outbox.
fn site(mllp_extra: &str) -> Site {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (data, outbox) = (tmp.path().join("data"), tmp.path().join("outbox"));
    let cfg = format!(
        "[daemon]\ndata_dir = {data:?}\nadmin_listen = \"\"\nshutdown_timeout = \"5s\"\n\n\
         [[device]]\nid = \"ward-monitor\"\ndriver = \"hl7v2\"\nroom = \"exam-5\"\n\
         mllp = {{ listen = \"127.0.0.1:0\"{mllp_extra} }}\n\n\
         [[sink]]\nid = \"outbox\"\ntype = \"file\"\ndir = {outbox:?}\nformat = \"reading\"\n"
    );
    let config = tmp.path().join("vitalsd.toml");
    std::fs::write(&config, cfg).expect("config");
    Site {
        tmp,
        config,
        outbox,
    }
}

#[test]
fn strangers_and_idle_sockets_over_the_cap_are_refused_while_an_allowed_monitor_gets_aa() {
    let site = site(", allow = [\"127.0.0.1/32\", \"127.0.0.3/32\"], max_connections_per_peer = 2");
    let d = Daemon::start(&site.config, &site.tmp.path().join("daemon.log"));
    d.wait_log("MLLP listener ready", WAIT);
    let addr = listen_addr(&d.log());

    // 127.0.0.2 is not allowed: closed without an answer, nothing charted.
    let mut stranger = connect_from("127.0.0.2", addr);
    assert_eq!(send(&mut stranger, &oru("STRANGER-1")), None);
    d.wait_log("MLLP connection refused", WAIT);
    let log = plain(&d.log());
    assert!(
        log.lines().any(|l| l.contains("MLLP connection refused")
            && l.contains("peer=127.0.0.2")
            && l.contains("WARN")),
        "{log}"
    );
    // A second try within the minute is refused too but not logged again.
    let mut again = connect_from("127.0.0.2", addr);
    assert_eq!(send(&mut again, &oru("STRANGER-2")), None);

    // 127.0.0.3 holds its two idle sockets; a third from it is refused.
    let _idle1 = connect_from("127.0.0.3", addr);
    let _idle2 = connect_from("127.0.0.3", addr);
    std::thread::sleep(Duration::from_millis(300));
    let mut third = connect_from("127.0.0.3", addr);
    assert!(closed_unanswered(&mut third, WAIT), "third socket refused");

    // The allowed monitor is answered and charted.
    let mut monitor = connect_from("127.0.0.1", addr);
    assert_eq!(send(&mut monitor, &oru("MON-1")), Some(AckCode::AA));
    let lines = wait_outbox(&site.outbox, 1, WAIT);
    assert_eq!(lines.len(), 1, "only the monitor's reading: {lines:?}");
    std::thread::sleep(Duration::from_millis(300));
    let log = plain(&d.log());
    assert_eq!(
        log.matches("peer=127.0.0.2").count(),
        1,
        "one WARN per peer per minute: {log}"
    );
    assert!(!log.contains("MRN777"), "no patient id in the log");
    drop(d);
}

#[test]
fn a_sender_trickling_one_byte_at_a_time_is_cut_at_the_message_deadline() {
    let site = site(", message_timeout = \"2s\", idle_timeout = \"60s\"");
    let d = Daemon::start(&site.config, &site.tmp.path().join("daemon.log"));
    d.wait_log("MLLP listener ready", WAIT);
    let addr = listen_addr(&d.log());
    let mut s = connect_from("127.0.0.1", addr);
    s.set_read_timeout(Some(Duration::from_millis(1)))
        .expect("timeout");
    let frame = oru("SLOW-1");
    let started = Instant::now();
    let mut cut = None;
    // A byte every 250 ms: the whole frame would take over a minute.
    for b in &frame {
        if s.write_all(&[*b]).is_err() {
            cut = Some(started.elapsed());
            break;
        }
        let mut one = [0u8; 16];
        match s.read(&mut one) {
            Ok(0) => {
                cut = Some(started.elapsed());
                break;
            }
            Ok(_) => panic!("an answer to a message that never ended"),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => {
                cut = Some(started.elapsed());
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(250));
        assert!(started.elapsed() < Duration::from_secs(20), "never cut");
    }
    let cut = cut.expect("the connection was cut");
    assert!(
        cut >= Duration::from_millis(1900) && cut < Duration::from_secs(8),
        "{cut:?}"
    );
    d.wait_log("not complete within message_timeout", WAIT);
    // A whole message afterwards is served.
    let mut s = connect_from("127.0.0.1", addr);
    assert_eq!(send(&mut s, &oru("FAST-1")), Some(AckCode::AA));
    drop(d);
}

fn check_config(dir: &Path, name: &str, toml: &str) -> (bool, String) {
    let path = dir.join(name);
    std::fs::write(&path, toml).expect("config");
    let out = Command::new(env!("CARGO_BIN_EXE_vitalsd"))
        .env(support::KEY_ENV, support::store_key_file())
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .expect("run vitalsd");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn secret(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, "s3cret").expect("secret");
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    p
}

#[test]
fn check_config_refuses_each_plaintext_case_and_accepts_it_with_allow_insecure() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let head = format!(
        "[daemon]\ndata_dir = {:?}\nadmin_listen = \"\"\n\n\
         [[device]]\nid = \"ox\"\ndriver = \"nonin-ascii\"\nroom = \"exam-1\"\nserial = {{ path = \"/dev/ttyUSB0\" }}\n\n",
        dir.join("data")
    );
    let token = secret(dir, "token");
    let pw = secret(dir, "mqtt.pass");
    // (name, table text ending where `allow_insecure = true` may go, key in the problem)
    let cases = [
        (
            "fhir-bearer",
            format!(
                "[[sink]]\nid = \"ehr\"\ntype = \"fhir\"\nbase_url = \"http://ehr.clinic.example/fhir\"\ntoken_file = {token:?}\n"
            ),
            "sink[0].base_url",
        ),
        (
            "mllp",
            "[[sink]]\nid = \"engine\"\ntype = \"hl7-mllp\"\naddress = \"engine.clinic.example:6661\"\n"
                .to_string(),
            "sink[0].address",
        ),
        (
            "mqtt-sink",
            "[[sink]]\nid = \"region\"\ntype = \"mqtt\"\ntopic = \"vitals/{room}\"\nurl = \"mqtt://broker.region.example\"\n"
                .to_string(),
            "sink[0].url",
        ),
        (
            "mqtt-password",
            format!(
                "[[sink]]\nid = \"out\"\ntype = \"file\"\ndir = {:?}\n\n[mqtt]\nurl = \"mqtt://broker.clinic.example\"\nusername = \"vitalsd\"\npassword_file = {pw:?}\n",
                dir.join("outbox")
            ),
            "mqtt.url",
        ),
    ];
    for (name, table, key) in &cases {
        let (ok, text) = check_config(dir, &format!("{name}.toml"), &format!("{head}{table}"));
        assert!(!ok, "{name}: refused\n{text}");
        assert!(
            text.lines().any(|l| l.contains(key)
                && l.contains("(line ")
                && l.contains("unencrypted")
                && l.contains("allow_insecure = true")),
            "{name}: {text}"
        );
        let (ok, text) = check_config(
            dir,
            &format!("{name}-insecure.toml"),
            &format!("{head}{table}allow_insecure = true\n"),
        );
        assert!(ok, "{name}: accepted with allow_insecure\n{text}");
        assert!(
            text.lines()
                .any(|l| l.starts_with("warning:") && l.contains(key) && l.contains("unencrypted")),
            "{name}: {text}"
        );
    }

    // An OAuth token endpoint over http to another machine: no escape hatch.
    let client = secret(dir, "client.secret");
    let oauth = |url: &str| {
        format!(
            "{head}[[sink]]\nid = \"ehr\"\ntype = \"fhir\"\nbase_url = \"https://ehr.clinic.example/fhir\"\nallow_insecure = true\n\n\
             [sink.oauth]\ntoken_url = \"{url}\"\nclient_id = \"vitalsd\"\nclient_secret_file = {client:?}\n"
        )
    };
    let (ok, text) = check_config(
        dir,
        "oauth.toml",
        &oauth("http://auth.clinic.example/token"),
    );
    assert!(!ok, "{text}");
    assert!(
        text.contains("sink[0].oauth.token_url (line ") && text.contains("https://"),
        "{text}"
    );
    let (ok, text) = check_config(dir, "oauth-ok.toml", &oauth("http://127.0.0.1:9000/token"));
    assert!(ok, "{text}");

    // A listener open to the network without an allow list.
    let (ok, text) = check_config(
        dir,
        "listener.toml",
        &format!(
            "[daemon]\ndata_dir = {:?}\nadmin_listen = \"\"\n\n\
             [[device]]\nid = \"mon\"\ndriver = \"hl7v2\"\nroom = \"exam-5\"\nmllp = {{ listen = \"0.0.0.0:2575\" }}\n\n\
             [[sink]]\nid = \"out\"\ntype = \"file\"\ndir = {:?}\n",
            dir.join("data"),
            dir.join("outbox")
        ),
    );
    assert!(!ok, "{text}");
    assert!(
        text.contains("device[0].mllp.allow (line 9)") && text.contains("allow = ["),
        "{text}"
    );
}

#[test]
fn allow_insecure_is_logged_at_warn_when_the_daemon_starts() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = format!(
        "[daemon]\ndata_dir = {:?}\nadmin_listen = \"\"\nshutdown_timeout = \"5s\"\n\n\
         [[device]]\nid = \"mon\"\ndriver = \"hl7v2\"\nroom = \"exam-5\"\nmllp = {{ listen = \"127.0.0.1:0\" }}\n\n\
         [[sink]]\nid = \"engine\"\ntype = \"hl7-mllp\"\naddress = \"192.0.2.1:6661\"\nallow_insecure = true\n",
        tmp.path().join("data")
    );
    let path = tmp.path().join("vitalsd.toml");
    std::fs::write(&path, cfg).expect("config");
    let d = Daemon::start(&path, &tmp.path().join("daemon.log"));
    d.wait_log("MLLP listener ready", WAIT);
    let log = plain(&d.log());
    assert!(
        log.lines().any(|l| l.contains("WARN")
            && l.contains("sink[0].address")
            && l.contains("allow_insecure = true")
            && l.contains("192.0.2.1")),
        "{log}"
    );
    drop(d);
}

/// A plain HTTP listener on loopback that answers every request with `answer` and counts
/// the connections it accepted.
struct Http {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
}

fn http_listener(answer: impl Fn() -> String + Send + 'static) -> Http {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            count.fetch_add(1, Ordering::SeqCst);
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut got = Vec::new();
            let mut b = [0u8; 8192];
            // Read the head and the body its Content-Length announces.
            loop {
                match s.read(&mut b) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&b[..n]),
                }
                let text = String::from_utf8_lossy(&got).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len = text[..end]
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if got.len() >= end + 4 + len {
                        break;
                    }
                }
            }
            let _ = s.write_all(answer().as_bytes());
        }
    });
    Http { addr, connections }
}

#[test]
fn a_fhir_server_redirecting_elsewhere_never_sends_the_bundle_there() {
    let elsewhere = http_listener(|| {
        "HTTP/1.1 200 OK\r\ncontent-type: application/fhir+json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}".to_string()
    });
    let target = format!("http://{}/fhir", elsewhere.addr);
    let redirecting = http_listener(move || {
        format!(
            "HTTP/1.1 307 Temporary Redirect\r\nlocation: {target}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        )
    });
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = format!(
        "[daemon]\ndata_dir = {:?}\nadmin_listen = \"\"\nshutdown_timeout = \"5s\"\n\n\
         [[device]]\nid = \"mon\"\ndriver = \"hl7v2\"\nroom = \"exam-5\"\nmllp = {{ listen = \"127.0.0.1:0\" }}\n\n\
         [[sink]]\nid = \"ehr\"\ntype = \"fhir\"\nbase_url = \"http://{}/fhir\"\ntimeout = \"2s\"\n",
        tmp.path().join("data"),
        redirecting.addr
    );
    let path = tmp.path().join("vitalsd.toml");
    std::fs::write(&path, cfg).expect("config");
    let d = Daemon::start(&path, &tmp.path().join("daemon.log"));
    d.wait_log("MLLP listener ready", WAIT);
    let addr = listen_addr(&d.log());
    let mut monitor = connect_from("127.0.0.1", addr);
    assert_eq!(send(&mut monitor, &oru("REDIR-1")), Some(AckCode::AA));
    d.wait_log("FHIR server redirected; not followed", WAIT);
    // The metadata check and at least one POST reached the redirecting server...
    let until = Instant::now() + WAIT;
    while redirecting.connections.load(Ordering::SeqCst) < 2 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(redirecting.connections.load(Ordering::SeqCst) >= 2);
    // ...and nothing ever reached the address it pointed to.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(elsewhere.connections.load(Ordering::SeqCst), 0);
    let log = plain(&d.log());
    assert!(
        log.contains(&format!(
            "the server redirected to http://{}",
            elsewhere.addr
        )) && log.contains("set the URL to the final address"),
        "{log}"
    );
    assert!(!log.contains("MRN777"), "no patient id in the log");
    drop(d);
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is needed for the TLS tests (scripts/test installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A private CA (`ca.pem`) and, issued by it, `server.pem`/`server.key` for localhost and
/// `client.pem`/`client.key` for a monitor.
fn make_pki(d: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let req = |args: &[&str]| openssl(d, &[&["req"][..], &ec, args].concat());
    req(&[
        "-x509",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
    ]);
    for (name, ext) in [
        (
            "server",
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        ),
        (
            "client",
            "subjectAltName=DNS:monitor.clinic.example\nbasicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
        ),
    ] {
        req(&[
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={name}"),
        ]);
        std::fs::write(d.join(format!("{name}.cnf")), ext).expect("ext");
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{name}.pem"),
                "-days",
                "2",
                "-extfile",
                &format!("{name}.cnf"),
            ],
        );
        std::fs::set_permissions(
            d.join(format!("{name}.key")),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .expect("chmod");
    }
}

/// Sends one message over TLS (trusting `ca.pem`, presenting `client.pem` when `with_cert`):
/// the answer's code, or `None` when the handshake or the exchange failed.
async fn send_tls(d: &Path, addr: SocketAddr, with_cert: bool, frame: &[u8]) -> Option<AckCode> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (cert, key) = (d.join("client.pem"), d.join("client.key"));
    let client = vitalsd::tls::client_config(
        Some(&d.join("ca.pem")),
        with_cert.then_some((cert.as_path(), key.as_path())),
    )
    .expect("client config");
    let connector = tokio_rustls::TlsConnector::from(client);
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut s = connector.connect(name, tcp).await.ok()?;
    s.write_all(frame).await.ok()?;
    let mut got = Vec::new();
    let mut b = [0u8; 1024];
    while !got.ends_with(&[0x1c, 0x0d]) {
        let n = tokio::time::timeout(WAIT, s.read(&mut b))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        got.extend_from_slice(&b[..n]);
    }
    Some(parse_ack(&got[1..got.len() - 2]).expect("an HL7 ACK").code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_listener_serves_monitors_with_a_client_certificate_and_nobody_else() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    make_pki(d);
    let site = site(&format!(
        ", tls = {{ cert_file = {:?}, key_file = {:?}, client_ca_file = {:?} }}",
        d.join("server.pem"),
        d.join("server.key"),
        d.join("ca.pem")
    ));
    let daemon = Daemon::start(&site.config, &site.tmp.path().join("daemon.log"));
    daemon.wait_log("MLLP listener ready", WAIT);
    let addr = listen_addr(&daemon.log());

    assert_eq!(
        send_tls(d, addr, true, &oru("TLS-1")).await,
        Some(AckCode::AA)
    );
    assert_eq!(send_tls(d, addr, false, &oru("TLS-2")).await, None);
    let plain_tcp = tokio::task::spawn_blocking(move || {
        let mut s = connect_from("127.0.0.1", addr);
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        send(&mut s, &oru("PLAIN-1"))
    })
    .await
    .expect("plain client");
    assert_eq!(plain_tcp, None, "no answer over plain TCP");
    let lines = wait_outbox(&site.outbox, 1, WAIT);
    std::thread::sleep(Duration::from_millis(500));
    let lines_after = support::outbox_lines(&site.outbox);
    assert_eq!(lines_after.len(), lines.len(), "only TLS-1 charted");
    assert_eq!(lines.len(), 1);
    drop(daemon);
}
