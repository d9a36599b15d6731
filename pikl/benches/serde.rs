//! serde throughput, side by side: pikl's serde writer (memoizing as CPython does, the default,
//! and `SerOptions::memoize(false)`) and reader, the same data through pikl's object model (a
//! `Graph` built by hand then `dumps`; `loads` then reading the graph), and serde-pickle.
//!
//! Shapes (generated here, deterministically): 150k records
//! `{id: i64, name: String, score: f64, tags: Vec<String>, active: bool}`, 5M ints of mixed
//! widths, 2M short strs (some non-ASCII). Every reader reads the same bytes: what pikl writes
//! at protocol 4, which is what `pickle.dumps(value, 4)` writes.
//!
//! `cargo bench -p pikl --bench serde` (add `-- --quick` for a short run, or a filter such as
//! `-- dumps/records`).

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput};
use pikl::serde::{DeOptions, SerOptions};
use pikl::{Graph, Value};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Record {
    id: i64,
    name: String,
    score: f64,
    tags: Vec<String>,
    active: bool,
}

/// A small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn word(&mut self, min: usize, max: usize) -> String {
        const ALPHA: &[char] = &['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'k', 'm', 'n', 'p', 'r', 's', 't', 'é', 'ü'];
        let n = min + (self.next() as usize) % (max - min + 1);
        (0..n).map(|_| ALPHA[(self.next() as usize) % ALPHA.len()]).collect()
    }
}

fn records(n: usize) -> Vec<Record> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    (0..n)
        .map(|i| Record {
            id: i as i64 * 7919,
            name: rng.word(5, 12),
            score: (rng.next() % 100_000) as f64 / 100.0,
            tags: (0..rng.next() % 4).map(|_| rng.word(3, 8)).collect(),
            active: rng.next() % 2 == 0,
        })
        .collect()
}

fn ints(n: usize) -> Vec<i64> {
    let mut rng = Rng(12345);
    (0..n)
        .map(|_| {
            let r = rng.next();
            match r % 4 {
                0 => (r >> 8) as i64 % 256,
                1 => (r >> 8) as i64 % 65536,
                2 => (r >> 8) as i32 as i64,
                _ => (r >> 2) as i64,
            }
        })
        .collect()
}

fn strs(n: usize) -> Vec<String> {
    let mut rng = Rng(777);
    (0..n).map(|_| rng.word(4, 16)).collect()
}

// ---- the object model path ----

fn records_to_graph(recs: &[Record]) -> (Graph<'_>, Value) {
    let mut g = Graph::new();
    let keys = ["id", "name", "score", "tags", "active"].map(|k| g.str(k));
    let mut items = Vec::with_capacity(recs.len());
    for r in recs {
        let name = g.str(r.name.as_str());
        let tags: Vec<Value> = r.tags.iter().map(|t| g.str(t.as_str())).collect();
        let tags = g.list(tags);
        let entries = vec![
            (keys[0], Value::Int(r.id)),
            (keys[1], name),
            (keys[2], Value::Float(r.score)),
            (keys[3], tags),
            (keys[4], Value::Bool(r.active)),
        ];
        items.push(g.dict(entries).expect("str keys"));
    }
    let root = g.list(items);
    (g, root)
}

fn records_from_graph(loaded: &pikl::Loaded) -> Vec<Record> {
    let v = loaded.value();
    v.iter()
        .map(|r| Record {
            id: r.get("id").and_then(|x| x.as_i64()).expect("id"),
            name: r.get("name").and_then(|x| x.as_str()).expect("name").to_owned(),
            score: r.get("score").and_then(|x| x.as_f64()).expect("score"),
            tags: r.get("tags").expect("tags").iter().map(|t| t.as_str().expect("tag").to_owned()).collect(),
            active: r.get("active").and_then(|x| x.as_bool()).expect("active"),
        })
        .collect()
}

fn ints_to_graph(v: &[i64]) -> (Graph<'static>, Value) {
    let mut g = Graph::new();
    let root = g.list(v.iter().map(|&i| Value::Int(i)).collect());
    (g, root)
}

fn ints_from_graph(loaded: &pikl::Loaded) -> Vec<i64> {
    loaded.value().iter().map(|x| x.as_i64().expect("int")).collect()
}

fn strs_to_graph(v: &[String]) -> (Graph<'_>, Value) {
    let mut g = Graph::new();
    let items = v.iter().map(|s| g.str(s.as_str())).collect();
    let root = g.list(items);
    (g, root)
}

fn strs_from_graph(loaded: &pikl::Loaded) -> Vec<String> {
    loaded.value().iter().map(|x| x.as_str().expect("str").to_owned()).collect()
}

// ---- the runs ----

fn group<'c>(
    c: &'c mut Criterion,
    name: &str,
    bytes: usize,
) -> criterion::BenchmarkGroup<'c, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(10).sampling_mode(SamplingMode::Flat).warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Bytes(bytes as u64));
    g
}

