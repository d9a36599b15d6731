//! The unpickler's options and hooks, through both readers.

use std::io::BufReader;

use pikl::{Category, Encoding, Object, Unpickler, UnpicklerOptions, Value};

/// Pickles written by CPython 3.11 (`pickle.dumps(value, protocol)`), with the value's repr.
const CASES: &[(&str, &[u8])] = &[
    ("[1, 2]", b"\x80\x04\x95\t\x00\x00\x00\x00\x00\x00\x00]\x94(K\x01K\x02e."),
    ("{'a': (1, 2.5, None)}", b"\x80\x02}q\x00X\x01\x00\x00\x00aq\x01K\x01G@\x04\x00\x00\x00\x00\x00\x00N\x87q\x02s."),
    ("'caf\u{e9} \u{20ac}'", b"Vcaf\xe9 \\u20ac\np0\n."),
    ("b'ab'", b"\x80\x03C\x02abq\x00."),
    ("{1, 2}", b"\x80\x02c__builtin__\nset\nq\x00]q\x01(K\x01K\x02e\x85q\x02Rq\x03."),
    ("-1180591620717411303424", b"\x80\x02\x8a\t\x00\x00\x00\x00\x00\x00\x00\x00\xc0."),
    ("True", b"I01\n."),
];

fn load_slice(data: &[u8]) -> String {
    let mut u = Unpickler::from_slice(data);
    let v = u.load().unwrap();
    u.view(v).to_string()
}

fn load_stream(data: &[u8], capacity: usize) -> String {
    let mut u = Unpickler::from_reader(BufReader::with_capacity(capacity, data));
    let v = u.load().unwrap();
    u.view(v).to_string()
}

#[test]
fn every_reader_agrees() {
    for &(repr, data) in CASES {
        assert_eq!(load_slice(data), repr);
        assert_eq!(load_stream(data, 1), repr, "1-byte BufReader");
        assert_eq!(load_stream(data, 8192), repr);
        // Re-pickled at the pickle's own protocol: loads to the same repr.
        let loaded = pikl::loads(data).unwrap();
        for p in 0..=5 {
            let again = pikl::dumps(&loaded.graph, loaded.root, Some(p)).unwrap();
            assert_eq!(load_slice(&again), repr, "protocol {p}");
        }
    }
}

#[test]
fn slices_borrow_strs_and_bytes() {
    let data = b"\x80\x04\x95\x11\x00\x00\x00\x00\x00\x00\x00\x8c\x05hello\x94C\x03abc\x94\x86\x94.";
    let loaded = pikl::loads(data).unwrap();
    let items = loaded.value().as_slice().unwrap().to_vec();
    let Some(Object::Str(s)) = loaded.graph.object(items[0]) else { panic!() };
    let range = data.as_ptr_range();
    assert!(range.contains(&s.as_bytes().as_ptr()), "str borrowed from the input");
    let Some(Object::Bytes(b)) = loaded.graph.object(items[1]) else { panic!() };
    assert!(range.contains(&b.as_ptr()), "bytes borrowed from the input");
}

#[test]
fn python2_strings_follow_encoding_and_errors() {
    let data = b"S'caf\\xe9'\np0\n.";
    let err = pikl::loads(data).unwrap_err();
    assert_eq!(err.category(), Category::Unpickling);
    assert!(err.to_string().contains("'ascii' codec can't decode byte 0xe9"), "{err}");
    for (enc, errors, want) in [
        ("latin1", "strict", "'café'"),
        ("bytes", "strict", "b'caf\\xe9'"),
        ("ascii", "replace", "'caf\u{fffd}'"),
        ("ascii", "ignore", "'caf'"),
        ("ascii", "backslashreplace", "'caf\\\\xe9'"),
        ("ascii", "surrogateescape", "'caf\\udce9'"),
        ("koi8-r", "strict", "'cafИ'"),
    ] {
        let opts = UnpicklerOptions {
            encoding: Encoding::from_name(enc).unwrap(),
            errors: pikl::DecodeErrors::from_name(errors).unwrap(),
            ..Default::default()
        };
        let mut u = Unpickler::from_slice(data).with_options(opts);
        let v = u.load().unwrap();
        assert_eq!(u.view(v).to_string(), want, "{enc}/{errors}");
    }
}

