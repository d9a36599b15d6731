//! PyTorch checkpoints: the pickles `torch.save` writes, committed as fixtures under
//! `tests/thirdparty/torch/` with CPython's verdicts on them (`tests/thirdparty/gen_torch.py`;
//! `tests/thirdparty/README.md` says how they were made). CI's python3 has no torch.
//!
//! A zip checkpoint's `data.pkl` is one pickle whose tensors are
//! `torch._utils._rebuild_tensor_v2(PERSID, ...)` with persistent ids
//! `('storage', torch.FloatStorage, key, location, numel)`; a legacy checkpoint
//! (`_use_new_zipfile_serialization=False`) is a stream of five pickles followed by the raw
//! storage bytes. For every fixture and each pickle in it:
//!
//! * `load-hook`: `Unpickler::from_slice` with `set_persistent_load` loads it; the hook
//!   receives exactly the persistent ids CPython's `persistent_load` received, in order; each
//!   load ends where CPython's did (the raw storage bytes of a legacy stream are left).
//! * `load-reader`: the same from a `BufRead` (`Unpickler::from_reader` over a small buffer),
//!   with the same reprs; afterwards the reader holds exactly the bytes after the last pickle.
//! * `load-nohook`: without a hook it loads too, each id kept as `Object::PersistentId`
//!   (CPython's ids, in order, in the graph), and `pikl::dumps` of that graph writes CPython's
//!   re-pickle (`redump-nohook`).
//! * `noload`: `Unpickler::noload` reports the same ids, in order, except that a global inside
//!   an id is None: noload does not resolve globals (as Python 2's `cPickle.noload`).
//! * `redump`: a `Pickler` at the file's protocol whose `persistent_id` hook returns the id for
//!   the hook's placeholders writes CPython's re-pickle (loaded with a `persistent_load`
//!   returning a placeholder, dumped by one `pickle.Pickler` whose `persistent_id` returns
//!   the id back) byte for byte.
//! * `show`: `pikl show` exits 0 and prints the library's reprs (a legacy stream: its pickles
//!   without the storage bytes); `show-trailing`: on the whole legacy stream it prints them and
//!   then fails cleanly (exit 1) on the storage bytes with CPython's message (CPython's load
//!   fails there too).
//!
//! Where pikl cannot match by design the case is listed in `tests/known_torch_differences.txt`
//! as `CASE CHECK  # reason`; a listed case that matches fails the test too.

mod common;

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::{parallel_map, run_with_timeout, short_hex_diff, Allowlist, Tally};
use pikl::{Construct, Graph, Instance, ObjId, Object, Value, ValueRef};
use serde_json::{json, Value as Json};

const ALLOWLIST: &str = "known_torch_differences.txt";
const TIMEOUT: Duration = Duration::from_secs(60);
/// At least this many fixtures, legacy streams among them, and persistent ids in all.
const MIN_CASES: usize = 60;
const MIN_LEGACY: usize = 14;
const MIN_PIDS: usize = 250;
/// The pickles of a legacy stream: magic number, protocol version, sys info, object, keys.
const LEGACY_PICKLES: usize = 5;

struct Pickle {
    offset: usize,
    end: usize,
    /// CPython's persistent ids, described as `gen_torch.py`'s `describe` does.
    pids: Vec<Json>,
    /// CPython's re-pickle of the loaded value.
    repickle: Vec<u8>,
    /// False where the re-pickle's bytes depend on the hash seed (compared by length).
    exact: bool,
}

struct Case {
    name: String,
    path: PathBuf,
    legacy: bool,
    protocol: u8,
    data: Vec<u8>,
    pickles: Vec<Pickle>,
    trailing: usize,
    /// CPython's error when it loads the bytes after a legacy stream's pickles as a pickle.
    trailing_error: Option<String>,
}

fn torch_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("tests").join("thirdparty").join("torch")
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()))
}

