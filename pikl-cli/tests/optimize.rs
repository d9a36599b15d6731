//! `pikl optimize` against `pickletools.optimize`, byte for byte.
//!
//! The corpus (protocols 0-5, hand-written and malformed pickles) and the expected results
//! are generated at test time by `tests/dis/gen_corpus.py` and `tests/dis/expect.py`;
//! python3 is required: without it these tests fail.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

const PIKL: &str = env!("CARGO_BIN_EXE_pikl");

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/dis")
}

fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("optimize-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn python(script: &str, args: &[&Path]) {
    let status = Command::new("python3")
        .arg(scripts().join(script))
        .args(args)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .status()
        .unwrap_or_else(|e| panic!("python3 is required for the pickletools.optimize tests: {e}"));
    assert!(status.success(), "python3 {script} {args:?} failed: {status}");
}

/// Checks `pikl optimize` on one pickle of the expected-results directory.
fn check(pkl: &Path) -> Option<String> {
    let want_ok = fs::read(pkl.with_extension("opt")).ok();
    let want_err = fs::read_to_string(pkl.with_extension("err")).ok();
    let out = Command::new(PIKL).arg("optimize").arg(pkl).stdin(Stdio::null()).output().expect("run pikl");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let what = pkl.display();
    match (want_ok, want_err) {
        (Some(want), _) => {
            if out.status.code() != Some(0) {
                return Some(format!("{what}: exit {:?}, stderr {stderr}", out.status.code()));
            }
            if out.stdout != want {
                let at =
                    want.iter().zip(&out.stdout).position(|(a, b)| a != b).unwrap_or(want.len().min(out.stdout.len()));
                return Some(format!(
                    "{what}: output differs from pickletools.optimize at byte {at} (lengths {} and {})",
                    want.len(),
                    out.stdout.len()
                ));
            }
            // The library gives the same bytes.
            let data = fs::read(pkl).unwrap();
            if pikl::optimize::optimize(&data).ok().as_deref() != Some(&want[..]) {
                return Some(format!("{what}: pikl::optimize::optimize differs from the binary"));
            }
            None
        }
        (None, Some(msg)) => {
            if out.status.code() != Some(1) || !out.stdout.is_empty() {
                return Some(format!("{what}: want an error ({msg}), got exit {:?}", out.status.code()));
            }
            if !stderr.contains(&msg) {
                return Some(format!("{what}: stderr {stderr:?} lacks pickletools' message {msg:?}"));
            }
            None
        }
        (None, None) => Some(format!("{what}: no expectation written")),
    }
}

#[test]
fn corpus_matches_pickletools_optimize() {
    let dir = scratch("corpus");
    let corpus = dir.join("corpus");
    let expected = dir.join("expected");
    python("gen_corpus.py", &[&corpus]);
    python("expect.py", &[Path::new("optimize"), &corpus, &expected]);
    let mut pickles: Vec<PathBuf> = fs::read_dir(&expected)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pkl"))
        .collect();
    pickles.sort();
    let ok = pickles.iter().filter(|p| p.with_extension("opt").exists()).count();
    assert!(ok > 350 && pickles.len() - ok > 50, "{ok} optimizable of {}", pickles.len());
    // Every protocol and framing (protocol 4+, large items outside frames) is represented.
    for needle in ["_p0.pkl", "_p1.pkl", "_p2.pkl", "_p3.pkl", "_p4.pkl", "_p5.pkl", "big_list_p5", "bytes_big_p4"] {
        assert!(pickles.iter().any(|p| p.to_string_lossy().contains(needle)), "{needle}");
    }

    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..std::thread::available_parallelism().map_or(4, |n| n.get()).min(16) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(p) = pickles.get(i) else { break };
                if let Some(f) = check(p) {
                    failures.lock().unwrap().push(f);
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} differ:\n{}",
        failures.len(),
        pickles.len(),
        failures[..failures.len().min(12)].join("\n")
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn stdin_and_output_file() {
    let dir = scratch("io");
    // pickle.dumps([[1], [1]] with a shared inner list, 2) and what pickletools.optimize makes of it.
    let data = b"\x80\x02]q\x00(]q\x01K\x01ah\x01e.";
    let want = b"\x80\x02](]q\x00K\x01ah\x00e.";
    let mut child = Command::new(PIKL).arg("optimize").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!((out.status.code(), &out.stdout[..]), (Some(0), &want[..]));

    let input = dir.join("in.pkl");
    let output = dir.join("out.pkl");
    fs::write(&input, data).unwrap();
    let out = Command::new(PIKL).arg("optimize").arg(&input).arg("-o").arg(&output).output().unwrap();
    assert_eq!((out.status.code(), out.stdout.len()), (Some(0), 0));
    assert_eq!(fs::read(&output).unwrap(), want);

    fs::write(&input, b"\x80\x02]q\x00").unwrap();
    let out = Command::new(PIKL).arg("optimize").arg(&input).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.starts_with(&format!("pikl: {}: ", input.display()))
            && stderr.contains("pickle exhausted before seeing STOP"),
        "{stderr}"
    );
    let _ = fs::remove_dir_all(&dir);
}
