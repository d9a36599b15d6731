//! Helpers shared by the differential and bad-input tests: generating the CPython corpus,
//! running the `pikl` binary with a timeout and a memory cap, allowlists and hex diffs.
//!
//! Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The `pikl` binary under test.
pub fn pikl_bin() -> &'static str {
    env!("CARGO_BIN_EXE_pikl")
}

/// `tests/corpus` of the repository: the generator scripts and their helper module.
pub fn corpus_scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("tests").join("corpus")
}

/// A fresh directory for this test process, under cargo's per-target tmp dir when cargo gives
/// one (else the system temp dir). Directories left behind by earlier test processes that no
/// longer run are removed first.
pub fn scratch_dir(tag: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let base = scratch_base();
    std::fs::create_dir_all(&base).unwrap_or_else(|e| panic!("cannot create {}: {e}", base.display()));
    remove_stale_scratch_dirs(&base);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = base.join(format!("pikl-test-{}-{tag}-{nanos}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// Cargo's per-target tmp dir for integration tests, else the system temp dir.
pub fn scratch_base() -> PathBuf {
    match option_env!("CARGO_TARGET_TMPDIR") {
        Some(d) => PathBuf::from(d),
        None => std::env::temp_dir(),
    }
}

/// Removes `pikl-test-<pid>-...` directories whose process is gone (Linux: no `/proc/<pid>`).
fn remove_stale_scratch_dirs(base: &Path) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(base) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("pikl-test-")) else { continue };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else { continue };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Runs `python3 tests/corpus/<script> OUTDIR`, failing the test with a clear message when
/// python3 is missing or the script fails. Never skips.
pub fn run_generator(script: &str, outdir: &Path) {
    run_script(script, &[outdir.display().to_string()]);
}

/// Runs `python3 tests/corpus/<script> ARGS...` with `PYTHONHASHSEED=0` (sets iterate in a
/// fixed order) and returns what it printed, failing the test with a clear message when
/// python3 is missing or the script fails. Never skips.
pub fn run_script(script: &str, args: &[String]) -> String {
    let path = corpus_scripts().join(script);
    let out = Command::new("python3")
        .arg(&path)
        .args(args)
        .env("PYTHONHASHSEED", "0")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `python3 {}`: {e}\n\
                 These tests need CPython 3.11 (python3 on PATH) as their oracle; \
                 install it rather than skipping the tests.",
                path.display()
            )
        });
    if !out.status.success() {
        panic!(
            "`python3 {} {}` failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
            path.display(),
            args.join(" "),
            out.status,
            tail(&String::from_utf8_lossy(&out.stdout), 3000),
            tail(&String::from_utf8_lossy(&out.stderr), 3000),
        );
    }
    String::from_utf8(out.stdout).expect("the script prints UTF-8")
}

