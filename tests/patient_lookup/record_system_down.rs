//! A record system that is down: readings held under `hold`, attached by identifier with
//! the flag under `identifier`.

use super::*;

#[test]
fn a_down_record_system_holds_the_readings_under_hold() {
    let rig = Rig::new();
    let m = Medplum::start(rig.tmp.path());
    create_patient(&m, "MRN-DOWN-5", "Downtest", "Dana", "1975-05-05");
    let gate = Gate::start(m.port);
    let d = rig.start(&gate.base_url(), "hold");

    let r = rig.scan(&d, "MRN-DOWN-5", |r| !r["last_refusal"].is_null());
    assert_eq!(r["last_refusal"]["reason"], "unavailable", "{r}");
    rig.frames(2);
    wait_until(
        Duration::from_secs(15),
        || held(&d).len() >= 4,
        || format!("held: {:?}\n{}", held(&d), d.log()),
    );
    gate.open.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(observations(&m).len(), 0, "held readings are not filed");
    let fallbacks: Vec<Value> = audit_events(&d)
        .into_iter()
        .filter(|e| e["event"] == "lookup_fallback")
        .collect();
    assert_eq!(
        fallbacks.len(),
        4,
        "one audit entry per reading: {fallbacks:?}"
    );
    assert!(
        fallbacks.iter().all(|e| e["choice"] == "hold"),
        "{fallbacks:?}"
    );
    assert_log_clean(&d, &["MRN-DOWN-5", "Downtest"]);
}

#[test]
fn a_down_record_system_attaches_by_identifier_with_the_flag_under_identifier() {
    let rig = Rig::new();
    let m = Medplum::start(rig.tmp.path());
    create_patient(&m, "MRN-DOWN-6", "Downtest", "Dora", "1975-05-06");
    let gate = Gate::start(m.port);
    let d = rig.start(&gate.base_url(), "identifier");

    let r = rig.scan(&d, "MRN-DOWN-6", |r| r["verified"] == "identifier_only");
    assert!(r["last_refusal"].is_null(), "{r}");
    assert!(r.get("name").is_none(), "no record, no name: {r}");
    rig.frames(2);
    // Queued for the record system while it is down; filed once it answers.
    std::thread::sleep(Duration::from_secs(1));
    gate.open.store(true, Ordering::SeqCst);
    wait_until(
        Duration::from_secs(40),
        || observations(&m).len() >= 4,
        || format!("{} Observations\n{}", observations(&m).len(), d.log()),
    );
    let obs = observations(&m);
    assert_eq!(obs.len(), 4);
    for o in &obs {
        assert!(o["subject"]["reference"].is_null(), "{o}");
        assert_eq!(o["subject"]["identifier"]["value"], "MRN-DOWN-6", "{o}");
        assert!(
            o["note"].to_string().contains("[patient_unverified]"),
            "{o}"
        );
    }
    let fallbacks: Vec<Value> = audit_events(&d)
        .into_iter()
        .filter(|e| e["event"] == "lookup_fallback")
        .collect();
    assert_eq!(
        fallbacks.len(),
        4,
        "one audit entry per reading: {fallbacks:?}"
    );
    assert!(
        fallbacks.iter().all(|e| e["choice"] == "identifier"),
        "{fallbacks:?}"
    );
    assert!(held(&d).is_empty());
    assert_log_clean(&d, &["MRN-DOWN-6", "Downtest"]);
}
