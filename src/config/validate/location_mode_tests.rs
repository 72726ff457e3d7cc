//! Location mode refuses every FHIR output.

use super::super::parse;

const DEVICE: &str = "[patient]\nmode = \"location\"\n\n[[device]]\nid = \"ox\"\ndriver = \"nonin-ascii\"\nroom = \"exam-1\"\nserial = { path = \"/dev/ttyUSB0\" }\n\n";

fn problems(sinks: &str) -> Vec<String> {
    match parse(&format!("{DEVICE}{sinks}"), "test.toml") {
        Ok(_) => Vec::new(),
        Err(e) => e.problems.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn location_mode_with_a_fhir_sink_is_refused_naming_the_key_line_and_reason() {
    let p = problems(
        "[[sink]]\nid = \"outbox\"\ntype = \"file\"\ndir = \"/tmp/o\"\nformat = \"reading\"\n\n\
         [[sink]]\nid = \"ehr\"\ntype = \"fhir\"\nbase_url = \"https://ehr.example/fhir\"\n",
    );
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].contains("patient.mode"), "{}", p[0]);
    assert!(p[0].contains("line 2"), "the mode's line: {}", p[0]);
    assert!(p[0].contains("sink[1].type (line 18)"), "{}", p[0]);
    assert!(p[0].contains("to be a Patient"), "{}", p[0]);
}

#[test]
fn location_mode_with_a_fhir_file_or_mqtt_format_is_refused() {
    let p = problems(
        "[[sink]]\nid = \"outbox\"\ntype = \"file\"\ndir = \"/tmp/o\"\nformat = \"fhir\"\n",
    );
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].contains("sink[0].format"), "{}", p[0]);
    let p = problems(
        "[[sink]]\nid = \"bus\"\ntype = \"mqtt\"\nurl = \"mqtt://127.0.0.1:1883\"\n\
         topic = \"vitals/{room}\"\nformat = \"fhir\"\n",
    );
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].contains("sink[0].format") && p[0].contains("`bus`"),
        "{}",
        p[0]
    );
    let reading = "[[sink]]\nid = \"bus\"\ntype = \"mqtt\"\nurl = \"mqtt://127.0.0.1:1883\"\n\
                   topic = \"vitals/{room}\"\nformat = \"reading\"\n";
    assert!(problems(reading).is_empty(), "{:?}", problems(reading));
}

#[test]
fn location_mode_with_non_fhir_outputs_and_hold_mode_with_fhir_are_accepted() {
    assert!(problems(
        "[[sink]]\nid = \"outbox\"\ntype = \"file\"\ndir = \"/tmp/o\"\nformat = \"reading\"\n"
    )
    .is_empty());
    let hold = "[[device]]\nid = \"ox\"\ndriver = \"nonin-ascii\"\nroom = \"exam-1\"\nserial = { path = \"/dev/ttyUSB0\" }\n\n\
                [[sink]]\nid = \"ehr\"\ntype = \"fhir\"\nbase_url = \"https://ehr.example/fhir\"\n";
    assert!(parse(hold, "test.toml").is_ok());
}
