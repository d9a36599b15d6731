//! serde round trips: every mapping of `pikl::serde`'s table, at every protocol, through
//! `to_vec` / `from_slice`, `to_writer` / `from_reader` and the object model; borrowing;
//! Python 2 strs; errors that name the field path and the byte offset; hostile input.
#![cfg(feature = "serde")]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Debug;

use num_bigint::BigInt;
use pikl::opcodes::Opcode;
use pikl::serde::{DeOptions, SerOptions};
use pikl::{DecodeErrors, Encoding};
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Unit;

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Newtype(i32);

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct TupleStruct(i32, String, f64);

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
enum Shape {
    Empty,
    Circle(f64),
    Rect(f64, f64),
    Poly { sides: u32, name: String },
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Record {
    id: i64,
    name: String,
    score: f64,
    tags: Vec<String>,
    active: bool,
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct All {
    b: bool,
    i8: i8,
    i16: i16,
    i32: i32,
    i64: i64,
    u8: u8,
    u16: u16,
    u32: u32,
    u64: u64,
    i128: i128,
    u128: u128,
    small_i128: i128,
    #[serde(with = "pikl::serde::bigint")]
    big: BigInt,
    f32: f32,
    f64: f64,
    ch: char,
    s: String,
    empty: String,
    unicode: String,
    #[serde(with = "serde_bytes")]
    bytes: Vec<u8>,
    #[serde(with = "serde_bytes")]
    empty_bytes: Vec<u8>,
    byte_list: Vec<u8>,
    none: Option<i32>,
    some: Option<String>,
    nested_opt: Option<Vec<i32>>,
    unit: (),
    unit_struct: Unit,
    newtype: Newtype,
    tuple: (i32, String, f64),
    tuple5: (u8, u8, u8, u8, u8),
    tuple_struct: TupleStruct,
    vec: Vec<i32>,
    long_vec: Vec<u32>,
    nested: Vec<Vec<i32>>,
    set: BTreeSet<String>,
    map: BTreeMap<String, i32>,
    int_keys: BTreeMap<i64, String>,
    tuple_keys: BTreeMap<(i32, i32), bool>,
    seq_keys: BTreeMap<Vec<i32>, i32>,
    big_map: HashMap<String, u16>,
    shapes: Vec<Shape>,
    records: Vec<Record>,
}

fn record(i: i64) -> Record {
    Record {
        id: i * 1_000_003,
        name: format!("record-{i}"),
        score: i as f64 * 0.5,
        tags: (0..i % 4).map(|t| format!("t{t}")).collect(),
        active: i % 3 == 0,
    }
}

fn all() -> All {
    All {
        b: true,
        i8: -128,
        i16: -300,
        i32: i32::MIN,
        i64: i64::MIN,
        u8: 255,
        u16: 65535,
        u32: u32::MAX,
        u64: u64::MAX,
        i128: i128::MIN,
        u128: u128::MAX,
        small_i128: -5,
        big: -BigInt::from(3u8).pow(300),
        f32: 1.5,
        f64: -2.25e-300,
        ch: '€',
        s: "hello".into(),
        empty: String::new(),
        unicode: "h\u{e9}\u{1F600}\n\\\0".into(),
        bytes: b"\x00\x01\xfe\xffbytes".to_vec(),
        empty_bytes: vec![],
        byte_list: vec![1, 2, 255],
        none: None,
        some: Some("x".into()),
        nested_opt: Some(vec![3]),
        unit: (),
        unit_struct: Unit,
        newtype: Newtype(-7),
        tuple: (1, "two".into(), 3.0),
        tuple5: (1, 2, 3, 4, 5),
        tuple_struct: TupleStruct(4, "five".into(), 6.5),
        vec: vec![1, -1, 1000, 100_000],
        long_vec: (0..2345).collect(),
        nested: vec![vec![], vec![1], vec![2, 3]],
        set: ["b", "a", "c"].into_iter().map(String::from).collect(),
        map: [("one", 1), ("two", 2)].into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        int_keys: [(-1, "minus".to_string()), (1 << 40, "big".to_string())].into_iter().collect(),
        tuple_keys: [((1, 2), true), ((3, 4), false)].into_iter().collect(),
        seq_keys: [(vec![1, 2], 3), (vec![], 0)].into_iter().collect(),
        big_map: (0..1500u16).map(|i| (format!("key{i}"), i)).collect(),
        shapes: vec![
            Shape::Empty,
            Shape::Circle(1.0),
            Shape::Rect(2.0, 3.0),
            Shape::Poly { sides: 6, name: "hex".into() },
        ],
        records: (0..1234).map(record).collect(),
    }
}

fn options() -> Vec<(String, SerOptions)> {
    let mut out = Vec::new();
    for p in 0..=5u8 {
        out.push((format!("protocol {p}"), SerOptions::new().protocol(p)));
        out.push((format!("protocol {p}, no memo"), SerOptions::new().protocol(p).memoize(false)));
        out.push((
            format!("protocol {p}, instances"),
            SerOptions::new().protocol(p).class("Record", "app.models", "Record").instances_of("app"),
        ));
    }
    out
}

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(v: &T) {
    for (what, opts) in options() {
        let bytes = pikl::to_vec(v, opts.clone()).unwrap_or_else(|e| panic!("{what}: to_vec: {e}"));
        let back: T = pikl::from_slice(&bytes, DeOptions::new()).unwrap_or_else(|e| panic!("{what}: from_slice: {e}"));
        assert_eq!(&back, v, "{what}: from_slice");
        let mut out = Vec::new();
        pikl::to_writer(&mut out, v, opts.clone()).unwrap_or_else(|e| panic!("{what}: to_writer: {e}"));
        assert_eq!(out, bytes, "{what}: to_writer writes what to_vec writes");
        let back: T =
            pikl::from_reader(&bytes[..], DeOptions::new()).unwrap_or_else(|e| panic!("{what}: from_reader: {e}"));
        assert_eq!(&back, v, "{what}: from_reader");
        // The object model reads the same pickle, and converts both ways.
        let loaded = pikl::loads(&bytes).unwrap_or_else(|e| panic!("{what}: loads: {e}"));
        let back: T = pikl::serde::from_value(loaded.value(), DeOptions::new())
            .unwrap_or_else(|e| panic!("{what}: from_value: {e}"));
        assert_eq!(&back, v, "{what}: from_value");
        let obj = pikl::serde::to_object(v, opts).unwrap_or_else(|e| panic!("{what}: to_object: {e}"));
        assert_eq!(obj.to_string(), loaded.to_string(), "{what}: to_object");
    }
}

#[test]
fn every_mapping_round_trips() {
    round_trip(&all());
}

#[test]
fn scalars_and_containers_round_trip_alone() {
    round_trip(&0i64);
    round_trip(&i64::MAX);
    round_trip(&u64::MAX);
    round_trip(&(i128::MAX, u128::MAX - 1, -1i128));
    round_trip(&f64::INFINITY);
    round_trip(&String::new());
    round_trip(&"x".repeat(70_000));
    round_trip(&serde_bytes::ByteBuf::from(vec![7u8; 200_000]));
    // `Some(())` is written as `None`, like `None`: it reads back as `None`.
    round_trip(&Some(vec![()]));
    round_trip(&Shape::Empty);
    round_trip(&Shape::Poly { sides: 0, name: String::new() });
    round_trip(&vec![Shape::Circle(f64::MAX); 3]);
    round_trip(&(Unit, Newtype(1), ()));
    round_trip(&Vec::<Record>::new());
    round_trip(&vec![vec![vec![String::from("deep")]]]);
    round_trip(&(0..100_000).map(|i| i * 3).collect::<Vec<i64>>());
    round_trip(&(0..3000).map(|i| (i.to_string(), vec![i as u8])).collect::<BTreeMap<_, _>>());
}

#[test]
fn nan_round_trips() {
    for p in 0..=5 {
        let b = pikl::to_vec(&f64::NAN, SerOptions::new().protocol(p)).expect("nan");
        let back: f64 = pikl::from_slice(&b, DeOptions::new()).expect("nan back");
        assert!(back.is_nan(), "protocol {p}");
    }
}

#[derive(Deserialize, Debug, PartialEq)]
struct Borrowed<'a> {
    name: &'a str,
    #[serde(with = "serde_bytes")]
    data: &'a [u8],
    tags: Vec<&'a str>,
}

#[derive(Serialize)]
struct Owned {
    name: String,
    #[serde(with = "serde_bytes")]
    data: Vec<u8>,
    tags: Vec<String>,
}

#[test]
fn strs_and_bytes_borrow_from_the_slice() {
    let owned = Owned { name: "borrowed name".into(), data: vec![1, 2, 3, 4], tags: vec!["t1".into(), "t22".into()] };
    for p in 3..=5 {
        let bytes = pikl::to_vec(&owned, SerOptions::new().protocol(p)).expect("to_vec");
        let b: Borrowed = pikl::from_slice(&bytes, DeOptions::new()).expect("from_slice");
        assert_eq!(b, Borrowed { name: "borrowed name", data: &[1, 2, 3, 4], tags: vec!["t1", "t22"] });
        let range = bytes.as_ptr_range();
        assert!(range.contains(&b.name.as_ptr()), "protocol {p}: name copied");
        assert!(range.contains(&b.data.as_ptr()), "protocol {p}: data copied");
        assert!(range.contains(&b.tags[1].as_ptr()), "protocol {p}: tag copied");
    }
    // Below protocol 3 bytes are `_codecs.encode(...)` calls: they cannot be borrowed.
    let bytes = pikl::to_vec(&owned, SerOptions::new().protocol(2)).expect("to_vec");
    let err = pikl::from_slice::<Borrowed>(&bytes, DeOptions::new()).unwrap_err();
    assert!(err.message().starts_with("data: invalid type"), "{err}");
}

#[test]
fn python2_strs_follow_the_encoding_option() {
    // [SHORT_BINSTRING 'abc', SHORT_BINSTRING 'h\xe9!'] at protocol 2.
    let data = b"\x80\x02]q\x00(U\x03abcq\x01U\x03h\xe9!q\x02e.";
    let err = pikl::from_slice::<Vec<String>>(data, DeOptions::new()).unwrap_err();
    assert!(err.message().contains("'ascii' codec can't decode byte 0xe9"), "{err}");
    assert_eq!(err.offset(), Some(13), "{err}");
    let latin1: Vec<String> = pikl::from_slice(data, DeOptions::new().encoding(Encoding::Latin1)).expect("latin1");
    assert_eq!(latin1, ["abc", "h\u{e9}!"]);
    let replaced: Vec<String> =
        pikl::from_slice(data, DeOptions::new().errors(DecodeErrors::Replace)).expect("replace");
    assert_eq!(replaced, ["abc", "h\u{fffd}!"]);
    let cp1252 = DeOptions::new().encoding(Encoding::from_name("cp1252").expect("cp1252"));
    let got: Vec<String> = pikl::from_slice(data, cp1252).expect("cp1252");
    assert_eq!(got, ["abc", "h\u{e9}!"]);
    let raw: Vec<serde_bytes::ByteBuf> =
        pikl::from_slice(data, DeOptions::new().encoding(Encoding::Bytes)).expect("bytes");
    assert_eq!(raw[1].as_slice(), b"h\xe9!");
    // ASCII text stays borrowed.
    let ascii = b"\x80\x02U\x05helloq\x00.";
    let s: &str = pikl::from_slice(ascii, DeOptions::new()).expect("ascii");
    assert_eq!(s, "hello");
    assert!(ascii.as_ptr_range().contains(&s.as_ptr()));
    // Protocol 0's STRING, escaped.
    let s: String =
        pikl::from_slice(b"S'a\\xe9\\n'\np0\n.", DeOptions::new().encoding(Encoding::Latin1)).expect("STRING");
    assert_eq!(s, "a\u{e9}\n");
}

/// The byte offset of occurrence `skip` of opcode `op` (as pickletools numbers them).
fn offset_of(data: &[u8], op: Opcode, skip: usize) -> u64 {
    let mut r = pikl::read::SliceRead::new(data);
    let mut seen = 0;
    loop {
        let (pos, o) = pikl::ops::read_opcode(&mut r).expect("opcode");
        if o == op {
            if seen == skip {
                return pos;
            }
            seen += 1;
        }
        assert!(o != Opcode::Stop, "opcode {op:?} #{skip} not found");
        let _ = pikl::ops::read_arg(&mut r, o).expect("arg");
    }
}

#[derive(Serialize, Deserialize, Debug)]
struct WrongName {
    id: i64,
    name: i64,
    score: f64,
    tags: Vec<String>,
    active: bool,
}

#[derive(Serialize)]
#[serde(untagged)]
enum WrongOrRight {
    Right(Record),
    Wrong(WrongName),
}

#[derive(Serialize)]
struct Outer {
    records: Vec<WrongOrRight>,
}

#[derive(Deserialize, Debug)]
#[allow(dead_code)]
struct OuterIn {
    records: Vec<Record>,
}

#[derive(Deserialize, Debug)]
#[allow(dead_code)]
struct Needs {
    records: Vec<NeedsMore>,
}

#[derive(Deserialize, Debug)]
#[allow(dead_code)]
struct NeedsMore {
    id: i64,
    missing: bool,
}

#[test]
fn errors_name_the_field_path_and_the_byte_offset() {
    let outer = Outer {
        records: vec![
            WrongOrRight::Right(record(0)),
            WrongOrRight::Right(record(1)),
            WrongOrRight::Wrong(WrongName { id: 2, name: 70_000, score: 1.0, tags: vec![], active: false }),
        ],
    };
    for p in 1..=5 {
        let bytes = pikl::to_vec(&outer, SerOptions::new().protocol(p)).expect("to_vec");
        let from_reader = pikl::from_reader::<_, OuterIn>(&bytes[..], DeOptions::new()).unwrap_err();
        for err in [pikl::from_slice::<OuterIn>(&bytes, DeOptions::new()).unwrap_err(), from_reader] {
            assert!(err.is_unpickling());
            assert!(
                err.message().starts_with("records[2].name: invalid type: integer `70000`, expected a string"),
                "protocol {p}: {err}"
            );
            // The second BININT of the pickle (the first is record 1's id).
            assert_eq!(err.offset(), Some(offset_of(&bytes, Opcode::BinInt, 1)), "protocol {p}: {err}");
            let at = format!("unpickling error at byte {}: records[2].name", err.offset().unwrap());
            assert!(err.to_string().starts_with(&at), "{err}");
        }
        // A missing field: the path of the struct and the offset of its dict.
        let err = pikl::from_slice::<Needs>(&bytes, DeOptions::new()).unwrap_err();
        assert!(err.message().starts_with("records[0]: missing field `missing`"), "protocol {p}: {err}");
        assert_eq!(err.offset(), Some(offset_of(&bytes, Opcode::EmptyDict, 1)), "protocol {p}: {err}");
    }
    // Non-identifier keys are quoted.
    let m: BTreeMap<String, String> = [("a key".to_string(), "v".to_string())].into_iter().collect();
    let bytes = pikl::to_vec(&m, SerOptions::new()).expect("to_vec");
    let err = pikl::from_slice::<BTreeMap<String, i32>>(&bytes, DeOptions::new()).unwrap_err();
    assert!(err.message().starts_with("['a key']: invalid type"), "{err}");
    // Serialization errors name the path too.
    struct Fails;
    impl Serialize for Fails {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("refused"))
        }
    }
    #[derive(Serialize)]
    struct Holder {
        items: Vec<Fails>,
    }
    let err = pikl::to_vec(&Holder { items: vec![Fails] }, SerOptions::new()).unwrap_err();
    assert!(err.is_pickling());
    assert_eq!(err.message(), "items[0]: refused");
    let err = pikl::to_vec(&BTreeMap::from([("a key", vec![Fails])]), SerOptions::new()).unwrap_err();
    assert_eq!(err.message(), "['a key'][0]: refused");
    let err = pikl::to_vec(&BTreeMap::from([(7, BTreeMap::from([("k", Fails)]))]), SerOptions::new()).unwrap_err();
    assert_eq!(err.message(), "[7].k: refused");
    // A map key that Python could not hash.
    let err = pikl::to_vec(&BTreeMap::from([(BTreeMap::from([(1, 2)]), 3)]), SerOptions::new()).unwrap_err();
    assert!(err.message().contains("unhashable type: 'dict'"), "{err}");
}

