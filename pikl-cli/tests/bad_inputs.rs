//! Malformed and hostile inputs.
//!
//! * `bad_corpus_never_crashes_and_matches_cpython`: every input of
//!   `tests/corpus/gen_bad.py` goes through `pikl show` in a subprocess with a timeout and an
//!   address-space cap. pikl must never panic, be killed or hang (exit 0 or 1 only). Where
//!   CPython's C unpickler (`pickle.loads`) fails, pikl must exit 1 naming the byte offset; where
//!   it loads, pikl must exit 0 (and print CPython's repr when the manifest has one). pikl may be
//!   stricter where `pickle._loads` is too (frames: pikl enforces them like the pure-Python
//!   unpickler). Other differences are listed in `tests/known_bad_differences.txt`, one
//!   `NAME  # reason` a line; each listed input must still differ.
//! * `mutations_in_process`: every truncation and a deterministic set of single-byte mutations
//!   of small corpus pickles, through the library in this process: no panic, errors carry an
//!   offset inside the input and name it in their message, a proper prefix of one pickle never
//!   loads, the slice and reader sources agree (values, and each error's offset and message),
//!   and whatever loads re-pickles at every protocol into bytes pikl loads again.

mod common;

use std::io::BufReader;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{hex_encode, parallel_map, run_with_timeout, Allowlist};
use pikl::value::ReprOptions;
use pikl::{DecodeErrors, Encoding, Unpickler, UnpicklerOptions};

/// Generous: the million-deep inputs take about 2 s in a debug build on an idle machine, and
/// other work on the machine can slow that down severalfold.
const TIMEOUT: Duration = Duration::from_secs(30);
/// Address-space cap for `pikl show` (CPython's verdicts were taken under 3 GiB).
const MEM_LIMIT: u64 = 2_000_000_000;
const ALLOWLIST: &str = "known_bad_differences.txt";
/// Allowlist keys of `mutations_in_process` start with this word.
const MUTATION: &str = "mutation ";

struct BadInput {
    name: String,
    path: PathBuf,
    encoding: String,
    errors: String,
    /// `"ok"` or the exception `pickle.loads` raised.
    cpython: String,
    cpython_py: String,
    cpython_file: String,
    message: Option<String>,
    repr: Option<String>,
    /// `repr()` of what `pickle._loads` gives, when it differs from `repr`.
    repr_py: Option<String>,
    seed: bool,
}

struct BadCorpus {
    inputs: Vec<BadInput>,
}

static BAD: OnceLock<BadCorpus> = OnceLock::new();

fn bad_corpus() -> &'static BadCorpus {
    BAD.get_or_init(|| {
        let t = Instant::now();
        let dir = common::scratch_dir("bad");
        common::run_generator("gen_bad.py", &dir);
        let manifest = dir.join("bad_manifest.json");
        let text =
            std::fs::read_to_string(&manifest).unwrap_or_else(|e| panic!("cannot read {}: {e}", manifest.display()));
        let json: serde_json::Value = serde_json::from_str(&text).expect("bad_manifest.json is JSON");
        let inputs: Vec<BadInput> = json
            .as_array()
            .expect("manifest is a list")
            .iter()
            .map(|e| {
                let s = |k: &str| e[k].as_str().unwrap_or_else(|| panic!("entry without {k}: {e}")).to_owned();
                BadInput {
                    name: s("name"),
                    path: dir.join(s("file")),
                    encoding: s("encoding"),
                    errors: s("errors"),
                    cpython: s("cpython"),
                    cpython_py: s("cpython_py"),
                    cpython_file: s("cpython_file"),
                    message: e["message"].as_str().map(str::to_owned),
                    repr: e["repr"].as_str().map(str::to_owned),
                    repr_py: e["repr_py"].as_str().map(str::to_owned),
                    seed: e["seed"].as_bool().unwrap_or(false),
                }
            })
            .collect();
        assert!(inputs.len() > 500, "suspiciously small bad corpus: {} inputs", inputs.len());
        eprintln!("bad corpus: {} inputs in {} ({})", inputs.len(), dir.display(), common::since(t));
        BadCorpus { inputs }
    })
}

/// How `pikl show` treated one input.
enum Verdict {
    /// Crashed, hung, or exited with a status other than 0/1: never acceptable.
    Crash(String),
    /// Differs from CPython's C unpickler.
    Differs(String),
    /// Differs from `pickle.loads` but does what `pickle._loads` does: rejects an input the
    /// pure-Python unpickler rejects too (frames), or loads the value it loads (`I+1` is 1).
    LikePython(String),
    Same,
}

