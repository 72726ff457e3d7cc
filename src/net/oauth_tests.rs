//! The shared token source against a local token endpoint: concurrent callers wait for one
//! token request, and clients refused together renew the token once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::*;

/// A token endpoint on loopback answering `tok-<n>` for its n-th request after `delay`; the
/// URL and the request count.
async fn token_endpoint(delay: Duration) -> (String, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let app = axum::Router::new().route(
        "/token",
        axum::routing::post(move || {
            let c = c.clone();
            async move {
                let n = c.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::time::sleep(delay).await;
                axum::Json(
                    serde_json::json!({"access_token": format!("tok-{n}"), "expires_in": 3600}),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/token"), count)
}

/// The client the FHIR sink would build for a plain-http server.
fn http() -> reqwest::Client {
    super::super::http::client(&super::super::http::ClientSettings {
        https: false,
        ca_file: None,
        timeout: Duration::from_secs(5),
    })
    .unwrap()
}

fn source(token_url: &str, dir: &Path) -> Arc<TokenSource> {
    let secret = dir.join("secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    Arc::new(TokenSource::new(&Credentials::OAuth(OAuthSettings {
        token_url: token_url.into(),
        client_id: "vitalsd".into(),
        credential: ClientCredential::SecretFile(secret),
        scope: "system/Observation.write".into(),
    })))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_share_one_token_request() {
    let (url, count) = token_endpoint(Duration::from_millis(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let tokens = source(&url, dir.path());
    let http = http();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (t, h) = (tokens.clone(), http.clone());
        tasks.push(tokio::spawn(async move { t.bearer(&h).await }));
    }
    for t in tasks {
        let got = t.await.unwrap().unwrap().unwrap();
        assert_eq!(got.expose(), "tok-1");
    }
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn clients_refused_together_renew_the_token_once() {
    let (url, count) = token_endpoint(Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let tokens = source(&url, dir.path());
    let http = http();
    // The sink and the lookup both sent tok-1, and both were refused.
    let sink_sent = tokens.bearer(&http).await.unwrap();
    let lookup_sent = tokens.bearer(&http).await.unwrap();
    assert_eq!(count.load(Ordering::SeqCst), 1);
    assert!(tokens.rejected(sink_sent.as_ref()).await);
    let renewed = tokens.bearer(&http).await.unwrap().unwrap();
    assert_eq!(renewed.expose(), "tok-2");
    // The lookup's 401 names the old token: the renewed one is kept and used.
    assert!(tokens.rejected(lookup_sent.as_ref()).await);
    let again = tokens.bearer(&http).await.unwrap().unwrap();
    assert_eq!(again.expose(), "tok-2");
    assert_eq!(count.load(Ordering::SeqCst), 2);
    // A 401 to the current token drops it.
    assert!(tokens.rejected(Some(&again)).await);
    assert_eq!(
        tokens.bearer(&http).await.unwrap().unwrap().expose(),
        "tok-3"
    );
}

#[tokio::test]
async fn without_credentials_nothing_is_sent_and_a_401_is_final() {
    let tokens = TokenSource::new(&Credentials::None);
    let http = http();
    assert_eq!(tokens.bearer(&http).await.unwrap(), None);
    assert!(!tokens.rejected(None).await);
}