#[test]
fn hooks_resolve_persistent_ids_globals_extensions_and_buffers() {
    // pickle.dumps with persistent_id returning 'ref-1' for an object, protocol 0 and 2.
    let p0 = b"(lp0\nPref-1\np1\na.";
    let mut u = Unpickler::from_slice(p0);
    u.set_persistent_load(|g, pid| {
        assert_eq!(g.view(pid).as_str(), Some("ref-1"));
        Ok(g.str("resolved"))
    });
    let v = u.load().unwrap();
    assert_eq!(u.view(v).to_string(), "['resolved']");

    // Without a hook the id stays data.
    let v = pikl::loads(p0).unwrap();
    assert_eq!(v.to_string(), "[persistent_load('ref-1')]");

    // noload walks without building and reports the ids.
    let p2 =
        b"\x80\x02]q\x00(X\x05\x00\x00\x00ref-1q\x01Qcdatetime\ndate\nq\x02C\x04\x07\xea\x0b\x18q\x03\x85q\x04Rq\x05e.";
    let mut u = Unpickler::from_slice(p2);
    let pids = u.noload().unwrap();
    assert_eq!(pids.len(), 1);
    assert_eq!(u.view(pids[0]).as_str(), Some("ref-1"));

    // find_class decides what a global becomes.
    let mut u = Unpickler::from_slice(b"cos\nsystem\n.");
    u.set_find_class(|_, module, name| Err(pikl::Error::unpickling_forbidden(module, name)));
    let err = u.load().unwrap_err();
    assert!(err.to_string().contains("os.system"), "{err}");

    // Extension codes: kept as data, or resolved by a registry.
    let ext = b"\x80\x02\x82\x2a.";
    assert_eq!(pikl::loads(ext).unwrap().to_string(), "extension(42)");
    let mut u = Unpickler::from_slice(ext);
    u.add_extension(42, "collections", "OrderedDict");
    let v = u.load().unwrap();
    assert_eq!(u.view(v).to_string(), "collections.OrderedDict");

    // Out-of-band buffers (protocol 5 NEXT_BUFFER, READONLY_BUFFER).
    let oob = b"\x80\x05\x97\x97\x98\x86\x94.";
    assert!(pikl::loads(oob).unwrap_err().to_string().contains("no *buffers*"));
    let mut u = Unpickler::from_slice(oob);
    u.set_buffers([b"one".to_vec(), b"two".to_vec()]);
    let v = u.load().unwrap();
    let items = u.view(v).as_slice().unwrap().to_vec();
    let Some(Object::Buffer(b)) = u.graph().object(items[1]) else { panic!() };
    assert!(b.readonly && b.data == b"two");
}

#[test]
fn consecutive_loads_share_one_memo() {
    // p = pickle.Pickler(f, 2); x = [1]; p.dump(x); p.dump((x, x))
    let data = b"\x80\x02]q\x00K\x01a.\x80\x02h\x00h\x00\x86q\x01.";
    let mut u = Unpickler::from_reader(&data[..]);
    let first = u.load().unwrap();
    let second = u.load().unwrap();
    let pair = u.view(second).as_slice().unwrap().to_vec();
    assert_eq!(pair, vec![first, first], "one object across loads");
    assert!(u.at_end().unwrap());
    assert!(u.load().unwrap_err().is_eof());
}

