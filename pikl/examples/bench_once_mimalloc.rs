//! `bench_once` (see `bench_once/main.rs`) with mimalloc as the global allocator: the allocator
//! the `pikl` command ships with, so library users can see what theirs buys.
//!
//! ```sh
//! cargo run --release -p pikl --example bench_once_mimalloc -- pikl loads target/bench-data/records.p5.pkl
//! ```

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "bench_once/run.rs"]
mod run;

fn main() -> std::process::ExitCode {
    run::main()
}