/// The last `n` bytes of `s` (on a char boundary).
pub fn tail(s: &str, n: usize) -> &str {
    if s.len() <= n {
        return s;
    }
    let mut start = s.len() - n;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// The first `n` bytes of `s` (on a char boundary), with `...` when cut.
pub fn head(s: &str, n: usize) -> String {
    if s.len() <= n {
        return s.to_owned();
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// How a child process ended.
#[derive(Debug)]
pub struct Outcome {
    /// The exit code; `None` when killed by a signal or timed out.
    pub code: Option<i32>,
    /// Killed by us after the timeout.
    pub timed_out: bool,
    /// A description of the status (`exit status: 1`, `signal: 6 (SIGABRT)`...).
    pub status: String,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Outcome {
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Runs `cmd` to completion, killing it after `timeout`.
pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Outcome {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let (result, timed_out) = match rx.recv_timeout(timeout) {
        Ok(r) => (r, false),
        Err(_) => {
            // The child is owned by the waiter thread: kill it by its pid (it is our own
            // child and not reaped yet, so the pid cannot have been reused).
            let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
            (rx.recv().expect("waiter thread"), true)
        }
    };
    waiter.join().expect("waiter thread");
    let out = result.unwrap_or_else(|e| panic!("waiting for {cmd:?}: {e}"));
    Outcome {
        code: if timed_out { None } else { out.status.code() },
        timed_out,
        status: format!("{}", out.status),
        stdout: out.stdout,
        stderr: out.stderr,
    }
}

/// A command running the `pikl` binary with its address space capped at `max_bytes`
/// (`prlimit --as`, or `ulimit -v` through `sh` when prlimit is missing).
pub fn pikl_limited(max_bytes: u64) -> Command {
    static HAVE_PRLIMIT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let have = *HAVE_PRLIMIT.get_or_init(|| {
        Command::new("prlimit")
            .args(["--as=1000000000", "--", "true"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if have {
        let mut c = Command::new("prlimit");
        c.arg(format!("--as={max_bytes}")).arg("--").arg(pikl_bin());
        c
    } else {
        let mut c = Command::new("sh");
        c.arg("-c").arg(format!("ulimit -v {} && exec \"$0\" \"$@\"", max_bytes / 1024)).arg(pikl_bin());
        c
    }
}

/// Runs `f(i)` for every `i` in `0..n` on all cores, results in index order.
pub fn parallel_map<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let threads = std::thread::available_parallelism().map_or(2, |t| t.get()).clamp(1, 8);
    let next = AtomicUsize::new(0);
    let mut parts: Vec<Vec<(usize, T)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            break;
                        }
                        out.push((i, f(i)));
                    }
                    out
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("worker thread panicked")).collect()
    });
    let mut all: Vec<(usize, T)> = parts.drain(..).flatten().collect();
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, t)| t).collect()
}

// ---- hex ----

pub fn hex_decode(s: &str) -> Vec<u8> {
    fn nib(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => panic!("bad hex digit {:?}", c as char),
        }
    }
    let b = s.as_bytes();
    assert!(b.len() % 2 == 0, "odd-length hex string");
    b.chunks_exact(2).map(|p| (nib(p[0]) << 4) | nib(p[1])).collect()
}

pub fn hex_encode(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

/// A short description of how `got` differs from `want`: lengths, the first differing offset
/// and up to 16 bytes of each from a little before it.
pub fn short_hex_diff(got: &[u8], want: &[u8]) -> String {
    let first = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(got.len().min(want.len()));
    let start = first.saturating_sub(4);
    let g = &got[start.min(got.len())..(start + 16).min(got.len())];
    let w = &want[start.min(want.len())..(start + 16).min(want.len())];
    format!(
        "len {} vs {}, first diff at {first}: pikl[{start}..] {} / cpython[{start}..] {}",
        got.len(),
        want.len(),
        hex_encode(g),
        hex_encode(w)
    )
}

// ---- allowlists ----

/// A checked-in list of known differences: lines `KEY  # reason`, where KEY is one or more
/// whitespace-separated words. Blank lines and lines starting with `#` are ignored.
pub struct Allowlist {
    pub path: PathBuf,
    /// KEY -> (line number, reason).
    pub entries: BTreeMap<String, (usize, String)>,
}

impl Allowlist {
    /// Reads `tests/<file>` of this crate; a missing file is an empty list.
    pub fn load(file: &str) -> Allowlist {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join(file);
        let mut entries = BTreeMap::new();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => panic!("cannot read {}: {e}", path.display()),
        };
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, reason) = match line.split_once('#') {
                Some((k, r)) => (k, r.trim()),
                None => (line, ""),
            };
            let key = key.split_whitespace().collect::<Vec<_>>().join(" ");
            assert!(!reason.is_empty(), "{}:{}: entry `{key}` needs a `# reason`", path.display(), i + 1);
            if let Some((prev, _)) = entries.insert(key.clone(), (i + 1, reason.to_owned())) {
                panic!("{}:{}: `{key}` is already listed on line {prev}", path.display(), i + 1);
            }
        }
        Allowlist { path, entries }
    }

    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    /// Keys whose last word satisfies `kind` (e.g. all `convert:P` entries).
    pub fn keys_where(&self, kind: impl Fn(&str) -> bool) -> Vec<&str> {
        self.entries.keys().filter(|k| kind(k.rsplit(' ').next().unwrap_or(""))).map(String::as_str).collect()
    }
}

