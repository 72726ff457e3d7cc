//! The repository explains itself: every document a comment or doc cites is in the repository,
//! and each top-level module imports only what the rule table below allows.

use std::path::{Path, PathBuf};

fn files(root: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(root) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if p.is_dir() {
            if !matches!(name, "target" | "node_modules" | "corpus" | "artifacts") {
                files(&p, out);
            }
        } else if name.ends_with(".rs") || name.ends_with(".md") || name.ends_with(".toml") {
            out.push(p);
        }
    }
}

#[test]
fn comments_and_docs_cite_only_documents_in_the_repository() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut all = Vec::new();
    for dir in ["src", "tests", "benches", "fuzz", "docs", "config"] {
        files(&root.join(dir), &mut all);
    }
    all.push(root.join("README.md"));
    all.push(root.join("BENCHMARKS.md"));
    let cite = regex::Regex::new(r"docs/[A-Za-z0-9_./-]+\.md").unwrap();
    let outside = regex::Regex::new(r"\b(PROTOCOLS|DESIGN) §|DEPENDENCIES\.md").unwrap();
    let mut problems = Vec::new();
    for f in &all {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        let shown = f.strip_prefix(root).unwrap_or(f).display().to_string();
        if shown == "tests/repository.rs" {
            continue;
        }
        for (n, line) in text.lines().enumerate() {
            if outside.is_match(line) {
                problems.push(format!(
                    "{shown}:{}: cites a document outside the repository",
                    n + 1
                ));
            }
            for m in cite.find_iter(line) {
                if !root.join(m.as_str()).exists() {
                    problems.push(format!("{shown}:{}: {} does not exist", n + 1, m.as_str()));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Import rules: which top-level module of `src/` may name which (docs/ARCHITECTURE.md, "Modules
// and their imports"). Every `crate::<module>` path in non-test code counts: `use` lines,
// grouped `use crate::{a, b}`, paths written out inside function bodies, and `super::` chains
// that climb out of the module. Comments and string literals do not count.

/// What a rule forbids.
enum Forbid {
    /// These modules.
    These(&'static [&'static str]),
    /// Every module of the crate except these.
    AllBut(&'static [&'static str]),
}

/// One row of the rule table.
struct Rule {
    from: &'static str,
    forbid: Forbid,
    /// Off rules are kept here, with why, until the code they describe has landed.
    on: bool,
    why: &'static str,
}

const RULES: &[Rule] = &[
    Rule {
        from: "model",
        forbid: Forbid::AllBut(&["reading"]),
        on: true,
        why: "the shared model is plain data and pure tables: it names only the canonical reading",
    },
    Rule {
        from: "decode",
        forbid: Forbid::These(&["normalize", "ecg", "queue", "sink", "source", "admin"]),
        on: true,
        why: "decoders share only the model with the stages after them",
    },
    Rule {
        from: "normalize",
        forbid: Forbid::These(&["decode", "queue", "sink", "source", "admin"]),
        on: true,
        why: "normalize takes device messages from the model, not from the decoders",
    },
    Rule {
        from: "ecg",
        forbid: Forbid::These(&["decode", "normalize", "queue", "sink", "source", "admin"]),
        on: true,
        why: "the strip builder takes samples and time rules from the model",
    },
    Rule {
        from: "sink",
        forbid: Forbid::These(&["source", "ingest", "decode"]),
        on: true,
        why: "sinks share transports and wire formats (MLLP, ER7) with sources and decoders \
              through net/, never each other's code",
    },
    Rule {
        from: "source",
        forbid: Forbid::These(&["queue", "sink"]),
        on: true,
        why: "sources hand readings to the Ingest handle, which alone stores them (docs/ingest.md)",
    },
    Rule {
        from: "queue",
        forbid: Forbid::These(&[
            "context", "config", "decode", "admin", "sink", "source", "ingest", "app", "cli",
        ]),
        on: true,
        why: "the store keeps what it is given: the audit and context record types it shares \
              with the patient context, and the redaction of a rejected payload's reason, live \
              in the model, so it imports no stage",
    },
    Rule {
        from: "net",
        forbid: Forbid::These(&[
            "decode",
            "normalize",
            "queue",
            "sink",
            "source",
            "context",
            "ingest",
            "admin",
            "config",
        ]),
        on: true,
        why: "the transport and protocol layer (MLLP, ER7, ACKs, MQTT, the FHIR client) serves \
              sources, sinks, decoders and the patient context and knows none of them; it takes \
              plain settings of its own (`ClientSettings`, `Credentials`, `Broker`, `BrokerUrl`), \
              which the config builds",
    },
    Rule {
        from: "context",
        forbid: Forbid::These(&["sink", "decode"]),
        on: true,
        why: "the patient lookup reaches the FHIR server through the net layer's client and \
              credentials, the ones the FHIR sink uses too; identifier checks and audit types \
              are the model's",
    },
];

impl Rule {
    fn forbids(&self, to: &str) -> bool {
        if to == self.from {
            return false;
        }
        match self.forbid {
            Forbid::These(list) => list.contains(&to),
            Forbid::AllBut(allowed) => !allowed.contains(&to),
        }
    }
}

/// `text` with comments, string literals and character literals blanked (line breaks kept, so
/// line numbers stay right).
fn code_only(text: &str) -> String {
    blank_out(text, false)
}

/// `text` with comments and character literals blanked and, unless `keep_strings`, string
/// literals too.
fn blank_out(text: &str, keep_strings: bool) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    // Keeps line breaks of skipped text.
    let blank = |out: &mut String, s: &[char]| {
        for ch in s {
            out.push(if *ch == '\n' { '\n' } else { ' ' });
        }
    };
    while i < c.len() {
        let rest = &c[i..];
        if rest.starts_with(&['/', '/']) {
            let end = rest.iter().position(|&ch| ch == '\n').unwrap_or(rest.len());
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest.starts_with(&['/', '*']) {
            let (mut depth, mut j) = (0usize, 0);
            while j < rest.len() {
                if rest[j..].starts_with(&['/', '*']) {
                    depth += 1;
                    j += 2;
                } else if rest[j..].starts_with(&['*', '/']) {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            blank(&mut out, &rest[..j.min(rest.len())]);
            i += j;
        } else if rest[0] == 'r'
            && (i == 0 || !(c[i - 1].is_alphanumeric() || c[i - 1] == '_'))
            && rest.len() > 1
            && (rest[1] == '"' || rest[1] == '#')
        {
            // Raw string r"…" or r#"…"#.
            let hashes = rest[1..].iter().take_while(|&&ch| ch == '#').count();
            if rest.get(1 + hashes) != Some(&'"') {
                out.push(rest[0]);
                i += 1;
                continue;
            }
            let mut close = vec!['"'];
            close.extend(std::iter::repeat_n('#', hashes));
            let body = 2 + hashes;
            let end = (body..rest.len())
                .find(|&j| rest[j..].starts_with(&close))
                .map_or(rest.len(), |j| j + close.len());
            if keep_strings {
                out.extend(&rest[..end]);
            } else {
                blank(&mut out, &rest[..end]);
            }
            i += end;
        } else if rest[0] == '"' {
            let mut j = 1;
            while j < rest.len() && rest[j] != '"' {
                j += if rest[j] == '\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(rest.len());
            if keep_strings {
                out.extend(&rest[..end]);
            } else {
                blank(&mut out, &rest[..end]);
            }
            i += end;
        } else if rest[0] == '\'' {
            // A character literal ('x', '\n', '"'); anything else is a lifetime.
            let len = if rest.get(1) == Some(&'\\') {
                rest[2..].iter().position(|&ch| ch == '\'').map(|p| p + 3)
            } else if rest.get(2) == Some(&'\'') {
                Some(3)
            } else {
                None
            };
            match len {
                Some(n) => {
                    blank(&mut out, &rest[..n.min(rest.len())]);
                    i += n;
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            out.push(rest[0]);
            i += 1;
        }
    }
    out
}

/// The lines of `code` that are not test code: inline `#[cfg(test)] mod … { … }` blocks are
/// blanked (test files are left out by name).
fn without_test_modules(code: &str) -> Vec<String> {
    let lines: Vec<&str> = code.lines().collect();
    let mut out = Vec::with_capacity(lines.len());
    let mut i = 0;
    while i < lines.len() {
        let t = lines[i].trim();
        let opens_test_mod = t == "#[cfg(test)]"
            && lines[i + 1..]
                .iter()
                .map(|l| l.trim())
                .find(|l| !l.starts_with("#["))
                .is_some_and(|l| {
                    (l.starts_with("mod ") || l.starts_with("pub mod ")) && l.ends_with('{')
                });
        if !opens_test_mod {
            out.push(lines[i].to_string());
            i += 1;
            continue;
        }
        let mut depth = 0i32;
        let mut opened = false;
        while i < lines.len() {
            for ch in lines[i].chars() {
                match ch {
                    '{' => {
                        depth += 1;
                        opened = true;
                    }
                    '}' => depth -= 1,
                    _ => {}
                }
            }
            out.push(String::new());
            i += 1;
            if opened && depth <= 0 {
                break;
            }
        }
    }
    out
}

/// The top-level modules `code` names, each with the byte offset where it is named, given the
/// module path of its file (`["decode", "hl7v2", "oru"]`).
fn named_modules(code: &str, module_path: &[String]) -> Vec<(usize, String)> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|ch| ch.is_alphanumeric() || *ch == '_')
            .collect()
    };
    let word_before = |at: usize| {
        code[..at]
            .chars()
            .next_back()
            .is_some_and(|ch| ch.is_alphanumeric() || ch == '_' || ch == '$' || ch == ':')
    };
    let mut found = Vec::new();
    for (p, _) in code.match_indices("crate::") {
        if word_before(p) {
            continue; // `$crate::`, `mycrate::`, `other::crate::`
        }
        let start = p + "crate::".len();
        let after = &code[start..];
        let lead = after.len() - after.trim_start().len();
        let Some(group) = after.trim_start().strip_prefix('{') else {
            found.push((p, ident(after)));
            continue;
        };
        // `crate::{a::X, b}` over one or more lines: the first segment of each item.
        let base = start + lead + 1;
        let (mut depth, mut item_start) = (0, true);
        for (k, ch) in group.char_indices() {
            match ch {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => item_start = true,
                _ if item_start && !ch.is_whitespace() => {
                    found.push((base + k, ident(&group[k..])));
                    item_start = false;
                }
                _ => {}
            }
        }
    }
    // `super::…::x` climbing out to the crate root names the top-level module `x`.
    for (p, _) in code.match_indices("super::") {
        if word_before(p) {
            continue; // counted with the chain's first `super`
        }
        let mut ups = 0;
        let mut t = &code[p..];
        while let Some(r) = t.strip_prefix("super::") {
            ups += 1;
            t = r;
        }
        if ups > 0 && ups == module_path.len() {
            found.push((p, ident(t)));
        }
    }
    found.retain(|(_, m)| !m.is_empty() && m != "self");
    found
}

/// Every broken rule in the file `shown` (`src/decode/json.rs`) with text `text`.
fn violations(shown: &str, text: &str) -> Vec<String> {
    let rel = shown
        .strip_prefix("src/")
        .unwrap_or(shown)
        .trim_end_matches(".rs");
    let mut module_path: Vec<String> = rel.split('/').map(str::to_string).collect();
    if module_path.last().is_some_and(|l| l == "mod") {
        module_path.pop();
    }
    let Some(top) = module_path.first().cloned() else {
        return Vec::new();
    };
    let code = without_test_modules(&code_only(text)).join("\n");
    let mut out = Vec::new();
    for (at, to) in named_modules(&code, &module_path) {
        let line = code[..at].matches('\n').count() + 1;
        for rule in RULES.iter().filter(|r| r.on && r.from == top) {
            if rule.forbids(&to) {
                out.push(format!(
                    "{shown}:{line}: `{top}` names `crate::{to}` ({})",
                    rule.why
                ));
            }
        }
    }
    out
}

fn is_test_file(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name == "tests.rs" || name.ends_with("_tests.rs")
}

/// Runs `check(shown path, text)` on every non-test source file under `dir` (relative to the
/// repository), and fails with every problem found, or when fewer than `at_least` files were
/// read (a rule that reads nothing would pass for ever).
fn check_product_files(
    dir: &str,
    at_least: usize,
    mut check: impl FnMut(&str, &str) -> Vec<String>,
) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut all = Vec::new();
    files(&root.join(dir), &mut all);
    let mut problems = Vec::new();
    let mut scanned = 0;
    for f in all
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "rs") && !is_test_file(f))
    {
        let shown = f.strip_prefix(root).unwrap_or(f).display().to_string();
        problems.extend(check(&shown, &std::fs::read_to_string(f).unwrap()));
        scanned += 1;
    }
    assert!(scanned >= at_least, "only {scanned} source files found");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn modules_import_only_what_the_rule_table_allows() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // A rule about a module that does not exist would pass for ever.
    for rule in RULES {
        let m = root.join("src").join(rule.from);
        assert!(
            m.is_dir() || m.with_extension("rs").exists(),
            "rule table names a missing module `{}`",
            rule.from
        );
    }
    check_product_files("src", 101, violations);
}

#[test]
fn the_import_rule_check_finds_every_way_of_naming_a_module() {
    let found = |file: &str, src: &str| violations(file, src);
    // A `use` line, naming file and line.
    let v = found(
        "src/decode/json.rs",
        "//! doc\n\nuse crate::normalize::codes;\n",
    );
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(
        v[0].starts_with("src/decode/json.rs:3: `decode` names `crate::normalize`"),
        "{}",
        v[0]
    );
    // A path inside a function body.
    let v = found(
        "src/decode/openbci.rs",
        "fn f() {\n    let s = crate::ecg::options::SPECS;\n}\n",
    );
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0].contains("openbci.rs:2:"), "{}", v[0]);
    // A grouped use.
    let v = found(
        "src/decode/mod.rs",
        "use crate::{reading::Kind, sink::hl7};\n",
    );
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0].contains("crate::sink"), "{}", v[0]);
    let v = found(
        "src/ecg/strip.rs",
        "use crate::{\n    reading::{Kind, Flag},\n    queue::Queue,\n};\n",
    );
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(
        v[0].contains("strip.rs:3: `ecg` names `crate::queue`"),
        "{}",
        v[0]
    );
    // `super::` climbing out of the module.
    let v = found(
        "src/decode/hl7v2/oru.rs",
        "use super::super::super::normalize::codes;\n",
    );
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(found("src/decode/hl7v2/oru.rs", "use super::Delimiters;\n").is_empty());
    // The model may name only the reading.
    assert_eq!(
        found("src/model/codes.rs", "use crate::decode::Options;\n").len(),
        1
    );
    assert!(found(
        "src/model/codes.rs",
        "use crate::reading::Kind;\nuse crate::model::x;\n"
    )
    .is_empty());
    // Allowed, commented, quoted or test code is not a violation.
    let fine = "use crate::model::codes;\n\
                // see crate::normalize::codes\n\
                /* crate::ecg */\n\
                const S: &str = \"crate::normalize\";\n\
                const R: &str = r#\"crate::ecg\"#;\n\
                const Q: char = '\"';\n\
                fn f<'a>(x: &'a str) -> &'a str { x }\n\
                #[cfg(test)]\n\
                mod tests {\n    use crate::normalize::NormalizeContext;\n}\n\
                use crate::reading::Kind;\n";
    let v = found("src/decode/json.rs", fine);
    assert!(v.is_empty(), "{v:?}");
    // A line after a test module is checked again.
    let v = found(
        "src/decode/json.rs",
        &format!("{fine}use crate::queue::Queue;\n"),
    );
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0].contains("json.rs:13:"), "{}", v[0]);
    // A source that names the store is caught.
    let v = found("src/source/mqtt.rs", "use crate::queue::Queue;\n");
    assert_eq!(v.len(), 1, "{v:?}");
    // The HL7 sink writes ER7 with the net layer's escapes, not the decoder's.
    assert_eq!(
        found(
            "src/sink/hl7/encode.rs",
            "use crate::net::hl7::format_dtm;\nuse crate::decode::hl7v2::Delimiters;\n"
        )
        .len(),
        1
    );
    // The store and the patient context take shared types from the model, not the decoders.
    assert_eq!(
        found(
            "src/queue/rejected.rs",
            "fn f(r: &str) -> String { crate::decode::redact::redact_quoted(r) }\n"
        )
        .len(),
        1
    );
    assert_eq!(
        found(
            "src/context/mod.rs",
            "use crate::model::identifier::check_system;\nuse crate::decode::barcode::x;\n"
        )
        .len(),
        1
    );
    // The net layer names no decoder, stage or user of it; the model is fine.
    let v = found(
        "src/net/hl7/ack.rs",
        "use super::er7::Er7;\nuse crate::model::DeviceTime;\nuse crate::decode::hl7v2::Oru;\n",
    );
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(
        v[0].contains("ack.rs:3: `net` names `crate::decode`"),
        "{}",
        v[0]
    );
    assert_eq!(
        found(
            "src/net/http.rs",
            "fn f() { crate::context::lookup::x(); }\n"
        )
        .len(),
        1
    );
    // The net layer takes its own settings types: the config builds them, never the reverse.
    let v = found(
        "src/net/oauth.rs",
        "use super::jwt::SigningKey;\nuse crate::config::{FhirAuth, OAuthConfig};\n",
    );
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(
        v[0].contains("oauth.rs:2: `net` names `crate::config`"),
        "{}",
        v[0]
    );
    assert_eq!(
        found(
            "src/net/mqtt.rs",
            "fn f(u: &str) { let _ = crate::config::parse_broker_url(u); }\n"
        )
        .len(),
        1
    );
    assert!(found("src/config/net.rs", "use crate::net::mqtt::Broker;\n").is_empty());
    // The patient context reaches the FHIR server through the net layer, not the sink.
    let v = found(
        "src/context/lookup/fhir.rs",
        "use crate::sink::fhir::http::client;\nuse crate::net::http::read_bounded;\n",
    );
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(
        v[0].contains("fhir.rs:1: `context` names `crate::sink`"),
        "{}",
        v[0]
    );
}

