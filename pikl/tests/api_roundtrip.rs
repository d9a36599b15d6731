//! Library-level round trips through `Pickler` and `Unpickler`, checked against CPython.
//!
//! * One pickler dumping several values that share a list: loading the stream with one
//!   unpickler gives the same object each time (and distinct objects after `clear_memo`).
//! * Cyclic graphs (a list and a dict containing themselves, a list inside a tuple inside
//!   itself) round-trip, compare equal and print as Python does.
//! * A list nested a million deep is built, pickled, loaded, printed (truncated), compared and
//!   dropped without overflowing the stack.
//! * CPython (python3, required) loads every pickle written here to the expected value.
//! * Module name strs keep the sharing of the loaded pickle at protocols 4 and 5 (CPython
//!   writes `'array'` twice for `array.array` and `array._array_reconstructor`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use pikl::value::ReprOptions;
use pikl::{Graph, Object, Pickler, Unpickler, Value};

const PROTOCOLS: std::ops::RangeInclusive<i32> = 0..=5;

/// `[1, 'x']`, dumped as `([1, 'x'], 'a')`, `{'k': [1, 'x']}` and `[1, 'x']` by one pickler.
fn shared_stream(protocol: i32, clear_between: bool) -> Vec<u8> {
    let mut g = Graph::new();
    let x = g.str("x");
    let shared = g.list(vec![Value::Int(1), x]);
    let a = g.str("a");
    let t = g.tuple(vec![shared, a]);
    let k = g.str("k");
    let d = g.dict(vec![(k, shared)]).expect("str keys hash");
    let mut p = Pickler::new(Vec::new(), Some(protocol)).expect("valid protocol");
    for (i, v) in [t, d, shared].into_iter().enumerate() {
        if clear_between && i > 0 {
            p.clear_memo();
        }
        p.dump(&g, v).unwrap_or_else(|e| panic!("dump {i} at protocol {protocol}: {e}"));
        if !clear_between {
            assert!(p.memo().index_of(shared).is_some(), "shared list not memoized at protocol {protocol}");
        }
    }
    p.into_inner()
}

#[test]
fn shared_list_is_one_object_across_loads() {
    for proto in PROTOCOLS {
        let bytes = shared_stream(proto, false);
        let mut u = Unpickler::from_slice(&bytes);
        let a = u.load().expect("load 1");
        let b = u.load().expect("load 2");
        let c = u.load().expect("load 3");
        assert!(u.at_end().expect("at_end"), "protocol {proto}: more than three pickles");
        assert_eq!(u.view(a).to_string(), "([1, 'x'], 'a')");
        assert_eq!(u.view(b).to_string(), "{'k': [1, 'x']}");
        assert_eq!(u.view(c).to_string(), "[1, 'x']");
        let in_a = u.view(a).at(0).expect("a[0]");
        let in_b = u.view(b).get("k").expect("b['k']");
        let in_c = u.view(c);
        assert!(in_a.id().is_some(), "protocol {proto}: the list is an object");
        assert!(in_a.is(&in_b) && in_b.is(&in_c), "protocol {proto}: {:?} {:?} {:?}", in_a.id(), in_b.id(), in_c.id());
        assert_eq!(in_a.id(), in_c.id());
    }
}

#[test]
fn clear_memo_breaks_sharing_across_loads() {
    for proto in PROTOCOLS {
        let shared = shared_stream(proto, false);
        let cleared = shared_stream(proto, true);
        assert!(cleared.len() > shared.len(), "protocol {proto}: clearing the memo should write the list again");
        let mut u = Unpickler::from_slice(&cleared);
        let a = u.load().expect("load 1");
        let b = u.load().expect("load 2");
        let c = u.load().expect("load 3");
        assert!(u.at_end().expect("at_end"));
        let in_a = u.view(a).at(0).expect("a[0]");
        let in_b = u.view(b).get("k").expect("b['k']");
        let in_c = u.view(c);
        assert!(
            !in_a.is(&in_b) && !in_b.is(&in_c) && !in_a.is(&in_c),
            "protocol {proto}: still shared after clear_memo"
        );
        assert!(in_a == in_b && in_b == in_c, "protocol {proto}: equal values");
        assert_eq!(in_a.to_string(), "[1, 'x']");
    }
}

