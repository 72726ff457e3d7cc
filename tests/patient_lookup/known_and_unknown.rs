//! A known MRN files Observations referencing the Patient (HL7 carries the name); an
//! unknown MRN is refused and one MRN on two patients is ambiguous.

use super::*;

#[test]
fn a_known_mrn_files_observations_referencing_the_patient_and_hl7_carries_the_name() {
    let rig = Rig::new();
    let m = Medplum::start(rig.tmp.path());
    let id = create_patient(&m, "MRN-LOOK-1001", "Lovelacetest", "Adatest", "1961-04-12");
    let d = rig.start(&m.base_url(), "hold");

    let r = rig.scan(&d, "MRN-LOOK-1001", |r| r["verified"] == "record");
    assert_eq!(r["name"], "Adatest Lovelacetest", "{r}");
    assert_eq!(r["birth_date"], "1961-04-12", "{r}");
    assert!(r["last_refusal"].is_null(), "{r}");
    let open = room(&d, false).expect("status without token");
    assert_eq!(open["verified"], "record");
    assert!(
        open.get("name").is_none() && open.get("birth_date").is_none(),
        "an unauthenticated status shows no name: {open}"
    );
    assert!(open["patient"].is_string(), "the masked tag stays: {open}");

    rig.frames(3);
    wait_until(
        Duration::from_secs(30),
        || observations(&m).len() >= 6,
        || format!("{} Observations\n{}", observations(&m).len(), d.log()),
    );
    let obs = observations(&m);
    assert_eq!(obs.len(), 6);
    for o in &obs {
        assert_eq!(o["subject"]["reference"], format!("Patient/{id}"), "{o}");
        assert_eq!(o["subject"]["identifier"]["value"], "MRN-LOOK-1001", "{o}");
        assert_eq!(o["subject"]["identifier"]["system"], SYSTEM, "{o}");
    }
    assert_eq!(m.stats()["invalid"], 0, "{}", m.log());

    // The same readings through the HL7 outbox: PID-5 is the record's name, PID-7 its birth date.
    wait_until(
        Duration::from_secs(15),
        || hl7_text(&rig.hl7_dir()).matches("MSH|").count() >= 6,
        || format!("HL7 outbox: {}", hl7_text(&rig.hl7_dir())),
    );
    assert_hl7_valid(
        &hl7_text(&rig.hl7_dir()),
        &[
            "PID-3.1=MRN-LOOK-1001",
            "PID-5.1=Lovelacetest",
            "PID-5.2=Adatest",
            "PID-5.7=L",
            "PID-7=19610412",
        ],
    );
    assert_log_clean(&d, &["MRN-LOOK-1001", "Lovelacetest", "Adatest", "1961"]);
}

#[test]
fn an_unknown_mrn_is_refused_and_two_patients_with_one_mrn_are_ambiguous() {
    let rig = Rig::new();
    let m = Medplum::start(rig.tmp.path());
    create_patient(&m, "MRN-TWIN-7", "Twinone", "Kim", "1990-01-01");
    create_patient(&m, "MRN-TWIN-7", "Twintwo", "Kit", "1990-01-01");
    let d = rig.start(&m.base_url(), "hold");

    let r = rig.scan(&d, "MRN-NOBODY-42", |r| !r["last_refusal"].is_null());
    assert_eq!(r["last_refusal"]["reason"], "not_found", "{r}");
    assert_eq!(r["verified"], "none", "{r}");
    assert!(r["patient"].is_null(), "{r}");
    rig.frames(2);
    wait_until(
        Duration::from_secs(15),
        || held(&d).len() >= 4,
        || format!("held: {:?}\n{}", held(&d), d.log()),
    );
    for h in held(&d) {
        let flags = h["reading"]["flags"].to_string();
        assert!(flags.contains("patient_unknown"), "{h}");
        assert!(h["reading"]["patient"].is_null(), "{h}");
    }
    assert!(
        d.log().contains("not_found"),
        "the log says why:\n{}",
        d.log()
    );

    let r = rig.scan(&d, "MRN-TWIN-7", |r| {
        r["last_refusal"]["reason"] == "ambiguous"
    });
    assert!(r["patient"].is_null(), "{r}");
    assert_eq!(r["verified"], "none");
    assert!(d.log().contains("ambiguous"), "{}", d.log());

    // Through the API: refused with 409, and the answer does not quote the identifier.
    let (st, body) = http(
        &d.admin_addr(),
        "PUT",
        "/api/rooms/exam-1/patient",
        &[AUTH],
        &format!(r#"{{"id":"MRN-API-404","system":"{SYSTEM}","by":"ma"}}"#),
    );
    assert_eq!(st, 409, "{body}");
    assert!(!body.contains("MRN-API-404"), "{body}");
    assert_eq!(
        room(&d, true).unwrap()["last_refusal"]["reason"],
        "not_found"
    );

    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(observations(&m).len(), 0, "nothing filed");
    let refused: Vec<String> = audit_events(&d)
        .iter()
        .filter(|e| e["event"] == "context_refused")
        .filter_map(|e| e["reason"].as_str().map(str::to_string))
        .collect();
    assert_eq!(refused, ["not_found", "ambiguous", "not_found"]);
    assert_log_clean(
        &d,
        &[
            "MRN-NOBODY-42",
            "MRN-TWIN-7",
            "MRN-API-404",
            "Twinone",
            "Twintwo",
        ],
    );
}
