//! Real-world scientific pickles: numpy and pandas objects pickled by CPython 3.11, committed
//! as fixtures under `tests/thirdparty/` (numpy 1.26 + pandas 2.2 in `numpy1/`, numpy 2 +
//! pandas 3 in `numpy2/`; `tests/thirdparty/README.md` says how they were made). CI has no
//! numpy, so CPython's verdicts were stored with them in each `manifest.json`.
//!
//! For every fixture:
//! * `load`: `pikl::loads` loads it (no trailing bytes), and the streaming `pikl::load`
//!   (a `BufRead`) gives the same value (repr and re-dump).
//! * `show`: `pikl show FILE` exits 0 and prints the library's repr.
//! * `redump`: `pikl::dumps` at the file's own protocol gives the file's bytes.
//! * `serde`: the serde reader walks it (`from_slice` and `from_reader` into `IgnoredAny`).
//! * `convert:P`: `pikl::dumps` at each protocol 0-5 gives CPython's re-pickle of the loaded
//!   value (`pickle.Pickler(f, P).dump(pickle.Unpickler(f).load())`), and `pikl convert
//!   --protocol P FILE -o OUT` writes the same bytes as the library.
//!
//! For the protocol 5 fixtures written with out-of-band buffers:
//! * `load`: loading without buffers fails (as in CPython), with `Unpickler::set_buffers` it
//!   loads, from a slice and from a reader; `show`: `pikl show` fails cleanly (exit 1).
//! * `oob`: a `Pickler` with a buffer callback that keeps every buffer out of band writes the
//!   file's bytes and its buffers (with their read-only flags as CPython gave them).
//! * `oob-cpython`: the same equals CPython's re-pickle with a buffer callback.
//! * `convert:P`: in-band, as above.
//!
//! Where pikl differs by design (it never runs numpy's or pandas' code, so it cannot know what
//! their `__reduce_ex__` or `__setstate__` would do) the case is listed in
//! `tests/known_thirdparty_differences.txt` as `SET/CASE CHECK  # reason`. A listed case that
//! matches is a failure too, so the list cannot go stale.

mod common;

use std::collections::BTreeSet;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{hex_decode, parallel_map, run_with_timeout, short_hex_diff, Allowlist, Tally};

const ALLOWLIST: &str = "known_thirdparty_differences.txt";
const TIMEOUT: Duration = Duration::from_secs(60);
/// The fixture sets: directory under `tests/thirdparty`, and the numpy major version and
/// module its pickles name.
const SETS: [(&str, &str, &str); 2] =
    [("numpy1", "1.", "numpy.core.multiarray"), ("numpy2", "2.", "numpy._core.multiarray")];
/// At least this many fixtures per set, and with out-of-band buffers.
const MIN_CASES_PER_SET: usize = 350;
const MIN_OOB_PER_SET: usize = 5;

struct Oob {
    buffers: Vec<Vec<u8>>,
    readonly: Vec<bool>,
    /// CPython's re-pickle with a buffer callback, and its buffers.
    repickle: Vec<u8>,
    repickle_buffers: Vec<Vec<u8>>,
    repickle_readonly: Vec<bool>,
}

struct Fixture {
    /// `numpy1/NAME`: the allowlist key's first word.
    id: String,
    path: PathBuf,
    protocol: u8,
    data: Vec<u8>,
    repickle: [Option<Vec<u8>>; 6],
    exact: bool,
    oob: Option<Oob>,
}

fn thirdparty_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("tests").join("thirdparty")
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()))
}

fn hex_list(v: &serde_json::Value, what: &str) -> Vec<Vec<u8>> {
    v.as_array()
        .unwrap_or_else(|| panic!("{what} is not a list"))
        .iter()
        .map(|h| hex_decode(h.as_str().expect("hex")))
        .collect()
}

fn bool_list(v: &serde_json::Value, what: &str) -> Vec<bool> {
    v.as_array().unwrap_or_else(|| panic!("{what} is not a list")).iter().map(|b| b.as_bool().expect("bool")).collect()
}

