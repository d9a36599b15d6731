//! Differential tests against CPython 3.11: the corpus of `tests/corpus/gen_corpus.py` is
//! generated at test time, and every case goes through the `pikl` binary.
//!
//! * `show_matches_cpython`: `pikl show` loads every case (exit 0), printing CPython's repr
//!   where the manifest has one.
//! * `convert_matches_cpython`: `pikl convert -p P` writes CPython's bytes for every protocol
//!   CPython can re-pickle the case at (the same length where sets make bytes hash-ordered).
//! * `cpython_loads_convert_output`: one python3 process loads every `pikl convert` output and
//!   compares it with what CPython's own re-pickle loads to.
//! * `multi_pickle_streams_keep_sharing`: objects shared across the pickles of one stream stay
//!   shared, in the library and through `pikl convert`.
//!
//! Known differences live in `tests/known_differences.txt`, one `CASE CHECK  # reason` a line
//! with CHECK `show`, `convert:P` or `cpython:P`. Listed cases are not failures, but each must
//! still differ, so the list cannot go stale.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{hex_decode, hex_encode, parallel_map, run_with_timeout, short_hex_diff, Allowlist, Tally};

const TIMEOUT: Duration = Duration::from_secs(60);
/// Address-space cap where CPython cannot pickle (`convert_where_cpython_cannot_pickle`).
const REFUSE_MEM_LIMIT: u64 = 64 << 20;
const ALLOWLIST: &str = "known_differences.txt";

struct Case {
    name: String,
    path: PathBuf,
    count: usize,
    repr: Option<Vec<String>>,
    /// CPython's re-pickle at each protocol, when it can write one.
    repickle: [Option<Vec<u8>>; 6],
    /// Why CPython cannot re-pickle it at a protocol.
    repickle_errors: [Option<String>; 6],
    exact: bool,
    /// For inexact cases: the bytes differ only in order (sets), so lengths still agree. False
    /// for BUILD-interning cases, whose sharing depends on CPython's interpreter state.
    same_length: bool,
    encoding: String,
    errors: String,
    persistent: bool,
    /// Written by separate `pickle.dump` calls: each pickle has a memo of its own.
    separate: bool,
}

struct Corpus {
    dir: PathBuf,
    cases: Vec<Case>,
}

static CORPUS: OnceLock<Corpus> = OnceLock::new();

fn corpus() -> &'static Corpus {
    CORPUS.get_or_init(|| {
        let t = Instant::now();
        let dir = common::scratch_dir("corpus");
        common::run_generator("gen_corpus.py", &dir);
        let manifest = dir.join("manifest.json");
        let text =
            std::fs::read_to_string(&manifest).unwrap_or_else(|e| panic!("cannot read {}: {e}", manifest.display()));
        let json: serde_json::Value = serde_json::from_str(&text).expect("manifest.json is JSON");
        drop(text);
        let cases: Vec<Case> =
            json.as_array().expect("manifest is a list").iter().map(|e| parse_case(e, &dir)).collect();
        // The manifest is most of the 90 MB; everything needed is in memory now.
        let _ = std::fs::remove_file(&manifest);
        assert!(cases.len() > 1000, "suspiciously small corpus: {} cases", cases.len());
        eprintln!("corpus: {} cases in {} ({})", cases.len(), dir.display(), common::since(t));
        Corpus { dir, cases }
    })
}

fn parse_case(e: &serde_json::Value, dir: &std::path::Path) -> Case {
    let s = |k: &str| e[k].as_str().unwrap_or_else(|| panic!("manifest entry without {k}: {e}")).to_owned();
    let name = s("name");
    let repr =
        e["repr"].as_array().map(|a| a.iter().map(|r| r.as_str().expect("repr is a list of str").to_owned()).collect());
    let mut repickle: [Option<Vec<u8>>; 6] = Default::default();
    let mut repickle_errors: [Option<String>; 6] = Default::default();
    for p in 0..6 {
        repickle[p] = e["repickle"][p.to_string()].as_str().map(hex_decode);
        repickle_errors[p] = e["repickle_errors"][p.to_string()].as_str().map(str::to_owned);
    }
    Case {
        path: dir.join(s("file")),
        count: e["count"].as_u64().expect("count") as usize,
        repr,
        repickle,
        repickle_errors,
        exact: e["repickle_exact"].as_bool().expect("repickle_exact"),
        same_length: e["note"].as_str().is_none_or(|n| n.contains("hash order")),
        encoding: s("encoding"),
        errors: s("errors"),
        persistent: e["persistent"].as_bool().unwrap_or(false),
        separate: e["separate"].as_bool().unwrap_or(false),
        name,
    }
}