#[derive(Deserialize, Debug)]
#[allow(dead_code)]
struct Nest(Vec<Nest>);

#[test]
fn malformed_and_hostile_input_is_an_error_not_a_panic() {
    let good = pikl::to_vec(&all(), SerOptions::new()).expect("to_vec");
    // Truncations.
    for n in (0..good.len()).step_by(97) {
        assert!(pikl::from_slice::<All>(&good[..n], DeOptions::new()).is_err(), "truncated at {n}");
    }
    // Single-byte corruptions of a small pickle: an error or a value, never a panic.
    let small = pikl::to_vec(&(record(5), Shape::Rect(1.0, 2.0)), SerOptions::new()).expect("to_vec");
    for i in 0..small.len() {
        for x in [0x00, 0x28, 0x2e, 0x61, 0x75, 0x80, 0x94, 0xff] {
            let mut b = small.clone();
            b[i] = x;
            let _ = pikl::from_slice::<(Record, Shape)>(&b, DeOptions::new());
            let _ = pikl::from_slice::<IgnoredAny>(&b, DeOptions::new());
            let _ = pikl::from_reader::<_, (Record, Shape)>(&b[..], DeOptions::new());
        }
    }
    // A list containing itself: a depth error, not a stack overflow.
    let cyclic = b"\x80\x04]\x94h\x00a.";
    let err = pikl::from_slice::<Nest>(cyclic, DeOptions::new()).unwrap_err();
    assert!(err.message().contains("nested deeper than 256"), "{err}");
    // 100000 nested lists: the tape builder is iterative, the visitor stops at the limit.
    let mut deep = b"\x80\x02".to_vec();
    deep.extend(std::iter::repeat_n(b']', 100_000));
    deep.extend(std::iter::repeat_n(b'a', 99_999));
    deep.push(b'.');
    let err = pikl::from_slice::<Nest>(&deep, DeOptions::new()).unwrap_err();
    assert!(err.message().contains("nested deeper than"), "{err}");
    assert!(pikl::from_slice::<IgnoredAny>(&deep, DeOptions::new()).is_ok());
    // Constructs with no mapping.
    let complex =
        b"\x80\x02c__builtin__\ncomplex\nG?\xf0\x00\x00\x00\x00\x00\x00G\x00\x00\x00\x00\x00\x00\x00\x00\x86R.";
    let err = pikl::from_slice::<f64>(complex, DeOptions::new()).unwrap_err();
    assert!(err.message().contains("complex"), "{err}");
    let global = b"\x80\x02cos\nsystem\n.";
    let err = pikl::from_slice::<String>(global, DeOptions::new()).unwrap_err();
    assert!(err.message().contains("class os.system"), "{err}");
    let err = pikl::from_slice::<i32>(b"\x80\x05\x97.", DeOptions::new()).unwrap_err();
    assert!(err.message().contains("NEXT_BUFFER"), "{err}");
    // An unknown opcode, and nothing at all.
    let err = pikl::from_slice::<i32>(b"\x80\x02\xff.", DeOptions::new()).unwrap_err();
    assert_eq!(err.offset(), Some(2));
    assert!(pikl::from_slice::<i32>(b"", DeOptions::new()).is_err());
    // Too many marks.
    let marks: Vec<u8> = [b'('; 100].iter().chain(b"N.").copied().collect();
    let err = pikl::from_slice::<IgnoredAny>(&marks, DeOptions::new().max_marks(10)).unwrap_err();
    assert!(err.message().contains("MARK"), "{err}");
}