fn judge(inp: &BadInput) -> Verdict {
    let mut cmd = common::pikl_limited(MEM_LIMIT);
    cmd.args(["show", "--encoding", &inp.encoding, "--errors", &inp.errors]).arg(&inp.path);
    let o = run_with_timeout(cmd, TIMEOUT);
    let stderr = o.stderr_str().replace(&inp.path.display().to_string(), "FILE");
    if o.timed_out {
        return Verdict::Crash(format!("timed out after {TIMEOUT:?}"));
    }
    if stderr.contains("panicked") {
        return Verdict::Crash(format!("panicked ({}): {}", o.status, common::head(stderr.trim(), 400)));
    }
    match o.code {
        Some(0) | Some(1) => {}
        _ => return Verdict::Crash(format!("{}: {}", o.status, common::head(stderr.trim(), 300))),
    }
    let pikl_ok = o.code == Some(0);
    let err_line = common::head(stderr.trim(), 200);
    if !pikl_ok && !stderr.contains("byte ") {
        return Verdict::Differs(format!("error message names no byte offset: {err_line}"));
    }
    let cpython =
        format!("CPython {}{}", inp.cpython, inp.message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default());
    match (pikl_ok, inp.cpython == "ok") {
        (true, true) => {
            let out = o.stdout_str();
            let first = out.lines().next().unwrap_or("");
            match &inp.repr {
                Some(want) if first != want && inp.repr_py.as_deref() == Some(first) => {
                    Verdict::LikePython(format!("pikl shows {first} like pickle._loads; pickle.loads gives {want}"))
                }
                Some(want) if first != want => Verdict::Differs(format!(
                    "loads, but pikl shows {} where CPython has {}",
                    common::head(first, 120),
                    common::head(want, 120)
                )),
                _ => Verdict::Same,
            }
        }
        (false, false) => Verdict::Same,
        (true, false) => {
            Verdict::Differs(format!("pikl loads it: {}; {cpython}", common::head(o.stdout_str().trim(), 100)))
        }
        (false, true) if inp.cpython_py != "ok" => Verdict::LikePython(format!(
            "pikl: {err_line}; pickle.loads ok, pickle._loads {}, file Unpickler {}",
            inp.cpython_py, inp.cpython_file
        )),
        (false, true) => {
            let shown = o.stdout_str();
            let shown = if shown.is_empty() {
                String::new()
            } else {
                format!(" after showing {}", common::head(shown.trim_end(), 100).replace('\n', " | "))
            };
            Verdict::Differs(format!("pikl rejects it{shown}: {err_line}; CPython loads it"))
        }
    }
}

#[test]
fn bad_corpus_never_crashes_and_matches_cpython() {
    let bad = bad_corpus();
    let allow = Allowlist::load(ALLOWLIST);
    let t = Instant::now();
    let verdicts = parallel_map(bad.inputs.len(), |i| judge(&bad.inputs[i]));
    eprintln!("pikl show: {} bad inputs ({})", bad.inputs.len(), common::since(t));
    let (mut crashes, mut failures, mut allowed, mut stale, mut like_py) = (vec![], vec![], vec![], vec![], vec![]);
    for (inp, v) in bad.inputs.iter().zip(verdicts) {
        let listed = allow.contains(&inp.name);
        match v {
            Verdict::Crash(m) => crashes.push(format!("{}: {m}", inp.name)),
            Verdict::Differs(m) if listed => allowed.push(format!("{}: {m}", inp.name)),
            Verdict::Differs(m) => failures.push(format!("{}: {m}", inp.name)),
            Verdict::LikePython(m) => {
                like_py.push(format!("{}: {m}", inp.name));
                if listed {
                    stale.push(format!("{}: accepted without a listing (does what pickle._loads does)", inp.name));
                }
            }
            Verdict::Same if listed => stale.push(format!("{}: now agrees with CPython", inp.name)),
            Verdict::Same => {}
        }
    }
    for key in allow.entries.keys().filter(|k| !k.starts_with(MUTATION)) {
        if !bad.inputs.iter().any(|i| &i.name == key) {
            stale.push(format!("{key}: no such input"));
        }
    }
    eprintln!("{} inputs where pikl does what pickle._loads does, not pickle.loads (accepted):", like_py.len());
    for s in &like_py {
        eprintln!("  {s}");
    }
    assert!(
        crashes.is_empty(),
        "pikl show crashed, hung or was killed on {} inputs (these cannot be allowlisted):\n  {}",
        crashes.len(),
        crashes.join("\n  ")
    );
    common::report("bad_inputs", bad.inputs.len(), &failures, &allowed, &stale, &allow);
}

// ---- in-process truncations and mutations ----