/// Reads every set's manifest and fixture files; checks that the directory holds exactly the
/// files the manifest names, and that the set is the numpy version it claims.
fn fixtures() -> Vec<Fixture> {
    let mut all = Vec::new();
    for (set, numpy_major, module) in SETS {
        let dir = thirdparty_dir().join(set);
        let manifest = dir.join("manifest.json");
        let text = std::fs::read_to_string(&manifest).unwrap_or_else(|e| {
            panic!("cannot read {}: {e} (see tests/thirdparty/README.md to regenerate it)", manifest.display())
        });
        let json: serde_json::Value = serde_json::from_str(&text).expect("manifest.json is JSON");
        let version = json["numpy"].as_str().expect("manifest names the numpy version");
        assert!(version.starts_with(numpy_major), "{set}: made with numpy {version}");
        let cases = json["cases"].as_array().expect("manifest has a list of cases");
        let mut named = BTreeSet::new();
        let mut reffile = |rel: &str| {
            named.insert(rel.to_owned());
            read(&dir.join(rel))
        };
        let before = all.len();
        for e in cases {
            let s = |k: &str| e[k].as_str().unwrap_or_else(|| panic!("{set}: entry without {k}: {e}")).to_owned();
            let file = s("file");
            let data = reffile(&file);
            let mut repickle: [Option<Vec<u8>>; 6] = Default::default();
            for (p, slot) in repickle.iter_mut().enumerate() {
                *slot = e["repickle"][p.to_string()].as_str().map(&mut reffile);
            }
            let oob = e.get("buffers").map(|b| Oob {
                buffers: hex_list(b, "buffers"),
                readonly: bool_list(&e["buffers_readonly"], "buffers_readonly"),
                repickle: reffile(e["oob_repickle"].as_str().expect("oob_repickle")),
                repickle_buffers: hex_list(&e["oob_repickle_buffers"], "oob_repickle_buffers"),
                repickle_readonly: bool_list(&e["oob_repickle_buffers_readonly"], "oob_repickle_buffers_readonly"),
            });
            all.push(Fixture {
                id: format!("{set}/{}", s("name")),
                path: dir.join(&file),
                protocol: e["protocol"].as_u64().expect("protocol") as u8,
                data,
                repickle,
                exact: e["repickle_exact"].as_bool().expect("repickle_exact"),
                oob,
            });
        }
        let got = &all[before..];
        let n_oob = got.iter().filter(|f| f.oob.is_some()).count();
        assert!(
            got.len() >= MIN_CASES_PER_SET && n_oob >= MIN_OOB_PER_SET,
            "{set}: only {} fixtures ({n_oob} out-of-band); expected at least {MIN_CASES_PER_SET} ({MIN_OOB_PER_SET})",
            got.len()
        );
        let naming = got.iter().filter(|f| f.data.windows(module.len()).any(|w| w == module.as_bytes())).count();
        assert!(naming >= got.len() / 2, "{set}: only {naming} pickles name {module}");
        let mut on_disk = BTreeSet::new();
        for sub in ["", "repickle"] {
            for entry in std::fs::read_dir(dir.join(sub)).expect("read fixture dir").flatten() {
                let name = entry.file_name().into_string().expect("utf-8 file name");
                if name.ends_with(".pkl") {
                    on_disk.insert(if sub.is_empty() { name } else { format!("{sub}/{name}") });
                }
            }
        }
        let orphans: Vec<_> = on_disk.difference(&named).collect();
        assert!(orphans.is_empty(), "{set}: files the manifest does not name (stale fixtures?): {orphans:?}");
    }
    all
}

/// The problems of one fixture: (check, problem or None).
type Results = Vec<(String, Option<String>)>;

fn err_text(e: impl std::fmt::Display) -> String {
    common::head(&e.to_string(), 300)
}

/// Out-of-band buffers as a buffer callback saw them: (bytes, read-only).
type Buffers = Vec<(Vec<u8>, bool)>;

/// Writes `v` at protocol 5 with every buffer out of band: the pickle and its buffers.
fn dump_oob(graph: &pikl::Graph, v: pikl::Value) -> pikl::Result<(Vec<u8>, Buffers)> {
    let mut bufs = Vec::new();
    let mut out = Vec::new();
    {
        let mut p = pikl::Pickler::new(&mut out, Some(5))?;
        p.set_buffer_callback(|b| {
            bufs.push((b.data.clone(), b.readonly));
            false
        });
        p.dump(graph, v)?;
    }
    Ok((out, bufs))
}

fn compare_oob(got: &(Vec<u8>, Buffers), data: &[u8], bufs: &[Vec<u8>], ro: &[bool]) -> Option<String> {
    let (out, got_bufs) = got;
    if out != data {
        return Some(format!("pickle {}", short_hex_diff(out, data)));
    }
    if got_bufs.len() != bufs.len() {
        return Some(format!("{} buffers, CPython {}", got_bufs.len(), bufs.len()));
    }
    for (i, ((b, r), (want, want_ro))) in got_bufs.iter().zip(bufs.iter().zip(ro)).enumerate() {
        if b != want {
            return Some(format!("buffer {i}: {}", short_hex_diff(b, want)));
        }
        if r != want_ro {
            return Some(format!("buffer {i}: read-only {r}, CPython {want_ro}"));
        }
    }
    None
}

