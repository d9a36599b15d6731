//! loads / dumps throughput on the pickles `bench/gen_data.py` writes to `target/bench-data/`,
//! for pikl and (where it can read them) serde-pickle.
//!
//! Generate the data first (`bash bench/run.sh` does): `python3 bench/gen_data.py target/bench-data`.
//! The directory can be changed with `PIKL_BENCH_DATA`. Run one group with a criterion filter:
//! `cargo bench -p pikl --bench loads_dumps -- loads/records`. Times are the process's CPU time
//! (see [`CpuTime`]); `PIKL_BENCH_WALL=1` measures wall time instead.

use std::cell::OnceCell;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput};

/// Criterion measurement of the process's CPU time (user + system), so that other jobs sharing
/// the machine's cores do not inflate the numbers; `PIKL_BENCH_WALL=1` measures wall time.
struct CpuTime;

#[path = "support/cpu_time.rs"]
mod cpu_time;
use cpu_time::cpu_now;

static WALL: WallTime = WallTime;

impl Measurement for CpuTime {
    type Intermediate = Duration;
    type Value = Duration;
    fn start(&self) -> Duration {
        cpu_now()
    }
    fn end(&self, start: Duration) -> Duration {
        cpu_now().saturating_sub(start)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        WALL.formatter()
    }
}

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

fn configure<'c, M: Measurement>(c: &'c mut Criterion<M>, name: &str, large: bool) -> BenchmarkGroup<'c, M> {
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

fn bench<M: Measurement>(c: &mut Criterion<M>) {
    let cases = cases();
    for case in &cases {
        let Case { name, protocol, ref data, large } = *case;
        let id = |lib: &str| BenchmarkId::new(lib, format!("p{protocol}"));

        // What serde-pickle can read and write, found before anything is timed. Its values are
        // not kept alive while pikl is timed: a heap full of another library's small
        // allocations slows every allocator-bound loads several times (see BENCHMARKS.md).
        let serde_ok = match serde_pickle::value_from_slice(data, serde_pickle::DeOptions::new()) {
            Ok(v) => match serde_pickle::value_to_vec(&v, serde_pickle::SerOptions::new()) {
                Ok(_) => (true, true),
                Err(e) => {
                    eprintln!("serde-pickle cannot dump {name}.p{protocol}: {e}");
                    (true, false)
                }
            },
            Err(e) => {
                eprintln!("serde-pickle cannot load {name}.p{protocol}: {e}");
                (false, false)
            }
        };

        let mut g = configure(c, &format!("loads/{name}"), large);
        g.throughput(Throughput::Bytes(data.len() as u64));
        g.bench_function(id("pikl"), |b| b.iter(|| pikl::loads(black_box(data)).expect("loads")));
        if serde_ok.0 {
            g.bench_function(id("serde_pickle"), |b| {
                b.iter(|| {
                    serde_pickle::value_from_slice(black_box(data), serde_pickle::DeOptions::new()).expect("loads")
                })
            });
        }
        g.finish();

        // Each library's value is built only when its benchmark runs (not when filtered out)
        // and dropped before the other's.
        let mut g = configure(c, &format!("dumps/{name}"), large);
        g.throughput(Throughput::Bytes(data.len() as u64));
        let loaded = OnceCell::new();
        g.bench_function(id("pikl"), |b| {
            let l = loaded.get_or_init(|| pikl::loads(data).expect("loads"));
            b.iter(|| pikl::dumps(&l.graph, black_box(l.root), Some(i32::from(protocol))).expect("dumps"))
        });
        drop(loaded);
        if serde_ok.1 {
            let value = OnceCell::new();
            g.bench_function(id("serde_pickle"), |b| {
                let v = value.get_or_init(|| {
                    serde_pickle::value_from_slice(data, serde_pickle::DeOptions::new()).expect("loads")
                });
                b.iter(|| serde_pickle::value_to_vec(black_box(v), serde_pickle::SerOptions::new()).expect("dumps"))
            });
        }
        g.finish();
    }
}

fn main() {
    if std::env::var_os("PIKL_BENCH_WALL").is_some_and(|v| v != "0") {
        let mut c = Criterion::default().configure_from_args();
        bench(&mut c);
        c.final_summary();
    } else {
        let mut c = Criterion::default().with_measurement(CpuTime).configure_from_args();
        bench(&mut c);
        c.final_summary();
    }
}
