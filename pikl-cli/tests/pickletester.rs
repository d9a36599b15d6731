//! CPython's own pickle test-suite (`test/pickletester.py` of Python 3.11) with `pikl` in the
//! loop: `tests/pickletester/run_pickletester.py` makes every pickle the tests check go through
//! `pikl convert` (see the script's docstring for the wiring, what is skipped and why).
//!
//! python3 (CPython 3.11 with its `test` package) is required: without it this test fails.

use std::path::Path;
use std::process::Command;

#[test]
fn cpython_pickletester_through_pikl() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/pickletester/run_pickletester.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(env!("CARGO_BIN_EXE_pikl"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONIOENCODING", "utf-8")
        .output()
        .unwrap_or_else(|e| panic!("python3 is required for the pickletester run: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    print!("{stdout}");
    eprint!("{stderr}");
    assert!(
        out.status.success(),
        "python3 {} failed ({}); the summary is at the end of the output above",
        script.display(),
        out.status
    );
    assert!(stdout.contains("pickletester with pikl in the loop"), "the runner printed no summary");
}
