//! `pikl dis` against `python3 -m pickletools`, character for character.
//!
//! The corpus and the expected outputs are generated at test time by the scripts in
//! `tests/dis/` (CPython is the oracle); python3 is required: without it these tests fail.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use pikl::dis::{dis, DisOptions, Memo};
use pikl::read::{Read as _, SliceRead};

const PIKL: &str = env!("CARGO_BIN_EXE_pikl");

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/dis")
}

/// A fresh scratch directory for one test.
fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("dis-golden-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

/// Runs `python3 tests/dis/<script> args...`; panics (fails the test) if python3 is missing.
fn python(script: &str, args: &[&Path]) -> String {
    let out = Command::new("python3")
        .arg(scripts().join(script))
        .args(args)
        .env("PYTHONIOENCODING", "utf-8")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("python3 is required for the pickletools golden tests: {e}"));
    assert!(out.status.success(), "python3 {script} {args:?} failed: {}", out.status);
    String::from_utf8(out.stdout).unwrap()
}

fn corpus(dir: &Path) -> PathBuf {
    let c = dir.join("corpus");
    python("gen_corpus.py", &[&c]);
    c
}

struct Run {
    stdout: Vec<u8>,
    stderr: String,
    code: i32,
}

fn pikl(args: &[OsString], stdin: Option<&Path>) -> Run {
    let mut cmd = Command::new(PIKL);
    cmd.arg("dis").args(args);
    cmd.stdin(match stdin {
        Some(p) => Stdio::from(fs::File::open(p).unwrap()),
        None => Stdio::null(),
    });
    let out = cmd.output().expect("run pikl");
    Run {
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: out.status.code().unwrap_or(-1),
    }
}

/// Where two texts first differ, for a readable failure.
fn first_difference(want: &[u8], got: &[u8]) -> String {
    let want = String::from_utf8_lossy(want);
    let got = String::from_utf8_lossy(got);
    for (i, (w, g)) in want.split_inclusive('\n').zip(got.split_inclusive('\n')).enumerate() {
        if w != g {
            return format!("line {}:\n  want {w:?}\n  got  {g:?}", i + 1);
        }
    }
    format!("lengths differ: want {} lines, got {} lines", want.lines().count(), got.lines().count())
}

/// Checks one case directory written by `expect.py dis`; `None` when it passes.
fn check_case(dir: &Path) -> Option<String> {
    let args: Vec<OsString> = fs::read_to_string(dir.join("args")).unwrap().lines().map(OsString::from).collect();
    let want = fs::read(dir.join("stdout")).unwrap();
    let code: i32 = fs::read_to_string(dir.join("code")).unwrap().trim().parse().unwrap();
    let msg = fs::read_to_string(dir.join("msg")).unwrap();
    let stdin = fs::read_to_string(dir.join("stdin")).ok().map(PathBuf::from);
    let run = pikl(&args, stdin.as_deref());
    let what = format!("pikl dis {args:?} (stdin {stdin:?}) [{}]", dir.display());
    if run.stdout != want {
        return Some(format!(
            "{what}: stdout differs, {}\n  stderr: {}",
            first_difference(&want, &run.stdout),
            run.stderr
        ));
    }
    if run.code != code {
        return Some(format!("{what}: exit status {} instead of {code}; stderr: {}", run.code, run.stderr));
    }
    if code == 0 && !run.stderr.is_empty() {
        return Some(format!("{what}: unexpected stderr {:?}", run.stderr));
    }
    if code == 1 && !(run.stderr.starts_with("pikl: ") && run.stderr.contains(&msg)) {
        return Some(format!("{what}: stderr {:?} does not carry pickletools' message {msg:?}", run.stderr));
    }
    None
}

