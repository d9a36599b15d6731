//! `pikl optimize`: a pickle without its unused PUTs, as `pickletools.optimize` writes it.

use std::fs::File;
use std::io::{self, Read, Write};

use crate::input;
use crate::Failure;

/// Shown after `pikl optimize --help`.
pub const AFTER_HELP: &str = "\
The output is byte for byte what `pickletools.optimize` returns: memo entries no GET uses
are dropped, the rest renumbered, protocol 4+ pickles re-framed.

Example:
  pikl optimize data.pkl -o smaller.pkl";

/// Arguments of `pikl optimize`.
#[derive(clap::Args)]
pub struct Args {
    /// Where to write the optimized pickle (default: standard output).
    #[arg(short, long, value_name = "OUT")]
    output: Option<String>,
    /// The pickle file; `-` or omitted for standard input. Its first pickle is optimized.
    #[arg(value_name = "FILE")]
    file: Option<String>,
}

pub fn run(args: Args) -> Result<(), Failure> {
    let mut inp = input::open(args.file.as_deref())?;
    let mut data = Vec::new();
    inp.reader.read_to_end(&mut data).map_err(|e| Failure::BadData(format!("{}: {e}", inp.name)))?;
    let optimized = pikl::optimize::optimize(&data).map_err(|e| Failure::BadData(format!("{}: {e}", inp.name)))?;
    drop(data);
    let res = match args.output.as_deref() {
        None | Some("-") => {
            let mut out = io::stdout().lock();
            out.write_all(&optimized).and_then(|()| out.flush())
        }
        Some(path) => {
            let mut f = File::create(path).map_err(|e| Failure::BadData(format!("{path}: {e}")))?;
            f.write_all(&optimized).and_then(|()| f.flush())
        }
    };
    match res {
        Err(e) if !input::is_broken_pipe(&e) => Err(Failure::BadData(format!("error writing the output: {e}"))),
        _ => Ok(()),
    }
}