#[test]
fn limits_are_enforced_without_allocating() {
    // BINBYTES8 claiming 2^40 bytes in a 20-byte input.
    let mut huge = b"\x80\x04\x8e".to_vec();
    huge.extend_from_slice(&(1u64 << 40).to_le_bytes());
    huge.extend_from_slice(b"abcdefgh");
    for r in [pikl::loads(&huge).map(|_| ()), pikl::load(&huge[..]).map(|_| ())] {
        let err = r.unwrap_err();
        assert!(err.is_eof(), "{err}");
        assert!(err.offset().is_some());
    }
    // LONG_BINPUT at 0xFFFFFFF0 is a sparse memo entry, not a 64 GiB vector.
    let sparse = b"\x80\x02K\x01r\xf0\xff\xff\xff0j\xf0\xff\xff\xff.";
    assert_eq!(pikl::loads(sparse).unwrap().to_string(), "1");
    // A memo limit.
    let opts = UnpicklerOptions { max_memo_len: 1, ..Default::default() };
    let two_puts = b"\x80\x02K\x01q\x00K\x02q\x01\x86.";
    let err = Unpickler::from_slice(two_puts).with_options(opts.clone()).load().unwrap_err();
    assert!(err.to_string().contains("memo"), "{err}");
    // The same with MEMOIZE right after a str and a list, which the loader runs with them.
    let two_memoizes = b"\x80\x04\x8c\x01a\x94]\x94\x86.";
    let err = Unpickler::from_slice(two_memoizes).with_options(opts).load().unwrap_err();
    assert!(err.to_string().contains("memo"), "{err}");
    assert_eq!(err.offset(), Some(7), "at the second MEMOIZE: {err}");
    // A depth limit on open MARKs.
    let marks = vec![b'('; 2000];
    let opts = UnpicklerOptions { max_depth: 1000, ..Default::default() };
    let err = Unpickler::from_slice(&marks).with_options(opts).load().unwrap_err();
    assert!(err.to_string().contains("MARK"), "{err}");
    // An object limit.
    let opts = UnpicklerOptions { max_objects: 100, ..Default::default() };
    let many = [&b"\x80\x02]("[..], &b"]".repeat(200), b"e."].concat();
    let err = Unpickler::from_slice(&many).with_options(opts).load().unwrap_err();
    assert!(err.to_string().contains("more than 100 objects"), "{err}");
    // A million nested TUPLE1s: loads, prints, compares and drops without recursion.
    let mut deep = vec![0x80, 2, b')'];
    deep.extend(std::iter::repeat_n(0x85u8, 1_000_000));
    deep.push(b'.');
    let a = pikl::loads(&deep).unwrap();
    let b = pikl::loads(&deep).unwrap();
    assert!(a.value() == b.value());
    assert!(a.value().repr_with(pikl::value::ReprOptions { max_chars: Some(8) }).starts_with("(((((((("));
}

#[test]
fn errors_name_offset_and_opcode() {
    let err = pikl::loads(b"\x80\x02h\x05.").unwrap_err();
    assert_eq!(err.offset(), Some(2));
    assert_eq!(err.opcode(), Some(pikl::opcodes::Opcode::BinGet));
    assert_eq!(err.to_string(), "unpickling error at byte 2 (opcode BINGET): Memo value not found at index 5");
    let err = pikl::loads(b"\x80\x02]K\x01").unwrap_err();
    assert!(err.is_eof() && err.to_string().starts_with("unexpected end of pickle at byte 5"), "{err}");
    let err = pikl::loads(b"\xff").unwrap_err();
    assert_eq!(err.to_string(), "unpickling error at byte 0: invalid load key, '\\xff'.");
    assert_eq!(pikl::loads(b"").unwrap_err().category(), Category::Eof);
    assert!(matches!(pikl::loads(b"N.").unwrap().root, Value::None));
}

/// A stream CPython writes with one Pickler: shared parts across dumps, cycles, and new
/// objects in every pickle.
fn multi_dump_stream() -> Vec<u8> {
    let script = r#"
import pickle, io, sys
shared = {"k": [1, 2, 3]}
loop = []; loop.append(loop)
f = io.BytesIO()
p = pickle.Pickler(f, int(sys.argv[1]))
for i in range(60):
    p.dump([shared, loop, "item%d" % i, (i, shared["k"]), {i: [i] * 3}])
sys.stdout.buffer.write(f.getvalue())
"#;
    let mut out = Vec::new();
    for proto in ["1", "2", "4"] {
        let o =
            std::process::Command::new("python3").args(["-c", script, proto]).output().expect("python3 is required");
        assert!(o.status.success());
        out.push(o.stdout);
    }
    out.concat()
}

#[test]
fn garbage_collection_between_loads_keeps_what_later_pickles_need() {
    let data = multi_dump_stream();
    let convert = |collect: bool| -> Vec<u8> {
        let mut u = Unpickler::from_slice(&data);
        let mut p = pikl::Pickler::new(Vec::new(), Some(2)).unwrap();
        let mut reprs = Vec::new();
        while !u.at_end().unwrap() {
            let v = u.load().unwrap();
            reprs.push(u.view(v).to_string());
            p.dump(u.graph(), v).unwrap();
            if collect {
                let before = u.graph().len();
                let map = u.collect_garbage(&mut []);
                assert!(u.graph().len() <= before);
                p.renumber(&map);
            }
        }
        let mut out = p.into_inner();
        out.extend(reprs.join("\n").into_bytes());
        out
    };
    assert_eq!(convert(false), convert(true));
}