#[test]
fn consecutive_pickles_from_one_reader() {
    let mut stream = Vec::new();
    for i in 0..3 {
        pikl::to_writer(&mut stream, &record(i), SerOptions::new()).expect("to_writer");
    }
    let mut r = std::io::BufReader::new(&stream[..]);
    for i in 0..3 {
        let rec: Record = pikl::from_reader(&mut r, DeOptions::new()).expect("from_reader");
        assert_eq!(rec, record(i));
    }
    assert!(pikl::from_reader::<_, Record>(&mut r, DeOptions::new()).is_err());
}

#[test]
fn readers_are_lenient_where_python_is_flexible() {
    // A tuple as a Vec, a list as a tuple, an int as an f64.
    let b = pikl::to_vec(&((1, 2, 3), vec![4, 5], 6), SerOptions::new()).expect("to_vec");
    let (v, t, f): (Vec<i32>, (i32, i32), f64) = pikl::from_slice(&b, DeOptions::new()).expect("lenient");
    assert_eq!((v, t, f), (vec![1, 2, 3], (4, 5), 6.0));
    // Unit variants from {variant: None}; serde-pickle's tuple form.
    let b = pikl::to_vec(&vec![BTreeMap::from([("Empty", ())])], SerOptions::new()).expect("to_vec");
    let s: Vec<Shape> = pikl::from_slice(&b, DeOptions::new()).expect("unit variant");
    assert_eq!(s, [Shape::Empty]);
    let b = pikl::to_vec(&(("Circle", 2.0),), SerOptions::new()).expect("to_vec");
    let s: (Shape,) = pikl::from_slice(&b, DeOptions::new()).expect("tuple variant form");
    assert_eq!(s.0, Shape::Circle(2.0));
    // An unknown variant names itself and where it is.
    let b = pikl::to_vec(&vec!["Hexagon"], SerOptions::new()).expect("to_vec");
    let err = pikl::from_slice::<Vec<Shape>>(&b, DeOptions::new()).unwrap_err();
    assert!(err.message().starts_with("[0]: unknown variant `Hexagon`"), "{err}");
}