fn pikl(args: &[&str], case: &Case) -> Command {
    let mut c = Command::new(common::pikl_bin());
    c.args(args).args(["--encoding", &case.encoding, "--errors", &case.errors]);
    if case.count > 1 && !case.separate {
        // One Pickler wrote the stream: its pickles share the memo.
        c.arg("--memo");
    }
    c.arg(&case.path);
    c
}

/// What `pikl convert -p P` gave for one case and protocol.
struct Converted {
    case: usize,
    proto: u8,
    /// The bytes, or why there are none.
    result: Result<Vec<u8>, String>,
}

static CONVERTED: OnceLock<Vec<Converted>> = OnceLock::new();

/// `pikl convert` of every case at every protocol CPython re-pickles it at, run once for all
/// the tests that need it.
fn converted() -> &'static [Converted] {
    CONVERTED.get_or_init(|| {
        let c = corpus();
        let t = Instant::now();
        let jobs: Vec<(usize, u8)> = c
            .cases
            .iter()
            .enumerate()
            .flat_map(|(i, case)| (0..6u8).filter(move |&p| case.repickle[p as usize].is_some()).map(move |p| (i, p)))
            .collect();
        let out = parallel_map(jobs.len(), |j| {
            let (i, p) = jobs[j];
            let case = &c.cases[i];
            let o = run_with_timeout(pikl(&["convert", "-p", &p.to_string()], case), TIMEOUT);
            let result = if o.code == Some(0) {
                Ok(o.stdout)
            } else {
                Err(format!("pikl convert failed ({}): {}", o.status, common::head(o.stderr_str().trim(), 300)))
            };
            Converted { case: i, proto: p, result }
        });
        eprintln!("pikl convert: {} runs ({})", out.len(), common::since(t));
        out
    })
}

#[test]
fn show_matches_cpython() {
    let c = corpus();
    let allow = Allowlist::load(ALLOWLIST);
    let t = Instant::now();
    let problems = parallel_map(c.cases.len(), |i| {
        let case = &c.cases[i];
        let o = run_with_timeout(pikl(&["show"], case), TIMEOUT);
        if o.code != Some(0) {
            return Some(format!("exit {}: {}", o.status, common::head(o.stderr_str().trim(), 300)));
        }
        let out = o.stdout_str();
        let lines: Vec<&str> = out.strip_suffix('\n').unwrap_or(&out).split('\n').collect();
        match &case.repr {
            Some(want) => {
                if lines.len() != want.len() {
                    return Some(format!("{} lines, CPython has {} values", lines.len(), want.len()));
                }
                for (k, (got, want)) in lines.iter().zip(want).enumerate() {
                    if got != want {
                        return Some(format!(
                            "value {k}: pikl {} / cpython {}",
                            common::head(got, 150),
                            common::head(want, 150)
                        ));
                    }
                }
                None
            }
            None if lines.len() != case.count => {
                Some(format!("{} lines for {} pickles: {}", lines.len(), case.count, common::head(&out, 200)))
            }
            None => None,
        }
    });
    eprintln!("pikl show: {} runs ({})", c.cases.len(), common::since(t));
    let mut tally = Tally::new("show", &allow);
    for (case, problem) in c.cases.iter().zip(problems) {
        tally.record(format!("{} show", case.name), problem);
    }
    tally.finish(|k| k == "show");
}

#[test]
fn convert_matches_cpython() {
    let c = corpus();
    let allow = Allowlist::load(ALLOWLIST);
    let mut tally = Tally::new("convert", &allow);
    let (mut by_length, mut unchecked) = (0, 0);
    for conv in converted() {
        let case = &c.cases[conv.case];
        let want = case.repickle[conv.proto as usize].as_deref().expect("only converted where CPython could");
        let problem = match &conv.result {
            Err(e) => Some(e.clone()),
            Ok(got) if case.exact => (got != want).then(|| short_hex_diff(got, want)),
            Ok(got) if case.same_length => {
                by_length += 1;
                (got.len() != want.len()).then(|| format!("(hash-ordered) {}", short_hex_diff(got, want)))
            }
            Ok(_) => {
                unchecked += 1;
                None
            }
        };
        tally.record(format!("{} convert:{}", case.name, conv.proto), problem);
    }
    eprintln!(
        "convert: {by_length} outputs compared by length only (sets in hash order), \
         {unchecked} not compared (BUILD interning; left to cpython_loads_convert_output)"
    );
    tally.finish(|k| k.starts_with("convert:"));
}

