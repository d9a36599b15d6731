//! Loads of many small containers, past the point where a load stops giving each list and
//! tuple a buffer of its own and packs their items into shared chunks (python3 is required:
//! these tests fail without it).
//!
//! * CPython writes 30k small lists, tuples, dicts and sets (shared, nested, self-containing,
//!   grown one APPEND or SETITEM at a time at protocols 0 and 1, dicts of up to 19 keys); pikl loads
//!   each from a slice and from a reader and writes the same bytes back.
//! * Lists and dicts in chunks can be grown, changed and taken out of their graph, and outlive
//!   it.

use std::process::{Command, Stdio};

use pikl::{Object, Value};

/// What CPython writes for the test structure at `protocol`, once loaded and written again (a
/// pickle CPython writes back as it reads it).
fn cpython_pickle(protocol: u8) -> Vec<u8> {
    let script = format!(
        r#"
import pickle, sys
shared = (1, "s")
out = []
for i in range(30000):
    k = i % 6
    if k == 0:
        out.append((i, i * 0.5, None))
    elif k == 1:
        out.append([i, [i + 1, i + 2], shared])
    elif k == 2:
        out.append({{"a": i, "b": (i, "x")}})
    elif k == 3:
        l = [i]
        l.append(l)
        out.append(l)
    elif k == 4:
        out.append([(i,), [], (), [shared, shared], {{"k": [i]}}, {{str(j): j for j in range(i % 20)}},
                    {{i % 97, i % 89, "s"}}, frozenset((i, "f"))])
    else:
        out.append(list(range(i % 40)))
# Loaded and written again: one-character strs loaded are CPython's shared singletons.
data = pickle.dumps(pickle.loads(pickle.dumps(out, protocol={protocol})), protocol={protocol})
sys.stdout.buffer.write(data)
"#
    );
    let child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run python3 (CPython 3 is required for this test): {e}"));
    let out = child.wait_with_output().expect("python3 output");
    assert!(out.status.success(), "python3 failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

#[test]
fn many_small_containers_load_and_write_back_as_cpython_wrote_them() {
    for protocol in 0..=5u8 {
        let data = cpython_pickle(protocol);
        let from_slice = pikl::loads(&data).unwrap_or_else(|e| panic!("protocol {protocol}: {e}"));
        let again = pikl::dumps(&from_slice.graph, from_slice.root, Some(protocol.into())).expect("dumps");
        assert!(again == data, "protocol {protocol}: slice load written back differs");
        let from_reader = pikl::load(&data[..]).unwrap_or_else(|e| panic!("protocol {protocol}: {e}"));
        let again = pikl::dumps(&from_reader.graph, from_reader.root, Some(protocol.into())).expect("dumps");
        assert!(again == data, "protocol {protocol}: reader load written back differs");
        // Items as CPython built them: the last entry, list(range(29999 % 40)).
        let last = from_slice.value().at(29999).expect("30000 entries");
        let n = 29999 % 40;
        assert_eq!(last.len(), Some(n));
        assert_eq!(last.at(n - 1).and_then(|v| v.as_i64()), Some(n as i64 - 1));
        // The self-containing list of entry 3 holds itself.
        let Some(Value::Obj(l3)) = from_slice.value().at(3).map(|v| v.value()) else { panic!("entry 3") };
        let Object::List(items) = from_slice.graph.get(l3) else { panic!("a list") };
        assert_eq!(items.as_slice(), &[Value::Int(3), Value::Obj(l3)]);
    }
}

#[test]
fn lists_in_chunks_grow_change_and_outlive_their_graph() {
    let data = cpython_pickle(5);
    let mut loaded = pikl::loads(&data).expect("loads");
    let root = loaded.root;
    let entry = |loaded: &pikl::Loaded<'_>, i: usize| match loaded.value().at(i).map(|v| v.value()) {
        Some(Value::Obj(id)) => id,
        other => panic!("entry {i}: {other:?}"),
    };
    // Late entries: made after the load stopped giving containers buffers of their own.
    let (a, b) = (entry(&loaded, 29993), entry(&loaded, 29989));
    let Object::List(items) = loaded.graph.get_mut(a) else { panic!("a list") };
    items[0] = Value::Int(-1);
    items.push(Value::Int(99));
    items.extend_from_slice(&[Value::None; 3]);
    assert_eq!(items.len(), 29993 % 40 + 4);
    // Entry 29990 (29990 % 6 == 2): {'a': 29990, 'b': (29990, 'x')}; one more key, one changed.
    let d = entry(&loaded, 29990);
    let (a_key, c_key) = (loaded.graph.str("a"), loaded.graph.str("c"));
    loaded.graph.dict_set(d, c_key, Value::Int(7)).expect("str keys hash");
    loaded.graph.dict_set(d, a_key, Value::Int(-2)).expect("str keys hash");
    let taken = std::mem::replace(loaded.graph.get_mut(b), Object::Complex(0.0, 0.0));
    let neighbour = loaded.graph.get(entry(&loaded, 29983)).clone();
    let again = pikl::dumps(&loaded.graph, root, Some(5)).expect("dumps");
    drop(loaded);
    // Entry 29989 (29989 % 6 == 1): [29989, [29990, 29991], shared]; its items outlive the graph.
    let Object::List(items) = taken else { panic!("a list") };
    assert_eq!(items.len(), 3);
    assert_eq!(items[0], Value::Int(29989));
    let Object::List(items) = neighbour else { panic!("a list") };
    assert_eq!(items[0], Value::Int(29983));
    let back = pikl::loads(&again).expect("loads what was written");
    let changed = back.value().at(29993).expect("entry");
    assert_eq!(changed.at(0).and_then(|v| v.as_i64()), Some(-1));
    assert_eq!(changed.len(), Some(29993 % 40 + 4));
    let d = back.value().at(29990).expect("entry");
    let keys: Vec<&str> = d.items().filter_map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["a", "b", "c"]);
    assert_eq!(d.get("a").and_then(|v| v.as_i64()), Some(-2));
    assert_eq!(d.get("c").and_then(|v| v.as_i64()), Some(7));
}
