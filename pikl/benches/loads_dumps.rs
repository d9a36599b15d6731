//! loads / dumps throughput on the pickles `bench/gen_data.py` writes to `target/bench-data/`,
//! for pikl and (where it can read them) serde-pickle.
//!
//! Generate the data first (`bash bench/run.sh` does): `python3 bench/gen_data.py target/bench-data`.
//! The directory can be changed with `PIKL_BENCH_DATA`. Run one group with a criterion filter:
//! `cargo bench -p pikl --bench loads_dumps -- loads/records`.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput};

/// pyperformance bm_pickle's objects, at protocols 0, 2 and 5.
const SMALL: &[&str] = &["dict", "tuple", "dict_group", "list", "micro_dict"];
/// The large files, at protocols 2 and 5.
const LARGE: &[&str] = &["ints", "floats", "strs", "nested", "records", "bytes"];

fn data_dir() -> PathBuf {
    match std::env::var_os("PIKL_BENCH_DATA") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-data"),
    }
}

struct Case {
    name: &'static str,
    protocol: u8,
    data: Vec<u8>,
    large: bool,
}

fn cases() -> Vec<Case> {
    let dir = data_dir();
    let mut out = Vec::new();
    let mut missing = Vec::new();
    let all = SMALL.iter().flat_map(|n| [0u8, 2, 5].map(|p| (*n, p, false)));
    let all = all.chain(LARGE.iter().flat_map(|n| [2u8, 5].map(|p| (*n, p, true))));
    for (name, protocol, large) in all {
        let path = dir.join(format!("{name}.p{protocol}.pkl"));
        match std::fs::read(&path) {
            Ok(data) => out.push(Case { name, protocol, data, large }),
            Err(_) => missing.push(path),
        }
    }
    if !missing.is_empty() {
        eprintln!(
            "loads_dumps: benchmark data missing ({} files, e.g. {}).\n\
             Generate it with `python3 bench/gen_data.py target/bench-data` (or run `bash bench/run.sh`),\n\
             or point PIKL_BENCH_DATA at a directory holding it.",
            missing.len(),
            missing[0].display()
        );
        std::process::exit(2);
    }
    out
}

fn configure<'c>(c: &'c mut Criterion, name: &str, large: bool) -> BenchmarkGroup<'c, WallTime> {
    let mut g = c.benchmark_group(name);
    if large {
        // Each iteration takes tens to hundreds of milliseconds: ten flat samples are plenty.
        g.sample_size(10).sampling_mode(SamplingMode::Flat).warm_up_time(Duration::from_millis(300));
        g.measurement_time(Duration::from_secs(2));
    } else {
        g.sample_size(30).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1));
    }
    g
}

fn bench(c: &mut Criterion) {
    let cases = cases();
    for case in &cases {
        let Case { name, protocol, ref data, large } = *case;
        let id = |lib: &str| BenchmarkId::new(lib, format!("p{protocol}"));

        // Both readers must agree the file is readable before anything is timed.
        let loaded = pikl::loads(data).unwrap_or_else(|e| panic!("pikl cannot load {name}.p{protocol}: {e}"));
        let serde_value = match serde_pickle::value_from_slice(data, serde_pickle::DeOptions::new()) {
            Ok(v) => Some(v),
            Err(e) => {
                eprintln!("serde-pickle cannot load {name}.p{protocol}: {e}");
                None
            }
        };

        let mut g = configure(c, &format!("loads/{name}"), large);
        g.throughput(Throughput::Bytes(data.len() as u64));
        g.bench_function(id("pikl"), |b| b.iter(|| pikl::loads(black_box(data)).expect("loads")));
        if serde_value.is_some() {
            g.bench_function(id("serde_pickle"), |b| {
                b.iter(|| {
                    serde_pickle::value_from_slice(black_box(data), serde_pickle::DeOptions::new()).expect("loads")
                })
            });
        }
        g.finish();

        let mut g = configure(c, &format!("dumps/{name}"), large);
        g.throughput(Throughput::Bytes(data.len() as u64));
        g.bench_function(id("pikl"), |b| {
            b.iter(|| pikl::dumps(&loaded.graph, black_box(loaded.root), Some(i32::from(protocol))).expect("dumps"))
        });
        if let Some(v) = &serde_value {
            if let Err(e) = serde_pickle::value_to_vec(v, serde_pickle::SerOptions::new()) {
                eprintln!("serde-pickle cannot dump {name}.p{protocol}: {e}");
            } else {
                g.bench_function(id("serde_pickle"), |b| {
                    b.iter(|| serde_pickle::value_to_vec(black_box(v), serde_pickle::SerOptions::new()).expect("dumps"))
                });
            }
        }
        g.finish();
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