/// Small pickles from the good corpus (name, encoding, pickles in the stream), beside the
/// `seed_*` inputs of the bad corpus.
const GOOD_SEEDS: &[(&str, &str, usize)] = &[
    ("kitchen_sink_p0", "ASCII", 1),
    ("kitchen_sink_p1", "ASCII", 1),
    ("kitchen_sink_p3", "ASCII", 1),
    ("kitchen_sink_p5", "ASCII", 1),
    ("cycle_object_set_p2", "ASCII", 1),
    ("reduce_5tuple_p4", "ASCII", 1),
    ("p5_picklebuffer_shared_p5", "ASCII", 1),
    ("persistent_mixed_p1", "ASCII", 1),
    ("py2_list_mixed_p1_latin1", "latin1", 1),
    ("py2_dict_p0_bytes", "bytes", 1),
    ("multi_shared_list_p4", "ASCII", 3),
];

struct Seed {
    name: String,
    data: Vec<u8>,
    opts: UnpicklerOptions,
    count: usize,
}

fn options(encoding: &str, errors: &str) -> UnpicklerOptions {
    UnpicklerOptions {
        encoding: Encoding::from_name(encoding).unwrap_or_else(|| panic!("pikl lacks encoding {encoding}")),
        errors: DecodeErrors::from_name(errors).unwrap_or_else(|| panic!("pikl lacks error handler {errors}")),
        ..UnpicklerOptions::default()
    }
}

fn seeds() -> Vec<Seed> {
    let mut seeds = Vec::new();
    for inp in bad_corpus().inputs.iter().filter(|i| i.seed) {
        let data = std::fs::read(&inp.path).expect("read seed");
        seeds.push(Seed { name: inp.name.clone(), data, opts: options(&inp.encoding, &inp.errors), count: 1 });
    }
    assert!(seeds.len() >= 4, "the bad corpus has only {} seeds", seeds.len());
    let dir = common::scratch_dir("seeds");
    common::run_generator("gen_corpus.py", &dir);
    for &(name, enc, count) in GOOD_SEEDS {
        let path = dir.join(format!("{name}.pkl"));
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("corpus lost {name}: {e}"));
        seeds.push(Seed { name: name.to_owned(), data, opts: options(enc, "strict"), count });
    }
    // Only the seeds are needed from here on: drop the 90 MB corpus.
    let _ = std::fs::remove_dir_all(&dir);
    seeds
}

/// What loading one input gave: the repr of each loaded pickle, then the error if any.
#[derive(Debug, PartialEq)]
struct Run {
    reprs: Vec<String>,
    error: Option<(Option<u64>, String)>,
}

const MAX_LOADS: usize = 8;
const REPR: ReprOptions = ReprOptions { max_chars: Some(2000) };

/// Loads up to MAX_LOADS pickles from `u`, returning what happened and the problems seen in
/// re-pickling what loaded.
fn drive<'de, R: pikl::read::Read<'de>>(mut u: Unpickler<'de, R>, problems: &mut Vec<String>) -> Run {
    let mut run = Run { reprs: Vec::new(), error: None };
    for _ in 0..MAX_LOADS {
        let v = match u.load() {
            Ok(v) => v,
            Err(e) => {
                run.error = Some((e.offset(), e.to_string()));
                return run;
            }
        };
        run.reprs.push(u.view(v).repr_with(REPR));
        for p in 0..=5 {
            match pikl::dumps(u.graph(), v, Some(p)) {
                Ok(bytes) => {
                    if let Err(e) = pikl::loads(&bytes) {
                        problems.push(format!(
                            "re-pickled at protocol {p}, pikl cannot load its own output: {e}; output {}",
                            common::head(&hex_encode(&bytes), 200)
                        ));
                    }
                }
                Err(e) if e.is_pickling() => {}
                Err(e) => problems.push(format!("dumps at protocol {p} failed with a non-pickling error: {e}")),
            }
        }
        match u.at_end() {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => {
                run.error = Some((e.offset(), e.to_string()));
                return run;
            }
        }
    }
    run
}

thread_local! {
    /// Set while a library call runs under `catch_unwind`: its panic is reported with the input.
    static CATCHING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Silences panic messages of the calls `check_input` catches (once per process); panics
/// anywhere else (other tests' assertions) print as usual.
fn quiet_caught_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !CATCHING.with(|c| c.get()) {
                prev(info);
            }
        }));
    });
}

/// Runs one input through the slice and reader sources; returns problems found.
fn check_input(data: &[u8], opts: &UnpicklerOptions, must_fail: bool) -> Vec<String> {
    CATCHING.with(|c| c.set(true));
    let problems = check_input_caught(data, opts, must_fail);
    CATCHING.with(|c| c.set(false));
    problems
}