// ---------------------------------------------------------------------------------------------
// Re-exports: a module whose users should name another module directly does not re-export it
// (docs/ARCHITECTURE.md, "Rules"). Every `pub use` (`pub(crate)`, `pub(super)` … too) in
// non-test code that names a forbidden module counts, grouped or through `super::` chains.

/// One row of the re-export table: `from` re-exports nothing of `of`.
struct ReexportRule {
    from: &'static str,
    of: &'static [&'static str],
    why: &'static str,
}

const REEXPORT_RULES: &[ReexportRule] = &[
    ReexportRule {
        from: "decode",
        of: &["net"],
        why: "MLLP framing, the ER7 reader, `Hl7Error` and ACKs are the net layer's: sources, \
              sinks and simulators import them from `crate::net::hl7`, never through a decoder",
    },
    ReexportRule {
        from: "source",
        of: &["net"],
        why: "the backoff and the MQTT broker settings are the net layer's: sinks and the app \
              import them from `crate::net`, never through a source",
    },
];

/// Every re-export in `shown` (`src/decode/hl7v2.rs`) with text `text` that the table forbids.
fn reexport_violations(shown: &str, text: &str) -> Vec<String> {
    let rel = shown
        .strip_prefix("src/")
        .unwrap_or(shown)
        .trim_end_matches(".rs");
    let mut module_path: Vec<String> = rel.split('/').map(str::to_string).collect();
    if module_path.last().is_some_and(|l| l == "mod") {
        module_path.pop();
    }
    let Some(top) = module_path.first().cloned() else {
        return Vec::new();
    };
    let code = without_test_modules(&code_only(text)).join("\n");
    let reexport = regex::Regex::new(r"\bpub\s*(\([^)]*\))?\s*use\s[^;]*;").unwrap();
    let mut out = Vec::new();
    for m in reexport.find_iter(&code) {
        for (at, to) in named_modules(m.as_str(), &module_path) {
            let line = code[..m.start() + at].matches('\n').count() + 1;
            for rule in REEXPORT_RULES
                .iter()
                .filter(|r| r.from == top && r.of.contains(&to.as_str()))
            {
                out.push(format!(
                    "{shown}:{line}: `{top}` re-exports `crate::{to}` ({})",
                    rule.why
                ));
            }
        }
    }
    out
}

