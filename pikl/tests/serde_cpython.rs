//! serde support against CPython (python3 is required: these tests fail without it).
//!
//! * CPython writes dataclasses, plain and slotted class instances, namedtuples, nested dicts
//!   and lists, sets, bytes, bytearrays and big ints at every protocol; Rust reads them into
//!   structs, maps, vectors and ints.
//! * Rust writes every mapping at every protocol; CPython loads each pickle and compares it
//!   with the equivalent Python value, and checks the bytes are exactly `pickle.dumps` of that
//!   value (the writer memoizes and batches as CPython does).
#![cfg(feature = "serde")]

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::Write as _;
use std::process::{Command, Stdio};

use num_bigint::BigInt;
use pikl::serde::{DeOptions, SerOptions};
use serde::{Deserialize, Serialize};

fn python(script: &str, input: &str) -> String {
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run python3 (CPython 3 is required for this test): {e}"));
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_owned();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("python3 output");
    writer.join().expect("stdin thread").expect("write stdin");
    assert!(
        out.status.success(),
        "python3 failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Record {
    id: i64,
    name: String,
    score: f64,
    tags: Vec<String>,
    active: bool,
}

fn record(i: i64) -> Record {
    Record {
        id: i,
        name: format!("name{i}"),
        score: i as f64 / 4.0,
        tags: (0..(i % 3)).map(|t| format!("tag{t}")).collect(),
        active: i % 2 == 0,
    }
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Point {
    x: i32,
    y: i32,
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
enum Shape {
    Unit,
    Circle(f64),
    Rect(f64, f64),
    Poly { sides: u32, name: String },
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Big {
    small: i128,
    wide: u128,
    #[serde(with = "pikl::serde::bigint")]
    huge: BigInt,
    #[serde(with = "pikl::serde::bigint")]
    negative: BigInt,
}

/// Python's definitions shared by the scripts: the classes, and `fresh` (a str object of its
/// own, as each Rust `String` is written).
const PY_PRELUDE: &str = r#"
import sys, pickle, dataclasses, collections
fresh = lambda s: (s + '.')[:-1]

@dataclasses.dataclass
class Point:
    x: int
    y: int

@dataclasses.dataclass
class Rec:
    id: int
    name: str
    score: float
    tags: list
    active: bool

class Plain:
    def __init__(self, id, name, score, tags, active):
        self.id = id; self.name = name; self.score = score; self.tags = tags; self.active = active

class L(list):
    pass

class D(dict):
    pass

class Slotted:
    __slots__ = ('id', 'name', 'score', 'tags', 'active')
    def __init__(self, id, name, score, tags, active):
        self.id = id; self.name = name; self.score = score; self.tags = tags; self.active = active

NT = collections.namedtuple('NT', 'id name score tags active')

def rec(i):
    return dict(id=i, name=fresh('name%d' % i), score=i / 4, tags=[fresh('tag%d' % t) for t in range(i % 3)],
                active=i % 2 == 0)
"#;

/// The values Rust writes, by name, and their Python equivalents.
/// A value Rust writes: its name, its writer and the Python expression it equals.
type Case = (&'static str, Box<dyn Fn(SerOptions) -> Vec<u8>>, &'static str);

fn rust_cases() -> Vec<Case> {
    fn case<T: Serialize + 'static>(v: T) -> Box<dyn Fn(SerOptions) -> Vec<u8>> {
        Box::new(move |o| pikl::to_vec(&v, o).expect("to_vec"))
    }
    let ints: Vec<i64> =
        vec![0, 1, 255, 256, 65535, 65536, -1, -(1 << 31), (1 << 31) - 1, 1 << 31, -(1 << 31) - 1, i64::MAX, i64::MIN];
    let mut nested: BTreeMap<String, Vec<BTreeMap<String, i32>>> = BTreeMap::new();
    nested.insert("a".into(), vec![BTreeMap::from([("x".to_string(), 1), ("yy".to_string(), 2)])]);
    nested.insert("bb".into(), vec![]);
    nested.insert("ccc".into(), vec![BTreeMap::new(), BTreeMap::from([("z".to_string(), 3)])]);
    let bigdict: BTreeMap<String, i32> = (0..1000).map(|i| (format!("k{i:04}"), i)).collect();
    let bigdict2: BTreeMap<String, i32> = (0..2001).map(|i| (format!("k{i:04}"), i)).collect();
    let seven = BigInt::from(7u8).pow(100);
    vec![
        ("ints", case(ints), "[0, 1, 255, 256, 65535, 65536, -1, -2**31, 2**31-1, 2**31, -2**31-1, 2**63-1, -2**63]"),
        ("records", case((0..5).map(record).collect::<Vec<_>>()), "[rec(i) for i in range(5)]"),
        ("many_records", case((0..1001).map(record).collect::<Vec<_>>()), "[rec(i) for i in range(1001)]"),
        ("one_record", case(vec![record(1)]), "[rec(1)]"),
        ("list2500", case((0..2500).collect::<Vec<i32>>()), "list(range(2500))"),
        ("list1000", case((0..1000).collect::<Vec<i32>>()), "list(range(1000))"),
        (
            "nested",
            case(nested),
            "{'a': [{'x': 1, fresh('yy'): 2}], fresh('bb'): [], fresh('ccc'): [{}, {'z': 3}]}",
        ),
        ("bigdict", case(bigdict), "{fresh('k%04d' % i): i for i in range(1000)}"),
        ("bigdict2", case(bigdict2), "{fresh('k%04d' % i): i for i in range(2001)}"),
        (
            "tuples",
            case(((1,), (1, "ab".to_string()), (1, 2, 3), (1, 2, 3, 4), (5, 6, 7, 8, 9))),
            "((1,), (1, fresh('ab')), (1, 2, 3), (1, 2, 3, 4), (5, 6, 7, 8, 9))",
        ),
        (
            "bytes",
            case((
                serde_bytes::ByteBuf::from(b"\x00\xffabc".to_vec()),
                serde_bytes::ByteBuf::from(Vec::new()),
                serde_bytes::ByteBuf::from(b"z".to_vec()),
                serde_bytes::ByteBuf::from(b"\x00\xffabc".to_vec()),
            )),
            "(b'\\x00\\xffabc', b'', b'z', bytes(bytearray(b'\\x00\\xffabc')))",
        ),
        (
            "big",
            case(Big { small: i128::MIN, wide: u128::MAX, huge: seven.clone(), negative: -seven }),
            "{'small': -2**127, 'wide': 2**128-1, 'huge': 7**100, 'negative': -7**100}",
        ),
        (
            "enums",
            case(vec![
                Shape::Unit,
                Shape::Circle(1.5),
                Shape::Rect(2.0, 3.0),
                Shape::Poly { sides: 5, name: "pent".into() },
                Shape::Unit,
            ]),
            "[sys.intern('Unit'), {'Circle': 1.5}, {'Rect': (2.0, 3.0)}, {'Poly': {'sides': 5, 'name': fresh('pent')}}, sys.intern('Unit')]",
        ),
        (
            "strs",
            case((None::<i32>, Some(3), "", "a", "é", "€uro", "😀x", "a\\b\nc\r\0", "")),
            "(None, 3, '', 'a', 'é', fresh('€uro'), fresh('😀x'), fresh('a\\\\b\\nc\\r\\0'), '')",
        ),
        ("floats", case(vec![0.0, -0.0, 1.5, 0.1, 1e300, -1e-300, f64::INFINITY]), "[0.0, -0.0, 1.5, 0.1, 1e300, -1e-300, float('inf')]"),
        ("unit_opt", case(((), Some(()), Option::<()>::None, true, false)), "(None, None, None, True, False)"),
        (
            "tuple_keys",
            case(BTreeMap::from([((1, 2), "a".to_string()), ((3, 4), "b".to_string())])),
            "{(1, 2): 'a', (3, 4): 'b'}",
        ),
        ("char", case(('x', 'é', '€')), "('x', 'é', '€')"),
        ("empty", case((Vec::<i32>::new(), BTreeMap::<String, i32>::new())), "([], {})"),
    ]
}

/// CPython loads each pickle Rust wrote, compares it with the Python value and with
/// `pickle.dumps(value, protocol)`.
const CHECK_SCRIPT: &str = r#"
import math
ok = True
for line in sys.stdin:
    name, proto, ident, expr, data = line.rstrip('\n').split('\t')
    proto = int(proto)
    data = bytes.fromhex(data)
    want = eval(expr)
    try:
        got = pickle.loads(data)
    except Exception as e:
        print('FAIL', name, proto, 'loads:', repr(e)); ok = False; continue
    if got != want:
        print('FAIL', name, proto, 'got', repr(got)[:300], 'want', repr(want)[:300]); ok = False; continue
    if ident == '1':
        exp = pickle.dumps(want, proto)
        if exp != data:
            i = next((k for k in range(min(len(exp), len(data))) if exp[k] != data[k]), min(len(exp), len(data)))
            print('DIFF', name, proto, 'at', i, 'cpython', exp[max(0, i - 20):i + 20].hex(), 'rust', data[max(0, i - 20):i + 20].hex())
            ok = False
            continue
    print('OK', name, proto)
print('DONE', ok)
"#;

#[test]
fn rust_writes_cpython_reads_byte_identical() {
    let mut input = String::new();
    let mut count = 0;
    for (name, write, expr) in rust_cases() {
        for proto in 0..=5u8 {
            let data = write(SerOptions::new().protocol(proto));
            input.push_str(&format!("{name}\t{proto}\t1\t{expr}\t{}\n", hex(&data)));
            // Without memo: no byte identity, same value.
            let data = write(SerOptions::new().protocol(proto).memoize(false));
            input.push_str(&format!("{name}_nomemo\t{proto}\t0\t{expr}\t{}\n", hex(&data)));
            count += 2;
        }
    }
    let out = python(&format!("{PY_PRELUDE}\n{CHECK_SCRIPT}"), &input);
    let bad: Vec<&str> = out.lines().filter(|l| !l.starts_with("OK ")).collect();
    assert_eq!(bad, vec!["DONE True"], "\n{out}");
    assert_eq!(out.lines().filter(|l| l.starts_with("OK ")).count(), count);
}

#[test]
fn structs_as_instances_are_real_objects_in_cpython() {
    let mut input = String::new();
    let points = vec![Point { x: 1, y: 2 }, Point { x: -3, y: 400 }];
    let recs: Vec<Record> = (0..3).map(record).collect();
    for proto in 0..=5u8 {
        let opts =
            SerOptions::new().protocol(proto).class("Point", "__main__", "Point").class("Record", "__main__", "Rec");
        let data = pikl::to_vec(&points, opts.clone()).expect("points");
        input.push_str(&format!("points\t{proto}\t1\t[Point(1, 2), Point(-3, 400)]\t{}\n", hex(&data)));
        let data = pikl::to_vec(&recs, opts.clone()).expect("recs");
        input.push_str(&format!("recs\t{proto}\t1\t[Rec(**rec(i)) for i in range(3)]\t{}\n", hex(&data)));
        // Read back as structs.
        assert_eq!(pikl::from_slice::<Vec<Record>>(&data, DeOptions::new()).expect("recs back"), recs);
        let data = pikl::to_vec(&points, SerOptions::new().protocol(proto).instances_of("__main__")).expect("points");
        input.push_str(&format!("points_all\t{proto}\t1\t[Point(1, 2), Point(-3, 400)]\t{}\n", hex(&data)));
        assert_eq!(pikl::from_slice::<Vec<Point>>(&data, DeOptions::new()).expect("points back"), points);
    }
    let out = python(&format!("{PY_PRELUDE}\n{CHECK_SCRIPT}"), &input);
    let bad: Vec<&str> = out.lines().filter(|l| !l.starts_with("OK ")).collect();
    assert_eq!(bad, vec!["DONE True"], "\n{out}");
}

/// What CPython writes for each case, by protocol.
const WRITE_SCRIPT: &str = r#"
x = [1, 2]
cases = {
    'dataclasses': [Rec(**rec(i)) for i in range(4)],
    'plain': [Plain(**rec(i)) for i in range(4)],
    'slotted': [Slotted(**rec(i)) for i in range(4)],
    'namedtuples': [NT(**rec(i)) for i in range(4)],
    'dicts': [rec(i) for i in range(4)],
    'nested': {'a': [{'x': [1, 2]}, {'y': []}], 'b': [], 'c': [{'z': [3]}]},
    'sets': ({1, 2, 3}, frozenset({4, 5}), set(), [6, 7], (8, 9)),
    'bytes': (b'\x00\xffabc', bytearray(b'xyz'), b'', bytearray()),
    'bigints': (2**100, -2**100, 2**127 - 1, -2**127, 2**128 - 1, 2**64 - 1, -2**63, 7**200),
    'shared': [x, x, (x, x)],
    'point': Point(3, 4),
    'enums': ['Unit', {'Circle': 2.5}, {'Rect': [1.0, 2.0]}, ('Poly', {'sides': 3, 'name': 'tri'}), {'Unit': None}],
    'mixed': {'ints': [1, -1, 2**40], 'opt': None, 'f': 1, 's': 'é€😀'},
    'subclasses': (L(), L([1, 2]), D(), D(a=1)),
}
for name, value in cases.items():
    for proto in range(6):
        if name == 'slotted' and proto < 2:
            continue  # "a class that defines __slots__ without defining __getstate__ cannot be pickled"
        print(name, proto, pickle.dumps(value, proto).hex())
"#;

#[derive(Deserialize, Debug, PartialEq)]
struct Mixed {
    ints: Vec<i64>,
    opt: Option<String>,
    f: f64,
    s: String,
}

#[derive(Deserialize, Debug, PartialEq)]
struct BorrowedRecord<'a> {
    id: i64,
    name: &'a str,
    score: f64,
    tags: Vec<&'a str>,
    active: bool,
}

#[test]
fn cpython_writes_rust_reads() {
    let out = python(&format!("{PY_PRELUDE}\n{WRITE_SCRIPT}"), "");
    let recs: Vec<Record> = (0..4).map(record).collect();
    let mut seen = 0;
    for line in out.lines() {
        let mut parts = line.split(' ');
        let (name, proto, data) = (parts.next().unwrap(), parts.next().unwrap(), unhex(parts.next().unwrap()));
        let ctx = format!("{name} at protocol {proto}");
        let opts = DeOptions::new();
        match name {
            "dataclasses" | "plain" | "slotted" | "namedtuples" | "dicts" => {
                let got: Vec<Record> = pikl::from_slice(&data, opts).unwrap_or_else(|e| panic!("{ctx}: {e}"));
                assert_eq!(got, recs, "{ctx}");
                let got: Vec<Record> = pikl::from_reader(&data[..], opts).unwrap_or_else(|e| panic!("{ctx}: {e}"));
                assert_eq!(got, recs, "{ctx}");
                if name != "namedtuples" {
                    let got: Vec<HashMap<String, serde_json_like::Any>> =
                        pikl::from_slice(&data, opts).unwrap_or_else(|e| panic!("{ctx}: as maps: {e}"));
                    assert_eq!(got.len(), 4);
                }
                if proto != "0" {
                    // Strs borrow from the input (protocol 0 writes them escaped).
                    let got: Vec<BorrowedRecord> =
                        pikl::from_slice(&data, opts).unwrap_or_else(|e| panic!("{ctx}: {e}"));
                    assert_eq!(
                        (got[3].id, got[3].name, got[3].score, got[3].active),
                        (3, "name3", 0.75, false),
                        "{ctx}"
                    );
                    assert_eq!(got[2].tags, ["tag0", "tag1"], "{ctx}");
                    let range = data.as_ptr_range();
                    assert!(range.contains(&got[3].name.as_ptr()), "{ctx}: name is not borrowed");
                }
            }
            "nested" => {
                let got: BTreeMap<String, Vec<HashMap<String, Vec<i32>>>> =
                    pikl::from_slice(&data, opts).unwrap_or_else(|e| panic!("{ctx}: {e}"));
                assert_eq!(got["a"][0]["x"], [1, 2], "{ctx}");
                assert!(got["a"][1]["y"].is_empty(), "{ctx}");
                assert!(got["b"].is_empty(), "{ctx}");
                assert_eq!(got["c"][0]["z"], [3], "{ctx}");
            }
            "sets" => {
                type Sets = (BTreeSet<i32>, HashSet<i32>, Vec<i32>, Vec<i32>, BTreeSet<i32>);
                let got: Sets = pikl::from_slice(&data, opts).unwrap_or_else(|e| panic!("{ctx}: {e}"));
                assert_eq!(got.0, BTreeSet::from([1, 2, 3]), "{ctx}");
                assert_eq!(got.1, HashSet::from([4, 5]), "{ctx}");
                assert!(got.2.is_empty(), "{ctx}");
                assert_eq!(got.3, [6, 7], "{ctx}");
                assert_eq!(got.4, BTreeSet::from([8, 9]), "{ctx}");
            }
            "bytes" => {
                type B = (serde_bytes::ByteBuf, serde_bytes::ByteBuf, serde_bytes::ByteBuf, Vec<u8>);
                let got: B = pikl::from_slice(&data, opts).unwrap_or_else(|e| panic!("{ctx}: {e}"));
                assert_eq!(got.0.as_slice(), b"\x00\xffabc", "{ctx}");
                assert_eq!(got.1.as_slice(), b"xyz", "{ctx}");
                assert_eq!(got.2.as_slice(), b"", "{ctx}");
                assert!(got.3.is_empty(), "{ctx}");
                if proto >= "3" {
                    let got: (&[u8], serde_bytes::ByteBuf, &[u8], serde_bytes::ByteBuf) =
                        pikl::from_slice(&data, opts).unwrap_or_else(|e| panic!("{ctx}: {e}"));
                    assert_eq!(got.0, b"\x00\xffabc", "{ctx}");
                }
            }
            "bigints" => {
                #[derive(Deserialize)]
                struct Ints(
                    #[serde(with = "pikl::serde::bigint")] BigInt,
                    #[serde(with = "pikl::serde::bigint")] BigInt,
                    i128,
                    i128,
                    u128,
                    u64,
                    i64,
                    #[serde(with = "pikl::serde::bigint")] BigInt,
                );
                let got: Ints = pikl::from_slice(&data, opts).unwrap_or_else(|e| panic!("{ctx}: {e}"));
                assert_eq!(got.0, BigInt::from(1u8) << 100usize, "{ctx}");
                assert_eq!(got.1, -(BigInt::from(1u8) << 100usize), "{ctx}");
                assert_eq!(got.2, i128::MAX, "{ctx}");
                assert_eq!(got.3, i128::MIN, "{ctx}");
                assert_eq!(got.4, u128::MAX, "{ctx}");
                assert_eq!(got.5, u64::MAX, "{ctx}");
                assert_eq!(got.6, i64::MIN, "{ctx}");
                assert_eq!(got.7, BigInt::from(7u8).pow(200), "{ctx}");
                // Too big for an i128: a clear error, not a wrong value.
                let err = pikl::from_slice::<Vec<i128>>(&data, opts).unwrap_err();
                assert!(err.to_string().contains("[4]: int does not fit in an i128"), "{ctx}: {err}");
            }
            "shared" => {
                type Shared = (Vec<i32>, Vec<i32>, (Vec<i32>, Vec<i32>));
                let got: Shared = pikl::from_slice(&data, opts).unwrap_or_else(|e| panic!("{ctx}: {e}"));
                assert_eq!(got, (vec![1, 2], vec![1, 2], (vec![1, 2], vec![1, 2])), "{ctx}");
            }
            "point" => {
                let got: Point = pikl::from_slice(&data, opts).unwrap_or_else(|e| panic!("{ctx}: {e}"));
                assert_eq!(got, Point { x: 3, y: 4 }, "{ctx}");
            }
            "enums" => {
                let got: Vec<Shape> = pikl::from_slice(&data, opts).unwrap_or_else(|e| panic!("{ctx}: {e}"));
                let want = vec![
                    Shape::Unit,
                    Shape::Circle(2.5),
                    Shape::Rect(1.0, 2.0),
                    Shape::Poly { sides: 3, name: "tri".into() },
                    Shape::Unit,
                ];
                assert_eq!(got, want, "{ctx}");
            }
            "mixed" => {
                let got: Mixed = pikl::from_slice(&data, opts).unwrap_or_else(|e| panic!("{ctx}: {e}"));
                let want = Mixed { ints: vec![1, -1, 1 << 40], opt: None, f: 1.0, s: "é€😀".into() };
                assert_eq!(got, want, "{ctx}");
            }
            "subclasses" => {
                // Instances of list and dict subclasses read as their items, also when empty.
                type Subs = (Vec<i64>, Vec<i64>, BTreeMap<String, i64>, BTreeMap<String, i64>);
                let got: Subs = pikl::from_slice(&data, opts).unwrap_or_else(|e| panic!("{ctx}: {e}"));
                assert_eq!(got, (vec![], vec![1, 2], BTreeMap::new(), BTreeMap::from([("a".to_string(), 1)])), "{ctx}");
                let got: Subs = pikl::from_reader(&data[..], opts).unwrap_or_else(|e| panic!("{ctx}: {e}"));
                assert_eq!(got.0, Vec::<i64>::new(), "{ctx}");
            }
            other => panic!("unknown case {other}"),
        }
        seen += 1;
    }
    assert_eq!(seen, 14 * 6 - 2, "{out}");
}

/// A value of any shape, to read dicts whatever they hold.
mod serde_json_like {
    use serde::de::{Deserialize, Deserializer, IgnoredAny};

    #[derive(Debug)]
    pub struct Any;

    impl<'de> Deserialize<'de> for Any {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            IgnoredAny::deserialize(d).map(|_| Any)
        }
    }
}
