//! The README's commands on the shipped samples work as the README says: the quick start's
//! `pikl show` line is read from README.md and run as written, and its output is checked
//! against what CPython loads from the same file.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The arguments after `--` of the README's `cargo run ... -p pikl-cli -- ARGS  # ...` line.
fn quick_start_args() -> Vec<String> {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let line = readme
        .lines()
        .find(|l| l.starts_with("cargo run --release -p pikl-cli -- "))
        .expect("README's quick start runs pikl-cli");
    let cmd = line.split('#').next().expect("command").trim();
    cmd.split_once(" -- ").expect("-- before the arguments").1.split_whitespace().map(str::to_owned).collect()
}

fn run(args: &[String]) -> (bool, String, String) {
    let out = Command::new(common::pikl_bin()).current_dir(repo()).args(args).output().expect("run pikl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// CPython's reprs of every pickle of `file`, loaded with one Unpickler (a shared memo).
fn cpython_reprs(file: &str) -> Vec<String> {
    let script = "import pickle, sys\n\
                  f = open(sys.argv[1], 'rb'); u = pickle.Unpickler(f)\n\
                  while f.peek(1):\n    print(repr(u.load()))\n";
    let out = Command::new("python3").current_dir(repo()).args(["-c", script, file]).output().expect("run python3");
    assert!(out.status.success(), "python3: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8").lines().map(str::to_owned).collect()
}

#[test]
fn quick_start_shows_the_sample_as_cpython_loads_it() {
    let args = quick_start_args();
    assert_eq!(args.first().map(String::as_str), Some("show"), "{args:?}");
    let file = args.last().expect("a file").clone();
    let (ok, stdout, stderr) = run(&args);
    assert!(ok, "pikl {args:?} failed: {stderr}");
    let got: Vec<&str> = stdout.lines().collect();
    let want = cpython_reprs(&file);
    assert_eq!(got.len(), want.len(), "{got:?} / CPython {want:?}");
    assert!(want.len() >= 2, "the sample shows a stream of several pickles");
    // Instances print as their construction in pikl (datetime, Decimal, ...), so the first,
    // object-rich pickle is compared by its plain parts; the others are plain data.
    for (i, (g, w)) in got.iter().zip(&want).enumerate().skip(1) {
        assert_eq!(g, w, "pickle {}", i + 1);
    }
    for part in ["'name': 'pikl'", "'blob': b'\\x00\\x01\\xff'", "'left': [1, 2, 3]", "'nan': nan"] {
        assert!(got[0].contains(part) && want[0].contains(part), "{part} in {} / {}", got[0], want[0]);
    }
    // The sample's pickles share one memo; without --memo the second pickle's GET of the first
    // pickle's object fails, and says to pass --memo.
    let without: Vec<String> = args.iter().filter(|a| *a != "--memo").cloned().collect();
    assert_ne!(without, args, "the quick start passes --memo");
    let (ok, _, stderr) = run(&without);
    assert!(!ok && stderr.contains("pass --memo"), "{stderr}");
}

#[test]
fn python2_sample_shows_with_latin1() {
    let args: Vec<String> =
        ["show", "--encoding", "latin1", "samples/py2_example.pkl"].iter().map(|s| s.to_string()).collect();
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    assert!(readme.contains(&format!("pikl {}", args.join(" "))), "README names this command");
    let (ok, stdout, stderr) = run(&args);
    assert!(ok, "{stderr}");
    let script = "import pickle, sys\nprint(repr(pickle.load(open(sys.argv[1], 'rb'), encoding='latin1')))\n";
    let out = Command::new("python3")
        .current_dir(repo())
        .args(["-c", script, "samples/py2_example.pkl"])
        .output()
        .expect("run python3");
    assert!(out.status.success(), "python3: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout, String::from_utf8_lossy(&out.stdout));
}
