//! The `pikl` command: inspect, check and convert Python pickle files.

mod convert;
mod dis;
mod input;
mod json;
mod optimize;
mod progress;
mod show;

use std::io;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Pickles are millions of small objects: mimalloc allocates and frees them faster than the
/// system allocator (measured in BENCHMARKS.md's whole-process rows).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Inspect, check and convert Python pickle files, without running Python.
#[derive(Parser)]
#[command(name = "pikl", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print each pickle of the stream as Python's repr, one line each.
    #[command(
        after_help = "Example:\n  pikl show data.pkl\n  python3 -c 'import pickle,sys; pickle.dump([1, 2], sys.stdout.buffer)' | pikl show"
    )]
    Show(show::Args),
    /// Re-pickle every pickle of the stream at another protocol, byte for byte as CPython.
    #[command(after_help = "Example:\n  pikl convert --protocol 5 old.pkl -o new.pkl")]
    Convert(convert::Args),
    /// Disassemble pickles symbolically, exactly as `python3 -m pickletools` does.
    #[command(after_help = dis::AFTER_HELP)]
    Dis(dis::Args),
    /// Remove unused PUT opcodes, byte for byte as `pickletools.optimize`.
    #[command(after_help = optimize::AFTER_HELP)]
    Optimize(optimize::Args),
    /// Write each pickle of the stream as one line of JSON (see docs/json-mapping.md).
    #[command(after_help = json::JSON_AFTER_HELP)]
    Json(json::Args),
    /// Write the pickles that JSON documents (as `pikl json` writes them) describe.
    #[command(after_help = json::FROM_JSON_AFTER_HELP)]
    FromJson(json::FromArgs),
}

/// How a run ended, mapped to the exit status: 0 success, 1 bad data, 2 usage.
pub enum Failure {
    /// The input is not a valid pickle (or could not be read).
    BadData(String),
    /// The command line is wrong.
    Usage(String),
    /// The reader of our output went away (`pikl dis big.pkl | head`): not an error.
    BrokenPipe,
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::BrokenPipe {
            Failure::BrokenPipe
        } else {
            Failure::BadData(e.to_string())
        }
    }
}

/// mimalloc's `mi_option_purge_delay` (15 in the `mi_option_t` of both mimalloc v2 and v3, which
/// `libmimalloc-sys` builds by default; the sys crate names no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> ExitCode {
    // Give freed memory back at once rather than after mimalloc v3's default 1 s: a load
    // regrowing a big list frees each old buffer, and keeping them raised peak RSS (convert
    // ints.p5: 231 -> 152 MB, floats.p2: 133 -> 87 MB, at the same CPU time).
    // SAFETY: sets a plain integer option.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Show(args) => show::run(args),
        Command::Convert(args) => convert::run(args),
        Command::Dis(args) => dis::run(args),
        Command::Optimize(args) => optimize::run(args),
        Command::Json(args) => json::run(args),
        Command::FromJson(args) => json::run_from(args),
    };
    match result {
        Ok(()) | Err(Failure::BrokenPipe) => ExitCode::SUCCESS,
        Err(Failure::BadData(msg)) => {
            eprintln!("pikl: {msg}");
            ExitCode::from(1)
        }
        Err(Failure::Usage(msg)) => {
            eprintln!("pikl: {msg}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    /// Option 15 is `purge_delay`: its default is 1000 (ms, mimalloc v3), unlike its neighbours'
    /// (1 and 0), unless the environment sets it.
    #[test]
    fn purge_delay_option_index() {
        let expected = std::env::var("MIMALLOC_PURGE_DELAY").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
        // SAFETY: reads a plain integer option.
        assert_eq!(unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) }, expected);
    }
}