fn check_input_caught(data: &[u8], opts: &UnpicklerOptions, must_fail: bool) -> Vec<String> {
    let mut problems = Vec::new();
    let slice = catch_unwind(AssertUnwindSafe(|| {
        let mut p = Vec::new();
        let run = drive(Unpickler::from_slice(data).with_options(opts.clone()), &mut p);
        (run, p)
    }));
    let reader = catch_unwind(AssertUnwindSafe(|| {
        let mut p = Vec::new();
        // A tiny buffer, so reads straddle buffer refills.
        let r = BufReader::with_capacity(7, data);
        let run = drive(Unpickler::from_reader(r).with_options(opts.clone()), &mut p);
        (run, p)
    }));
    let (slice, reader) = match (slice, reader) {
        (Ok(s), Ok(r)) => (s, r),
        (s, r) => {
            for (what, res) in [("from_slice", s.err()), ("from_reader", r.err())] {
                if let Some(payload) = res {
                    let msg = payload
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    problems.push(format!("PANIC in {what}: {msg}"));
                }
            }
            return problems;
        }
    };
    problems.extend(slice.1);
    let run = slice.0;
    if let Some((offset, msg)) = &run.error {
        match offset {
            None => problems.push(format!("error without an offset: {msg}")),
            Some(o) if *o > data.len() as u64 => {
                problems.push(format!("error offset {o} beyond the input ({} bytes): {msg}", data.len()))
            }
            Some(_) => {}
        }
        if !msg.contains("byte ") {
            problems.push(format!("error message names no byte: {msg}"));
        }
    } else if must_fail {
        problems.push(format!("a proper prefix of a pickle loads: {:?}", run.reprs));
    }
    let r = reader.0;
    if r.reprs != run.reprs || r.error != run.error {
        problems.push(format!("from_slice and from_reader disagree: {run:?} vs {r:?}"));
    }
    problems
}

/// xorshift64*: deterministic mutations without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Bytes that tend to matter in a pickle: opcodes, length bytes, newline, quotes.
const INTERESTING: &[u8] =
    b"\x00\x01\x02\x7f\x80\xfe\xff\n.()]}tlde0sabhgpqrjJKMNIL\x8a\x8b\x8c\x93\x94\x95\x81\x92\x85\x86\x87'\"";

fn mutate(data: &[u8], rng: &mut Rng) -> (String, Vec<u8>) {
    let mut d = data.to_vec();
    let at = rng.below(d.len().max(1));
    let byte = if rng.below(2) == 0 { rng.next() as u8 } else { INTERESTING[rng.below(INTERESTING.len())] };
    match rng.below(8) {
        0 if !d.is_empty() => {
            d.remove(at);
            (format!("delete byte {at}"), d)
        }
        1 => {
            d.insert(at, byte);
            (format!("insert {byte:02x} at {at}"), d)
        }
        _ if !d.is_empty() => {
            d[at] = byte;
            (format!("set byte {at} to {byte:02x}"), d)
        }
        _ => (format!("insert {byte:02x}"), vec![byte]),
    }
}

const MUTATIONS_PER_SEED: usize = 400;

#[test]
fn mutations_in_process() {
    let seeds = seeds();
    let t = Instant::now();
    let mut cases: Vec<(String, Vec<u8>, usize, bool)> = Vec::new();
    for (k, s) in seeds.iter().enumerate() {
        for n in 0..s.data.len() {
            cases.push((format!("{} truncated to {n}", s.name), s.data[..n].to_vec(), k, s.count == 1));
        }
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (k as u64 + 1).wrapping_mul(0x1000_0000_01b3));
        for _ in 0..MUTATIONS_PER_SEED {
            let (how, d) = mutate(&s.data, &mut rng);
            cases.push((format!("{} {how}", s.name), d, k, false));
        }
    }
    quiet_caught_panics();
    let results = parallel_map(cases.len(), |i| {
        let (_, data, k, must_fail) = &cases[i];
        check_input(data, &seeds[*k].opts, *must_fail)
    });
    let allow = Allowlist::load(ALLOWLIST);
    let (mut failures, mut allowed) = (Vec::new(), Vec::new());
    let mut seen = std::collections::BTreeSet::new();
    let mut panics = 0;
    for ((what, data, _, _), problems) in cases.iter().zip(&results) {
        let key = format!("{MUTATION}{what}");
        for p in problems {
            let is_panic = p.starts_with("PANIC");
            panics += is_panic as usize;
            let line = format!("{what}: {p}\n      input {}", hex_encode(data));
            // A panic is never a known difference.
            if allow.contains(&key) && !is_panic {
                allowed.push(line);
            } else {
                failures.push(line);
            }
        }
        if !problems.is_empty() {
            seen.insert(key);
        }
    }
    let stale: Vec<String> = allow
        .keys_where(|_| true)
        .into_iter()
        .filter(|k| k.starts_with(MUTATION) && !seen.contains(*k))
        .map(|k| format!("{k}: no longer has a problem"))
        .collect();
    eprintln!(
        "mutations: {} inputs from {} seeds ({}), {} problems, {panics} panics",
        cases.len(),
        seeds.len(),
        common::since(t),
        failures.len()
    );
    common::report("mutation", cases.len(), &failures, &allowed, &stale, &allow);
}