#[test]
fn garbage_collection_frees_what_the_memo_no_longer_reaches() {
    let script = "import pickle,sys; sys.stdout.buffer.write(b''.join(pickle.dumps([i, 'x%d' % i, {i: [i]}], 2) for i in range(500)))";
    let o = std::process::Command::new("python3").args(["-c", script]).output().expect("python3 is required");
    let mut u = Unpickler::from_slice(&o.stdout);
    let mut n = 0;
    while !u.at_end().unwrap() {
        let mut v = [u.load().unwrap()];
        u.collect_garbage(&mut v);
        assert_eq!(u.view(v[0]).to_string(), format!("[{n}, 'x{n}', {{{n}: [{n}]}}]"));
        // Each pickle reuses memo keys 0..4, so only the last pickle's objects survive.
        assert!(u.graph().len() <= 8, "{} objects kept", u.graph().len());
        n += 1;
    }
    assert_eq!(n, 500);
}

/// Dicts filled with the same keys as the previous one take a shortcut (no duplicate check, no
/// hashing); one whose keys differ or repeat must still behave as Python's dict does.
#[test]
fn dicts_with_repeated_key_shapes_keep_python_semantics() {
    // [{'a': 1, 'b': 2}, {'a': 3, 'b': 4}, {'a': 5, 'a': 6}, {1: 1, 2: 2}, {1: 1, True: 2}]
    let data = b"\x80\x02]q\x00(}q\x01(X\x01\x00\x00\x00aq\x02K\x01X\x01\x00\x00\x00bq\x03K\x02u}q\x04(h\x02K\x03h\x03K\x04u}q\x05(h\x02K\x05h\x02K\x06u}(K\x01K\x01K\x02K\x02u}(K\x01K\x01\x88K\x02ue.";
    assert_eq!(load_slice(data), "[{'a': 1, 'b': 2}, {'a': 3, 'b': 4}, {'a': 6}, {1: 1, 2: 2}, {1: 2}]");
    assert_eq!(load_stream(data, 1), load_slice(data));

    // The shape comes from a dict's keys when the next dict has them: here the first dict
    // gains a key (SETITEM) before the next one, and later dicts repeat a key or reorder them.
    let data = b"\x80\x02]q\x00(}q\x01(X\x01\x00\x00\x00aq\x02K\x01X\x01\x00\x00\x00bq\x03K\x02uh\x01X\x01\x00\x00\x00cq\x04K\x03s}q\x05(h\x02K\x07h\x03K\x08u}q\x06(h\x02K\x09h\x03K\x0au}q\x07(h\x02K\x0bh\x02K\x0cu}(h\x03K\x01h\x02K\x02ue.";
    assert_eq!(
        load_slice(data),
        "[{'a': 1, 'b': 2, 'c': 3}, {'a': 1, 'b': 2, 'c': 3}, {'a': 7, 'b': 8}, {'a': 9, 'b': 10}, {'a': 12}, {'b': 1, 'a': 2}]"
    );
    assert_eq!(load_stream(data, 1), load_slice(data));

    // Three 20-key dicts (past the linear-scan size), then `d[5] = 99` on the last one.
    let mut wide = b"\x80\x02]q\x00(".to_vec();
    for memo in 1..=3u8 {
        wide.extend_from_slice(&[b'}', b'q', memo, b'(']);
        for k in 0..20u8 {
            wide.extend_from_slice(&[b'K', k, b'K', k]);
        }
        wide.push(b'u');
    }
    wide.extend_from_slice(b"K\x05Kcse.");
    let loaded = pikl::loads(&wide).unwrap();
    let Some(Object::List(items)) = loaded.root.obj_id().map(|id| loaded.graph.get(id)) else { panic!("a list") };
    for (i, &d) in items.iter().enumerate() {
        let Some(Object::Dict(d)) = d.obj_id().map(|id| loaded.graph.get(id)) else { panic!("a dict") };
        assert_eq!(d.len(), 20);
        assert_eq!(d.get(&loaded.graph, Value::Int(13)), Some(Value::Int(13)));
        assert_eq!(d.get(&loaded.graph, Value::Bool(true)), Some(Value::Int(1)));
        let five = if i == 2 { 99 } else { 5 };
        assert_eq!(d.get(&loaded.graph, Value::Int(5)), Some(Value::Int(five)));
    }
}