/// A sequence (or map) that announces `announced` items and yields `items`.
struct Announcing {
    announced: usize,
    items: Vec<u32>,
    as_map: bool,
}

impl Serialize for Announcing {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        if self.as_map {
            let mut m = s.serialize_map(Some(self.announced))?;
            for x in &self.items {
                m.serialize_entry(x, x)?;
            }
            m.end()
        } else {
            let mut q = s.serialize_seq(Some(self.announced))?;
            for x in &self.items {
                q.serialize_element(x)?;
            }
            q.end()
        }
    }
}

#[test]
fn length_hints_only_size_the_buffer() {
    // `to_vec` reserves room for a long list or dict from its first items and its announced
    // length. A hint that is far too big, too small or wrong must change nothing but that:
    // the bytes equal the streaming writer's, which never presizes.
    let small: Vec<u32> = (0..2500).map(|i| i * 977).collect();
    let growing: Vec<u32> = (0..6000).map(|i| if i < 1000 { i } else { u32::MAX - i }).collect();
    for (announced, items) in
        [(usize::MAX, &small), (1 << 40, &small), (2500, &small), (2001, &small), (6000, &growing), (3000, &growing)]
    {
        for as_map in [false, true] {
            let v = Announcing { announced, items: items.clone(), as_map };
            for proto in [2, 4, 5] {
                let opts = SerOptions::new().protocol(proto);
                let bytes = pikl::to_vec(&v, opts.clone()).expect("to_vec");
                let mut streamed = Vec::new();
                pikl::to_writer(&mut streamed, &v, opts).expect("to_writer");
                assert_eq!(bytes, streamed, "announced {announced}, map {as_map}, protocol {proto}");
                if as_map {
                    let back: BTreeMap<u32, u32> = pikl::from_slice(&bytes, DeOptions::new()).expect("from_slice");
                    assert_eq!(back.len(), items.len());
                    assert!(back.iter().all(|(k, x)| k == x && items.contains(k)));
                } else {
                    let back: Vec<u32> = pikl::from_slice(&bytes, DeOptions::new()).expect("from_slice");
                    assert_eq!(&back, items);
                }
            }
        }
    }
}

