//! A TLS MLLP listener serving monitors with a client certificate and nobody else.

use super::*;

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
        "tls = {{ cert_file = {:?}, key_file = {:?}, client_ca_file = {:?} }}",
        d.join("server.pem"),
        d.join("server.key"),
        d.join("ca.pem")
    ));
    let daemon = Daemon::start(&site.config, &site.tmp.path().join("daemon.log"));
    daemon.wait_log("MLLP listener ready", WAIT);
    let addr = mllp_addr(&daemon.log()).expect("the MLLP listener's address in the log");

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