/// Loads each listed pikl output and CPython's re-pickle of the same case, and compares them.
/// Input lines: name, protocol, count, encoding, errors, persistent (0/1), separate (0/1: one
/// unpickler per pickle), exact (0/1), path of
/// pikl's output, hex of CPython's re-pickle. Output: `FAIL\tname\tP\tmessage` lines and a
/// final `DONE` line with counts.
const CHECKER: &str = r#"
import io, pickle, sys
sys.dont_write_bytecode = True
sys.path.insert(0, sys.argv[2])
import gen_corpus as G
import pikl_corpus_classes  # noqa: F401  (the pickles name its classes)

ATOMS = (type(None), bool, int, float)

def load_all(data, count, enc, err, pers, sep):
    f = io.BytesIO(data)
    cls = G.PersUnpickler if pers else pickle.Unpickler
    u = cls(f, encoding=enc, errors=err)
    objs = []
    for i in range(count):
        if sep and i:
            u = cls(f, encoding=enc, errors=err)
        objs.append(u.load())
    rest = len(f.read())
    if rest:
        raise ValueError('%d bytes left after %d pickles' % (rest, count))
    return objs

def dumps(objs, pers):
    f = io.BytesIO()
    (G.PersPickler if pers else pickle.Pickler)(f, 4).dump(objs)
    return f.getvalue()

def sharing(objs):
    """Which objects are the same object, as a walk order signature."""
    ids, sig, stack = {}, [], [objs]
    while stack:
        o = stack.pop()
        t = type(o)
        if t in ATOMS:
            continue
        if id(o) in ids:
            sig.append(ids[id(o)])
            continue
        ids[id(o)] = len(ids)
        sig.append(t.__name__)
        if t is list or t is tuple:
            stack.extend(o)
        elif t is dict:
            for k, v in o.items():
                stack.append(k)
                stack.append(v)
        elif t is set or t is frozenset:
            stack.extend(o)
        elif not isinstance(o, (type, BaseException)):
            d = getattr(o, '__dict__', None)
            if type(d) is dict:
                stack.append(d)
    return sig

def short(x):
    try:
        r = repr(x)
    except RecursionError:
        return '<recursive>'
    return r if len(r) < 160 else r[:160] + '...'

stats = {'eq': 0, 'dumps': 0, 'repr': 0}

def compare(a, b, pers, exact):
    try:
        same = a == b
    except RecursionError:
        same = False
    how = 'eq'
    if not same:
        try:
            same = dumps(a, pers) == dumps(b, pers)
        except Exception:
            same = False
        how = 'dumps'
    if not same:
        try:
            same = repr(a) == repr(b)
        except RecursionError:
            same = False
        how = 'repr'
    if not same:
        return 'values differ: pikl %s / cpython %s' % (short(a), short(b))
    if exact and sharing(a) != sharing(b):
        return 'equal values but different sharing'
    stats[how] += 1
    return None

n = 0
for line in open(sys.argv[1], encoding='utf-8'):
    name, p, count, enc, err, pers, sep, exact, path, want = line.rstrip('\n').split('\t')
    n += 1
    pers, sep, exact = pers == '1', sep == '1', exact == '1'
    try:
        b = load_all(bytes.fromhex(want), int(count), enc, err, pers, sep)
    except Exception as e:
        print('FAIL\t%s\t%s\tCPython cannot load its own re-pickle: %r' % (name, p, e))
        continue
    try:
        with open(path, 'rb') as f:
            a = load_all(f.read(), int(count), enc, err, pers, sep)
    except Exception as e:
        print('FAIL\t%s\t%s\tCPython cannot load it: %s: %s' % (name, p, type(e).__name__, short(e)))
        continue
    problem = compare(a, b, pers, exact)
    if problem:
        print('FAIL\t%s\t%s\t%s' % (name, p, problem))
print('DONE\t%d\t%d\t%d\t%d' % (n, stats['eq'], stats['dumps'], stats['repr']))
"#;