/// Builds `l = []; l.append(l)`.
fn self_list(g: &mut Graph) -> Value {
    let l = g.list(vec![]);
    let id = l.obj_id().expect("list is an object");
    match g.get_mut(id) {
        Object::List(items) => items.push(l),
        other => panic!("not a list: {}", other.type_name()),
    }
    l
}

/// Builds `d = {}; d['self'] = d`.
fn self_dict(g: &mut Graph) -> Value {
    let d = g.dict(vec![]).expect("empty dict");
    let k = g.str("self");
    g.dict_set(d.obj_id().expect("dict is an object"), k, d).expect("str key hashes");
    d
}

/// Builds `l = []; t = (l, 1); l.append(t)` and returns `t`.
fn tuple_list_cycle(g: &mut Graph) -> Value {
    let l = g.list(vec![]);
    let t = g.tuple(vec![l, Value::Int(1)]);
    match g.get_mut(l.obj_id().expect("list")) {
        Object::List(items) => items.push(t),
        other => panic!("not a list: {}", other.type_name()),
    }
    t
}

type Builder = fn(&mut Graph) -> Value;

const CYCLES: &[(&str, Builder, &str)] = &[
    ("list_self", self_list, "[[...]]"),
    ("dict_self", self_dict, "{'self': {...}}"),
    ("tuple_list", tuple_list_cycle, "([(...)], 1)"),
];

#[test]
fn cyclic_graphs_round_trip() {
    for &(name, build, repr) in CYCLES {
        let mut g = Graph::new();
        let v = build(&mut g);
        assert_eq!(g.view(v).to_string(), repr, "{name}: repr of the built graph");
        assert!(g.view(v) == g.view(v), "{name}: equal to itself");
        for proto in PROTOCOLS {
            let bytes = pikl::dumps(&g, v, Some(proto)).unwrap_or_else(|e| panic!("{name} p{proto}: {e}"));
            let loaded = pikl::loads(&bytes).unwrap_or_else(|e| panic!("{name} p{proto}: {e}"));
            assert_eq!(loaded.to_string(), repr, "{name} p{proto}");
            assert!(g.view(v) == loaded.value(), "{name} p{proto}: loaded graph differs");
            assert!(loaded.value() == g.view(v), "{name} p{proto}: equality is symmetric");
            // The loaded object really contains itself.
            let top = loaded.value();
            let inner = match name {
                "list_self" => top.at(0),
                "dict_self" => top.get("self"),
                _ => top.at(0).and_then(|l| l.at(0)),
            }
            .expect("inner reference");
            assert!(inner.is(&top), "{name} p{proto}: the cycle is not closed");
            // And re-pickling what was loaded gives the same bytes.
            let again = pikl::dumps(&loaded.graph, loaded.root, Some(proto)).expect("re-dump");
            assert_eq!(again, bytes, "{name} p{proto}: dumps(loads(x)) != x");
        }
    }
}

const DEPTH: usize = 1_000_000;

fn deep_list(g: &mut Graph) -> Value {
    let mut v = g.list(vec![]);
    for _ in 0..DEPTH {
        v = g.list(vec![v]);
    }
    v
}