fn bench_shape<T>(
    c: &mut Criterion,
    name: &str,
    value: &T,
    to_graph: impl for<'a> Fn(&'a T) -> (Graph<'a>, Value),
    from_graph: impl Fn(&pikl::Loaded) -> T,
    payload: impl Fn(&T, &mut Vec<u8>),
    touch: impl Fn(&T) -> u64,
) where
    T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug,
{
    let bytes = pikl::to_vec(value, SerOptions::new()).expect("pikl to_vec");
    // The three readers agree before anything is timed.
    let ours: T = pikl::from_slice(&bytes, DeOptions::new()).expect("pikl from_slice");
    assert!(ours == *value, "{name}: pikl round trip");
    let theirs: T = serde_pickle::from_slice(&bytes, serde_pickle::DeOptions::new()).expect("serde-pickle reads it");
    assert!(theirs == *value, "{name}: serde-pickle reads another value");
    let nomemo = pikl::to_vec(value, SerOptions::new().memoize(false)).expect("pikl to_vec without memo");
    let ours: T = pikl::from_slice(&nomemo, DeOptions::new()).expect("pikl from_slice without memo");
    assert!(ours == *value, "{name}: pikl round trip without memo");
    let graph_read = from_graph(&pikl::loads(&bytes).expect("loads"));
    assert!(graph_read == *value, "{name}: object model reads another value");
    let (g, root) = to_graph(value);
    assert_eq!(pikl::dumps(&g, root, Some(4)).expect("dumps"), bytes, "{name}: object model writes other bytes");
    drop(g);

    let mut grp = group(c, &format!("dumps/{name}"), bytes.len());
    grp.bench_function("pikl_serde", |b| b.iter(|| pikl::to_vec(black_box(value), SerOptions::new()).expect("to_vec")));
    grp.bench_function("pikl_serde_nomemo", |b| {
        b.iter(|| pikl::to_vec(black_box(value), SerOptions::new().memoize(false)).expect("to_vec"))
    });
    grp.bench_function("pikl_object_model", |b| {
        b.iter(|| {
            let (g, root) = to_graph(black_box(value));
            pikl::dumps(&g, root, Some(4)).expect("dumps")
        })
    });
    grp.bench_function("serde_pickle", |b| {
        b.iter(|| serde_pickle::to_vec(black_box(value), serde_pickle::SerOptions::new()).expect("to_vec"))
    });
    // The floor under every `to_vec` above: copying the pickle's bytes into a fresh buffer (the
    // page faults and memory bandwidth of writing that much new memory, with no encoding).
    grp.bench_function("memcpy_to_fresh_vec", |b| b.iter(|| black_box(bytes.as_slice()).to_vec()));
    // The same writers into a buffer reused across iterations, whose memory is already mapped:
    // what encoding costs without the fresh output's page faults.
    let mut buf = Vec::with_capacity(bytes.len() * 2);
    grp.bench_function("pikl_serde_warm_buffer", |b| {
        b.iter(|| {
            buf.clear();
            pikl::to_writer(&mut buf, black_box(value), SerOptions::new()).expect("to_writer");
        })
    });
    grp.bench_function("serde_pickle_warm_buffer", |b| {
        b.iter(|| {
            buf.clear();
            serde_pickle::to_writer(&mut buf, black_box(value), serde_pickle::SerOptions::new()).expect("to_writer");
        })
    });
    // A floor for any writer: the value's payload alone (each int and float's 8 bytes, each
    // str's bytes, no opcode, length or memo) copied into the warm buffer by hand-written code.
    grp.bench_function("payload_floor_warm_buffer", |b| {
        b.iter(|| {
            buf.clear();
            payload(black_box(value), &mut buf);
        })
    });
    // A lower floor: reading one byte of every str (or every int), writing nothing.
    grp.bench_function("touch_floor", |b| b.iter(|| touch(black_box(value))));
    grp.finish();

    let mut grp = group(c, &format!("loads/{name}"), bytes.len());
    grp.bench_function("pikl_serde", |b| {
        b.iter(|| pikl::from_slice::<T>(black_box(&bytes), DeOptions::new()).expect("from_slice"))
    });
    grp.bench_function("pikl_object_model", |b| b.iter(|| from_graph(&pikl::loads(black_box(&bytes)).expect("loads"))));
    grp.bench_function("serde_pickle", |b| {
        b.iter(|| serde_pickle::from_slice::<T>(black_box(&bytes), serde_pickle::DeOptions::new()).expect("from_slice"))
    });
    grp.finish();
}

fn records_payload(recs: &[Record], out: &mut Vec<u8>) {
    for r in recs {
        out.extend_from_slice(&r.id.to_le_bytes());
        out.extend_from_slice(r.name.as_bytes());
        out.extend_from_slice(&r.score.to_le_bytes());
        for t in &r.tags {
            out.extend_from_slice(t.as_bytes());
        }
        out.push(r.active as u8);
    }
}

fn ints_payload(v: &[i64], out: &mut Vec<u8>) {
    for i in v {
        out.extend_from_slice(&i.to_le_bytes());
    }
}

fn strs_payload(v: &[String], out: &mut Vec<u8>) {
    for s in v {
        out.extend_from_slice(s.as_bytes());
    }
}

fn records_touch(recs: &[Record]) -> u64 {
    recs.iter()
        .map(|r| {
            let tags: u64 = r.tags.iter().map(|t| t.as_bytes()[0] as u64).sum();
            r.id as u64 ^ r.name.as_bytes()[0] as u64 ^ r.score.to_bits() ^ tags ^ r.active as u64
        })
        .fold(0, |a, x| a.wrapping_add(x))
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let records = records(150_000);
    bench_shape(
        &mut c,
        "records",
        &records,
        |v| records_to_graph(v),
        records_from_graph,
        |v, o| records_payload(v, o),
        |v| records_touch(v),
    );
    bench_shape(
        &mut c,
        "ints",
        &ints(5_000_000),
        |v| ints_to_graph(v),
        ints_from_graph,
        |v, o| ints_payload(v, o),
        |v| v.iter().fold(0, |a, &x| a ^ x as u64),
    );
    bench_shape(
        &mut c,
        "strs",
        &strs(2_000_000),
        |v| strs_to_graph(v),
        strs_from_graph,
        |v, o| strs_payload(v, o),
        |v| v.iter().map(|s| s.as_bytes()[0] as u64).sum(),
    );
    c.final_summary();
}
