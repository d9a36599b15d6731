//! The body of `bench_once` and `bench_once_mimalloc` (see `main.rs`).

use std::hint::black_box;
use std::process::ExitCode;
use std::time::Duration;

struct Args {
    imp: String,
    op: String,
    file: String,
    protocol: Option<i32>,
    repeat: usize,
    min_time: f64,
}

fn parse_args() -> Result<Args, String> {
    let mut pos = Vec::new();
    let mut protocol = None;
    let mut repeat = 5;
    let mut min_time = 0.2;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "--protocol" => protocol = Some(val("--protocol")?.parse().map_err(|e| format!("--protocol: {e}"))?),
            "--repeat" => repeat = val("--repeat")?.parse().map_err(|e| format!("--repeat: {e}"))?,
            "--min-time" => min_time = val("--min-time")?.parse().map_err(|e| format!("--min-time: {e}"))?,
            _ => pos.push(a),
        }
    }
    let [imp, op, file]: [String; 3] =
        pos.try_into().map_err(|_| "usage: bench_once IMPL OP FILE [--protocol P] [--repeat N] [--min-time S]")?;
    Ok(Args { imp, op, file, protocol, repeat: repeat.max(1), min_time })
}

#[path = "../../benches/support/cpu_time.rs"]
mod cpu_time;
use cpu_time::cpu_now as now;

/// Runs `f` in repeats of `loops` calls each (`loops` grown until a repeat takes `min_time`);
/// returns (best, median) seconds per call and `loops`.
fn time<F: FnMut() -> Result<usize, String>>(
    repeat: usize,
    min_time: f64,
    mut f: F,
) -> Result<(f64, f64, u64), String> {
    let run = |f: &mut F, loops: u64| -> Result<Duration, String> {
        let t = now();
        for _ in 0..loops {
            black_box(f()?);
        }
        Ok(now() - t)
    };
    // Calibrate, as timeit does: 1, 2, 5, 10, 20, 50, ... loops until one repeat is long enough.
    let mut loops = 1u64;
    let mut step = 0;
    let mut first = run(&mut f, loops)?;
    while first.as_secs_f64() < min_time {
        loops = [1, 2, 5][(step + 1) % 3] * 10u64.pow(((step + 1) / 3) as u32);
        step += 1;
        first = run(&mut f, loops)?;
    }
    let mut per_call = vec![first.as_secs_f64() / loops as f64];
    for _ in 1..repeat {
        per_call.push(run(&mut f, loops)?.as_secs_f64() / loops as f64);
    }
    per_call.sort_by(f64::total_cmp);
    Ok((per_call[0], per_call[per_call.len() / 2], loops))
}

fn file_protocol(data: &[u8]) -> i32 {
    match data {
        [0x80, p, ..] => i32::from(*p),
        _ => 0,
    }
}

/// Runs the measurement named on the command line and prints its JSON line.
pub fn main() -> ExitCode {
    match real_main() {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("{{\"error\": {:?}}}", e);
            ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<String, String> {
    let args = parse_args()?;
    let data = std::fs::read(&args.file).map_err(|e| format!("{}: {e}", args.file))?;
    let protocol = args.protocol.unwrap_or_else(|| file_protocol(&data));
    let (repeat, min_time) = (args.repeat, args.min_time);
    let mut out_bytes = 0usize;
    let (best, median, loops) = match (args.imp.as_str(), args.op.as_str()) {
        ("pikl", "loads") => time(repeat, min_time, || {
            let l = pikl::loads(black_box(&data)).map_err(|e| e.to_string())?;
            Ok(l.graph.len())
        })?,
        ("pikl", "loads_reader") => time(repeat, min_time, || {
            let l = pikl::load(black_box(&data[..])).map_err(|e| e.to_string())?;
            Ok(l.graph.len())
        })?,
        ("pikl", "dumps") => {
            let l = pikl::loads(&data).map_err(|e| e.to_string())?;
            time(repeat, min_time, || {
                let out = pikl::dumps(&l.graph, black_box(l.root), Some(protocol)).map_err(|e| e.to_string())?;
                out_bytes = out.len();
                Ok(out.len())
            })?
        }
        ("serde", "loads") => time(repeat, min_time, || {
            let v = serde_pickle::value_from_slice(black_box(&data), serde_pickle::DeOptions::new())
                .map_err(|e| e.to_string())?;
            Ok(std::mem::size_of_val(&v))
        })?,
        ("serde", "dumps") => {
            let v = serde_pickle::value_from_slice(&data, serde_pickle::DeOptions::new()).map_err(|e| e.to_string())?;
            time(repeat, min_time, || {
                let out = serde_pickle::value_to_vec(black_box(&v), serde_pickle::SerOptions::new())
                    .map_err(|e| e.to_string())?;
                out_bytes = out.len();
                Ok(out.len())
            })?
        }
        ("memcpy", _) => time(repeat, min_time, || {
            let copy = black_box(&data[..]).to_vec();
            Ok(black_box(copy).len())
        })?,
        (i, o) => return Err(format!("unknown IMPL/OP {i} {o}")),
    };
    Ok(format!(
        "{{\"impl\":{:?},\"op\":{:?},\"file\":{:?},\"best_s\":{best:e},\"median_s\":{median:e},\"loops\":{loops},\"repeat\":{repeat},\"out_bytes\":{out_bytes}}}",
        args.imp, args.op, args.file
    ))
}
