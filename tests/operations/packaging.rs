//! check-config's listing of problems, shell completions and the man page.

use super::*;

#[test]
fn check_config_lists_a_type_error_and_the_unknown_driver_of_one_device_and_the_other_tables() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cfg = tmp.path().join("bad.toml");
    // Written by hand: this text, its mistakes and their line numbers are what is tested.
    let src = "[daemon]\n\
               data_dir = \"/var/lib/vitalsd-test\"\n\
               cache_size = 5\n\
               \n\
               [[device]]\n\
               id = \"ox\"\n\
               driver = \"nonin-asci\"\n\
               room = \"exam-1\"\n\
               serial = { path = \"/dev/null\", baud = \"fast\" }\n\
               inactivity_timeout = 30\n\
               \n\
               [[device]]\n\
               id = \"bp\"\n\
               driver = \"json\"\n\
               room = \"\"\n\
               serial = { path = \"/dev/null\" }\n\
               \n\
               [[sink]]\n\
               id = \"ehr\"\n\
               type = \"fhir\"\n\
               base_url = \"http://127.0.0.1:1/fhir\"\n\
               batch_size = \"ten\"\n\
               colour = \"red\"\n";
    std::fs::write(&cfg, src).expect("config");
    let o = vitalsd(&cfg, &["check-config"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    for want in [
        "daemon.cache_size (line 3): invalid type: integer `5`",
        "device[0].serial.baud (line 9): invalid type: string \"fast\"",
        "device[0].inactivity_timeout (line 10): invalid type: integer `30`",
        "device[0].driver (line 7): unknown driver `nonin-asci`",
        "device[1].room (line 15): must not be empty",
        "sink[0].batch_size (line 22): invalid type: string \"ten\"",
        "sink[0].colour (line 23): unknown field `colour`",
    ] {
        assert!(err.contains(want), "missing `{want}` in:\n{err}");
    }
    assert!(
        err.starts_with(&format!("{}: 7 problems", cfg.display())),
        "{err}"
    );
}

#[test]
fn completions_and_the_man_page_come_from_the_command_line_and_the_package_installs_them() {
    let bin = env!("CARGO_BIN_EXE_vitalsd");
    let run = |args: &[&str]| {
        let o = Command::new(bin).args(args).output().expect("run vitalsd");
        assert!(o.status.success(), "{args:?}: {}", text(&o));
        String::from_utf8(o.stdout).expect("UTF-8")
    };
    let bash = run(&["completions", "bash"]);
    assert!(bash.contains("_vitalsd()"), "{bash}");
    assert!(bash.contains("purge-dead") && bash.contains("completions"));
    let syntax = Command::new("bash")
        .arg("-n")
        .arg("-c")
        .arg(&bash)
        .output()
        .expect("bash");
    assert!(syntax.status.success(), "{}", text(&syntax));
    let zsh = run(&["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef vitalsd"), "{zsh}");
    let fish = run(&["completions", "fish"]);
    assert!(fish.contains("complete -c vitalsd"), "{fish}");
    assert!(fish.contains("check-config"));
    let man = run(&["man"]);
    assert!(man.contains(".TH vitalsd 8"), "{man}");
    for section in [
        "VITALSD STATUS",
        "VITALSD QUEUE PURGE-DEAD",
        "VITALSD CHECK-CONFIG",
    ] {
        assert!(man.contains(section), "no {section} in the man page");
    }
    assert!(man.contains("\\-\\-sink"), "options of the queue actions");
    // roff input is ASCII: other characters are written as escapes.
    assert!(man.is_ascii(), "raw non-ASCII in the man page");

    // The packaging script writes every generated asset Cargo.toml's deb assets name.
    let out = tempfile::tempdir().expect("tmp");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let o = Command::new(root.join("scripts/package-assets"))
        .env("VITALSD_BIN", bin)
        .env("VITALSD_ASSETS_DIR", out.path())
        .output()
        .expect("scripts/package-assets");
    assert!(o.status.success(), "{}", text(&o));
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("Cargo.toml");
    let generated: Vec<&str> = manifest
        .lines()
        .filter_map(|l| l.trim().strip_prefix("[\"debian/generated/"))
        .filter_map(|l| l.split('"').next())
        .collect();
    assert_eq!(generated.len(), 4, "{generated:?}");
    for f in generated {
        let len = std::fs::metadata(out.path().join(f))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(len > 100, "scripts/package-assets did not write {f}");
    }
}