#[test]
fn modules_re_export_only_what_the_table_allows() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for rule in REEXPORT_RULES {
        for m in std::iter::once(rule.from).chain(rule.of.iter().copied()) {
            let p = root.join("src").join(m);
            assert!(
                p.is_dir() || p.with_extension("rs").exists(),
                "re-export table names a missing module `{m}`"
            );
        }
    }
    check_product_files("src", 101, reexport_violations);
}

#[test]
fn the_re_export_rule_finds_every_visibility_and_spelling() {
    let found = |file: &str, src: &str| reexport_violations(file, src);
    // A plain re-export, naming file and line.
    let v = found(
        "src/decode/hl7v2.rs",
        "//! doc\n\npub use crate::net::hl7::{Hl7Error, MAX_MESSAGE};\n",
    );
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(
        v[0].starts_with("src/decode/hl7v2.rs:3: `decode` re-exports `crate::net`"),
        "{}",
        v[0]
    );
    // Restricted visibility, a grouped path over lines, and a `super::` chain.
    assert_eq!(
        found(
            "src/decode/hl7v2/mllp.rs",
            "pub(super) use crate::net::hl7::mllp::unframe;\n"
        )
        .len(),
        1
    );
    let v = found(
        "src/decode/mod.rs",
        "pub(crate) use crate::{\n    model::redact,\n    net::hl7,\n};\n",
    );
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0].contains("mod.rs:3:"), "{}", v[0]);
    assert_eq!(
        found(
            "src/decode/hl7v2.rs",
            "pub use super::super::net::hl7::Hl7Error;\n"
        )
        .len(),
        1
    );
    // Importing for its own use, re-exporting the model, other modules, comments and test
    // code are fine.
    let fine = "use crate::net::hl7::{Hl7Error, MllpFramer};\n\
                pub use crate::model::redact;\n\
                pub use oru::{parse_oru, Oru};\n\
                // pub use crate::net::hl7::Hl7Error;\n\
                #[cfg(test)]\n\
                mod tests {\n    pub use crate::net::hl7::mllp_frame;\n}\n";
    let v = found("src/decode/hl7v2.rs", fine);
    assert!(v.is_empty(), "{v:?}");
    // A source may not re-export the net layer either; another top-level module may.
    let v = found("src/source/mqtt.rs", "pub use crate::net::mqtt::Broker;\n");
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0].contains("`source` re-exports `crate::net`"), "{v:?}");
    assert!(found("src/sink/mqtt.rs", "pub use crate::net::mqtt::Broker;\n").is_empty());
}

