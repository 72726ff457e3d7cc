//! The queue commands through the running daemon and from the stopped store, and `status`.

use super::*;

#[test]
fn queue_commands_answer_alike_through_the_running_daemon_and_from_the_stopped_store() {
    let mut rig = Rig::start();
    let cfg = &rig.cfg();
    rig.ox().send(b"SPO2=097 HR=072\r\n");
    rig.bp()
        .send(bp_line(410, "2026-11-27T10:00:00Z").as_bytes());
    rig.bp()
        .send(bp_line(420, "2026-11-27T10:01:00Z").as_bytes());
    rig.wait_dead(2);
    wait_for("two quarantined", || {
        rig.get("/api/queue/stats")["quarantined"] == 2
    });

    // Running: the store is locked, so these answers came through the admin API.
    let stats_running = ok(cfg, &["queue", "stats"]);
    let dead_running = ok(cfg, &["queue", "dead", "--sink", "engine"]);
    let quarantine_running = ok(cfg, &["queue", "quarantine"]);
    assert_eq!(json_lines(&dead_running).len(), 2, "{dead_running}");
    assert_eq!(
        json_lines(&quarantine_running).len(),
        2,
        "{quarantine_running}"
    );
    assert_eq!(stats_without_size(&stats_running)["sinks"][0]["dead"], 2);

    // A wrong token is refused by the daemon, not papered over by the store.
    let bad_cfg = rig.config_with_token("wrong-token.toml", "not-the-token");
    let refused = vitalsd(&bad_cfg, &["queue", "dead"]);
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(text(&refused).contains("401"), "{}", text(&refused));

    let (status, _) = rig.d.stop();
    assert!(status.success());

    // Stopped: the same answers from the store.
    assert_eq!(
        stats_without_size(&ok(cfg, &["queue", "stats"])),
        stats_without_size(&stats_running)
    );
    assert_eq!(
        ok(cfg, &["queue", "dead", "--sink", "engine"]),
        dead_running
    );
    assert_eq!(ok(cfg, &["queue", "quarantine"]), quarantine_running);

    // Running again: the changing commands go through the API too.
    rig.restart("log2");
    let out = ok(cfg, &["queue", "retry", "--sink", "engine"]);
    assert_eq!(out.trim(), "2 entries moved back to pending");
    rig.wait_dead(2); // the engine refuses them again
    let q = json_lines(&quarantine_running);
    let (q1, q2) = (q[0]["id"].as_str().unwrap(), q[1]["id"].as_str().unwrap());
    let out = ok(
        cfg,
        &[
            "queue",
            "release",
            q2,
            "--by",
            "Dr. Ops",
            "--reason",
            "cuff re-checked",
        ],
    );
    assert!(
        out.starts_with(&format!("released {q2} to every configured sink")),
        "{out}"
    );
    rig.wait_dead(3);
    let out = ok(
        cfg,
        &[
            "queue", "discard", q1, "--by", "Dr. Ops", "--reason", "artifact",
        ],
    );
    assert_eq!(out.trim(), format!("discarded {q1}"));
    let gone = vitalsd(
        cfg,
        &["queue", "discard", q1, "--by", "x", "--reason", "again"],
    );
    assert!(!gone.status.success());
    assert!(
        text(&gone).contains(&format!("no quarantined reading with id {q1}")),
        "{}",
        text(&gone)
    );
    assert_eq!(ok(cfg, &["queue", "quarantine"]).trim(), "");
    let first = json_lines(&dead_running)[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let out = ok(cfg, &["queue", "purge-dead", &first, "--sink", "engine"]);
    assert_eq!(out.trim(), "1 dead-letter entry purged");
    assert_eq!(json_lines(&ok(cfg, &["queue", "dead"])).len(), 2);
    let (status, _) = rig.d.stop();
    assert!(status.success());

    // Stopped: the rest from the store.
    let out = ok(cfg, &["queue", "purge-dead"]);
    assert_eq!(out.trim(), "2 dead-letter entries purged");
    assert_eq!(ok(cfg, &["queue", "dead"]).trim(), "");
}

#[test]
fn status_summarises_the_running_daemon_and_fails_when_none_answers() {
    let mut rig = Rig::start();
    let cfg = &rig.cfg();
    rig.ox().send(b"SPO2=097 HR=072\r\n");
    rig.bp()
        .send(bp_line(410, "2026-11-27T10:00:00Z").as_bytes());
    rig.wait_dead(2);
    wait_for("one quarantined", || {
        rig.get("/api/queue/stats")["quarantined"] == 1
    });

    let o = vitalsd(cfg, &["status"]);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let (ready_code, _) = http(&rig.addr, "GET", "/readyz", &[], "");
    assert_eq!(o.status.success(), ready_code == 200, "{}", text(&o));
    let first = out.lines().next().unwrap_or("");
    if ready_code == 200 {
        assert_eq!(first, "ready: yes");
    } else {
        assert!(first.starts_with("ready: NO ("), "{out}");
    }
    assert!(out.contains("queue: 3 readings"), "{out}");
    assert!(out.contains("; held 0; quarantined 1"), "{out}");
    assert!(
        out.contains("device ox (nonin-ascii, room exam-1): connected, last frame "),
        "{out}"
    );
    assert!(out.contains(", 2 readings, 0 bad frames"), "{out}");
    assert!(
        out.contains("device bp (json, room exam-2): connected"),
        "{out}"
    );
    assert!(
        out.contains("sink engine: pending 0, dead 2, last success never"),
        "{out}"
    );
    assert!(out.contains("last error"), "{out}");

    let (status, _) = rig.d.stop();
    assert!(status.success());
    let o = vitalsd(cfg, &["status"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("no daemon answers at http://127.0.0.1:"),
        "{}",
        text(&o)
    );
}