#[test]
fn million_deep_list() {
    let mut g = Graph::new();
    let v = deep_list(&mut g);
    let short = g.view(v).repr_with(ReprOptions { max_chars: Some(100) });
    assert!(short.starts_with(&"[".repeat(100)) && short.len() <= 110, "truncated repr: {short}");
    for proto in [0, 2, 5] {
        let bytes = pikl::dumps(&g, v, Some(proto)).unwrap_or_else(|e| panic!("dumps p{proto}: {e}"));
        let loaded = pikl::loads(&bytes).unwrap_or_else(|e| panic!("loads p{proto}: {e}"));
        let r = loaded.value().repr_with(ReprOptions { max_chars: Some(100) });
        assert_eq!(r, short, "p{proto}: truncated repr");
        assert!(loaded.value() == g.view(v), "p{proto}: loaded differs");
        // Depth, walked iteratively.
        let mut depth = 0;
        let mut cur = loaded.value();
        while let Some(next) = cur.at(0) {
            depth += 1;
            cur = next;
        }
        assert_eq!(depth, DEPTH, "p{proto}: depth");
        assert_eq!(cur.len(), Some(0));
        drop(loaded);
    }
    // A different graph of the same shape is equal; one a level shallower is not.
    let mut g2 = Graph::new();
    let v2 = deep_list(&mut g2);
    assert!(g.view(v) == g2.view(v2));
    let shallower = g2.view(v2).at(0).expect("one level down");
    assert!(g.view(v) != shallower);
    drop(g2);
    drop(g);
}

// ---- CPython loads what the pickler writes ----