// ---------------------------------------------------------------------------------------------
// Sources pick no driver by name (docs/ARCHITECTURE.md, "The `Decoder` trait and the registry"):
// what a transport does differently for a driver (the MQTT topic a BLE gateway names the
// characteristic in) is a capability of the driver's registry entry, which the source asks.
// In the non-test code of `src/source/`, no string literal names a driver (or starts with
// `ble`), and no path names the `ble_gatt` decoder.

/// Every place in `shown` (with text `text`) where a source names a driver; `drivers` are the
/// registry's driver names.
fn driver_name_violations(shown: &str, text: &str, drivers: &[&str]) -> Vec<String> {
    if !shown.starts_with("src/source/") {
        return Vec::new();
    }
    let code = without_test_modules(&blank_out(text, true));
    let literal = regex::Regex::new(r#""((?:[^"\\]|\\.)*)""#).unwrap();
    let mut out = Vec::new();
    for (n, line) in code.iter().enumerate() {
        for c in literal.captures_iter(line) {
            let s = &c[1];
            if s.starts_with("ble") || drivers.contains(&s) {
                out.push(format!(
                    "{shown}:{}: names the driver \"{s}\": ask its registry entry for a \
                     capability instead",
                    n + 1
                ));
            }
        }
        if code_only(line).contains("ble_gatt") {
            out.push(format!(
                "{shown}:{}: names the `ble_gatt` decoder: ask the registry entry's capability",
                n + 1
            ));
        }
    }
    out
}

#[test]
fn sources_name_no_driver() {
    let drivers: Vec<&str> = vitalsd::decode::drivers().iter().map(|d| d.name).collect();
    assert!(drivers.contains(&"ble-gatt"), "{drivers:?}");
    check_product_files("src/source", 5, |shown, text| {
        driver_name_violations(shown, text, &drivers)
    });
}

#[test]
fn the_driver_name_rule_finds_names_compared_matched_or_imported() {
    let drivers = ["ble-gatt", "hl7v2", "json"];
    let found = |file: &str, src: &str| driver_name_violations(file, src, &drivers);
    let v = found(
        "src/source/mqtt/device.rs",
        "fn f(d: &D) {\n    if d.driver != \"ble-gatt\" {}\n}\n",
    );
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0].starts_with("src/source/mqtt/device.rs:2:"), "{}", v[0]);
    assert_eq!(
        found("src/source/mqtt.rs", "match d { \"json\" => 1, _ => 2 }\n").len(),
        1
    );
    assert_eq!(
        found("src/source/mqtt.rs", "let b = name.starts_with(\"ble\");\n").len(),
        1
    );
    assert_eq!(
        found(
            "src/source/mqtt.rs",
            "use crate::decode::ble_gatt::BleGatt;\n"
        )
        .len(),
        1
    );
    // Comments, test modules, other text and other modules are fine.
    let fine = "// the ble-gatt driver: \"ble-gatt\"\n\
                const T: &str = \"gw/exam3/2A1C\";\n\
                #[cfg(test)]\nmod tests {\n    const D: &str = \"ble-gatt\";\n}\n";
    let v = found("src/source/mqtt/device.rs", fine);
    assert!(v.is_empty(), "{v:?}");
    assert!(found("src/decode/ble_gatt.rs", "const N: &str = \"ble-gatt\";\n").is_empty());
}