/// Each load leaves the caller's reader just after the pickle's STOP, whatever the reader's
/// buffer size, so the bytes after a pickle (say, a record's payload) stay readable.
#[test]
fn loads_leave_the_reader_just_after_stop() {
    use std::io::{BufRead, Read};
    let trailer = b"TRAILER\nmore bytes";
    for &(repr, data) in CASES {
        for capacity in [1, 3, 64, 8192] {
            let stream = [data, trailer].concat();
            let mut reader = BufReader::with_capacity(capacity, &stream[..]);
            let mut u = Unpickler::from_reader(&mut reader);
            let v = u.load().unwrap();
            assert_eq!(u.view(v).to_string(), repr);
            drop(u);
            let mut rest = Vec::new();
            reader.read_to_end(&mut rest).unwrap();
            assert_eq!(rest, trailer, "{repr}, capacity {capacity}");

            // noload and serde's from_reader too.
            let mut reader = BufReader::with_capacity(capacity, &stream[..]);
            Unpickler::from_reader(&mut reader).noload().unwrap();
            assert_eq!(reader.fill_buf().unwrap().first(), Some(&b'T'), "noload {repr}");
            let mut reader = BufReader::with_capacity(capacity, &stream[..]);
            let _: serde::de::IgnoredAny = pikl::from_reader(&mut reader, Default::default()).unwrap();
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            assert_eq!(line, "TRAILER\n", "from_reader {repr}");
        }
    }
}

/// Consecutive pickles of a stream through readers of every buffer size: the same values as
/// from a slice, in order, with the same memo.
#[test]
fn stream_of_pickles_through_small_buffers() {
    let data = multi_dump_stream();
    fn reprs<'de, R: pikl::read::Read<'de>>(mut u: Unpickler<'de, R>) -> Vec<String> {
        let mut out = Vec::new();
        while !u.at_end().unwrap() {
            let v = u.load().unwrap();
            out.push(u.view(v).to_string());
        }
        out
    }
    let expected = reprs(Unpickler::from_slice(&data));
    assert_eq!(expected.len(), 180);
    for capacity in [1, 7, 100, 70_000] {
        let got = reprs(Unpickler::from_reader(BufReader::with_capacity(capacity, &data[..])));
        assert_eq!(got, expected, "capacity {capacity}");
    }
}

