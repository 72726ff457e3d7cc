//! TLS: a private CA and a `localhost` certificate made with the openssl CLI.

use super::receiver::*;
use super::*;

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn the_sink_speaks_mllp_over_tls_trusting_the_configured_ca() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        d,
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=test-ca",
            ],
        ]
        .concat(),
    );
    openssl(
        d,
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "leaf.key",
                "-out",
                "leaf.csr",
                "-subj",
                "/CN=localhost",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        d.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("ext");
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "leaf.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );

    vitalsd::tls::init();
    let certs = vitalsd::tls::load_certs(&d.join("leaf.pem")).expect("leaf");
    let key = vitalsd::tls::load_key(&d.join("leaf.key")).expect("key");
    let server = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let got = Arc::new(Mutex::new(Vec::<Vec<u8>>::new()));
    let g = got.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, g) = (acceptor.clone(), g.clone());
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                // A client that does not trust this server fails the handshake: nothing to do.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.ends_with(&[0x1C, 0x0D]) {
                    match tls.read(&mut chunk).await {
                        Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                        _ => return,
                    }
                }
                let msg = buf[1..buf.len() - 2].to_vec();
                let id = msh10(&msg);
                g.lock().expect("lock").push(msg);
                tls.write_all(&ack("AA", &id)).await.expect("write ACK");
                tls.flush().await.expect("flush");
                // Keep the session open until the client is done.
                let _ = tls.read(&mut chunk).await;
            });
        }
    });

    let mut cfg = sink_config(
        "127.0.0.1:1".parse().expect("addr"),
        Duration::from_secs(5),
        5,
    );
    cfg.address = format!("localhost:{port}");
    cfg.tls = true;
    cfg.ca_file = Some(d.join("ca.pem"));
    let mut s = MllpSink::new(&cfg).expect("TLS sink");
    let r = reading(1);
    assert_eq!(
        s.deliver(std::slice::from_ref(&r)).await,
        vec![Outcome::Delivered]
    );
    let msgs = got.lock().expect("lock").clone();
    assert_eq!(msgs.len(), 1);
    assert_eq!(check_layout(&msgs[0]).0, r.id.expect("id").to_string());

    // A sink that trusts another CA refuses the server: retried, never delivered.
    openssl(
        d,
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "other.key",
                "-out",
                "other.pem",
                "-days",
                "2",
                "-subj",
                "/CN=other-ca",
            ],
        ]
        .concat(),
    );
    cfg.ca_file = Some(d.join("other.pem"));
    let mut s = MllpSink::new(&cfg).expect("TLS sink");
    let out = s.deliver(&[reading(2)]).await;
    assert!(
        matches!(&out[..], [Outcome::Retry(w)] if w.contains("TLS handshake") && !w.contains("timed out")),
        "{out:?}"
    );
    assert_eq!(
        got.lock().expect("lock").len(),
        1,
        "nothing sent to an untrusted server"
    );
}
