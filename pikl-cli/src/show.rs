//! `pikl show`: each pickle of a stream as Python's repr, one per line.

use std::fmt;
use std::io::{self, Write};

use pikl::value::ReprOptions;
use pikl::Unpickler;

use crate::input;
use crate::Failure;

/// Arguments of `pikl show`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    decode: input::DecodeArgs,
    #[command(flatten)]
    memo: input::MemoArgs,
    /// Cap each line at this many characters (0: no cap). A graph of shared references can
    /// describe a repr far larger than the file, as CPython's repr() would print it.
    #[arg(long, default_value_t = 64 << 20)]
    max_chars: usize,
    /// Write here instead of stdout.
    #[arg(short, long)]
    output: Option<String>,
    /// The pickle file; `-` or omitted for stdin.
    file: Option<String>,
}

/// Adapts an `io::Write` to `fmt::Write`, keeping the I/O error.
struct FmtIo<'w, W: Write> {
    out: &'w mut W,
    err: Option<io::Error>,
}

impl<W: Write> fmt::Write for FmtIo<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.out.write_all(s.as_bytes()).map_err(|e| {
            self.err = Some(e);
            fmt::Error
        })
    }
}

pub fn run(args: Args) -> Result<(), Failure> {
    let opts = args.decode.options()?;
    let inp = input::open(args.file.as_deref())?;
    let mut u = Unpickler::from_reader(inp.reader).with_options(opts);
    if let Some(size) = inp.size {
        u.reserve_for_input(size);
    }
    let sink: Box<dyn Write> = match args.output.as_deref() {
        None | Some("-") => Box::new(io::stdout().lock()),
        Some(path) => Box::new(std::fs::File::create(path).map_err(|e| Failure::BadData(format!("{path}: {e}")))?),
    };
    let mut out = io::BufWriter::with_capacity(1 << 16, sink);
    let repr_opts = ReprOptions { max_chars: (args.max_chars > 0).then_some(args.max_chars) };
    let mut n = 0;
    let mut kept = 0;
    let result = (|| -> Result<(), Failure> {
        loop {
            match u.at_end() {
                Ok(true) if n > 0 => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(Failure::BadData(format!("{}: {e}", inp.name))),
            }
            let v = args.memo.load(&mut u, &inp.name, n)?;
            n += 1;
            let mut w = FmtIo { out: &mut out, err: None };
            let complete = u.view(v).write_repr(&mut w, repr_opts);
            if let Some(e) = w.err {
                return Err(e.into());
            }
            if complete == Ok(false) {
                eprintln!(
                    "pikl: {}: output capped at {} characters; pass --max-chars 0 for the whole repr",
                    inp.name, args.max_chars
                );
            }
            out.write_all(b"\n")?;
            // Free what no later pickle can refer to, so long streams stay in bounded memory.
            if u.graph().len() > 2 * kept + (1 << 20) {
                u.collect_garbage(&mut []);
                kept = u.graph().len();
            }
        }
    })();
    let flushed = out.flush();
    result?;
    flushed.map_err(Failure::from)
}
