//! The FHIR R4 directory: `Patient?identifier=` on the FHIR sink's server, through the net
//! layer's FHIR client and credentials (`crate::net::http`, `crate::net::oauth`, the ones the
//! sink uses; with the app's wiring the very token source the sink holds, so one access
//! token serves both), and the reading of the searchset Bundle it answers (bounded, the
//! identifier never in an error text).

use std::sync::Arc;

use reqwest::header::{ACCEPT, AUTHORIZATION};
use reqwest::StatusCode;
use serde::Deserialize;

use super::{Directory, SearchFuture, MAX_ANSWER_BYTES, MAX_PART};
use crate::config::FhirSinkConfig;
use crate::net::http::{client, read_bounded, ClientError};
use crate::net::oauth::TokenSource;
use crate::reading::{PatientRecord, PatientRef};

/// A FHIR R4 server's `Patient?identifier=` search.
pub struct FhirDirectory {
    base_url: String,
    http: reqwest::Client,
    auth: Arc<TokenSource>,
}

impl FhirDirectory {
    /// The directory of the FHIR sink `sink`: its base URL, client and credentials (a token
    /// source of its own).
    pub fn new(sink: &FhirSinkConfig) -> Result<Self, ClientError> {
        Self::with_tokens(sink, Arc::new(TokenSource::new(&sink.auth)))
    }

    /// [`FhirDirectory::new`] with a token source shared with the sink (it must hold
    /// `sink.auth`): one cached token, one renewal after a 401, for both.
    pub fn with_tokens(
        sink: &FhirSinkConfig,
        tokens: Arc<TokenSource>,
    ) -> Result<Self, ClientError> {
        debug_assert_eq!(tokens.credentials(), &sink.auth);
        Ok(Self {
            base_url: sink.base_url.trim_end_matches('/').to_string(),
            http: client(&sink.client_settings())?,
            auth: tokens,
        })
    }

    async fn get(&self, patient: &PatientRef) -> Result<Vec<PatientRecord>, String> {
        let identifier = format!("{}|{}", patient.system, patient.id);
        let mut reauthed = false;
        loop {
            // Errors name files and statuses only, never a token or an identifier.
            let token = self
                .auth
                .bearer(&self.http)
                .await
                .map_err(|e| format!("credentials: {e}"))?;
            let mut url = reqwest::Url::parse(&format!("{}/Patient", self.base_url))
                .map_err(|_| "the sink's base_url is not a URL".to_string())?;
            url.query_pairs_mut()
                .append_pair("identifier", &identifier)
                .append_pair("_count", "2");
            let mut req = self.http.get(url).header(ACCEPT, "application/fhir+json");
            if let Some(t) = &token {
                req = req.header(AUTHORIZATION, format!("Bearer {}", t.expose()));
            }
            let resp = req.send().await.map_err(|e| transport(&e))?;
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED
                && !reauthed
                && self.auth.rejected(token.as_ref()).await
            {
                reauthed = true;
                continue;
            }
            if !status.is_success() {
                return Err(format!("HTTP {}", status.as_u16()));
            }
            let body = read_bounded(resp, MAX_ANSWER_BYTES).await?;
            return patients(&body);
        }
    }
}

impl Directory for FhirDirectory {
    fn search<'a>(&'a self, patient: &'a PatientRef) -> SearchFuture<'a> {
        Box::pin(self.get(patient))
    }
}

/// The kind of a transport failure (a reqwest error's text would quote the URL, which holds
/// the identifier).
fn transport(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "cannot connect".into()
    } else {
        "request failed".into()
    }
}

#[derive(Deserialize)]
struct SearchSet {
    #[serde(rename = "resourceType")]
    resource_type: String,
    #[serde(default)]
    entry: Vec<SearchEntry>,
}

#[derive(Deserialize)]
struct SearchEntry {
    #[serde(default)]
    resource: Option<serde_json::Value>,
    #[serde(default)]
    search: Option<SearchMode>,
}

#[derive(Deserialize)]
struct SearchMode {
    #[serde(default)]
    mode: Option<String>,
}

/// The Patients of a searchset Bundle (entries whose search mode is `match` or unset).
pub(super) fn patients(body: &[u8]) -> Result<Vec<PatientRecord>, String> {
    let set: SearchSet =
        serde_json::from_slice(body).map_err(|_| "the answer is not a FHIR Bundle".to_string())?;
    if set.resource_type != "Bundle" {
        return Err("the answer is not a FHIR Bundle".into());
    }
    Ok(set
        .entry
        .iter()
        .filter(|e| {
            e.search
                .as_ref()
                .and_then(|s| s.mode.as_deref())
                .is_none_or(|m| m == "match")
        })
        .filter_map(|e| e.resource.as_ref())
        .filter(|r| r["resourceType"] == "Patient")
        .filter_map(record)
        .collect())
}

/// A text kept from a Patient: control characters out, bounded.
fn part(v: &serde_json::Value) -> Option<String> {
    let s: String = v
        .as_str()?
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_PART)
        .collect();
    let s = s.trim().to_string();
    (!s.is_empty()).then_some(s)
}

/// One Patient resource → its record (`None` without a logical id). The name is the first
/// `official` one, else the first `usual`, else the first.
fn record(p: &serde_json::Value) -> Option<PatientRecord> {
    let id = part(&p["id"])?;
    let names = p["name"].as_array().cloned().unwrap_or_default();
    let pick = |use_: &str| names.iter().find(|n| n["use"] == use_);
    let name = pick("official").or_else(|| pick("usual")).or(names.first());
    let family = name.and_then(|n| part(&n["family"]));
    let given = name
        .and_then(|n| n["given"].as_array())
        .map(|g| g.iter().filter_map(part).collect())
        .unwrap_or_default();
    let birth_date = part(&p["birthDate"]).filter(|d| is_fhir_date(d));
    Some(PatientRecord {
        id,
        family,
        given,
        birth_date,
    })
}

/// FHIR `date`: `YYYY`, `YYYY-MM` or `YYYY-MM-DD`.
fn is_fhir_date(s: &str) -> bool {
    let digits = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_digit());
    let mut parts = s.split('-');
    let ok = parts.next().is_some_and(|y| digits(y, 4))
        && parts.next().is_none_or(|m| digits(m, 2))
        && parts.next().is_none_or(|d| digits(d, 2));
    ok && parts.next().is_none()
}
