//! SECURITY G9: the formats' vectors pass a second implementation written
//! from `docs/spec/` alone — the Python one in `interop/python/`. Run here
//! so that a change to the formats, the vectors or the spec that leaves the
//! three disagreeing fails the tests, not a reader years later.
//!
//! Needs `python3` with the `venv` module; `interop/python/run.sh` creates
//! its virtualenv and installs its pinned packages from PyPI on first use
//! (`.ci/run` makes sure Python is there).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

#[test]
fn g9_a_python_implementation_written_from_the_spec_passes_every_vector() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../interop/python/run.sh");
    let out = Command::new("bash").arg(&script).output().unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the second implementation disagrees with the vectors (or could not be set up: it needs python3 with venv, \
         and PyPI on first run):\n{stdout}\n{stderr}"
    );
    let summary = stdout.lines().last().unwrap_or_default();
    let passed: usize = summary.split(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0);
    let vectors = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/spec/vectors"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "json"))
        .count();
    assert_eq!(summary, format!("{vectors} passed, 0 failed, 0 unsupported"), "{stdout}");
    assert_eq!(passed, vectors);
}
