use super::*;

const MINIMAL: &str = r#"
[[device]]
id = "ox"
driver = "nonin-ascii"
room = "exam-1"
serial = { path = "/dev/ttyUSB0" }

[[sink]]
id = "outbox"
type = "file"
dir = "/tmp/outbox"
"#;

fn problems(src: &str) -> Vec<String> {
    match parse(src, "test.toml") {
        Ok(_) => Vec::new(),
        Err(e) => e.problems.iter().map(|p| p.to_string()).collect(),
    }
}

#[path = "tests/defaults_tests.rs"]
mod defaults;
#[path = "tests/problems_tests.rs"]
mod problems;
#[path = "tests/serial_and_admin_tests.rs"]
mod serial_and_admin;