/// Runs `check` over `items` on all cores; panics listing the failures.
fn run_all<T: Sync>(items: &[T], check: impl Fn(&T) -> Option<String> + Sync) {
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let workers = std::thread::available_parallelism().map_or(4, |n| n.get()).min(16);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                if let Some(f) = check(item) {
                    failures.lock().unwrap().push(f);
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    if !failures.is_empty() {
        let shown: Vec<&String> = failures.iter().take(12).collect();
        panic!(
            "{} of {} cases differ from pickletools:\n{}",
            failures.len(),
            items.len(),
            shown.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n\n")
        );
    }
}

#[test]
fn corpus_matches_python_m_pickletools() {
    let dir = scratch("corpus");
    let corpus = corpus(&dir);
    let cases = dir.join("cases");
    python("expect.py", &[Path::new("dis"), &corpus, &cases]);
    let mut dirs: Vec<PathBuf> = fs::read_dir(&cases).unwrap().map(|e| e.unwrap().path()).collect();
    dirs.sort();
    assert!(dirs.len() > 1000, "only {} cases generated", dirs.len());
    let errors = dirs.iter().filter(|d| fs::read_to_string(d.join("code")).unwrap().trim() == "1").count();
    assert!(errors > 150, "only {errors} error cases");
    run_all(&dirs, |d| check_case(d));
    eprintln!("{} pikl dis runs matched pickletools ({errors} of them errors)", dirs.len());
    let _ = fs::remove_dir_all(&dir);
}

/// pickletools' own doctests (`_dis_test`, `_memo_test`), read from its `__test__` dict.
#[test]
fn pickletools_doctests() {
    let dir = scratch("doctests");
    python("expect.py", &[Path::new("doctests"), &dir]);
    let mut memos: HashMap<String, Memo> = HashMap::new();
    let mut n = 0;
    let mut through_binary = 0;
    while dir.join(format!("{n}.data")).exists() {
        let data = fs::read(dir.join(format!("{n}.data"))).unwrap();
        let want = fs::read_to_string(dir.join(format!("{n}.want"))).unwrap();
        let meta = fs::read_to_string(dir.join(format!("{n}.meta"))).unwrap();
        let meta: Vec<&str> = meta.lines().collect();
        let start: usize = meta[0].parse().unwrap();
        let options = DisOptions { indent: meta[2].parse().unwrap(), annotate: meta[3].parse().unwrap() };
        let mut r = SliceRead::new(&data);
        r.read_exact(start).unwrap();
        let mut out = Vec::new();
        let memo = if meta[1] == "-" { None } else { Some(memos.entry(meta[1].to_owned()).or_default()) };
        dis(&mut r, &mut out, memo, &options).unwrap_or_else(|e| panic!("doctest call {n}: {e}"));
        assert_eq!(String::from_utf8(out).unwrap(), want, "doctest call {n}");

        if start == 0 && meta[1] == "-" && options.indent == 4 && options.annotate == 0 {
            let file = dir.join(format!("{n}.pkl"));
            fs::write(&file, &data).unwrap();
            let run = pikl(&[file.into()], None);
            assert_eq!((String::from_utf8(run.stdout).unwrap(), run.code), (want, 0), "doctest call {n} via pikl dis");
            through_binary += 1;
        }
        n += 1;
    }
    assert!(n >= 14 && through_binary >= 10, "{n} doctest calls, {through_binary} through the binary");
    assert!(memos.len() == 1, "the memo doctest shares one memo across two calls");
    let _ = fs::remove_dir_all(&dir);
}

fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, data).unwrap();
    p
}