/// Opcodes that the loader's fast path runs (INT, GET, PUT, APPEND, SETITEM at protocol 0;
/// APPENDS, SETITEMS, TUPLE1-3 at 2) give the same values and the same errors at the same
/// offsets as the general path, which a 1-byte reader forces (values and messages as CPython
/// 3.11 gives them).
#[test]
fn fast_path_matches_the_general_path() {
    let values: &[(&[u8], &str)] = &[
        (b"I010\n.", "8"), // strtol's octal
        (b"I00\n.", "False"),
        (b"I01\n.", "True"),
        (b"I-5\n.", "-5"),
        (b"I123456789012345678901\n.", "123456789012345678901"),
        (b"(lp0\nI1\nap0\np1\ng0\na.", "[1, [...]]"),
        (b"(dp0\nI1\n(dp1\nsI1\nI2\ns.", "{1: 2}"),
        (b"\x80\x02](K\x01K\x02e(K\x03e.", "[1, 2, 3]"),
        (b"\x80\x02}(K\x01K\x02K\x03K\x04u.", "{1: 2, 3: 4}"),
        (b"\x80\x02K\x01K\x02K\x03\x87.", "(1, 2, 3)"),
        // LONG1 of 0 to 9 bytes, inside the input and at its end.
        (
            b"\x80\x02](\x8a\x01\xff\x8a\x02\x80\x00\x8a\x01\x80\x8a\x00\x8a\x03\x00\x00\x80e.",
            "[-1, 128, -128, 0, -8388608]",
        ),
        (
            b"\x80\x02]q\x00(J\xff\xff\xff\xffK\x80\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x80\x8a\x08\xff\xff\xff\xff\xff\xff\xff\x7fK\xffJ\x00\xff\xff\xff\x8a\x05\x00\x00\x00\x80\x00\x8a\x05\xff\xff\xff\x7f\xff\x8a\x06\x00\x00\x00\x00\x00\x01e.",
            "[-1, 128, -9223372036854775808, 9223372036854775807, 255, -256, 2147483648, -2147483649, 1099511627776]",
        ),
        (b"\x80\x02\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x80.", "-9223372036854775808"),
        (b"\x80\x02\x8a\t\x00\x00\x00\x00\x00\x00\x00\x00\xff.", "-18446744073709551616"),
        (b"\x80\x04\x8f(K\x01K\x02K\x01\x90.", "{1, 2}"),
        (b"\x80\x04).", "()"),
        // An empty APPENDS, SETITEMS or ADDITEMS batch does nothing, whatever is below it.
        (b"\x80\x04}(e.", "{}"),
        (b"\x80\x04](u.", "[]"),
        (b"\x80\x04](\x90.", "[]"),
        (b"\x80\x04K\x01(e.", "1"),
        (b"\x80\x04K\x01(u.", "1"),
        (b"\x80\x04K\x01(\x90.", "1"),
        // INT: a two-character line strtol reads whole as 0 or 1 is a bool.
        (b"I-0\n.", "False"),
        (b"I+1\n.", "True"),
        (b"I 1\n.", "True"),
        (b"I1 \n.", "1"),
        // APPEND and APPENDS onto a bytearray extend it, as `bytearray.extend` does.
        (b"\x80\x04\x96\x01\x00\x00\x00\x00\x00\x00\x00ZK\x05a.", "bytearray(b'Z\\x05')"),
        (b"\x80\x04\x96\x00\x00\x00\x00\x00\x00\x00\x00(K\x05K\x06\x88e.", "bytearray(b'\\x05\\x06\\x01')"),
        // OBJ and INST build the well-known builtins natively, as REDUCE does.
        (b"(c__builtin__\nset\n]K\x01ao.", "{1}"),
        (b"(I1\nI2\nibuiltins\ncomplex\n.", "(1+2j)"),
    ];
    for &(data, repr) in values {
        assert_eq!(load_slice(data), repr);
        assert_eq!(load_stream(data, 1), repr);
    }
    let errors: &[(&[u8], u64, &str)] = &[
        (b"(dp0\n(lp1\nI1\ns.", 13, "unhashable type: 'list'"),
        (b"(dp0\nI1\nI2\na.", 11, "append"),
        (b"(lp0\nI1\nag7\n.", 9, "Memo value not found at index 7"),
        (b"(lp0\nI1\nI2\ns.", 11, "list assignment index out of range"),
        (b"(tp0\nI1\nI2\ns.", 11, "item assignment"),
        (b"(lp0\nI1\nI2\nI3\ns.", 14, "cannot set items on int"),
        (b"\x80\x02}(]K\x01u.", 7, "unhashable type: 'list'"),
        (b"\x80\x02}(K\x01u.", 6, "odd number of items for SETITEMS"),
        (b"\x80\x02}(K\x01K\x02e.", 8, "'dict' object has no attribute 'append'"),
        (b"\x80\x02(K\x01\x86.", 5, "unexpected MARK found"),
        (b"\x80\x02K\x01e.", 4, "could not find MARK"),
        (b"\x80\x04\x8f(]\x90.", 5, "unhashable type: 'list'"),
        (b"\x80\x04](K\x01\x90.", 6, "'list' object has no attribute 'add'"),
        (b"\x80\x04\x96\x00\x00\x00\x00\x00\x00\x00\x00M\x00\x01a.", 14, "byte must be in range(0, 256)"),
        (b"(K\x01o.", 3, "'int' object is not callable"),
    ];
    for &(data, offset, msg) in errors {
        for capacity in [0, 1] {
            let err = if capacity == 0 {
                Unpickler::from_slice(data).load().unwrap_err()
            } else {
                Unpickler::from_reader(BufReader::with_capacity(capacity, data)).load().unwrap_err()
            };
            assert_eq!(err.offset(), Some(offset), "{err}");
            assert!(err.to_string().contains(msg), "{err}");
        }
    }
}