/// One pikl output for the python3 checker: it must load to what `want` loads to.
struct CheckItem<'a> {
    case: &'a Case,
    proto: u8,
    out: PathBuf,
    /// CPython's re-pickle, or the case's own pickle where CPython cannot re-pickle.
    want: &'a [u8],
}

/// What the checker found: problems by (case name, protocol), and how many outputs it loaded
/// and compared by `==`, `pickle.dumps` and `repr`.
struct CheckResult {
    problems: BTreeMap<(String, u8), String>,
    counts: Vec<usize>,
}

/// Runs the python3 checker once over `items`.
fn run_checker(tag: &str, items: &[CheckItem]) -> CheckResult {
    let c = corpus();
    let mut list = String::new();
    for it in items {
        let case = it.case;
        let _ = writeln!(
            list,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            case.name,
            it.proto,
            case.count,
            case.encoding,
            case.errors,
            case.persistent as u8,
            case.separate as u8,
            case.exact as u8,
            it.out.display(),
            hex_encode(it.want)
        );
    }
    let list_path = c.dir.join(format!("cpython-check-{tag}.tsv"));
    std::fs::write(&list_path, list).expect("write check list");
    let script = c.dir.join(format!("cpython_check_{tag}.py"));
    std::fs::write(&script, CHECKER).expect("write checker");
    let mut cmd = Command::new("python3");
    cmd.arg(&script).arg(&list_path).arg(common::corpus_scripts());
    let o = run_with_timeout(cmd, Duration::from_secs(300));
    let stdout = o.stdout_str();
    let done = stdout.lines().find_map(|l| l.strip_prefix("DONE\t"));
    let Some(done) = done.filter(|_| o.code == Some(0)) else {
        panic!(
            "the python3 checker failed ({}):\n{}\n{}",
            o.status,
            common::tail(&stdout, 2000),
            common::tail(&o.stderr_str(), 3000)
        );
    };
    let counts = done.split('\t').map(|x| x.parse().expect("count")).collect();
    let mut problems = BTreeMap::new();
    for l in stdout.lines().filter_map(|l| l.strip_prefix("FAIL\t")) {
        let mut it = l.splitn(3, '\t');
        let (name, p, msg) = (it.next().unwrap_or(""), it.next().unwrap_or(""), it.next().unwrap_or(""));
        problems.insert((name.to_owned(), p.parse().expect("protocol")), msg.to_owned());
    }
    CheckResult { problems, counts }
}

#[test]
fn cpython_loads_convert_output() {
    let c = corpus();
    let allow = Allowlist::load(ALLOWLIST);
    let convs = converted();
    let outdir = c.dir.join("pikl-out");
    std::fs::create_dir_all(&outdir).expect("create output dir");
    let mut items = Vec::new();
    let mut unchecked = 0;
    for conv in convs {
        let case = &c.cases[conv.case];
        let Ok(got) = &conv.result else {
            unchecked += 1;
            continue;
        };
        let out = outdir.join(format!("{}.p{}.pkl", case.name, conv.proto));
        std::fs::write(&out, got).expect("write pikl output");
        let want = case.repickle[conv.proto as usize].as_deref().expect("converted only where CPython could");
        items.push(CheckItem { case, proto: conv.proto, out, want });
    }
    let t = Instant::now();
    let mut res = run_checker("convert", &items);
    let n = &res.counts;
    eprintln!(
        "cpython check: {} outputs loaded by CPython ({}); equal by ==: {}, by pickle.dumps: {}, by repr: {}; \
         {unchecked} convert failures not checked",
        n[0],
        common::since(t),
        n[1],
        n[2],
        n[3]
    );
    let mut tally = Tally::new("cpython", &allow);
    for it in &items {
        let problem = res.problems.remove(&(it.case.name.clone(), it.proto));
        tally.record(format!("{} cpython:{}", it.case.name, it.proto), problem);
    }
    assert!(res.problems.is_empty(), "checker reported unknown cases: {:?}", res.problems);
    // Entries for outputs pikl convert did not produce cannot be checked here; they are only
    // stale when the case exists and converts now.
    let convertless: BTreeSet<String> = convs
        .iter()
        .filter(|cv| cv.result.is_err())
        .map(|cv| format!("{} cpython:{}", c.cases[cv.case].name, cv.proto))
        .collect();
    tally.seen.extend(convertless);
    tally.finish(|k| k.starts_with("cpython:"));
}