/// Reads the manifest and fixtures; checks that the directory holds exactly the files the
/// manifest names and that the offsets tile each file.
fn cases() -> Vec<Case> {
    let dir = torch_dir();
    let manifest = dir.join("manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap_or_else(|e| {
        panic!("cannot read {}: {e} (see tests/thirdparty/README.md to regenerate it)", manifest.display())
    });
    let json: Json = serde_json::from_str(&text).expect("manifest.json is JSON");
    let version = json["torch"].as_str().expect("manifest names the torch version");
    assert!(version.starts_with("2."), "made with torch {version}");
    let mut named = BTreeSet::new();
    let mut reffile = |rel: &str| {
        named.insert(rel.to_owned());
        read(&dir.join(rel))
    };
    let mut all = Vec::new();
    for e in json["cases"].as_array().expect("manifest has a list of cases") {
        let s = |k: &str| e[k].as_str().unwrap_or_else(|| panic!("entry without {k}: {e}")).to_owned();
        let (name, file) = (s("name"), s("file"));
        let data = reffile(&file);
        let legacy = match s("format").as_str() {
            "zip" => false,
            "legacy" => true,
            f => panic!("{name}: unknown format {f}"),
        };
        let mut pickles = Vec::new();
        let mut at = 0;
        for p in e["pickles"].as_array().expect("pickles") {
            let (offset, end) =
                (p["offset"].as_u64().expect("offset") as usize, p["end"].as_u64().expect("end") as usize);
            assert!(offset == at && end > offset && end <= data.len(), "{name}: pickle at {offset}..{end}");
            at = end;
            let repickle = if p["repickle_same_as_input"].as_bool().expect("repickle_same_as_input") {
                data[offset..end].to_vec()
            } else {
                reffile(p["repickle"].as_str().expect("repickle"))
            };
            pickles.push(Pickle {
                offset,
                end,
                pids: p["pids"].as_array().expect("pids").clone(),
                repickle,
                exact: p["repickle_exact"].as_bool().expect("repickle_exact"),
            });
        }
        let trailing = e["trailing_bytes"].as_u64().expect("trailing_bytes") as usize;
        assert_eq!(at + trailing, data.len(), "{name}: pickles and trailing bytes do not tile the file");
        let want = if legacy { LEGACY_PICKLES } else { 1 };
        assert_eq!(pickles.len(), want, "{name}: {} pickles", pickles.len());
        assert_eq!(trailing > 0, legacy, "{name}: {trailing} bytes after the pickles");
        assert_eq!(e["trailing_error"].is_string(), legacy, "{name}: trailing_error");
        all.push(Case {
            name,
            path: dir.join(&file),
            legacy,
            protocol: e["protocol"].as_u64().expect("protocol") as u8,
            data,
            pickles,
            trailing,
            trailing_error: e["trailing_error"].as_str().map(str::to_owned),
        });
    }
    let mut on_disk = BTreeSet::new();
    for sub in ["", "repickle"] {
        for entry in std::fs::read_dir(dir.join(sub)).expect("read fixture dir").flatten() {
            let name = entry.file_name().into_string().expect("utf-8 file name");
            if name.ends_with(".pkl") || name.ends_with(".pt") {
                on_disk.insert(if sub.is_empty() { name } else { format!("{sub}/{name}") });
            }
        }
    }
    let orphans: Vec<_> = on_disk.difference(&named).collect();
    assert!(orphans.is_empty(), "files the manifest does not name (stale fixtures?): {orphans:?}");
    all
}

/// A persistent id (or an item of one) as JSON, as `gen_torch.py`'s `describe` writes
/// CPython's.
fn describe(v: ValueRef) -> Json {
    match v.value() {
        Value::None => Json::Null,
        Value::Bool(b) => json!(b),
        Value::Int(i) => json!(i),
        Value::Float(_) => json!({ "float": v.to_string() }),
        Value::Obj(_) => match v.object().expect("an object") {
            Object::Str(_) => match v.as_str() {
                Some(s) => json!(s),
                None => json!({ "str-repr": v.to_string() }),
            },
            Object::Int(i) => json!({ "int": i.to_string() }),
            Object::Bytes(b) => json!({ "bytes": common::hex_encode(b) }),
            Object::Tuple(items) => {
                json!({ "tuple": items.iter().map(|&i| describe(v.graph().view(i))).collect::<Vec<_>>() })
            }
            Object::List(items) => {
                json!({ "list": items.iter().map(|&i| describe(v.graph().view(i))).collect::<Vec<_>>() })
            }
            Object::Global(g) => json!({ "global": [g.module, g.name] }),
            other => json!({ "unsupported": other.type_name(), "repr": v.to_string() }),
        },
    }
}

/// What noload reports for an id: every global inside it is None.
fn without_globals(j: &Json) -> Json {
    match j {
        Json::Object(m) if m.contains_key("global") => Json::Null,
        Json::Object(m) => Json::Object(m.iter().map(|(k, v)| (k.clone(), without_globals(v))).collect()),
        Json::Array(a) => Json::Array(a.iter().map(without_globals).collect()),
        other => other.clone(),
    }
}