// ---------------------------------------------------------------------------------------------
// The store's own modules (docs/ARCHITECTURE.md, "The store layer"): outside `src/queue/`, code
// names the store through its handles and types (`crate::queue::{Queue, Held, …}`), never its
// internals. The few sub-modules others may name are listed here with who and why.

/// A sub-module of `src/queue/` that code outside the store may name, and by whom.
struct StoreOpening {
    module: &'static str,
    /// Top-level modules allowed to name it (`*`: any).
    by: &'static [&'static str],
    why: &'static str,
}

const STORE_OPENINGS: &[StoreOpening] = &[
    StoreOpening {
        module: "cipher",
        by: &["*"],
        why: "the store key (its file, its source in the config) and the record cipher the audit \
              files share",
    },
    StoreOpening {
        module: "reclaim",
        by: &["app"],
        why: "the daemon configures the online rewrite when it opens the store",
    },
    StoreOpening {
        module: "compact",
        by: &["app", "cli"],
        why: "the store's rewrite: `queue compact`, and the daemon sealing an unencrypted store",
    },
    StoreOpening {
        module: "repair",
        by: &["cli"],
        why: "offline verify and salvage belong to the CLI: the running daemon names none of it",
    },
];

/// Every place outside the store where `shown` (with text `text`) names a sub-module of the
/// store it may not. `store_modules` are the sub-modules that exist.
fn store_violations(shown: &str, text: &str, store_modules: &[String]) -> Vec<String> {
    let rel = shown.strip_prefix("src/").unwrap_or(shown);
    let top = rel
        .split('/')
        .next()
        .unwrap_or("")
        .trim_end_matches(".rs")
        .to_string();
    if top == "queue" {
        return Vec::new();
    }
    let code = without_test_modules(&code_only(text)).join("\n");
    // `crate::queue::x`, `queue::x` after `use crate::queue`, and `crate::queue::{x, y::z}`.
    let path = regex::Regex::new(
        r"(^|[^A-Za-z0-9_:])(?:crate::)?queue::(\{[^}]*\}|[A-Za-z_][A-Za-z0-9_]*)",
    )
    .unwrap();
    let mut out = Vec::new();
    for c in path.captures_iter(&code) {
        let whole = c.get(0).unwrap();
        let line =
            code[..whole.start()].matches('\n').count() + 1 + usize::from(c[1].starts_with('\n'));
        let named: Vec<String> = match c[2].strip_prefix('{') {
            Some(group) => group
                .trim_end_matches('}')
                .split(',')
                .map(|i| i.trim().split("::").next().unwrap_or("").to_string())
                .collect(),
            None => vec![c[2].to_string()],
        };
        for m in named.iter().filter(|m| store_modules.contains(m)) {
            let open = STORE_OPENINGS
                .iter()
                .find(|o| o.module == m.as_str())
                .filter(|o| o.by.contains(&"*") || o.by.contains(&top.as_str()));
            if open.is_none() {
                let why = STORE_OPENINGS
                    .iter()
                    .find(|o| o.module == m.as_str())
                    .map_or(
                        "a store internal: name the handles and types `crate::queue` exports",
                        |o| o.why,
                    );
                out.push(format!(
                    "{shown}:{line}: `{top}` names `crate::queue::{m}` ({why})"
                ));
            }
        }
    }
    out
}