#[test]
fn tuples_and_structs_take_the_whole_sequence() {
    #[derive(Deserialize, Debug, PartialEq)]
    struct Pair(i64, i64);
    #[derive(Deserialize, Debug, PartialEq)]
    struct Point {
        x: i64,
        y: i64,
    }
    // (1, 2, 3) and [1, 2, 3] as CPython writes them at protocol 4.
    let tuple3 = b"\x80\x04\x95\t\x00\x00\x00\x00\x00\x00\x00K\x01K\x02K\x03\x87\x94.";
    let list3 = b"\x80\x04\x95\x0b\x00\x00\x00\x00\x00\x00\x00]\x94(K\x01K\x02K\x03e.";
    for data in [&tuple3[..], &list3[..]] {
        let err = pikl::from_slice::<Pair>(data, DeOptions::new()).expect_err("3 items into a 2-tuple struct");
        assert!(err.to_string().contains("invalid length 3"), "{err}");
        assert!(pikl::from_slice::<(i64, i64)>(data, DeOptions::new()).is_err());
        assert!(pikl::from_slice::<Point>(data, DeOptions::new()).is_err());
        assert_eq!(pikl::from_slice::<(i64, i64, i64)>(data, DeOptions::new()).expect("3-tuple"), (1, 2, 3));
        assert_eq!(pikl::from_slice::<Vec<i64>>(data, DeOptions::new()).expect("Vec"), vec![1, 2, 3]);
        let streamed: (i64, i64, i64) =
            pikl::from_reader(std::io::Cursor::new(data), DeOptions::new()).expect("from_reader");
        assert_eq!(streamed, (1, 2, 3));
    }
}

