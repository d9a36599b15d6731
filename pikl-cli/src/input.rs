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

/// `-m/--memo`: whether the pickles of one stream share their memo.
///
/// A file of several pickles is most often written by separate `pickle.dump(obj, f)` calls and
/// read back by as many `pickle.load(f)` calls, each with a memo of its own. One `Pickler`
/// dumping several objects shares its memo instead, and only one `Unpickler` loading them in
/// turn reads that right. At protocols 0-3 (explicit PUT indices) reading either kind with a
/// fresh memo per pickle is right or fails loudly (a GET of a missing entry); at protocols 4 and
/// 5 MEMOIZE numbers entries by the memo's size, so reading a stream the other way can name the
/// wrong objects without an error. As with `python3 -m pickletools`, the memo is fresh for each
/// pickle unless `--memo` is given.
#[derive(clap::Args)]
pub struct MemoArgs {
    /// Keep the memo across the pickles of the stream (and, for convert, of the output), for a
    /// stream one Pickler wrote with several dump() calls. By default each pickle starts with
    /// an empty memo, as repeated pickle.load(f) calls read a file of pickle.dump(obj, f) calls.
    /// At protocols 4 and 5 the wrong choice can give wrong objects without an error
    #[arg(short, long)]
    memo: bool,
}

impl MemoArgs {
    /// True when pickle `n` (from 0) starts with an empty memo.
    pub fn fresh(&self, n: usize) -> bool {
        n > 0 && !self.memo
    }

    /// Loads pickle `n` (from 0) of the stream `name` with `u`, forgetting the memo first when
    /// it starts afresh.
    pub fn load<'de, R: pikl::read::Read<'de>>(
        &self,
        u: &mut pikl::Unpickler<'de, R>,
        name: &str,
        n: usize,
    ) -> Result<pikl::Value, Failure> {
        if self.fresh(n) {
            u.clear_memo();
        }
        u.load().map_err(|e| self.load_failure(name, n, e))
    }

    /// The failure for `e`, met loading pickle `n` of the stream `name`: a GET of an entry a
    /// fresh memo lacks, after the first pickle, suggests `--memo`.
    fn load_failure(&self, name: &str, n: usize, e: pikl::Error) -> Failure {
        let msg = e.to_string();
        if n > 0 && !self.memo && msg.contains("Memo value not found") {
            return Failure::BadData(format!(
                "{name}: {msg} (in pickle {}: if one Pickler wrote this stream, its pickles share the memo: pass --memo)",
                n + 1
            ));
        }
        Failure::BadData(format!("{name}: {msg}"))
    }
}

/// `--encoding` / `--errors`: how the subcommands that load pickles decode Python 2 strs.
#[derive(clap::Args)]
pub struct DecodeArgs {
    /// How Python 2 str data is decoded: ASCII (default), latin1, utf-8, bytes, or a
    /// single-byte codec such as cp1252 or koi8-r.
    #[arg(long)]
    encoding: Option<String>,
    /// What to do with undecodable Python 2 str bytes: strict, replace, ignore,
    /// backslashreplace, surrogateescape.
    #[arg(long)]
    errors: Option<String>,
}

impl DecodeArgs {
    /// The unpickler options these arguments ask for.
    pub fn options(&self) -> Result<UnpicklerOptions, Failure> {
        unpickler_options(self.encoding.as_deref(), self.errors.as_deref())
    }
}

/// Unpickler options from `--encoding` / `--errors`.
fn unpickler_options(encoding: Option<&str>, errors: Option<&str>) -> Result<UnpicklerOptions, Failure> {
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