fn store_modules(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(root.join("src/queue")).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if e.path().is_dir() {
            out.push(name);
        } else if let Some(m) = name.strip_suffix(".rs") {
            if m != "mod" {
                out.push(m.to_string());
            }
        }
    }
    out
}

#[test]
fn outside_the_store_only_its_handles_and_openings_are_named() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let modules = store_modules(root);
    for o in STORE_OPENINGS {
        assert!(
            modules.iter().any(|m| m == o.module),
            "opening for a missing store module `{}`",
            o.module
        );
    }
    check_product_files("src", 101, |shown, text| {
        store_violations(shown, text, &modules)
    });
}

#[test]
fn the_store_rule_finds_internals_and_repair_outside_the_cli() {
    let modules: Vec<String> = ["writer", "txn", "repair", "cipher", "held", "compact"]
        .iter()
        .map(|m| m.to_string())
        .collect();
    let found = |file: &str, src: &str| store_violations(file, src, &modules);
    // The daemon's modules never name the offline repair tools.
    let v = found("src/admin/api.rs", "use crate::queue::repair::verify;\n");
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(
        v[0].contains("api.rs:1: `admin` names `crate::queue::repair`"),
        "{}",
        v[0]
    );
    let v = found(
        "src/app.rs",
        "use crate::queue;\nfn f() { queue::repair::salvage::x(); }\n",
    );
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0].contains("app.rs:2:"), "{}", v[0]);
    assert!(found("src/cli/repair.rs", "use crate::queue::repair::salvage;\n").is_empty());
    // Internals, grouped or not; the context may not reach into the store either.
    let v = found(
        "src/context/mod.rs",
        "use crate::queue::{Queue, txn::Txn, held::HeldValue};\n",
    );
    assert_eq!(v.len(), 2, "{v:?}");
    assert_eq!(
        found(
            "src/sink/delivery.rs",
            "fn f() { crate::queue::writer::x(); }\n"
        )
        .len(),
        1
    );
    // Handles, types, functions and the openings are fine; test code is not checked.
    let fine = "use crate::queue::{Queue, Held, QueueError, marker_missing};\n\
                use crate::queue::cipher::StoreKey;\n\
                #[cfg(test)]\nmod tests {\n    use crate::queue::txn::Txn;\n}\n";
    let v = found("src/admin/mod.rs", fine);
    assert!(v.is_empty(), "{v:?}");
    // The store names itself freely.
    assert!(found("src/queue/held.rs", "use crate::queue::txn::Txn;\n").is_empty());
}