/// The placeholders a `persistent_load` hook returned (an instance of
/// `pikl_torch_test.Placeholder(pid)`), by object id, with their ids; and the ids as the hook
/// received them.
#[derive(Default)]
struct Hooked {
    placeholders: HashMap<ObjId, Value>,
    received: Vec<Json>,
}

/// Installs a `persistent_load` hook on `u` that records each id and returns a fresh
/// placeholder.
fn hook<'de, R: pikl::read::Read<'de>>(u: &mut pikl::Unpickler<'de, R>) -> Rc<RefCell<Hooked>> {
    let hooked = Rc::new(RefCell::new(Hooked::default()));
    let h = hooked.clone();
    u.set_persistent_load(move |g: &mut Graph<'de>, pid| {
        let mut h = h.borrow_mut();
        h.received.push(describe(g.view(pid)));
        let callable = g.global("pikl_torch_test", "Placeholder");
        let args = g.tuple(vec![pid]);
        let obj = g.add(Object::Instance(Box::new(Instance::new(callable, Construct::Reduce, args, None))));
        h.placeholders.insert(obj.obj_id().expect("an object"), pid);
        Ok(obj)
    });
    hooked
}

/// Writes `root` at `protocol` with a `persistent_id` hook giving each placeholder's id.
fn dump_with_ids(
    graph: &Graph,
    root: Value,
    protocol: u8,
    placeholders: &HashMap<ObjId, Value>,
) -> pikl::Result<Vec<u8>> {
    let mut out = Vec::new();
    {
        let mut p = pikl::Pickler::new(&mut out, Some(protocol as i32))?;
        p.set_persistent_id(|v| v.id().and_then(|id| placeholders.get(&id).copied()));
        p.dump(graph, root)?;
    }
    Ok(out)
}

fn err_text(e: impl std::fmt::Display) -> String {
    common::head(&e.to_string(), 300)
}

fn compare_pids(got: &[Json], want: &[Json]) -> Option<String> {
    if got == want {
        return None;
    }
    if got.len() != want.len() {
        return Some(format!("{} ids, CPython {}", got.len(), want.len()));
    }
    let i = got.iter().zip(want).position(|(g, w)| g != w).expect("a differing id");
    Some(format!("id {i}: pikl {} / CPython {}", got[i], want[i]))
}

fn compare_bytes(got: &pikl::Result<Vec<u8>>, want: &[u8], exact: bool) -> Option<String> {
    match got {
        Err(e) => Some(format!("pikl cannot write it: {}", err_text(e))),
        Ok(out) if exact => (out != want).then(|| short_hex_diff(out, want)),
        Ok(out) => (out.len() != want.len()).then(|| format!("(hash-ordered sets) {}", short_hex_diff(out, want))),
    }
}

/// The problems of one fixture: (check, problem or None).
type Results = Vec<(String, Option<String>)>;

/// Takes the first problem of a check over the pickles of a stream.
fn first(problems: impl IntoIterator<Item = Option<String>>) -> Option<String> {
    problems.into_iter().flatten().next()
}