#[test]
fn each_load_starts_clean_after_a_failed_one() {
    // Unpicklers on one thread reuse each other's working buffers (stack, marks, memo,
    // one-character strs). A load that fails half way, with items on the stack, open marks,
    // memo entries and shared strs, must leave nothing the next load can see.
    let failing: &[u8] = b"\x80\x04(X\x01\x00\x00\x00a\x94K\x01(K\x02\x94]\x94(K\x03K\x04\xff";
    let fresh: &[(&[u8], &str)] = &[
        // GET 0 with an empty memo must fail, not find the failed load's entry.
        (b"\x80\x04h\x00.", "error"),
        // MARK's match: a stray APPENDS without a MARK must fail, not use a leftover mark.
        (b"\x80\x04]K\x01e.", "error"),
        // The stack holds only this pickle's items.
        (b"\x80\x04K\x07.", "7"),
        (b"\x80\x04X\x01\x00\x00\x00a\x94h\x00\x86.", "('a', 'a')"),
        (b"\x80\x04(K\x01K\x02t.", "(1, 2)"),
    ];
    for _ in 0..3 {
        assert!(pikl::loads(failing).is_err());
        for &(data, want) in fresh {
            match pikl::loads(data) {
                Ok(v) => assert_eq!(v.to_string(), want, "{data:?}"),
                Err(e) => assert_eq!("error", want, "{data:?}: {e}"),
            }
        }
    }
    // The one-character str of a failed load is not handed to the next graph.
    assert!(pikl::loads(b"\x80\x04X\x01\x00\x00\x00a\x94\xff").is_err());
    let v = pikl::loads(b"\x80\x04X\x01\x00\x00\x00b\x94X\x01\x00\x00\x00a\x94\x86.").expect("loads");
    assert_eq!(v.to_string(), "('b', 'a')");
    assert_eq!(v.graph.len(), 3, "two strs and a tuple, nothing else");
}

#[test]
fn setitem_on_a_list_or_bytearray_assigns_by_index() {
    // CPython's SETITEM(S) calls `PyObject_SetItem`, so a list or bytearray target takes an
    // int index. Expected results from `pickle.loads` in CPython 3.11.
    let cases: &[(&[u8], Result<&str, &str>)] = &[
        (b"(K\x01K\x02K\x03lK\x00K\x09s.", Ok("[9, 2, 3]")),
        (b"(K\x01K\x02K\x03lJ\xff\xff\xff\xffK\x09s.", Ok("[1, 2, 9]")),
        (b"(K\x01K\x02K\x03l\x8a\x01\x01K\x09s.", Ok("[1, 9, 3]")),
        (b"(K\x01K\x02K\x03l(\x88K\x09K\x00K\x08u.", Ok("[8, 9, 3]")),
        (b"(K\x01K\x02K\x03lK\x03K\x09s.", Err("list assignment index out of range")),
        (b"(K\x01K\x02K\x03lJ\xfc\xff\xff\xffK\x09s.", Err("list assignment index out of range")),
        (b"(K\x01K\x02K\x03lX\x01\x00\x00\x00aK\x09s.", Err("list indices must be integers or slices, not str")),
        (b"(K\x01K\x02K\x03lG?\xf0\x00\x00\x00\x00\x00\x00K\x09s.", Err("not float")),
        (b"(K\x01K\x02K\x03l\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01K\x09s.", Err("cannot fit 'int'")),
        (b"\x80\x05\x96\x02\x00\x00\x00\x00\x00\x00\x00abK\x00K\x41s.", Ok("bytearray(b'Ab')")),
        (b"\x80\x05\x96\x02\x00\x00\x00\x00\x00\x00\x00ab\x88\x89s.", Ok("bytearray(b'a\\x00')")),
        (b"\x80\x05\x96\x02\x00\x00\x00\x00\x00\x00\x00abK\x00M\x00\x01s.", Err("byte must be in range(0, 256)")),
        (b"\x80\x05\x96\x02\x00\x00\x00\x00\x00\x00\x00abK\x05K\x41s.", Err("bytearray index out of range")),
        (b"\x80\x05\x96\x02\x00\x00\x00\x00\x00\x00\x00abK\x00X\x01\x00\x00\x00as.", Err("cannot be interpreted")),
        // A tuple still refuses.
        (b"(K\x01K\x02tK\x00K\x09s.", Err("'tuple' object does not support item assignment")),
    ];
    for &(data, want) in cases {
        match (pikl::loads(data), want) {
            (Ok(v), Ok(repr)) => assert_eq!(v.to_string(), repr, "{data:?}"),
            (Err(e), Err(msg)) => assert!(e.to_string().contains(msg), "{data:?}: {e}"),
            (got, want) => panic!("{data:?}: got {:?}, want {want:?}", got.map(|v| v.to_string())),
        }
    }
}