// ---------------------------------------------------------------------------------------------
// File size: no source file of the product over 500 lines. Test modules do not count:
// `*_tests.rs`, `tests.rs`, anything under a `tests/` folder, and files declared only under
// `#[cfg(test)]` (fakes and test helpers).

/// The longest a source file may be.
const MAX_LINES: usize = 500;

/// Files allowed over the limit while they wait to be split. The list may only shrink: a listed
/// file that is at or under the limit fails the test too, so it is taken off the list the moment
/// it is split. Every file is under the limit today.
const STILL_OVER: &[&str] = &[];

/// The files a `#[cfg(test)] mod name;` declaration in `file` brings in (`name.rs`,
/// `name/mod.rs` or its `#[path]`), relative to the directory of the declaring module.
fn test_only_modules(file: &Path, text: &str, out: &mut Vec<PathBuf>) {
    let dir = file.parent().unwrap_or(Path::new(""));
    let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    // `a.rs` declares children in `a/`; `mod.rs`, `lib.rs` and `main.rs` in their own folder.
    let child_dir = if matches!(stem, "mod" | "lib" | "main") {
        dir.to_path_buf()
    } else {
        dir.join(stem)
    };
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    for (i, l) in lines.iter().enumerate() {
        if *l != "#[cfg(test)]" {
            continue;
        }
        let mut path_attr = None;
        for next in &lines[i + 1..] {
            if let Some(p) = next
                .strip_prefix("#[path = \"")
                .and_then(|r| r.strip_suffix("\"]"))
            {
                path_attr = Some(p.to_string());
                continue;
            }
            if next.starts_with("#[") {
                continue;
            }
            let decl = next
                .trim_start_matches("pub(crate) ")
                .trim_start_matches("pub ")
                .strip_prefix("mod ")
                .and_then(|r| r.strip_suffix(';'));
            if let Some(name) = decl {
                match &path_attr {
                    // `#[path]` on an out-of-line module is relative to the declaring file.
                    Some(p) => out.push(dir.join(p)),
                    None => {
                        out.push(child_dir.join(format!("{name}.rs")));
                        out.push(child_dir.join(name).join("mod.rs"));
                    }
                }
            }
            break;
        }
    }
}

