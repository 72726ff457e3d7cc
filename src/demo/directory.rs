//! The built-in demo's patient directory: a small FHIR `Patient?identifier=` endpoint served
//! in-process on a loopback port, so that `vitalsd demo` confirms every wristband scan
//! through the same lookup code as a real record system (docs/patient-lookup.md).
//!
//! Receives `GET /fhir/Patient?identifier=<system>|<value>`; answers a FHIR searchset Bundle
//! with one made-up Patient for every demo wristband (`MRN00` and five digits in the demo's
//! wristband system), none for anything else. Names and birth dates are derived from the
//! number, so the same wristband is always the same person. Nobody real is in it.

use std::collections::HashMap;

use axum::extract::Query;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const GIVEN: &[&str] = &[
    "Ada", "Bruno", "Chiara", "Dmitri", "Elif", "Farid", "Greta", "Hiro", "Ines", "Jonas", "Kaia",
    "Luca", "Mira", "Nils", "Oona", "Pavel",
];
const FAMILY: &[&str] = &[
    "Example",
    "Sample",
    "Testa",
    "Demo",
    "Placeholder",
    "Muster",
    "Fictive",
    "Modelo",
];

/// The made-up Patient of a demo wristband number, as FHIR JSON.
fn patient(n: u32, system: &str, mrn: &str) -> Value {
    let given = GIVEN[n as usize % GIVEN.len()];
    let family = FAMILY[(n as usize / GIVEN.len()) % FAMILY.len()];
    let born = format!("{}-{:02}-{:02}", 1940 + n % 60, 1 + n % 12, 1 + n % 28);
    json!({
        "resourceType": "Patient",
        "id": format!("demo-{n:05}"),
        "identifier": [{"system": system, "value": mrn}],
        "name": [{"use": "official", "family": family, "given": [given]}],
        "birthDate": born,
    })
}

/// The searchset for one `identifier` search parameter.
fn search(system: &str, identifier: Option<&str>) -> Value {
    let found = identifier
        .and_then(|i| i.split_once('|'))
        .filter(|(s, _)| *s == system)
        .and_then(|(_, mrn)| {
            let digits = mrn.strip_prefix("MRN00")?;
            (digits.len() == 5 && digits.bytes().all(|b| b.is_ascii_digit()))
                .then(|| digits.parse::<u32>().ok())
                .flatten()
                .map(|n| patient(n, system, mrn))
        });
    let entry: Vec<Value> = found
        .into_iter()
        .map(|p| json!({"resource": p, "search": {"mode": "match"}}))
        .collect();
    json!({"resourceType": "Bundle", "type": "searchset", "total": entry.len(), "entry": entry})
}

/// Serves the directory on a free loopback port until `cancel`; returns its FHIR base URL.
pub async fn start(system: &'static str, cancel: CancellationToken) -> anyhow::Result<String> {
    let app = Router::new().route(
        "/fhir/Patient",
        get(move |Query(q): Query<HashMap<String, String>>| async move {
            let body = search(system, q.get("identifier").map(String::as_str));
            ([(CONTENT_TYPE, "application/fhir+json")], body.to_string()).into_response()
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(cancel.cancelled_owned())
            .await;
    });
    Ok(format!("http://{addr}/fhir"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYS: &str = "urn:oid:2.16.840.1.113883.3.999";

    #[test]
    fn every_demo_wristband_is_one_patient_and_nothing_else_is() {
        let v = search(SYS, Some(&format!("{SYS}|MRN0012345")));
        assert_eq!(v["entry"].as_array().unwrap().len(), 1);
        let p = &v["entry"][0]["resource"];
        assert_eq!(p["id"], "demo-12345");
        assert_eq!(
            p,
            &search(SYS, Some(&format!("{SYS}|MRN0012345")))["entry"][0]["resource"]
        );
        for other in [
            format!("{SYS}|MRN001234"),
            "urn:oid:9|MRN0012345".to_string(),
            "x".into(),
        ] {
            assert_eq!(
                search(SYS, Some(&other))["entry"].as_array().unwrap().len(),
                0,
                "{other}"
            );
        }
        assert_eq!(search(SYS, None)["total"], 0);
    }

    #[tokio::test]
    async fn the_lookup_finds_a_demo_patient_through_the_fhir_client() {
        use crate::config::{FhirAuth, FhirSinkConfig, LookupUnavailable};
        use crate::context::lookup::{Answer, Lookup};
        let cancel = CancellationToken::new();
        let base_url = start(SYS, cancel.clone()).await.unwrap();
        let sink = FhirSinkConfig {
            id: crate::reading::SinkId::new("directory"),
            base_url,
            auth: FhirAuth::None,
            ca_file: None,
            batch_size: 1,
            timeout: std::time::Duration::from_secs(5),
            concurrency: 1,
        };
        let l = Lookup::new(
            std::sync::Arc::new(crate::context::lookup::FhirDirectory::new(&sink).unwrap()),
            LookupUnavailable::Hold,
            std::time::Duration::from_secs(60),
        );
        let p = crate::reading::PatientRef {
            id: "MRN0000042".into(),
            system: SYS.into(),
        };
        let Answer::Found(r) = l.check(&p).await else {
            panic!("not found")
        };
        assert_eq!(r.id, "demo-00042");
        assert!(r.display_name().is_some() && r.birth_date.is_some());
        let nobody = crate::reading::PatientRef {
            id: "MRN9".into(),
            system: SYS.into(),
        };
        assert_eq!(l.check(&nobody).await, Answer::NotFound);
        cancel.cancel();
    }
}
