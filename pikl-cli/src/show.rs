//! `pikl show`: each pickle of a stream as Python's repr, one per line.

use std::io::{self, Write};

use pikl::Unpickler;

use crate::input;
use crate::Failure;

/// Arguments of `pikl show`.
#[derive(clap::Args)]
pub struct Args {
    /// How Python 2 str data is decoded: ASCII (default), latin1, utf-8, cp1252 or bytes.
    #[arg(long)]
    encoding: Option<String>,
    /// What to do with undecodable Python 2 str bytes: strict, replace, ignore,
    /// backslashreplace, surrogateescape.
    #[arg(long)]
    errors: Option<String>,
    /// The pickle file; `-` or omitted for stdin.
    file: Option<String>,
}

pub fn run(args: Args) -> Result<(), Failure> {
    let opts = input::unpickler_options(args.encoding.as_deref(), args.errors.as_deref())?;
    let inp = input::open(args.file.as_deref())?;
    let mut u = Unpickler::from_reader(inp.reader).with_options(opts);
    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut first = true;
    loop {
        match u.at_end() {
            Ok(true) if !first => break,
            Ok(_) => {}
            Err(e) => return Err(Failure::BadData(format!("{}: {e}", inp.name))),
        }
        first = false;
        let v = u.load().map_err(|e| Failure::BadData(format!("{}: {e}", inp.name)))?;
        let res = writeln!(out, "{}", u.view(v));
        if let Err(e) = res {
            return if input::is_broken_pipe(&e) { Ok(()) } else { Err(e.into()) };
        }
    }
    match out.flush() {
        Err(e) if !input::is_broken_pipe(&e) => Err(e.into()),
        _ => Ok(()),
    }
}