#[test]
fn picklers_and_unpicklers_work_while_a_thread_exits() {
    // The per-thread working buffers are thread locals: an unpickler or pickler used from
    // another thread local's destructor (after them) must still work, not panic.
    struct AtExit;
    impl Drop for AtExit {
        fn drop(&mut self) {
            let data = b"\x80\x04\x95\t\x00\x00\x00\x00\x00\x00\x00]\x94(K\x01K\x02e.";
            let loaded = pikl::loads(data).expect("loads at thread exit");
            assert_eq!(loaded.to_string(), "[1, 2]");
            let again = pikl::dumps(&loaded.graph, loaded.root, Some(4)).expect("dumps at thread exit");
            assert_eq!(&again[..], &data[..]);
        }
    }
    thread_local! {
        static AT_EXIT: AtExit = const { AtExit };
    }
    std::thread::spawn(|| {
        // Thread locals are torn down in the reverse order of their first use: the buffers,
        // used after `AT_EXIT`, are gone when it runs.
        AT_EXIT.with(|_| {});
        let loaded = pikl::loads(b"\x80\x04K\x01.").expect("loads");
        pikl::dumps(&loaded.graph, loaded.root, Some(4)).expect("dumps");
    })
    .join()
    .expect("no panic at thread exit");
}

/// A module name STACK_GLOBAL took from a second str object is written again, for the first 64
/// module names of a stream; past them (a stream naming many modules) globals share one str
/// per name, so the bookkeeping stays linear.
#[test]
fn second_module_strs_are_kept_for_64_module_names() {
    fn short_str(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&[0x8c, s.len() as u8]);
        out.extend_from_slice(s.as_bytes());
        out.push(0x94); // MEMOIZE
    }
    let n = 200;
    // [m0.a, m0.b, m1.a, m1.b, ...]: each global's module name a str object of its own.
    let mut p = b"\x80\x04]\x94(".to_vec();
    for i in 0..n {
        for name in ["a", "b"] {
            short_str(&mut p, &format!("m{i}"));
            short_str(&mut p, name);
            p.extend_from_slice(b"\x93\x94"); // STACK_GLOBAL, MEMOIZE
        }
    }
    p.extend_from_slice(b"e.");
    let loaded = pikl::loads(&p).expect("loads");
    assert_eq!(loaded.value().len(), Some(2 * n));
    let out = pikl::dumps(&loaded.graph, loaded.root, Some(4)).expect("dumps");
    let times = |module: &str| {
        let needle = [&[0x8c, module.len() as u8][..], module.as_bytes(), &[0x94]].concat();
        out.windows(needle.len()).filter(|w| *w == needle).count()
    };
    assert_eq!((times("m0"), times("m63")), (2, 2), "the first 64 module names keep their second str");
    assert_eq!((times("m64"), times("m199")), (1, 1), "past 64, one str per module name");
    let again = pikl::loads(&out).expect("the re-dump loads");
    assert!(again.value() == loaded.value(), "{again} / {loaded}");
}

/// Payloads big enough to be copied out of the reader into pre-mapped buffers (a str, a
/// bytes and a Python 2 str of 300 KB to 1 MB) load through a `BufRead` as from a slice.
#[test]
fn big_payloads_load_through_a_reader_as_from_a_slice() {
    let text: String = (0..300_000u32).map(|i| char::from_u32(0x20 + i % 0x2000).unwrap_or('?')).collect();
    let bin: Vec<u8> = (0..1_048_576u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let mut data = vec![0x80, 4, b'('];
    data.push(0x8d); // BINUNICODE8
    data.extend_from_slice(&(text.len() as u64).to_le_bytes());
    data.extend_from_slice(text.as_bytes());
    data.push(0x8e); // BINBYTES8
    data.extend_from_slice(&(bin.len() as u64).to_le_bytes());
    data.extend_from_slice(&bin);
    data.push(b'T'); // BINSTRING (Python 2), read as bytes
    data.extend_from_slice(&(bin.len() as u32).to_le_bytes());
    data.extend_from_slice(&bin);
    data.extend_from_slice(b"t.");
    let opts = UnpicklerOptions { encoding: Encoding::Bytes, ..UnpicklerOptions::default() };
    let mut from_reader = Unpickler::from_reader(BufReader::with_capacity(8192, &data[..])).with_options(opts.clone());
    let v = from_reader.load().unwrap();
    let items = from_reader.view(v).as_slice().expect("a tuple").to_vec();
    let view = |i: usize| from_reader.view(items[i]);
    assert_eq!(view(0).as_str(), Some(text.as_str()));
    assert_eq!(view(1).as_bytes(), Some(&bin[..]));
    assert_eq!(view(2).as_bytes(), Some(&bin[..]));
    let mut from_slice = Unpickler::from_slice(&data).with_options(opts);
    let w = from_slice.load().unwrap();
    assert!(from_slice.view(w).to_string() == from_reader.view(v).to_string());
}