/// The library checks of one fixture; also returns what `dumps` gave at each protocol (for the
/// command-line comparison) and the repr.
fn check_library(f: &Fixture) -> (Results, [Option<Vec<u8>>; 6], Option<String>) {
    let mut res: Results = Vec::new();
    let mut dumped: [Option<Vec<u8>>; 6] = Default::default();
    // Slice and reader loads, with the buffers where there are some.
    let mut u = pikl::Unpickler::from_slice(&f.data);
    let mut r = pikl::Unpickler::from_reader(BufReader::with_capacity(64, &f.data[..]));
    if let Some(oob) = &f.oob {
        u.set_buffers(oob.buffers.iter().cloned());
        r.set_buffers(oob.buffers.iter().cloned());
    }
    let slice = u.load().map_err(err_text).and_then(|v| match u.at_end() {
        Ok(true) => Ok(v),
        Ok(false) => Err("bytes left after the pickle".to_owned()),
        Err(e) => Err(err_text(e)),
    });
    let root = match slice {
        Ok(v) => v,
        Err(e) => {
            res.push(("load".into(), Some(format!("pikl cannot load it: {e}"))));
            return (res, dumped, None);
        }
    };
    let graph = u.graph();
    let repr = graph.view(root).to_string();
    let own = pikl::dumps(graph, root, Some(f.protocol as i32));
    let mut load_problem = match r.load() {
        Err(e) => Some(format!("the streaming load fails: {}", err_text(e))),
        Ok(v) => {
            let (s_repr, s_own) = (r.graph().view(v).to_string(), pikl::dumps(r.graph(), v, Some(f.protocol as i32)));
            if s_repr != repr {
                Some(format!("streaming load repr {} / slice {}", common::head(&s_repr, 100), common::head(&repr, 100)))
            } else if s_own.as_ref().ok() != own.as_ref().ok() {
                Some("the streaming load re-dumps differently".into())
            } else {
                None
            }
        }
    };
    if f.oob.is_some() && load_problem.is_none() {
        // CPython: "pickle stream refers to out-of-band data but no *buffers* argument was given".
        if let Ok(l) = pikl::loads(&f.data) {
            load_problem = Some(format!("loads without buffers succeeds: {}", common::head(&l.to_string(), 100)));
        }
    } else if load_problem.is_none() {
        load_problem = match pikl::loads(&f.data).map(|l| l.to_string()) {
            Ok(s) if s == repr => match pikl::load(BufReader::new(&f.data[..])).map(|l| l.to_string()) {
                Ok(s) if s == repr => None,
                Ok(s) => Some(format!("pikl::load gives {}", common::head(&s, 100))),
                Err(e) => Some(format!("pikl::load fails: {}", err_text(e))),
            },
            Ok(s) => Some(format!("pikl::loads gives {}", common::head(&s, 100))),
            Err(e) => Some(format!("pikl::loads fails: {}", err_text(e))),
        };
    }
    res.push(("load".into(), load_problem));
    res.push(("serde".into(), check_serde(f)));

    match &f.oob {
        None => res.push((
            "redump".into(),
            match &own {
                Ok(out) if out == &f.data => None,
                Ok(out) => Some(short_hex_diff(out, &f.data)),
                Err(e) => Some(format!("pikl cannot write it: {}", err_text(e))),
            },
        )),
        Some(oob) => {
            let got = dump_oob(graph, root);
            let (own_check, cpython_check) = match &got {
                Err(e) => {
                    let m = format!("pikl cannot write it with a buffer callback: {}", err_text(e));
                    (Some(m.clone()), Some(m))
                }
                Ok(g) => (
                    compare_oob(g, &f.data, &oob.buffers, &oob.readonly),
                    compare_oob(g, &oob.repickle, &oob.repickle_buffers, &oob.repickle_readonly),
                ),
            };
            res.push(("oob".into(), own_check));
            res.push(("oob-cpython".into(), cpython_check));
        }
    }

    for p in 0..6u8 {
        let got = pikl::dumps(graph, root, Some(p as i32));
        let problem = match (&f.repickle[p as usize], &got) {
            (None, Ok(_)) => Some("pikl writes it, CPython cannot".into()),
            (None, Err(_)) => None,
            (Some(_), Err(e)) => Some(format!("pikl cannot write it: {}", err_text(e))),
            (Some(want), Ok(out)) if f.exact => (out != want).then(|| short_hex_diff(out, want)),
            (Some(want), Ok(out)) => {
                (out.len() != want.len()).then(|| format!("(hash-ordered sets) {}", short_hex_diff(out, want)))
            }
        };
        res.push((format!("convert:{p}"), problem));
        dumped[p as usize] = got.ok();
    }
    (res, dumped, Some(repr))
}