#[test]
fn error_names_file_and_offset() {
    let dir = scratch("errors");
    let p = write(&dir, "twice.pkl", b"]q\x00q\x00.");
    let run = pikl(&[p.clone().into()], None);
    assert_eq!(
        String::from_utf8(run.stdout).unwrap(),
        "    0: ]    EMPTY_LIST\n    1: q    BINPUT     0\n    3: q    BINPUT     0\n"
    );
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stderr,
        format!("pikl: {}: unpickling error at byte 3 (opcode BINPUT): memo key 0 already defined\n", p.display())
    );

    let p = write(&dir, "trunc.pkl", b"\x80\x02]q\x00(K\x01K");
    let run = pikl(&[p.clone().into()], None);
    assert_eq!(run.code, 1);
    assert!(run.stdout.ends_with(b"    6: K        BININT1    1\n"), "{:?}", String::from_utf8_lossy(&run.stdout));
    assert_eq!(
        run.stderr,
        format!(
            "pikl: {}: unexpected end of pickle at byte 8 (opcode BININT1): not enough data in stream to read uint1\n",
            p.display()
        )
    );

    let run = pikl(&[], Some(&p));
    assert_eq!(run.code, 1);
    assert!(run.stderr.starts_with("pikl: <stdin>: unexpected end of pickle at byte 8"), "{}", run.stderr);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn usage_errors_exit_2() {
    let dir = scratch("usage");
    let good = write(&dir, "n.pkl", b"N.");
    for args in [
        vec![OsString::from("--bogus")],
        vec![dir.join("missing.pkl").into()],
        vec!["-p".into(), "{foo}".into(), good.clone().into(), good.clone().into()],
        vec!["-p".into(), "}".into(), good.clone().into()],
        vec!["-l".into(), "x".into(), good.clone().into()],
        vec!["-o".into(), dir.join("no/such/dir").into(), good.clone().into()],
    ] {
        let run = pikl(&args, None);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(run.stdout.is_empty(), "{args:?}");
    }
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn output_file() {
    let dir = scratch("output");
    let p = write(&dir, "l.pkl", b"\x80\x02]q\x00(K\x01K\x02e.");
    let q = write(&dir, "n.pkl", b"N.");
    let out = dir.join("out.txt");
    let run = pikl(
        &["-o".into(), out.clone().into(), "-p".into(), "# {name}".into(), p.clone().into(), q.clone().into()],
        None,
    );
    assert_eq!((run.code, run.stdout.len(), run.stderr.as_str()), (0, 0, ""));
    let want = format!(
        "# {}
    0: \\x80 PROTO      2
    2: ]    EMPTY_LIST
    3: q    BINPUT     0
    5: (    MARK
    6: K        BININT1    1
    8: K        BININT1    2
   10: e        APPENDS    (MARK at 5)
   11: .    STOP
highest protocol among opcodes = 2
# {}
    0: N    NONE
    1: .    STOP
highest protocol among opcodes = 0
",
        p.display(),
        q.display()
    );
    assert_eq!(fs::read_to_string(&out).unwrap(), want);
    let _ = fs::remove_dir_all(&dir);
}

/// `pikl dis big.pkl | head` ends quietly with status 0.
#[test]
fn broken_pipe_is_not_an_error() {
    let mut data = b"\x80\x02]q\x00(".to_vec();
    for i in 0..200_000u32 {
        data.push(b'J');
        data.extend_from_slice(&i.to_le_bytes());
    }
    data.extend_from_slice(b"e.");
    let mut child = Command::new(PIKL)
        .args(["dis", "-a", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let mut stdout = child.stdout.take().unwrap();
    let mut head = [0u8; 4096];
    stdout.read_exact(&mut head).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    assert!(head.starts_with(b"    0: \\x80 PROTO      2"), "{}", String::from_utf8_lossy(&head[..80]));
    assert_eq!(out.status.code(), Some(0), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
}

/// Memory does not grow with the stream: a 24 MiB pickle fed through a pipe.
#[test]
fn streams_in_bounded_memory() {
    let megabytes = 24;
    let out = Command::new("python3")
        .arg(scripts().join("rss.py"))
        .arg(PIKL)
        .arg(megabytes.to_string())
        .output()
        .unwrap_or_else(|e| panic!("python3 is required: {e}"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rss_kib: u64 = String::from_utf8(out.stdout).unwrap().trim().parse().unwrap();
    assert!(rss_kib < megabytes * 1024, "peak RSS {rss_kib} KiB for a {megabytes} MiB stream");
}