/// The library checks of one fixture, and the reprs of its pickles as loaded without a hook.
fn check_library(c: &Case) -> (Results, Option<Vec<String>>) {
    let mut res: Results = Vec::new();
    let n = c.pickles.len();

    // load-hook and redump: from a slice, one unpickler for the stream, a hook on each load.
    let mut u = pikl::Unpickler::from_slice(&c.data);
    let hooked = hook(&mut u);
    let mut roots = Vec::new();
    let mut problems = Vec::new();
    for (i, p) in c.pickles.iter().enumerate() {
        hooked.borrow_mut().received.clear();
        // torch.load reads each pickle of a legacy stream with a fresh unpickler: its pickles
        // each number their memo from 0 (MEMOIZE at protocol 4), so one memo for the stream
        // fails, in CPython as in pikl.
        u.clear_memo();
        match u.load() {
            Err(e) => {
                problems.push(Some(format!("pickle {i}: pikl cannot load it: {}", err_text(e))));
                break;
            }
            Ok(root) => {
                roots.push(root);
                problems.push(compare_pids(&hooked.borrow().received, &p.pids).map(|m| format!("pickle {i}: {m}")));
                let pos = u.position() as usize;
                problems.push((pos != p.end).then(|| format!("pickle {i} ends at {pos}, CPython {}", p.end)));
            }
        }
    }
    if roots.len() == n {
        problems.push(match u.at_end() {
            Ok(at_end) if at_end == (c.trailing == 0) => None,
            Ok(at_end) => Some(format!("at_end() {at_end} with {} bytes left", c.trailing)),
            Err(e) => Some(format!("at_end(): {}", err_text(e))),
        });
    }
    res.push(("load-hook".into(), first(problems)));
    let hook_reprs: Vec<String> = roots.iter().map(|&r| u.view(r).to_string()).collect();
    let redump = if roots.len() < n {
        Some("not loaded".to_owned())
    } else {
        let h = hooked.borrow();
        first(c.pickles.iter().zip(&roots).enumerate().map(|(i, (p, &root))| {
            compare_bytes(&dump_with_ids(u.graph(), root, c.protocol, &h.placeholders), &p.repickle, p.exact)
                .map(|m| format!("pickle {i}: {m}"))
        }))
    };
    res.push(("redump".into(), redump));

    // load-reader: the same from a BufRead, which keeps what follows the last pickle.
    let mut reader = BufReader::with_capacity(64, &c.data[..]);
    let reader_problem = {
        let mut r = pikl::Unpickler::from_reader(&mut reader);
        let hooked = hook(&mut r);
        let mut problems = Vec::new();
        for (i, p) in c.pickles.iter().enumerate() {
            hooked.borrow_mut().received.clear();
            r.clear_memo();
            match r.load() {
                Err(e) => {
                    problems.push(Some(format!("pickle {i}: the streaming load fails: {}", err_text(e))));
                    break;
                }
                Ok(root) => {
                    problems.push(compare_pids(&hooked.borrow().received, &p.pids).map(|m| format!("pickle {i}: {m}")));
                    let repr = r.view(root).to_string();
                    problems.push(hook_reprs.get(i).filter(|&s| s != &repr).map(|s| {
                        format!(
                            "pickle {i}: streaming repr {} / slice {}",
                            common::head(&repr, 100),
                            common::head(s, 100)
                        )
                    }));
                }
            }
        }
        first(problems)
    };
    let mut rest = Vec::new();
    let rest_problem = match reader.read_to_end(&mut rest) {
        Err(e) => Some(format!("reading what follows: {e}")),
        Ok(_) if rest != c.data[c.data.len() - c.trailing..] => Some(format!(
            "the reader holds {} bytes after the loads, not the {} after the pickles",
            rest.len(),
            c.trailing
        )),
        Ok(_) => None,
    };
    res.push(("load-reader".into(), reader_problem.or(rest_problem)));

    // load-nohook: a fresh unpickler for each pickle, as torch.load; the ids stay data, in the
    // graph in load order; redump-nohook writes them back.
    let mut problems = Vec::new();
    let mut reprs = Vec::new();
    let mut redumps = Vec::new();
    for (i, p) in c.pickles.iter().enumerate() {
        let mut u = pikl::Unpickler::from_slice(&c.data[p.offset..]);
        match u.load() {
            Err(e) => {
                problems.push(Some(format!("pickle {i}: pikl cannot load it without a hook: {}", err_text(e))));
                break;
            }
            Ok(root) => {
                let g = u.graph();
                let kept: Vec<Json> = g
                    .iter()
                    .filter_map(|(_, o)| match o {
                        Object::PersistentId(pid) => Some(describe(g.view(*pid))),
                        _ => None,
                    })
                    .collect();
                problems.push(compare_pids(&kept, &p.pids).map(|m| format!("pickle {i}: kept ids: {m}")));
                let pos = p.offset + u.position() as usize;
                problems.push((pos != p.end).then(|| format!("pickle {i} ends at {pos}, CPython {}", p.end)));
                reprs.push(g.view(root).to_string());
                redumps.push(
                    compare_bytes(&pikl::dumps(g, root, Some(c.protocol as i32)), &p.repickle, p.exact)
                        .map(|m| format!("pickle {i}: {m}")),
                );
            }
        }
    }
    res.push(("load-nohook".into(), first(problems)));
    res.push(("redump-nohook".into(), if reprs.len() < n { Some("not loaded".into()) } else { first(redumps) }));

    // noload: the ids with globals as None, each walk ending where the pickle does.
    let mut u = pikl::Unpickler::from_slice(&c.data);
    let mut problems = Vec::new();
    for (i, p) in c.pickles.iter().enumerate() {
        u.clear_memo();
        match u.noload() {
            Err(e) => {
                problems.push(Some(format!("pickle {i}: noload fails: {}", err_text(e))));
                break;
            }
            Ok(pids) => {
                let got: Vec<Json> = pids.iter().map(|&v| describe(u.view(v))).collect();
                let want: Vec<Json> = p.pids.iter().map(without_globals).collect();
                problems.push(compare_pids(&got, &want).map(|m| format!("pickle {i}: {m}")));
                let pos = u.position() as usize;
                problems.push((pos != p.end).then(|| format!("pickle {i}: noload ends at {pos}, CPython {}", p.end)));
            }
        }
    }
    res.push(("noload".into(), first(problems)));

    (res, (reprs.len() == n).then_some(reprs))
}

