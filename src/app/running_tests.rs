use super::*;
use crate::config;

/// A member's handle in these tests: which start of the member it is.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
struct Started(u32);

fn set(members: &[(&str, u32)]) -> RunningSet<String, u32, Started> {
    let mut s = RunningSet::default();
    for (id, c) in members {
        s.insert((*id).to_string(), *c, Started(0));
    }
    s
}

fn wanted(list: &[(&str, u32)]) -> Vec<(String, u32)> {
    list.iter().map(|(i, c)| ((*i).to_string(), *c)).collect()
}

fn unchanged<K>(p: &Plan<K>) -> bool {
    p.start.is_empty() && p.stop.is_empty() && p.restart.is_empty()
}

fn plan_of(running: &RunningSet<String, u32, Started>, w: &[(String, u32)]) -> Plan<String> {
    running.plan(w.iter().map(|(k, c)| (k, c)))
}

/// Applies `w` the way the app does: stop, then (re)start under a new handle; returns how
/// many members were started.
fn apply(running: &mut RunningSet<String, u32, Started>, w: &[(String, u32)], gen: u32) -> usize {
    let p = plan_of(running, w);
    for id in p.stop.iter().chain(&p.restart) {
        assert!(running.remove(id).is_some());
    }
    let mut started = 0;
    for (id, c) in w.iter().filter(|(id, _)| p.starts(id)) {
        running.insert(id.clone(), *c, Started(gen));
        started += 1;
    }
    let order: Vec<String> = w.iter().map(|(k, _)| k.clone()).collect();
    running.sort(&order);
    started
}

#[test]
fn an_added_member_starts_and_a_removed_one_stops() {
    let running = set(&[("a", 1), ("b", 1)]);
    let p = plan_of(&running, &wanted(&[("a", 1), ("c", 1)]));
    assert_eq!(p.start, vec!["c"]);
    assert_eq!(p.stop, vec!["b"]);
    assert_eq!(p.keep, vec!["a"]);
    assert!(p.restart.is_empty());
}

#[test]
fn a_changed_config_restarts_that_member_and_an_equal_one_is_kept() {
    let running = set(&[("a", 1), ("b", 1), ("c", 1)]);
    let p = plan_of(&running, &wanted(&[("a", 1), ("b", 2), ("c", 1)]));
    assert_eq!(p.restart, vec!["b"]);
    assert_eq!(p.keep, vec!["a", "c"]);
    assert!(p.start.is_empty() && p.stop.is_empty());
    assert!(p.starts(&"b".to_string()) && !p.starts(&"a".to_string()));
}

#[test]
fn an_unchanged_config_changes_nothing() {
    let running = set(&[("a", 1), ("b", 2)]);
    let p = plan_of(&running, &wanted(&[("a", 1), ("b", 2)]));
    assert!(unchanged(&p), "{p:?}");
    assert_eq!(p.keep, vec!["a", "b"]);
    // Reordering alone restarts nothing either.
    assert!(unchanged(&plan_of(
        &running,
        &wanted(&[("b", 2), ("a", 1)])
    )));
}

#[test]
fn applying_a_changed_config_restarts_exactly_that_member() {
    let mut running = set(&[("a", 1), ("b", 1), ("c", 1)]);
    let started = apply(&mut running, &wanted(&[("a", 1), ("b", 7), ("c", 1)]), 1);
    assert_eq!(started, 1);
    let handles: Vec<Started> = running.handles().copied().collect();
    assert_eq!(handles, vec![Started(0), Started(1), Started(0)]);
    assert_eq!(
        running.get_unchanged(&"b".to_string(), &7),
        Some(&Started(1))
    );
    assert_eq!(running.get_unchanged(&"b".to_string(), &1), None);
    // The same config again: nothing starts.
    assert_eq!(
        apply(&mut running, &wanted(&[("a", 1), ("b", 7), ("c", 1)]), 2),
        0
    );
    // Removing one and adding one keeps config order.
    assert_eq!(
        apply(&mut running, &wanted(&[("d", 1), ("a", 1), ("c", 1)]), 3),
        1
    );
    let handles: Vec<Started> = running.handles().copied().collect();
    assert_eq!(handles, vec![Started(3), Started(0), Started(0)]);
    assert_eq!(running.len(), 3);
    assert!(running.remove(&"b".to_string()).is_none());
}

#[test]
fn device_configs_compare_by_value_an_option_change_restarts_only_that_device() {
    let file = |opt: &str| {
        format!(
            "[[device]]\nid = \"ox\"\ndriver = \"nonin-ascii\"\nroom = \"exam-1\"\nserial = {{ path = \"/dev/ttyUSB0\" }}\n\n\
             [[device]]\nid = \"bp\"\ndriver = \"suntech\"\nroom = \"exam-1\"\nserial = {{ path = \"/dev/ttyUSB1\" }}\n{opt}\n\
             [[sink]]\nid = \"o\"\ntype = \"file\"\ndir = \"/tmp/o\"\nformat = \"reading\"\n"
        )
    };
    let parse = |s: &str| config::parse(s, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    let old = parse(&file(""));
    let new = parse(&file("inactivity_timeout = \"5m\"\n"));
    let mut running: RunningSet<crate::reading::DeviceId, config::DeviceConfig, ()> =
        RunningSet::default();
    for d in &old.devices {
        running.insert(d.id.clone(), d.clone(), ());
    }
    let same = running.plan(old.devices.iter().map(|d| (&d.id, d)));
    assert!(unchanged(&same));
    let p = running.plan(new.devices.iter().map(|d| (&d.id, d)));
    assert_eq!(p.restart, vec![crate::reading::DeviceId::new("bp")]);
    assert_eq!(p.keep, vec![crate::reading::DeviceId::new("ox")]);
}
