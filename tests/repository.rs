//! The repository explains itself: every document a comment or doc cites is in the repository.

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