/// `pikl show`: exit 0 and the library's reprs, one line per pickle (a legacy stream without
/// its storage bytes); on a whole legacy stream, the reprs and then exit 1 on the storage
/// bytes (CPython's load fails there too), no panic.
fn check_cli(c: &Case, reprs: Option<&[String]>, outdir: &Path) -> Results {
    let show = |path: &Path| {
        let mut cmd = Command::new(common::pikl_bin());
        cmd.arg("show").arg(path);
        run_with_timeout(cmd, TIMEOUT)
    };
    let want: Option<String> = reprs.map(|r| r.iter().map(|s| format!("{s}\n")).collect());
    let pickles_only = if c.legacy {
        let p = outdir.join(format!("{}.pickles.pkl", c.name));
        std::fs::write(&p, &c.data[..c.data.len() - c.trailing]).expect("write scratch file");
        p
    } else {
        c.path.clone()
    };
    let o = show(&pickles_only);
    let mut res: Results = vec![(
        "show".into(),
        if o.code != Some(0) {
            Some(format!("pikl show: {}: {}", o.status, common::head(o.stderr_str().trim(), 300)))
        } else {
            (Some(o.stdout_str()) != want).then(|| format!("pikl show prints {}", common::head(&o.stdout_str(), 150)))
        },
    )];
    if c.legacy {
        let o = show(&c.path);
        // CPython: "UnpicklingError: invalid load key, '\x03'."; pikl names the file and offset first.
        let cpython = c.trailing_error.as_deref().map(|e| e.split_once(": ").map_or(e, |(_, m)| m));
        let problem = if o.code != Some(1) || o.stderr_str().contains("panicked") {
            Some(format!("pikl show of the whole stream: {}: {}", o.status, common::head(o.stderr_str().trim(), 200)))
        } else if !cpython.is_some_and(|m| o.stderr_str().contains(m)) {
            Some(format!("pikl show says {}, CPython {cpython:?}", common::head(o.stderr_str().trim(), 200)))
        } else {
            (Some(o.stdout_str()) != want).then(|| format!("pikl show prints {}", common::head(&o.stdout_str(), 150)))
        };
        res.push(("show-trailing".into(), problem));
    }
    res
}

#[test]
fn torch_checkpoints_match_cpython() {
    let t = Instant::now();
    let cases = cases();
    let allow = Allowlist::load(ALLOWLIST);
    let outdir = common::scratch_dir("torch");
    let results = parallel_map(cases.len(), |i| {
        let c = &cases[i];
        let (mut res, reprs) = check_library(c);
        res.extend(check_cli(c, reprs.as_deref(), &outdir));
        res
    });
    let mut tally = Tally::new("torch", &allow);
    for (c, res) in cases.iter().zip(results) {
        for (check, problem) in res {
            tally.record(format!("{} {check}", c.name), problem);
        }
    }
    let n_legacy = cases.iter().filter(|c| c.legacy).count();
    let n_pids: usize = cases.iter().flat_map(|c| &c.pickles).map(|p| p.pids.len()).sum();
    eprintln!(
        "torch: {} fixtures ({n_legacy} legacy streams), {n_pids} persistent ids, {} checks, {} listed differences ({})",
        cases.len(),
        tally.checked,
        tally.allowed.len(),
        common::since(t)
    );
    assert!(
        cases.len() >= MIN_CASES && n_legacy >= MIN_LEGACY && n_pids >= MIN_PIDS,
        "only {} fixtures ({n_legacy} legacy, {n_pids} persistent ids); expected at least {MIN_CASES} \
         ({MIN_LEGACY}, {MIN_PIDS})",
        cases.len()
    );
    tally.finish(|_| true);
}
