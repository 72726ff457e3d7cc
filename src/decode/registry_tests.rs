//! Tests of the driver registry.

use super::*;

fn opts(pairs: &[(&str, &str)]) -> Options {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn the_registry_lists_nonin_ascii_and_json() {
    let n = driver_info("nonin-ascii").unwrap();
    assert_eq!(n.transports, &[Transport::Serial]);
    assert_eq!(n.kinds, &[Kind::Spo2, Kind::HeartRate]);
    assert_eq!(n.framing, "ASCII lines, CR LF, 1/s");
    assert!(n.continuous);
    assert_eq!(n.serial, Some(SERIAL_9600_8N1));
    let j = driver_info("json").unwrap();
    assert_eq!(j.transports, &[Transport::Serial, Transport::Mqtt]);
    assert_eq!(j.kinds.len(), Kind::ALL.len());
    assert!(!j.continuous);
    assert!(driver_info("nonin-9").is_none());
}

#[test]
fn driver_names_are_unique() {
    for (i, d) in drivers().iter().enumerate() {
        assert!(
            drivers()[i + 1..].iter().all(|o| o.name != d.name),
            "{}",
            d.name
        );
    }
}

#[test]
fn every_driver_without_required_options_builds_with_none_and_the_others_say_what_is_missing() {
    // `lines` needs its pattern and mapping, `barcode` its identifier system.
    let required = ["lines", "barcode"];
    for d in drivers() {
        for t in d.transports {
            let built = build_for(d.name, *t, &Options::new());
            if required.contains(&d.name) {
                let errs = built.err().unwrap_or_default();
                assert!(
                    !errs.is_empty(),
                    "{} built without its required options",
                    d.name
                );
                assert!(
                    errs.iter().all(|e| e.reason.contains("required")),
                    "{}: {errs:?}",
                    d.name
                );
            } else {
                assert!(built.is_ok(), "{}", d.name);
            }
        }
    }
}

#[test]
fn all_option_errors_are_reported_at_once() {
    let errs = validate_options(
        "nonin-ascii",
        &opts(&[("report", "sometimes"), ("settle", "ten"), ("baud", "9600")]),
    );
    let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["baud", "report", "settle"]);
    assert_eq!(
        errs[0].reason,
        "unknown option; driver `nonin-ascii` accepts: report, settle"
    );
    assert!(build("nonin-ascii", &opts(&[("settle", "ten")])).is_err());
}

#[test]
fn a_driver_without_options_says_so() {
    let errs = validate_options("json", &opts(&[("report", "spot")]));
    assert_eq!(
        errs[0].reason,
        "unknown option; driver `json` takes no options"
    );
}

#[test]
fn an_unknown_driver_is_reported_under_driver() {
    let errs = validate_options("nonin-9", &Options::new());
    assert_eq!(errs[0].key, "driver");
    assert!(errs[0].reason.contains("nonin-ascii"), "{}", errs[0].reason);
    assert!(build("nonin-9", &Options::new()).is_err());
}

#[test]
fn a_transport_the_driver_cannot_read_is_an_error() {
    let errs = build_for("nonin-ascii", Transport::Mqtt, &Options::new())
        .err()
        .unwrap();
    assert_eq!(errs[0].key, "transport");
}

#[test]
fn report_options_default_to_a_ten_second_spot_check() {
    let r = report_options("nonin-ascii", &Options::new()).unwrap();
    assert_eq!(
        r,
        ReportOptions {
            report: Report::Spot,
            settle: DEFAULT_SETTLE
        }
    );
    let r = report_options(
        "nonin-ascii",
        &opts(&[("report", "every"), ("settle", "3s")]),
    )
    .unwrap();
    assert_eq!(
        (r.report, r.settle),
        (Report::Every, Duration::from_secs(3))
    );
    assert_eq!(
        report_options("json", &Options::new()).unwrap().report,
        Report::Every
    );
    assert!(
        validate_options("nonin-ascii", &opts(&[("settle", "1h")]))[0]
            .reason
            .contains("longer than")
    );
}