#[test]
fn no_source_file_is_over_500_lines_but_the_listed_ones() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut all = Vec::new();
    files(&root.join("src"), &mut all);
    all.retain(|f| f.extension().is_some_and(|e| e == "rs"));
    let mut test_only = Vec::new();
    for f in &all {
        test_only_modules(f, &std::fs::read_to_string(f).unwrap(), &mut test_only);
    }
    let mut problems = Vec::new();
    let mut measured = 0;
    for f in &all {
        let shown = f.strip_prefix(root).unwrap_or(f).display().to_string();
        if is_test_file(f) || shown.contains("/tests/") || test_only.contains(f) {
            continue;
        }
        measured += 1;
        let lines = std::fs::read_to_string(f).unwrap().lines().count();
        let listed = STILL_OVER.contains(&shown.as_str());
        if lines > MAX_LINES && !listed {
            problems.push(format!(
                "{shown}: {lines} lines (at most {MAX_LINES}): split it along a seam"
            ));
        }
        if lines <= MAX_LINES && listed {
            problems.push(format!(
                "{shown}: {lines} lines, yet listed in STILL_OVER: take it off the list"
            ));
        }
    }
    for listed in STILL_OVER {
        if !root.join(listed).exists() {
            problems.push(format!(
                "{listed} is listed in STILL_OVER but does not exist"
            ));
        }
    }
    assert!(measured > 100, "only {measured} source files measured");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_test_only_module_is_found_by_name_and_by_path() {
    let mut out = Vec::new();
    test_only_modules(
        Path::new("src/sink/mod.rs"),
        "#[cfg(test)]\nmod delivery_fake;\nmod real;\n",
        &mut out,
    );
    test_only_modules(
        Path::new("src/sink/delivery.rs"),
        "#[cfg(test)]\n#[path = \"delivery_tests.rs\"]\nmod tests;\n",
        &mut out,
    );
    test_only_modules(
        Path::new("src/a.rs"),
        "#[cfg(test)]\nmod b {\n}\n",
        &mut out,
    );
    assert_eq!(
        out,
        vec![
            PathBuf::from("src/sink/delivery_fake.rs"),
            PathBuf::from("src/sink/delivery_fake/mod.rs"),
            PathBuf::from("src/sink/delivery_tests.rs"),
        ]
    );
}