#[test]
fn setitem_on_a_list_or_bytearray_assigns_by_index() {
    // As CPython's SETITEM(S) (`PyObject_SetItem`): expected values from `pickle.loads`.
    let opts = DeOptions::new();
    let list = |d: &[u8]| pikl::from_slice::<Vec<i64>>(d, opts).map_err(|e| e.to_string());
    assert_eq!(list(b"(K\x01K\x02K\x03lK\x00K\x09s.").unwrap(), [9, 2, 3]);
    assert_eq!(list(b"(K\x01K\x02K\x03lJ\xff\xff\xff\xffK\x09s.").unwrap(), [1, 2, 9]);
    assert_eq!(list(b"(K\x01K\x02K\x03l(\x88K\x09K\x00K\x08u.").unwrap(), [8, 9, 3]);
    assert_eq!(list(b"(K\x01K\x02K\x03l\x8a\x09\x01\x00\x00\x00\x00\x00\x00\x00\x00K\x09s.").unwrap(), [1, 9, 3]);
    assert!(list(b"(K\x01K\x02K\x03lK\x03K\x09s.").unwrap_err().contains("list assignment index out of range"));
    assert!(list(b"(K\x01K\x02K\x03lX\x01\x00\x00\x00aK\x09s.").unwrap_err().contains("not str"));
    assert!(list(b"(K\x01K\x02K\x03l\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01K\x09s.")
        .unwrap_err()
        .contains("cannot fit 'int'"));
    // A list appended to in runs, then assigned: every run is seen.
    let pair = |d: &[u8]| pikl::from_slice::<(Vec<i64>, Vec<i64>)>(d, opts).unwrap();
    assert_eq!(
        pair(b"\x80\x02]q\x00(K\x01K\x02eh\x00K\x03ah\x00(J\xff\xff\xff\xffK\x07K\x00K\x08u\x86."),
        (vec![8, 2, 7], vec![8, 2, 7])
    );
    // A set made from the list keeps the items it had ({1, 2, 3}, [9, 2, 3]).
    let (set, after): (BTreeSet<i64>, Vec<i64>) =
        pikl::from_slice(b"\x80\x02c__builtin__\nset\n]q\x00(K\x01K\x02K\x03e\x85Rh\x00K\x00K\x09s0h\x00\x86.", opts)
            .unwrap();
    assert_eq!((set, after), (BTreeSet::from([1, 2, 3]), vec![9, 2, 3]));
    // A bytearray takes ints in range(256).
    let bytes = |d: &[u8]| pikl::from_slice::<serde_bytes::ByteBuf>(d, opts).map_err(|e| e.to_string());
    assert_eq!(bytes(b"\x80\x05\x96\x02\x00\x00\x00\x00\x00\x00\x00abK\x00K\x41s.").unwrap().as_slice(), b"Ab");
    assert_eq!(bytes(b"\x80\x05\x96\x02\x00\x00\x00\x00\x00\x00\x00ab\x88\x89s.").unwrap().as_slice(), b"a\x00");
    assert!(bytes(b"\x80\x05\x96\x02\x00\x00\x00\x00\x00\x00\x00abK\x00M\x00\x01s.")
        .unwrap_err()
        .contains("range(0, 256)"));
    assert!(bytes(b"\x80\x05\x96\x02\x00\x00\x00\x00\x00\x00\x00abK\x05K\x41s.")
        .unwrap_err()
        .contains("index out of range"));
}

