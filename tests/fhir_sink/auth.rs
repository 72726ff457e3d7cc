//! Authentication: a rotated bearer token file reread after a 401, OAuth2 client secret and
//! SMART private-key JWT assertions.

use super::server::*;
use super::*;

#[tokio::test]
async fn a_401_rereads_a_rotated_token_file_and_retries_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ehr.token");
    std::fs::write(&path, "token-aaa\n").unwrap();
    let srv = Srv::default();
    srv.with(|s| s.tokens = Some(vec!["token-aaa".into()]));
    let addr = serve(srv.clone()).await;
    let mut s = sink(addr, FhirAuth::TokenFile(path.clone()));
    assert_eq!(s.deliver(&[hr(1)]).await, vec![Outcome::Delivered]);

    // Rotate: same length, and the old modification time put back, so only the 401 can
    // make the sink look at the file again.
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    std::fs::write(&path, "token-bbb\n").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    srv.with(|s| s.tokens = Some(vec!["token-bbb".into()]));
    assert_eq!(s.deliver(&[hr(2)]).await, vec![Outcome::Delivered]);
    let seen = srv.with(|s| s.auth_headers.clone());
    assert_eq!(
        seen,
        vec![
            Some("Bearer token-aaa".into()),
            Some("Bearer token-aaa".into()),
            Some("Bearer token-bbb".into())
        ]
    );
    // A token nobody accepts: retried (the credentials are wrong, not the reading).
    srv.with(|s| s.tokens = Some(vec!["other".into()]));
    let out = s.deliver(&[hr(3)]).await;
    assert!(
        matches!(&out[..], [Outcome::Retry(r)] if r.contains("401")),
        "{out:?}"
    );
}

fn oauth_cfg(addr: SocketAddr, credential: OAuthCredential) -> FhirAuth {
    FhirAuth::OAuth(OAuthConfig {
        token_url: format!("http://{addr}/token"),
        client_id: "vitalsd-east".into(),
        credential,
        scope: "system/Observation.write".into(),
    })
}

#[tokio::test]
async fn oauth_client_secret_gets_a_token_once_and_renews_it_after_a_401() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("client.secret");
    std::fs::write(&secret, "s3cret-value\n").unwrap();
    let srv = Srv::default();
    let addr = serve(srv.clone()).await;
    srv.with(|s| {
        s.tokens = Some(Vec::new());
        s.oauth = Some(OAuthCheck {
            client_id: "vitalsd-east".into(),
            secret: Some("s3cret-value".into()),
            ec_public: None,
            kid: None,
            token_url: format!("http://{addr}/token"),
            issued: 0,
        });
    });
    let mut s = sink(addr, oauth_cfg(addr, OAuthCredential::SecretFile(secret)));
    assert!(!format!("{s:?}").contains("s3cret"));
    assert_eq!(s.deliver(&[hr(1)]).await, vec![Outcome::Delivered]);
    assert_eq!(s.deliver(&[hr(2)]).await, vec![Outcome::Delivered]);
    assert_eq!(srv.with(|s| s.token_forms.len()), 1, "token cached");
    assert!(!format!("{s:?}").contains("access-1"));
    // The server forgets its tokens: one 401, a new token, delivered.
    srv.with(|s| s.tokens = Some(Vec::new()));
    assert_eq!(s.deliver(&[hr(3)]).await, vec![Outcome::Delivered]);
    assert_eq!(srv.with(|s| s.token_forms.len()), 2);
    assert_eq!(
        srv.with(|s| s.auth_headers.last().cloned().flatten()),
        Some("Bearer access-2".into())
    );
}

#[tokio::test]
async fn oauth_private_key_jwt_assertion_is_signed_and_verified_by_the_server() {
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P384_SHA384_FIXED_SIGNING};
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("client.pem");
    std::fs::write(
        &key_file,
        format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            STANDARD.encode(pkcs8.as_ref())
        ),
    )
    .unwrap();
    let srv = Srv::default();
    let addr = serve(srv.clone()).await;
    srv.with(|s| {
        s.tokens = Some(Vec::new());
        s.oauth = Some(OAuthCheck {
            client_id: "vitalsd-east".into(),
            secret: None,
            ec_public: Some(pair.public_key().as_ref().to_vec()),
            kid: Some("key-2026".into()),
            token_url: format!("http://{addr}/token"),
            issued: 0,
        });
    });
    let cred = OAuthCredential::PrivateKeyJwt {
        key_file,
        key_id: Some("key-2026".into()),
    };
    let mut s = sink(addr, oauth_cfg(addr, cred));
    assert_eq!(
        s.deliver(&[hr(1), hr(2)]).await,
        vec![Outcome::Delivered; 2]
    );
    srv.with(|s| {
        assert_eq!(s.token_forms.len(), 1);
        assert!(!s.token_forms[0].contains_key("client_secret"));
        assert_eq!(s.auth_headers, vec![Some("Bearer access-1".into())]);
    });

    // A key the server does not know: the token request fails, the readings wait.
    let other = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng).unwrap();
    let other_file = dir.path().join("other.pem");
    std::fs::write(
        &other_file,
        format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            STANDARD.encode(other.as_ref())
        ),
    )
    .unwrap();
    let cred = OAuthCredential::PrivateKeyJwt {
        key_file: other_file,
        key_id: Some("key-2026".into()),
    };
    let mut s = sink(addr, oauth_cfg(addr, cred));
    let out = s.deliver(&[hr(3)]).await;
    assert!(
        matches!(&out[..], [Outcome::Retry(r)] if r.contains("invalid_client")),
        "{out:?}"
    );
}
