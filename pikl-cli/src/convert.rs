//! `pikl convert`: re-pickle every pickle of a stream at another protocol, as CPython would.

use std::fs::File;
use std::io::{self, BufWriter, Write};

use pikl::{Pickler, Unpickler};

use crate::input;
use crate::Failure;

/// Arguments of `pikl convert`.
#[derive(clap::Args)]
pub struct Args {
    /// Protocol to write, 0 to 5; negative means the highest.
    #[arg(short, long, allow_hyphen_values = true)]
    protocol: i32,
    #[command(flatten)]
    decode: input::DecodeArgs,
    #[command(flatten)]
    memo: input::MemoArgs,
    /// Write here instead of stdout.
    #[arg(short, long)]
    output: Option<String>,
    /// The pickle file; `-` or omitted for stdin.
    file: Option<String>,
}

pub fn run(args: Args) -> Result<(), Failure> {
    let opts = args.decode.options()?;
    let proto = pikl::resolve_protocol(Some(args.protocol)).map_err(|e| Failure::Usage(e.to_string()))?;
    let inp = input::open(args.file.as_deref())?;
    let out: Box<dyn Write> = match args.output.as_deref() {
        None | Some("-") => Box::new(io::stdout().lock()),
        Some(path) => Box::new(File::create(path).map_err(|e| Failure::BadData(format!("{path}: {e}")))?),
    };
    let mut u = Unpickler::from_reader(inp.reader).with_options(opts);
    if let Some(size) = inp.size {
        u.reserve_for_input(size);
    }
    let mut p = Pickler::new(BufWriter::with_capacity(1 << 16, out), Some(proto as i32)).expect("valid protocol");
    let mut n = 0;
    let mut kept = 0;
    loop {
        match u.at_end() {
            Ok(true) if n > 0 => break,
            Ok(_) => {}
            Err(e) => return Err(Failure::BadData(format!("{}: {e}", inp.name))),
        }
        if args.memo.fresh(n) {
            // Each pickle written on its own too, as separate pickle.dump calls write them.
            p.clear_memo();
        }
        let v = args.memo.load(&mut u, &inp.name, n)?;
        n += 1;
        if let Err(e) = p.dump(u.graph(), v) {
            if e.category() == pikl::Category::Io {
                let broken = std::error::Error::source(&e)
                    .and_then(|s| s.downcast_ref::<io::Error>())
                    .is_some_and(input::is_broken_pipe);
                if broken {
                    return Ok(());
                }
            }
            return Err(Failure::BadData(format!("{}: {e}", inp.name)));
        }
        // Free what no later pickle can refer to, so long streams stay in bounded memory.
        if u.graph().len() > 2 * kept + (1 << 20) {
            let map = u.collect_garbage(&mut []);
            p.renumber(&map);
            kept = u.graph().len();
        }
    }
    Ok(())
}