/// Where CPython cannot re-pickle a case at P (`repickle[P]` is null: RecursionError,
/// `__slots__` without `__getstate__`, a non-ASCII persistent id at protocol 0), `pikl convert`
/// must not crash, hang or run out of memory. A pickling error (exit 1) agrees with CPython;
/// writing a pickle anyway is accepted when CPython loads it to the case's own value. Listed
/// in the allowlist as `CASE refuse:P`.
#[test]
fn convert_where_cpython_cannot_pickle() {
    let c = corpus();
    let allow = Allowlist::load(ALLOWLIST);
    let outdir = c.dir.join("pikl-out-refused");
    std::fs::create_dir_all(&outdir).expect("create output dir");
    let jobs: Vec<(usize, u8)> = c
        .cases
        .iter()
        .enumerate()
        .flat_map(|(i, case)| (0..6u8).filter(move |&p| case.repickle[p as usize].is_none()).map(move |p| (i, p)))
        .collect();
    let t = Instant::now();
    let outcomes = parallel_map(jobs.len(), |j| {
        let (i, p) = jobs[j];
        let case = &c.cases[i];
        let out = outdir.join(format!("{}.p{p}.pkl", case.name));
        // A small address-space cap: a runaway pickler is stopped quickly.
        let mut cmd = common::pikl_limited(REFUSE_MEM_LIMIT);
        cmd.args(["convert", "-p", &p.to_string(), "--encoding", &case.encoding, "--errors", &case.errors, "-o"])
            .arg(&out)
            .arg(&case.path);
        let o = run_with_timeout(cmd, TIMEOUT);
        let stderr = o.stderr_str();
        let what = match o.code {
            _ if o.timed_out => Err(format!("CRASH: timed out after {TIMEOUT:?}")),
            _ if stderr.contains("panicked") => Err(format!("CRASH: panicked: {}", common::head(stderr.trim(), 300))),
            Some(0) => Ok(Some(out)),
            Some(1) if stderr.contains("pickling error") => Ok(None),
            Some(1) => Err(format!("fails, but not with a pickling error: {}", common::head(stderr.trim(), 300))),
            _ => Err(format!(
                "CRASH under a {} MB address-space cap ({}): {}",
                REFUSE_MEM_LIMIT >> 20,
                o.status,
                common::head(stderr.trim(), 200)
            )),
        };
        what
    });
    eprintln!("pikl convert where CPython cannot pickle: {} runs ({})", jobs.len(), common::since(t));
    // Outputs pikl wrote anyway: CPython must load them to what the case itself loads to.
    let written_out: Vec<(usize, u8, PathBuf, Vec<u8>)> = jobs
        .iter()
        .zip(&outcomes)
        .filter_map(|(&(i, p), o)| match o {
            Ok(Some(out)) => Some((i, p, out.clone(), std::fs::read(&c.cases[i].path).expect("read case"))),
            _ => None,
        })
        .collect();
    let items: Vec<CheckItem> = written_out
        .iter()
        .map(|(i, p, out, data)| CheckItem { case: &c.cases[*i], proto: *p, out: out.clone(), want: data })
        .collect();
    let res = if items.is_empty() { None } else { Some(run_checker("refused", &items)) };
    let mut tally = Tally::new("refuse", &allow);
    let (mut refused, mut written) = (0, 0);
    for (&(i, p), o) in jobs.iter().zip(&outcomes) {
        let case = &c.cases[i];
        let cpython = case.repickle_errors[p as usize].as_deref().unwrap_or("an error");
        let problem = match o {
            Err(e) => Some(format!("{e} (CPython: {})", common::head(cpython, 80))),
            Ok(None) => {
                refused += 1;
                None
            }
            Ok(Some(_)) => {
                written += 1;
                res.as_ref().and_then(|r| r.problems.get(&(case.name.clone(), p))).map(|m| {
                    format!("pikl writes a pickle where CPython raises {}, and {m}", common::head(cpython, 60))
                })
            }
        };
        tally.record(format!("{} refuse:{p}", case.name), problem);
    }
    eprintln!(
        "refuse: pikl refuses {refused} like CPython, writes {written} that CPython loads to the original value or \
         that are listed"
    );
    tally.finish(|k| k.starts_with("refuse:"));
}

