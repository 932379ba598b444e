//! Runs the end-to-end suite in `tests/e2e` (unmodified Action Cable JavaScript
//! clients against the real `ferrocable` binary) as part of `cargo test`.
//!
//! Needs Node.js (20 or newer) and npm on `PATH`, or `NODE` / `NPM` naming them; a
//! missing `node` fails the test with instructions instead of passing silently.
//! `npm ci` runs first when `tests/e2e/node_modules` is absent or older than the lockfile.
//! A skipped (or todo) e2e test fails this test: nothing in the suite may pass unrun.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `name` from the environment variable `var`, else the first match on `PATH`.
fn find_program(var: &str, name: &str) -> Option<PathBuf> {
    if let Some(p) = env::var_os(var) {
        return Some(PathBuf::from(p));
    }
    env::split_paths(&env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn run(cmd: &mut Command, what: &str) {
    eprintln!("js_client: running {cmd:?}");
    // stdout/stderr are inherited, so the output streams as it comes.
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot start {what} ({cmd:?}): {e}"));
    assert!(status.success(), "{what} failed: {status}");
}

#[test]
fn action_cable_js_clients_pass_the_e2e_suite() {
    let Some(node) = find_program("NODE", "node") else {
        panic!(
            "Node.js not found: the end-to-end suite in tests/e2e needs `node` (20 or newer) \
             and `npm` on PATH (or NODE=/path/to/node). Install Node.js, e.g. \
             `apt-get install nodejs npm`."
        );
    };
    let e2e = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e");

    // Install when node_modules is missing or older than the lockfile.
    let stamp = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let stale = match (
        stamp(&e2e.join("node_modules/.package-lock.json")),
        stamp(&e2e.join("package-lock.json")),
    ) {
        (Some(installed), Some(lock)) => installed < lock,
        _ => true,
    };
    if stale {
        let npm = find_program("NPM", "npm").unwrap_or_else(|| {
            panic!(
                "npm not found, and tests/e2e/node_modules is missing: install npm \
                 (or set NPM=/path/to/npm), or run `npm ci` in tests/e2e"
            )
        });
        run(
            Command::new(npm)
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&e2e),
            "npm ci in tests/e2e",
        );
    }

    // Besides the usual report on stdout, a TAP copy whose totals say whether any test
    // skipped: a test that cannot run must fail, not pass as skipped.
    let tap = tempfile::NamedTempFile::new().expect("a temp file for the TAP report");
    run(
        Command::new(node)
            // The files mostly wait on sockets and timers (one waits 20 s on purpose),
            // so run them side by side; node's default is one file per core minus one.
            .args(["--test", "--test-concurrency=6"])
            .args(["--test-reporter=spec", "--test-reporter-destination=stdout"])
            .arg("--test-reporter=tap")
            .arg(format!(
                "--test-reporter-destination={}",
                tap.path().display()
            ))
            .current_dir(&e2e)
            .env("FERROCABLE_BIN", env!("CARGO_BIN_EXE_ferrocable")),
        "node --test in tests/e2e",
    );
    let report = std::fs::read_to_string(tap.path()).expect("node's TAP report");
    for total in ["skipped", "todo"] {
        let n = report
            .lines()
            .find_map(|l| l.strip_prefix(&format!("# {total} ")))
            .unwrap_or_else(|| panic!("node's TAP report has no `# {total}` total"));
        assert_eq!(
            n.trim(),
            "0",
            "tests/e2e: {n} test(s) {total}; they must run"
        );
    }
}
