//! The test FHIR server: transaction Bundles with conditional create, OperationOutcomes,
//! scripted failures, bearer and OAuth2 token checks (client secret and ES384 assertions).

use super::*;

/// A failure the server gives before processing the next transaction.
pub(crate) enum Scripted {
    Status(u16, Option<&'static str>),
    Hang(Duration),
    Huge,
}

#[derive(Default)]
pub(crate) struct Inner {
    /// Observations stored, by identifier value (a count > 1 is a duplicate).
    pub(crate) stored: BTreeMap<String, u32>,
    pub(crate) bundles: Vec<Json>,
    pub(crate) post_times: Vec<Instant>,
    pub(crate) script: VecDeque<Scripted>,
    /// Entries whose device id is this fail the whole transaction with 400.
    pub(crate) bad_device: Option<String>,
    /// Bearer tokens the server accepts (`None`: no authentication).
    pub(crate) tokens: Option<Vec<String>>,
    pub(crate) auth_headers: Vec<Option<String>>,
    pub(crate) token_forms: Vec<BTreeMap<String, String>>,
    pub(crate) oauth: Option<OAuthCheck>,
    /// Delay before each transaction is processed.
    pub(crate) delay: Duration,
    /// Do not keep the received Bundles (benchmark).
    pub(crate) skip_bundles: bool,
    /// Every entry of every transaction processed, by identifier value (a resend counts).
    pub(crate) received: BTreeMap<String, u32>,
    /// Transactions being processed now, and the most at once.
    pub(crate) active: u32,
    pub(crate) most_active: u32,
}

pub(crate) struct OAuthCheck {
    pub(crate) client_id: String,
    pub(crate) secret: Option<String>,
    /// Uncompressed P-384 public key for ES384 assertions.
    pub(crate) ec_public: Option<Vec<u8>>,
    pub(crate) kid: Option<String>,
    pub(crate) token_url: String,
    pub(crate) issued: u32,
}

#[derive(Clone, Default)]
pub(crate) struct Srv(pub(crate) Arc<Mutex<Inner>>);

impl Srv {
    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.0.lock().expect("server lock"))
    }
}

pub(crate) fn respond(status: u16, body: Json) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/fhir+json")
        .body(Body::from(body.to_string()))
        .expect("response")
}

