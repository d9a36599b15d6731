//! Times one operation on one pickle file and prints the best time per operation, for
//! `bench/compare.py`.
//!
//! ```sh
//! cargo run --release -p pikl --example bench_once -- IMPL OP FILE [--protocol P] [--repeat N] [--min-time S]
//! ```
//!
//! IMPL: `pikl`, `serde` (serde-pickle) or `memcpy` (copies the file's bytes: a floor for the
//! bytes-heavy case). OP: `loads` (from a slice: strs and bytes borrow from it), `loads_reader`
//! (pikl only: through the `BufRead` path, everything owned) or `dumps` (of the loaded value, at
//! protocol P, default the file's; serde-pickle always writes protocol 3). Each of N repeats
//! (default 5) runs the operation enough times to take at least S seconds (default 0.2) of the
//! process's CPU time (user + system: other jobs sharing the machine do not inflate it); the best
//! repeat's time per operation is printed as one JSON line:
//! `{"impl":..,"op":..,"file":..,"best_s":..,"median_s":..,"loops":..,"repeat":..,"out_bytes":..}`.
//! On failure it prints `{"error": ...}` and exits 1.
//!
//! Built with the system allocator; `bench_once_mimalloc` is the same program with mimalloc,
//! the allocator the `pikl` command ships with.

mod run;

fn main() -> std::process::ExitCode {
    run::main()
}