/// Ints of every width and sign, in runs of mixed opcodes (the reader's fast paths), and
/// LONG1 in forms CPython does not write (empty, padded to 8 bytes, 9 bytes): serde reads
/// each as the object model does, from a slice and from a reader.
#[test]
fn int_runs_of_every_width_read_as_the_object_model_reads_them() {
    let mut ints = vec![i64::MIN, i64::MAX, 0, -1];
    for k in 0..63 {
        let p = 1i64 << k;
        ints.extend([p, p - 1, -p, -p - 1, p + 1]);
    }
    // Every width next to every other.
    let mixed: Vec<i64> = ints.iter().rev().chain(ints.iter()).copied().collect();
    for proto in 2..=5 {
        let bytes = pikl::to_vec(&mixed, SerOptions::new().protocol(proto)).expect("to_vec");
        let got: Vec<i64> = pikl::from_slice(&bytes, DeOptions::new()).expect("from_slice");
        assert_eq!(got, mixed, "protocol {proto}");
        let got: Vec<i64> = pikl::from_reader(&bytes[..], DeOptions::new()).expect("from_reader");
        assert_eq!(got, mixed, "protocol {proto}, reader");
    }
    // EMPTY_LIST, MARK, hand-made LONG1s between BININTs, APPENDS.
    let longs: [&[u8]; 6] = [
        &[0x8a, 0],
        &[0x8a, 1, 0xff],
        &[0x8a, 8, 5, 0, 0, 0, 0, 0, 0, 0],
        &[0x8a, 8, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        &[0x8a, 9, 7, 0, 0, 0, 0, 0, 0, 0, 0],
        &[0x8a, 3, 0x00, 0x00, 0x80],
    ];
    let mut data = vec![0x80, 2, b']', b'('];
    for long in longs {
        data.extend_from_slice(long);
        data.extend_from_slice(&[b'J', 0xfe, 0xff, 0xff, 0xff, b'K', 7]);
    }
    data.extend_from_slice(b"e.");
    let want: Vec<i64> =
        pikl::loads(&data).expect("loads").value().iter().map(|v| v.as_i64().expect("an i64")).collect();
    let long_values: Vec<i64> = want.iter().step_by(3).copied().collect();
    assert_eq!(long_values, [0, -1, 5, -2, 7, -(1 << 23)]);
    let got: Vec<i64> = pikl::from_slice(&data, DeOptions::new()).expect("from_slice");
    assert_eq!(got, want);
    let got: Vec<i64> = pikl::from_reader(&data[..], DeOptions::new()).expect("from_reader");
    assert_eq!(got, want);
    // Cut anywhere, the same pickle is an error, never a panic or a short list.
    for cut in 0..data.len() - 1 {
        assert!(pikl::from_slice::<Vec<i64>>(&data[..cut], DeOptions::new()).is_err(), "cut at {cut}");
    }
}
