//! Plaintext refused by check-config unless `allow_insecure` (then logged at WARN), and a
//! FHIR server redirecting elsewhere never gets the Bundle.

use super::*;

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

/// The daemon with the `hl7v2` monitor `mon` listening on loopback and `sink`, started.
fn monitor_to(dir: &Path, sink: Sink) -> Running {
    DaemonBuilder::new(dir)
        .device(Device::mllp("mon", "hl7v2", "exam-5", "127.0.0.1:0"))
        .sink(sink)
        .start()
}

#[test]
fn check_config_refuses_each_plaintext_case_and_accepts_it_with_allow_insecure() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    // Written by hand: these configs and the line numbers in their problems are under test.
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
    let d = monitor_to(
        tmp.path(),
        Sink::mllp("engine", "192.0.2.1:6661").line("allow_insecure = true"),
    );
    d.wait_log("MLLP listener ready", WAIT);
    let log = d.plain_log();
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
    let d = monitor_to(
        tmp.path(),
        Sink::fhir("ehr", &format!("http://{}/fhir", redirecting.addr)).line("timeout = \"2s\""),
    );
    d.wait_log("MLLP listener ready", WAIT);
    let addr = mllp_addr(&d.log()).expect("the MLLP listener's address in the log");
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
    let log = d.plain_log();
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