fn scratch_dir() -> PathBuf {
    let base = match option_env!("CARGO_TARGET_TMPDIR") {
        Some(d) => PathBuf::from(d),
        None => std::env::temp_dir(),
    };
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let dir = base.join(format!("pikl-api-roundtrip-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// Reads lines `path<TAB>count<TAB>kind` and prints `path<TAB>result` for each.
const CHECKER: &str = r#"
import pickle, sys
for line in open(sys.argv[1], encoding='utf-8'):
    path, count, kind = line.rstrip('\n').split('\t')
    with open(path, 'rb') as f:
        u = pickle.Unpickler(f)
        objs = [u.load() for _ in range(int(count))]
        rest = f.read()
    if kind == 'deep':
        depth, o = 0, objs[0]
        while type(o) is list and o:
            o = o[0]
            depth += 1
        out = 'depth %d' % depth
    else:
        out = ' | '.join(repr(o) for o in objs)
        if kind == 'shared':
            out += ' | shared=%s' % (objs[0][0] is objs[1]['k'] is objs[2])
        elif kind == 'cleared':
            out += ' | shared=%s' % (objs[0][0] is objs[1]['k'] or objs[1]['k'] is objs[2])
    if rest:
        out += ' | %d bytes left' % len(rest)
    print(path + '\t' + out)
"#;

#[test]
fn cpython_loads_what_the_pickler_writes() {
    let dir = scratch_dir();
    let mut expected: Vec<(PathBuf, String)> = Vec::new();
    let mut list = String::new();
    let mut add = |dir: &Path, name: String, bytes: &[u8], count: usize, kind: &str, want: String| {
        let path = dir.join(format!("{name}.pkl"));
        std::fs::write(&path, bytes).expect("write pickle");
        let _ = writeln!(list, "{}\t{count}\t{kind}", path.display());
        expected.push((path, want));
    };
    for proto in PROTOCOLS {
        add(
            &dir,
            format!("shared_p{proto}"),
            &shared_stream(proto, false),
            3,
            "shared",
            "([1, 'x'], 'a') | {'k': [1, 'x']} | [1, 'x'] | shared=True".into(),
        );
        add(
            &dir,
            format!("cleared_p{proto}"),
            &shared_stream(proto, true),
            3,
            "cleared",
            "([1, 'x'], 'a') | {'k': [1, 'x']} | [1, 'x'] | shared=False".into(),
        );
        for &(name, build, repr) in CYCLES {
            let mut g = Graph::new();
            let v = build(&mut g);
            let bytes = pikl::dumps(&g, v, Some(proto)).expect("dumps");
            add(&dir, format!("{name}_p{proto}"), &bytes, 1, "repr", repr.into());
        }
    }
    let mut g = Graph::new();
    let v = deep_list(&mut g);
    for proto in [0, 2, 5] {
        let bytes = pikl::dumps(&g, v, Some(proto)).expect("dumps deep");
        add(&dir, format!("deep_p{proto}"), &bytes, 1, "deep", format!("depth {DEPTH}"));
    }
    drop(g);
    let list_path = dir.join("list.tsv");
    std::fs::write(&list_path, list).expect("write list");
    let out = Command::new("python3")
        .arg("-c")
        .arg(CHECKER)
        .arg(&list_path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 (CPython 3 is required for this test): {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python3 failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let got: std::collections::HashMap<&str, &str> = stdout.lines().filter_map(|l| l.split_once('\t')).collect();
    let mut bad = Vec::new();
    for (path, want) in &expected {
        let p = path.display().to_string();
        match got.get(p.as_str()) {
            Some(g) if g == want => {}
            Some(g) => bad.push(format!("{p}: CPython gives {g}, want {want}")),
            None => bad.push(format!("{p}: no result")),
        }
    }
    assert!(
        bad.is_empty(),
        "CPython disagrees on {} of {} pickles:\n  {}",
        bad.len(),
        expected.len(),
        bad.join("\n  ")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// CPython writes a module's name str once per str object: `array._array_reconstructor` and
/// `array.array` carry two `'array'` strs, `collections.OrderedDict` and `collections.deque`
/// one interned `'collections'`. Re-dumping a loaded protocol 4 or 5 pickle at its protocol
/// keeps that, byte for byte.
#[test]
fn module_name_strs_keep_their_sharing() {
    let script = "import array, collections, pickle, sys\n\
                  v = [array.array('i', [1, 2]), array.array('d'), collections.OrderedDict(a=1), collections.deque([1])]\n\
                  for p in (4, 5):\n    print(pickle.dumps(v, p).hex())\n";
    let out = Command::new("python3").args(["-c", script]).output().expect("python3 is required");
    assert!(out.status.success(), "python3: {}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<Vec<u8>> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|h| (0..h.len()).step_by(2).map(|i| u8::from_str_radix(&h[i..i + 2], 16).expect("hex")).collect())
        .collect();
    assert_eq!(lines.len(), 2);
    let count = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).filter(|w| *w == needle).count();
    for (data, proto) in lines.iter().zip([4, 5]) {
        // Module 'array' twice (and the class's name 'array' once); 'collections' once.
        assert_eq!(count(data, b"\x8c\x05array\x94"), 3, "CPython's pickle");
        assert_eq!(count(data, b"\x8c\x0bcollections\x94"), 1, "CPython's pickle");
        let loaded = pikl::loads(data).expect("loads");
        let out = pikl::dumps(&loaded.graph, loaded.root, Some(proto)).expect("dumps");
        assert_eq!(count(&out, b"\x8c\x05array\x94"), 3, "protocol {proto}");
        assert_eq!(count(&out, b"\x8c\x0bcollections\x94"), 1, "protocol {proto}");
        assert!(out == *data, "protocol {proto}: pikl writes other bytes than CPython");
    }
    // A graph built by hand has no loaded strs: one str per module name, as before.
    let mut g = Graph::new();
    let items = vec![g.global("array", "array"), g.global("array", "_array_reconstructor")];
    let v = g.list(items);
    let out = pikl::dumps(&g, v, Some(4)).expect("dumps");
    assert_eq!(count(&out, b"\x8c\x05array\x94"), 2, "module 'array' once, the name 'array' once");
}

/// SETITEM on an instance of a class pikl does not know keeps its key unhashed; below protocol
/// 2 such an instance is written as `copyreg._reconstructor(cls, dict, dict(items))`, which an
/// unhashable key cannot go in: a pickling error, not a pickle that fails to load (found by the
/// `roundtrip` fuzz target).
#[test]
fn instance_items_with_an_unhashable_key_do_not_pickle_below_protocol_2() {
    // [Plain() with state {'name': 'name'}, Plain() with {}: <the first> set on it, state 6]
    let data = b"\x80\x02]q\x00(cpis_c\nPlain\nq\x01)\x81q\x02}q\x03X\x04\x00\x00\x00nameq\x04h\x04sbh\x01)\x81q\x05}q\x04h\x02sK\x06be.";
    let loaded = pikl::loads(data).expect("loads");
    for p in [0, 1] {
        let err = pikl::dumps(&loaded.graph, loaded.root, Some(p)).unwrap_err();
        assert!(err.is_pickling(), "protocol {p}: {err}");
        assert!(err.to_string().contains("unhashable type: 'dict'"), "protocol {p}: {err}");
    }
    for p in 2..=5 {
        let bytes = pikl::dumps(&loaded.graph, loaded.root, Some(p)).expect("dumps");
        let back = pikl::loads(&bytes).expect("loads its own output");
        assert_eq!(back.to_string(), loaded.to_string(), "protocol {p}");
    }
}

/// `copyreg._reconstructor` called on something that is not a class (a list here: a pickle
/// CPython itself could not load) is written as the REDUCE it came as, never as a NEWOBJ that
/// no loader takes (found by the `roundtrip` fuzz target).
#[test]
fn reconstructor_of_a_non_class_is_not_written_as_newobj() {
    let data = b"(lp0\x0accopy_reg\x0a_reconstructor\x0ap1\x0a(cpikl_cs_classes\x0aPlamn\x0ap2\x0ac__builtin__\x0aobject\x0ap3\x0aNtp4\x0aRp5\x0a(dp6\x0aVEEEEEEEEEEEEEEEEEEEEEEnot a\xff\xff\xff~\x16\x09\xa5\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00w\x0cier\x0ap7\x0ag7\x0asbag1\x0a(g0\x0ag3\x0aNtp8\x0aRp9\x0a(dp1 \x0ag7\x0aI2\x0asba.";
    let loaded = pikl::loads(data).expect("loads");
    for p in 0..=5 {
        match pikl::dumps(&loaded.graph, loaded.root, Some(p)) {
            Ok(bytes) => {
                let back = pikl::loads(&bytes).unwrap_or_else(|e| panic!("protocol {p}: own output: {e}"));
                assert_eq!(back.to_string(), loaded.to_string(), "protocol {p}");
            }
            Err(e) => assert!(e.is_pickling(), "protocol {p}: {e}"),
        }
    }
    for p in [0, 1] {
        assert!(pikl::dumps(&loaded.graph, loaded.root, Some(p)).is_ok(), "protocol {p} writes it");
    }
}

/// A load reuses the globals of the thread's last dropped graph (the pool keeps them): one
/// load's module strs must not reach the next. In CPython's pickle `array.array` carries a
/// second `'array'` str; in pikl's of a graph built by hand both globals share one. Loaded one
/// after the other, each is written back as it was.
#[test]
fn reused_globals_do_not_keep_another_loads_strs() {
    let script = "import array, pickle, sys\n\
                  print(pickle.dumps([array.array('i', [1, 2]), array.array('d')], 4).hex())\n";
    let out = Command::new("python3").args(["-c", script]).output().expect("python3 is required");
    assert!(out.status.success(), "python3: {}", String::from_utf8_lossy(&out.stderr));
    let hex = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let cpython: Vec<u8> =
        (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex")).collect();
    let mut g = Graph::new();
    let items = vec![g.global("array", "_array_reconstructor"), g.global("array", "array")];
    let v = g.list(items);
    let by_hand = pikl::dumps(&g, v, Some(4)).expect("dumps");
    let redump = |data: &[u8]| {
        let loaded = pikl::loads(data).expect("loads");
        pikl::dumps(&loaded.graph, loaded.root, Some(4)).expect("dumps")
    };
    for (data, what) in [(&cpython, "CPython's"), (&by_hand, "pikl's"), (&cpython, "CPython's"), (&by_hand, "pikl's")] {
        assert!(redump(data) == *data, "{what} pickle written back differs");
    }
}