/// The serde reader (its own VM, `pikl/src/serde/tape.rs`) walks every fixture, from a slice and
/// from a reader, into `IgnoredAny`; with out-of-band buffers, which it cannot be given, it fails.
fn check_serde(f: &Fixture) -> Option<String> {
    use serde::de::IgnoredAny;
    let opts = pikl::serde::DeOptions::new;
    let slice = pikl::from_slice::<IgnoredAny>(&f.data, opts()).map_err(err_text);
    let reader = pikl::from_reader::<_, IgnoredAny>(&f.data[..], opts()).map_err(err_text);
    match (f.oob.is_some(), slice, reader) {
        (false, Ok(_), Ok(_)) | (true, Err(_), Err(_)) => None,
        (false, Err(e), _) => Some(format!("from_slice fails: {e}")),
        (false, _, Err(e)) => Some(format!("from_reader fails: {e}")),
        (true, _, _) => Some("the serde reader reads out-of-band data it was not given".into()),
    }
}

/// The command-line checks: `pikl show` agrees with the library; `pikl convert --protocol P FILE
/// -o OUT` writes what the library writes. Differences between the two are always failures.
fn check_cli(
    f: &Fixture,
    dumped: &[Option<Vec<u8>>; 6],
    repr: Option<&str>,
    outdir: &Path,
) -> (Option<String>, Vec<String>) {
    let o = run_with_timeout(
        {
            let mut c = Command::new(common::pikl_bin());
            c.arg("show").arg(&f.path);
            c
        },
        TIMEOUT,
    );
    let show = if f.oob.is_some() {
        // No way to give the command its buffers: a clean error, as CPython's.
        (o.code != Some(1) || o.stderr_str().contains("panicked")).then(|| {
            format!("pikl show without the buffers: {} {}", o.status, common::head(o.stderr_str().trim(), 200))
        })
    } else if o.code != Some(0) {
        Some(format!("pikl show: {}: {}", o.status, common::head(o.stderr_str().trim(), 300)))
    } else {
        let want = repr.map(|r| format!("{r}\n"));
        (Some(o.stdout_str()) != want).then(|| format!("pikl show prints {}", common::head(&o.stdout_str(), 150)))
    };
    let mut convert_problems = Vec::new();
    if f.oob.is_none() {
        for (p, lib) in dumped.iter().enumerate() {
            let out = outdir.join(format!("{}.p{p}.pkl", f.id.replace('/', "-")));
            let mut c = Command::new(common::pikl_bin());
            c.args(["convert", "--protocol", &p.to_string()]).arg(&f.path).arg("-o").arg(&out);
            let o = run_with_timeout(c, TIMEOUT);
            let same = match (o.code, lib) {
                (Some(0), Some(lib)) => std::fs::read(&out).ok().as_ref() == Some(lib) && o.stdout.is_empty(),
                (Some(1), None) => !o.stderr_str().contains("panicked"),
                _ => false,
            };
            if !same {
                convert_problems.push(format!(
                    "{} cli-convert:{p}: pikl convert ({}) and pikl::dumps ({}) disagree: {}",
                    f.id,
                    o.status,
                    if lib.is_some() { "ok" } else { "error" },
                    common::head(o.stderr_str().trim(), 200)
                ));
            }
        }
    }
    (show, convert_problems)
}

#[test]
fn thirdparty_pickles_match_cpython() {
    let t = Instant::now();
    let fixtures = fixtures();
    let allow = Allowlist::load(ALLOWLIST);
    let outdir = common::scratch_dir("thirdparty");
    let results = parallel_map(fixtures.len(), |i| {
        let f = &fixtures[i];
        let (mut res, dumped, repr) = check_library(f);
        let (show, cli) = check_cli(f, &dumped, repr.as_deref(), &outdir);
        res.push(("show".into(), show));
        (res, cli)
    });
    let mut tally = Tally::new("thirdparty", &allow);
    let mut cli_failures = Vec::new();
    for (f, (res, cli)) in fixtures.iter().zip(results) {
        for (check, problem) in res {
            tally.record(format!("{} {check}", f.id), problem);
        }
        cli_failures.extend(cli);
    }
    let (n, n_oob) = (fixtures.len(), fixtures.iter().filter(|f| f.oob.is_some()).count());
    eprintln!(
        "thirdparty: {n} fixtures ({n_oob} with out-of-band buffers), {} checks, {} listed differences ({})",
        tally.checked,
        tally.allowed.len(),
        common::since(t)
    );
    assert!(n >= SETS.len() * MIN_CASES_PER_SET, "only {n} fixtures checked");
    assert!(cli_failures.is_empty(), "the command line and the library disagree:\n{}", cli_failures.join("\n"));
    tally.finish(|_| true);
}