/// Sorts the results of a check into failures, allowlisted differences and stale allowlist
/// entries, then [`report`]s them.
pub struct Tally<'a> {
    check: &'static str,
    allow: &'a Allowlist,
    pub checked: usize,
    failures: Vec<String>,
    pub allowed: Vec<String>,
    stale: Vec<String>,
    /// Keys checked (or accounted for otherwise): an allowlist entry of this check missing
    /// here names nothing.
    pub seen: BTreeSet<String>,
}

impl<'a> Tally<'a> {
    pub fn new(check: &'static str, allow: &'a Allowlist) -> Self {
        Tally { check, allow, checked: 0, failures: vec![], allowed: vec![], stale: vec![], seen: BTreeSet::new() }
    }

    /// Records one checked key: `problem` is `Some(description)` when pikl differs. A key
    /// checked twice is a bug in the test.
    pub fn record(&mut self, key: String, problem: Option<String>) {
        self.checked += 1;
        let listed = self.allow.contains(&key);
        match problem {
            Some(p) if listed => self.allowed.push(format!("{key}: {p}")),
            Some(p) => self.failures.push(format!("{key}: {p}")),
            None if listed => self.stale.push(format!("{key}: now matches")),
            None => {}
        }
        assert!(self.seen.insert(key.clone()), "checked twice: {key}");
    }

    /// Fails on failures, and on allowlist entries whose check satisfies `kind` (the key's
    /// last word) that were not checked at all.
    pub fn finish(mut self, kind: impl Fn(&str) -> bool) {
        for key in self.allow.keys_where(kind) {
            if !self.seen.contains(key) {
                self.stale.push(format!("{key}: no such case and check"));
            }
        }
        report(self.check, self.checked, &self.failures, &self.allowed, &self.stale, self.allow);
    }
}

/// Prints failures (first 30) and panics if there are any; prints allowlisted ones as a count,
/// and fails for allowlisted keys (of this check) that no longer fail.
pub fn report(
    check: &str,
    checked: usize,
    failures: &[String],
    allowed: &[String],
    stale: &[String],
    allowlist: &Allowlist,
) {
    eprintln!(
        "{check}: {checked} checked, {} failed, {} known differences ({}), {} stale allowlist entries",
        failures.len(),
        allowed.len(),
        allowlist.path.file_name().and_then(|f| f.to_str()).unwrap_or("?"),
        stale.len()
    );
    let mut msg = String::new();
    if !failures.is_empty() {
        let full = scratch_base().join(format!("pikl-{check}-failures.txt"));
        let mut text = failures.join("\n");
        text.push('\n');
        let _ = std::fs::write(&full, text);
        let _ = writeln!(msg, "{check}: {} failures (first 30; all in {}):", failures.len(), full.display());
        for f in failures.iter().take(30) {
            let _ = writeln!(msg, "  {f}");
        }
    }
    if !stale.is_empty() {
        let _ = writeln!(
            msg,
            "{check}: {} entries of {} no longer differ; remove them:",
            stale.len(),
            allowlist.path.display()
        );
        for s in stale {
            let _ = writeln!(msg, "  {s}");
        }
    }
    if !msg.is_empty() {
        panic!("{msg}");
    }
}

/// Elapsed time, for progress lines.
pub fn since(t: Instant) -> String {
    format!("{:.1}s", t.elapsed().as_secs_f64())
}
