//! ARCHITECTURE.md's dependency rule, checked against the code.
//!
//! Every top-level module of the library may use only the modules listed for it in
//! [`ALLOWED`]; a `crate::<module>` path anywhere in its code (outside comments) counts as
//! a use. A new edge between modules is a design decision: make it here and in
//! ARCHITECTURE.md ("Code map") together, or the test fails.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module → the internal modules it may depend on. Mirrors ARCHITECTURE.md.
const ALLOWED: &[(&str, &[&str])] = &[
    ("protocol", &[]),
    ("redis", &[]),
    ("auth", &["protocol"]),
    ("hub", &["protocol"]),
    ("broker", &["protocol", "redis"]),
    ("presence", &["redis"]),
    (
        "channels",
        &["auth", "broker", "hub", "presence", "protocol", "redis"],
    ),
    ("config", &["auth", "broker", "channels", "presence"]),
    ("metrics", &["broker", "presence", "protocol"]),
    (
        "server",
        &[
            "auth", "broker", "channels", "config", "hub", "metrics", "presence", "protocol",
            "redis",
        ],
    ),
    ("fuzzing", &["auth", "protocol", "server"]),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The library's top-level modules, from `pub mod` / `mod` lines of lib.rs.
fn modules() -> BTreeSet<String> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).expect("src/lib.rs is readable");
    lib.lines()
        .map(str::trim)
        .filter_map(|l| {
            l.strip_prefix("pub mod ")
                .or_else(|| l.strip_prefix("mod "))
        })
        .map(|rest| rest.trim_end_matches(';').trim().to_owned())
        .collect()
}

/// Every `.rs` file of a module (`src/<m>.rs` or everything under `src/<m>/`).
fn files_of(module: &str) -> Vec<PathBuf> {
    let file = src().join(format!("{module}.rs"));
    if file.is_file() {
        return vec![file];
    }
    let mut out = Vec::new();
    let mut dirs = vec![src().join(module)];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("module directory is readable") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The code of a line without its comment (`//` not part of a `://` URL).
fn code_part(line: &str) -> &str {
    let bytes = line.as_bytes();
    let mut i = 0;
    while let Some(pos) = line[i..].find("//") {
        let at = i + pos;
        if at > 0 && bytes[at - 1] == b':' {
            i = at + 2;
            continue;
        }
        return &line[..at];
    }
    line
}

/// The internal modules named by `crate::<m>` paths in `text`, outside comments.
fn uses(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let code = code_part(line);
        let mut rest = code;
        while let Some(pos) = rest.find("crate::") {
            let after = &rest[pos + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // `use crate::{a, b}` names several modules at once.
            if name.is_empty() && after.starts_with('{') {
                let list = after[1..].split('}').next().unwrap_or_default();
                for item in list.split(',') {
                    let head: String = item
                        .trim()
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !head.is_empty() {
                        found.insert(head);
                    }
                }
            } else if !name.is_empty() {
                found.insert(name);
            }
            rest = after;
        }
    }
    found
}

#[test]
fn every_module_has_a_rule() {
    let rules: BTreeSet<String> = ALLOWED.iter().map(|(m, _)| (*m).to_owned()).collect();
    assert_eq!(
        modules(),
        rules,
        "src/lib.rs's modules and the dependency rule (tests/architecture.rs, ARCHITECTURE.md) must name the same modules"
    );
}

#[test]
fn modules_depend_only_on_what_architecture_allows() {
    let rules: BTreeMap<&str, BTreeSet<&str>> = ALLOWED
        .iter()
        .map(|(m, deps)| (*m, deps.iter().copied().collect()))
        .collect();
    let modules = modules();
    let mut violations = Vec::new();
    for (module, allowed) in &rules {
        for file in files_of(module) {
            let text = std::fs::read_to_string(&file).expect("source file is readable");
            for used in uses(&text) {
                if used == *module || !modules.contains(&used) {
                    continue;
                }
                if !allowed.contains(used.as_str()) {
                    violations.push(format!(
                        "{} uses crate::{used}, which {module} may not depend on",
                        file.strip_prefix(src()).unwrap_or(&file).display()
                    ));
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "dependency rule broken (change the code, or the rule here and in ARCHITECTURE.md):\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_scanner_sees_uses_and_skips_comments() {
    let text = "use crate::hub::Hub;\n\
                use crate::{auth, presence::Store};\n\
                // crate::server is only mentioned here\n\
                let url = \"redis://x\"; // crate::metrics too\n\
                let b = crate::broker::MemoryBroker::new();\n";
    let found: Vec<String> = uses(text).into_iter().collect();
    assert_eq!(found, ["auth", "broker", "hub", "presence"]);
}
