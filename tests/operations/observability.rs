//! Metrics checked by promtool against the dashboard and alerts, and every logged warning
//! and error explained in the troubleshooting doc.

use super::*;

/// promtool, which scripts/test installs (Debian `prometheus`).
fn promtool(args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new("promtool");
    cmd.args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd
        .spawn()
        .expect("promtool is missing: scripts/test installs it (apt-get install prometheus)");
    if let Some(s) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(s.as_bytes())
            .expect("write to promtool");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("promtool")
}

/// Every `vitalsd_*` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let re = regex::Regex::new(r"vitalsd_[a-z0-9_]+").expect("regex");
    re.find_iter(text).map(|m| m.as_str().to_string()).collect()
}

#[test]
fn metrics_pass_promtool_and_the_dashboard_and_alerts_use_only_exported_metrics() {
    let mut rig = Rig::start();
    let auth = format!("Bearer {TOKEN}");
    let (code, body) = http(
        &rig.addr,
        "PUT",
        "/api/rooms/exam-1/patient",
        &[("Authorization", &auth)],
        r#"{"id":"MRN-OPS-1","system":"urn:oid:1.2.3","by":"ops test"}"#,
    );
    assert_eq!(code, 200, "{body}");
    rig.ox().send(b"SPO2=097 HR=072\r\n");
    rig.bp()
        .send(bp_line(121, "2026-11-27T10:00:00Z").as_bytes());
    rig.wait_dead(3);

    let (code, metrics) = http(&rig.addr, "GET", "/metrics", &[], "");
    assert_eq!(code, 200, "{metrics}");
    let check = promtool(&["check", "metrics"], Some(&metrics));
    assert!(
        check.status.success(),
        "promtool check metrics: {}\n{metrics}",
        text(&check)
    );
    // A scraper asking for OpenMetrics gets it (with its end marker).
    let (_, open) = http(
        &rig.addr,
        "GET",
        "/metrics",
        &[("Accept", "application/openmetrics-text; version=1.0.0")],
        "",
    );
    assert!(open.trim_end().ends_with("# EOF"), "{open}");
    assert!(!metrics.contains("MRN-OPS-1"), "patient id in /metrics");
    let exported: BTreeSet<String> = metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect();
    for want in [
        "vitalsd_device_last_frame_timestamp_seconds",
        "vitalsd_room_patient_context_active",
        "vitalsd_sink_failing",
        "vitalsd_held_oldest_age_seconds",
    ] {
        assert!(
            exported.contains(want),
            "{want} not in /metrics:\n{metrics}"
        );
    }
    rig.d.stop();

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rules = root.join("docs/ops/alerts.yml");
    let check = promtool(&["check", "rules", rules.to_str().unwrap()], None);
    assert!(
        check.status.success(),
        "promtool check rules: {}",
        text(&check)
    );
    let alerts = std::fs::read_to_string(&rules).expect("alerts.yml");
    for name in [
        "VitalsdSinkFailing",
        "VitalsdQueueGrowing",
        "VitalsdDeviceSilentWithPatient",
        "VitalsdReadingsHeldLong",
        "VitalsdQuarantineNotEmpty",
    ] {
        assert!(alerts.contains(&format!("alert: {name}")), "no {name}");
    }
    let used_by_alerts = metric_names(
        &alerts
            .lines()
            .filter(|l| l.trim_start().starts_with("expr:") || l.starts_with("          "))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    for m in &used_by_alerts {
        assert!(exported.contains(m), "alerts.yml uses {m}, not in /metrics");
    }

    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("docs/ops/grafana-dashboard.json")).expect("dashboard"),
    )
    .expect("the dashboard is JSON");
    let panels = dash["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10);
    for p in panels {
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {} has no query", p["title"]);
        for t in targets {
            let expr = t["expr"].as_str().expect("expr");
            let names = metric_names(expr);
            assert!(!names.is_empty(), "{expr}");
            for m in names {
                assert!(
                    exported.contains(&m),
                    "panel {} uses {m}, not in /metrics",
                    p["title"]
                );
            }
        }
    }
}

/// The message of every `warn!` / `error!` in `src` (outside test modules): the first string
/// literal among the macro's top-level arguments that is not a field's value.
fn logged_messages(dir: &Path, macro_re: &regex::Regex, out: &mut Vec<(PathBuf, String)>) {
    for entry in std::fs::read_dir(dir).expect("read src").flatten() {
        let p = entry.path();
        if p.is_dir() {
            logged_messages(&p, macro_re, out);
            continue;
        }
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !name.ends_with(".rs") || name.ends_with("_tests.rs") || name == "tests.rs" {
            continue;
        }
        let src = std::fs::read_to_string(&p).expect("source");
        let src = match src.find("#[cfg(test)]\nmod tests") {
            Some(i) => &src[..i],
            None => &src[..],
        };
        for m in macro_re.find_iter(src) {
            let b = src.as_bytes();
            let (mut i, mut depth, mut prev_eq) = (m.end(), 1, false);
            let mut found = None;
            while depth > 0 && i < b.len() {
                match b[i] {
                    b'"' => {
                        let mut j = i + 1;
                        while b[j] != b'"' {
                            j += if b[j] == b'\\' { 2 } else { 1 };
                        }
                        if depth == 1 && !prev_eq && found.is_none() {
                            found = Some(src[i + 1..j].to_string());
                        }
                        i = j + 1;
                        prev_eq = false;
                        continue;
                    }
                    b'(' | b'[' | b'{' => depth += 1,
                    b')' | b']' | b'}' => depth -= 1,
                    b'=' => prev_eq = true,
                    b',' => prev_eq = false,
                    _ => {}
                }
                i += 1;
            }
            if let Some(msg) = found {
                out.push((p.clone(), msg));
            }
        }
    }
}

#[test]
fn every_logged_warning_and_error_is_explained_in_the_troubleshooting_doc() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut msgs = Vec::new();
    let macro_re =
        regex::Regex::new(r"(?:^|[^A-Za-z_:])(?:tracing::)?(?:warn|error)!\(").expect("regex");
    logged_messages(&root.join("src"), &macro_re, &mut msgs);
    assert!(msgs.len() > 50, "found only {} messages", msgs.len());
    let doc = std::fs::read_to_string(root.join("docs/troubleshooting.md")).expect("doc");
    let missing: Vec<String> = msgs
        .iter()
        // A message that is only a placeholder (config warnings) is described as a group.
        .filter(|(_, m)| !m.replace("{}", "").trim().is_empty())
        .filter(|(_, m)| !doc.contains(m.as_str()))
        .map(|(p, m)| format!("{}: {m}", p.display()))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/troubleshooting.md lacks:\n{}",
        missing.join("\n")
    );
}