pub(crate) fn outcome(text: &str) -> Json {
    json!({"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"processing","diagnostics":text}]})
}

pub(crate) async fn metadata() -> Response {
    respond(
        200,
        json!({"resourceType":"CapabilityStatement","status":"active","fhirVersion":"4.0.1"}),
    )
}

pub(crate) async fn transaction(
    State(srv): State<Srv>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (denied, scripted, delay) = srv.with(|s| {
        s.post_times.push(Instant::now());
        s.auth_headers.push(auth.clone());
        let denied = s.tokens.as_ref().is_some_and(|ok| {
            !ok.iter()
                .any(|t| auth.as_deref() == Some(&format!("Bearer {t}")))
        });
        let scripted = if denied { None } else { s.script.pop_front() };
        (denied, scripted, s.delay)
    });
    if denied {
        return respond(401, outcome("invalid token"));
    }
    match scripted {
        Some(Scripted::Status(code, retry_after)) => {
            let mut r = respond(code, outcome("server busy"));
            if let Some(ra) = retry_after {
                r.headers_mut()
                    .insert("retry-after", ra.parse().expect("header value"));
            }
            return r;
        }
        Some(Scripted::Hang(d)) => {
            tokio::time::sleep(d).await;
            return respond(503, outcome("slow"));
        }
        Some(Scripted::Huge) => {
            let pad = "x".repeat(5 << 20);
            return respond(
                200,
                json!({"resourceType":"Bundle","type":"transaction-response","pad":pad}),
            );
        }
        None => {}
    }
    srv.with(|s| {
        s.active += 1;
        s.most_active = s.most_active.max(s.active);
    });
    tokio::time::sleep(delay).await;
    srv.with(|s| s.active -= 1);
    let Ok(bundle) = serde_json::from_slice::<Json>(&body) else {
        return respond(400, outcome("not JSON"));
    };
    let entries = bundle["entry"].as_array().cloned().unwrap_or_default();
    let bad = srv.with(|s| s.bad_device.clone());
    for e in &entries {
        let device = e["resource"]["device"]["identifier"]["value"].as_str();
        if bad.is_some() && device == bad.as_deref() {
            let patient = e["resource"]["subject"]["identifier"]["value"]
                .as_str()
                .unwrap_or("");
            return respond(
                400,
                outcome(&format!(
                    "Observation.device: unknown Device for Patient {patient}"
                )),
            );
        }
    }
    let statuses: Vec<Json> = srv.with(|s| {
        if !s.skip_bundles {
            s.bundles.push(bundle.clone());
        }
        entries
            .iter()
            .map(|e| {
                let id = &e["resource"]["identifier"][0];
                let value = id["value"].as_str().unwrap_or("").to_string();
                let cond = format!(
                    "identifier={}|{}",
                    id["system"].as_str().unwrap_or(""),
                    value
                );
                let conditional = e["request"]["ifNoneExist"].as_str() == Some(cond.as_str());
                *s.received.entry(value.clone()).or_insert(0) += 1;
                let n = s.stored.entry(value).or_insert(0);
                if conditional && *n > 0 {
                    json!({"response":{"status":"200 OK"}})
                } else {
                    *n += 1;
                    json!({"response":{"status":"201 Created","location":"Observation/1/_history/1"}})
                }
            })
            .collect()
    });
    respond(
        200,
        json!({"resourceType":"Bundle","type":"transaction-response","entry":statuses}),
    )
}

pub(crate) fn form_decode(body: &[u8]) -> BTreeMap<String, String> {
    let dec = |s: &str| {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    let h = std::str::from_utf8(&b[i + 1..i + 3]).expect("hex");
                    out.push(u8::from_str_radix(h, 16).expect("hex"));
                    i += 2;
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8(out).expect("utf8")
    };
    std::str::from_utf8(body)
        .expect("form is text")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (dec(k), dec(v)))
        .collect()
}

/// The OAuth2 token endpoint: checks the client secret or the signed assertion.
pub(crate) async fn token(State(srv): State<Srv>, body: Bytes) -> Response {
    let form = form_decode(&body);
    let verdict = srv.with(|s| {
        s.token_forms.push(form.clone());
        let check = s.oauth.as_mut().expect("oauth configured");
        let ok = form.get("grant_type").map(String::as_str) == Some("client_credentials")
            && form.get("scope").map(String::as_str) == Some("system/Observation.write")
            && match (&check.secret, &check.ec_public) {
                (Some(secret), _) => {
                    form.get("client_id") == Some(&check.client_id)
                        && form.get("client_secret") == Some(secret)
                }
                (None, Some(public)) => {
                    form.get("client_assertion_type").map(String::as_str)
                        == Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
                        && form
                            .get("client_assertion")
                            .is_some_and(|a| assertion_ok(a, public, check))
                }
                _ => false,
            };
        ok.then(|| {
            check.issued += 1;
            format!("access-{}", check.issued)
        })
    });
    match verdict {
        Some(t) => {
            srv.with(|s| s.tokens.get_or_insert_with(Vec::new).push(t.clone()));
            respond(
                200,
                json!({"access_token":t,"token_type":"bearer","expires_in":3600}),
            )
        }
        None => respond(400, json!({"error":"invalid_client"})),
    }
}

pub(crate) fn assertion_ok(jwt: &str, public: &[u8], check: &OAuthCheck) -> bool {
    let p: Vec<&str> = jwt.split('.').collect();
    if p.len() != 3 {
        return false;
    }
    let dec = |s: &str| URL_SAFE_NO_PAD.decode(s).unwrap_or_default();
    let h: Json = serde_json::from_slice(&dec(p[0])).unwrap_or_default();
    let c: Json = serde_json::from_slice(&dec(p[1])).unwrap_or_default();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let exp = c["exp"].as_i64().unwrap_or(0);
    let signed = format!("{}.{}", p[0], p[1]);
    h["alg"] == "ES384"
        && h["kid"].as_str() == check.kid.as_deref()
        && c["iss"] == check.client_id.as_str()
        && c["sub"] == check.client_id.as_str()
        && c["aud"] == check.token_url.as_str()
        && exp > now
        && exp <= now + 300
        && c["jti"]
            .as_str()
            .is_some_and(|j| uuid::Uuid::parse_str(j).is_ok())
        && ring::signature::UnparsedPublicKey::new(
            &ring::signature::ECDSA_P384_SHA384_FIXED,
            public,
        )
        .verify(signed.as_bytes(), &dec(p[2]))
        .is_ok()
}

pub(crate) async fn serve(srv: Srv) -> SocketAddr {
    let app = Router::new()
        .route("/fhir", post(transaction))
        .route("/fhir/metadata", get(metadata))
        .route("/token", post(token))
        .with_state(srv);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    addr
}
