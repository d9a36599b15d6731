//! Opening inputs (a path, or `-` for stdin) and reading options shared by subcommands.

use std::fs::File;
use std::io::{self, BufRead, BufReader};

use pikl::{DecodeErrors, Encoding, UnpicklerOptions};

use crate::Failure;

/// An opened input and the name to use in messages.
pub struct Input {
    pub name: String,
    pub reader: Box<dyn BufRead>,
    /// The file's size, when known: sizes the unpickler's arena.
    pub size: Option<u64>,
}

/// Opens `path` (`None` or `-`: stdin).
pub fn open(path: Option<&str>) -> Result<Input, Failure> {
    match path {
        None | Some("-") => {
            let reader = Box::new(BufReader::with_capacity(1 << 16, io::stdin()));
            Ok(Input { name: "<stdin>".into(), reader: crate::progress::wrap(reader, "<stdin>", None), size: None })
        }
        Some(p) => {
            let f = File::open(p).map_err(|e| Failure::BadData(format!("{p}: {e}")))?;
            let total = f.metadata().ok().map(|m| m.len());
            let reader = Box::new(BufReader::with_capacity(1 << 16, f));
            Ok(Input { name: p.to_owned(), reader: crate::progress::wrap(reader, p, total), size: total })
        }
    }
}

/// Unpickler options from `--encoding` / `--errors`.
pub fn unpickler_options(encoding: Option<&str>, errors: Option<&str>) -> Result<UnpicklerOptions, Failure> {
    let mut opts = UnpicklerOptions::default();
    if let Some(e) = encoding {
        opts.encoding = Encoding::from_name(e).ok_or_else(|| Failure::Usage(format!("unknown encoding: {e}")))?;
    }
    if let Some(e) = errors {
        opts.errors =
            DecodeErrors::from_name(e).ok_or_else(|| Failure::Usage(format!("unknown error handler: {e}")))?;
    }
    Ok(opts)
}

/// True for the error a closed pipe gives (`pikl show big.pkl | head`).
pub fn is_broken_pipe(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::BrokenPipe
}