/// Checks, in the library, that objects shared across the pickles of a stream are the same
/// object after loading (and that `clear_memo` streams are not), and through `pikl convert`
/// that CPython sees the same sharing in pikl's output.
#[test]
fn multi_pickle_streams_keep_sharing() {
    let c = corpus();
    let find =
        |name: &str| c.cases.iter().find(|k| k.name == name).unwrap_or_else(|| panic!("corpus has no case {name}"));
    for p in 0..6 {
        // [shared, {'x': shared}, shared]
        let case = find(&format!("multi_shared_list_p{p}"));
        let data = std::fs::read(&case.path).expect("read case");
        let mut u = pikl::Unpickler::from_slice(&data);
        let a = u.load().expect("load 1");
        let b = u.load().expect("load 2");
        let cc = u.load().expect("load 3");
        assert!(u.at_end().expect("at_end"), "{}: more than 3 pickles", case.name);
        let x = u.view(b).get("x").expect("'x' key").value();
        assert_eq!(u.view(a).to_string(), "[1, 2, 3]");
        assert!(a.obj_id().is_some() && a == x && a == cc, "{}: shared list not shared: {a:?} {x:?} {cc:?}", case.name);

        // [o, [o, Plain(v=2)], o]
        let case = find(&format!("multi_objects_p{p}"));
        let data = std::fs::read(&case.path).expect("read case");
        let mut u = pikl::Unpickler::from_slice(&data);
        let a = u.load().expect("load 1");
        let b = u.load().expect("load 2");
        let cc = u.load().expect("load 3");
        let b0 = u.view(b).at(0).expect("item 0").value();
        assert!(a == b0 && a == cc, "{}: shared instance not shared", case.name);
        assert_ne!(a, u.view(b).at(1).expect("item 1").value());

        // s, [s, s], (s,)
        let case = find(&format!("multi_shared_str_p{p}"));
        let data = std::fs::read(&case.path).expect("read case");
        let mut u = pikl::Unpickler::from_slice(&data);
        let a = u.load().expect("load 1");
        let b = u.load().expect("load 2");
        let cc = u.load().expect("load 3");
        let v = u.view(b);
        let ids = [a, v.at(0).unwrap().value(), v.at(1).unwrap().value(), u.view(cc).at(0).unwrap().value()];
        assert!(ids.iter().all(|&i| i == a), "{}: shared str not shared: {ids:?}", case.name);

        // shared, clear_memo(), shared: two equal, distinct lists
        let case = find(&format!("multi_clear_memo_p{p}"));
        let data = std::fs::read(&case.path).expect("read case");
        let mut u = pikl::Unpickler::from_slice(&data);
        let a = u.load().expect("load 1");
        let b = u.load().expect("load 2");
        assert_ne!(a, b, "{}: cleared memo still shares", case.name);
        assert!(u.view(a) == u.view(b));
    }

    // Through the binary: every protocol to every protocol, checked by CPython.
    let dir = c.dir.join("multi-out");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let mut files = Vec::new();
    for p in 0..6 {
        let case = find(&format!("multi_shared_list_p{p}"));
        for q in 0..6 {
            let out = dir.join(format!("{}_to_{q}.pkl", case.name));
            let mut cmd = pikl(&["convert", "-p", &q.to_string(), "-o", out.to_str().expect("utf-8 path")], case);
            cmd.current_dir(&dir);
            let o = run_with_timeout(cmd, TIMEOUT);
            assert_eq!(o.code, Some(0), "convert {} -p {q}: {}", case.name, o.stderr_str());
            files.push(out);
        }
    }
    let script = "import pickle, sys\n\
        bad = 0\n\
        for path in sys.argv[1:]:\n\
        \x20   with open(path, 'rb') as f:\n\
        \x20       u = pickle.Unpickler(f)\n\
        \x20       a, b, c = u.load(), u.load(), u.load()\n\
        \x20       rest = f.read()\n\
        \x20   if not (a == [1, 2, 3] and a is b['x'] is c and not rest):\n\
        \x20       print('not shared:', path, a, b, c, rest)\n\
        \x20       bad += 1\n\
        print('checked', len(sys.argv) - 1)\n\
        sys.exit(1 if bad else 0)\n";
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(script).args(&files);
    let o = run_with_timeout(cmd, TIMEOUT);
    assert_eq!(o.code, Some(0), "CPython sees broken sharing:\n{}{}", o.stdout_str(), o.stderr_str());
}
