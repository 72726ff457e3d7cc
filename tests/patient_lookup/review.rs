//! Review mode: the record system gets nothing until a confirmation, each confirmed reading
//! once.

use super::*;

/// The review list through the API.
fn review_list(d: &Daemon) -> Vec<Value> {
    let (st, body) = http(&d.admin_addr(), "GET", "/api/review", &[AUTH], "");
    assert_eq!(st, 200, "{body}");
    serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

#[test]
fn in_review_mode_medplum_gets_nothing_until_confirmed_and_each_confirmed_reading_once() {
    let rig = Rig::new();
    let m = Medplum::start(rig.tmp.path());
    let id = create_patient(&m, "MRN-REV-2002", "Reviewtest", "Bea", "1975-09-30");
    let d = rig.start_with(&m.base_url(), "hold", true);
    rig.scan(&d, "MRN-REV-2002", |r| r["verified"] == "record");

    // Three frames: six readings, all on the review list, none at the record system.
    rig.frames(3);
    let t0 = Instant::now();
    while review_list(&d).len() < 6 && t0.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let list = review_list(&d);
    assert_eq!(list.len(), 6, "{list:?}\n{}", d.log());
    for item in &list {
        assert_eq!(item["room"], "exam-1", "{item}");
        assert!(item["id"].is_string() && item["kind"].is_string(), "{item}");
    }
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        observations(&m).len(),
        0,
        "nothing is filed before a confirmation"
    );

    let by = r#"{"by":"Bea MA"}"#;
    let ids: Vec<String> = list
        .iter()
        .map(|i| i["id"].as_str().expect("id").to_string())
        .collect();
    // One confirmed: exactly one Observation, referencing the record's Patient.
    let confirm = format!("/api/review/{}/confirm", ids[0]);
    let (st, body) = http(&d.admin_addr(), "POST", &confirm, &[AUTH], by);
    assert_eq!(st, 200, "{body}");
    wait_until(
        Duration::from_secs(20),
        || !observations(&m).is_empty(),
        || format!("no Observation after a confirmation\n{}", d.log()),
    );
    // A second confirm of the same reading files nothing.
    assert_eq!(http(&d.admin_addr(), "POST", &confirm, &[AUTH], by).0, 404);
    // One rejected: never filed.
    let reject = format!("/api/review/{}/reject", ids[1]);
    let (st, body) = http(&d.admin_addr(), "POST", &reject, &[AUTH], by);
    assert_eq!(st, 200, "{body}");
    // The rest of the room at once.
    let (st, body) = http(
        &d.admin_addr(),
        "POST",
        "/api/review/rooms/exam-1/confirm",
        &[AUTH],
        by,
    );
    assert_eq!(st, 200, "{body}");
    wait_until(
        Duration::from_secs(20),
        || observations(&m).len() >= 5,
        || format!("{} Observations\n{}", observations(&m).len(), d.log()),
    );
    std::thread::sleep(Duration::from_secs(2));
    let obs = observations(&m);
    assert_eq!(obs.len(), 5, "five confirmed, one rejected: {obs:?}");
    let mut identifiers: Vec<String> = obs
        .iter()
        .map(|o| {
            o["identifier"][0]["value"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    identifiers.sort();
    identifiers.dedup();
    assert_eq!(
        identifiers.len(),
        5,
        "each confirmed reading once: {identifiers:?}"
    );
    let rejected = format!("urn:uuid:{}", ids[1]);
    assert!(
        !identifiers.contains(&rejected),
        "the rejected reading was filed"
    );
    for o in &obs {
        assert_eq!(o["subject"]["reference"], format!("Patient/{id}"), "{o}");
    }
    assert!(review_list(&d).is_empty());
    assert_eq!(m.stats()["invalid"], 0, "{}", m.log());
    assert_log_clean(&d, &["MRN-REV-2002", "Reviewtest"]);
}
