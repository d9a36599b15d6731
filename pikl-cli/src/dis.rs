//! `pikl dis`: a symbolic disassembly of pickle files, as `python3 -m pickletools` prints it.

use std::fs::File;
use std::io::{self, Write};

use pikl::dis::{DisOptions, Memo, CLI_ANNOTATE};
use pikl::read::IoRead;
use pikl::{Graph, Object, PyStr};

use crate::input::{self, Input};
use crate::Failure;

/// Shown after `pikl dis --help`.
pub const AFTER_HELP: &str = "\
Each file's first pickle is listed: offset, opcode byte, name and argument, MARK blocks
indented, as `python3 -m pickletools` prints it; pickletools' checks are made (memo use,
stack, marks). On bad data the lines up to the fault are printed, the error goes to stderr
and the exit status is 1. Output to a closed pipe ends quietly.

Examples:
  pikl dis data.pkl
  pikl dis -a -l 2 data.pkl | less
  pikl dis -m -p '--- {name}' part1.pkl part2.pkl
  python3 -c 'import pickle,sys; pickle.dump([1, 2], sys.stdout.buffer)' | pikl dis";

/// Arguments of `pikl dis` (those of `python3 -m pickletools`).
#[derive(clap::Args)]
pub struct Args {
    /// Annotate each line with a short opcode description.
    #[arg(short, long)]
    annotate: bool,
    /// The number of blanks by which to indent a new MARK level.
    #[arg(short = 'l', long = "indentlevel", value_name = "N", default_value_t = 4, allow_negative_numbers = true)]
    indentlevel: i64,
    /// Preserve the memo between disassemblies (of several files).
    #[arg(short, long)]
    memo: bool,
    /// If more than one pickle file is given, print this before each disassembly; `{name}` is
    /// replaced by the file's name.
    #[arg(short, long, default_value = "==> {name} <==", allow_hyphen_values = true)]
    preamble: String,
    /// The file where the output should be written (default: standard output).
    #[arg(short, long, value_name = "OUT")]
    output: Option<String>,
    /// The pickle files; `-` or none for standard input. The first pickle of each is listed.
    #[arg(value_name = "FILE")]
    files: Vec<String>,
}

/// A writer that remembers whether writing failed, so that a write error is told apart from
/// bad data, and a closed pipe ends the run quietly.
struct Out<W: Write> {
    inner: W,
    failed: Option<io::Error>,
}

impl<W: Write> Out<W> {
    fn note<T>(&mut self, r: io::Result<T>) -> io::Result<T> {
        if let Err(e) = &r {
            if self.failed.is_none() {
                self.failed = Some(io::Error::new(e.kind(), e.to_string()));
            }
        }
        r
    }

    /// The outcome of a write failure: quiet success for a closed pipe.
    fn failure(&mut self) -> Result<(), Failure> {
        match self.failed.take() {
            Some(e) if input::is_broken_pipe(&e) => Ok(()),
            Some(e) => Err(Failure::BadData(format!("error writing the output: {e}"))),
            None => Ok(()),
        }
    }
}

impl<W: Write> Write for Out<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let r = self.inner.write(buf);
        self.note(r)
    }

    fn flush(&mut self) -> io::Result<()> {
        let r = self.inner.flush();
        self.note(r)
    }
}

/// One piece of the `-p` template (a Python format string with the `name` field).
enum Piece {
    Text(String),
    Name,
    NameRepr,
}

/// Parses the preamble as `str.format(name=...)` reads it (the `name`, `name!s` and `name!r`
/// fields, `{{` and `}}`).
fn parse_preamble(p: &str) -> Result<Vec<Piece>, Failure> {
    let bad = |why: &str| Failure::Usage(format!("invalid preamble {p:?}: {why}"));
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = p.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                text.push('}');
            }
            '}' => return Err(bad("single '}' encountered in format string")),
            '{' => {
                let mut field = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => field.push(c),
                        None => return Err(bad("single '{' encountered in format string")),
                    }
                }
                let piece = match field.as_str() {
                    "name" | "name!s" => Piece::Name,
                    "name!r" => Piece::NameRepr,
                    _ => return Err(bad(&format!("unsupported field {{{field}}}; use {{name}}"))),
                };
                pieces.push(Piece::Text(std::mem::take(&mut text)));
                pieces.push(piece);
            }
            c => text.push(c),
        }
    }
    pieces.push(Piece::Text(text));
    Ok(pieces)
}

fn render_preamble(pieces: &[Piece], name: &str) -> String {
    let mut s = String::new();
    for piece in pieces {
        match piece {
            Piece::Text(t) => s.push_str(t),
            Piece::Name => s.push_str(name),
            Piece::NameRepr => {
                let mut g = Graph::new();
                let v = g.add(Object::Str(PyStr::new(name)));
                s.push_str(&g.view(v).to_string());
            }
        }
    }
    s
}

pub fn run(args: Args) -> Result<(), Failure> {
    let preamble = parse_preamble(&args.preamble)?;
    let options = DisOptions {
        indent: usize::try_from(args.indentlevel).unwrap_or(0),
        annotate: if args.annotate { CLI_ANNOTATE } else { 0 },
    };
    // Like pickletools (argparse), open everything before writing anything.
    let sink: Box<dyn Write> = match args.output.as_deref() {
        None | Some("-") => Box::new(io::stdout().lock()),
        Some(path) => Box::new(File::create(path).map_err(|e| Failure::Usage(format!("can't open '{path}': {e}")))?),
    };
    let paths: Vec<Option<&str>> =
        if args.files.is_empty() { vec![None] } else { args.files.iter().map(|f| Some(f.as_str())).collect() };
    let mut inputs: Vec<Input> = Vec::with_capacity(paths.len());
    for path in &paths {
        inputs.push(input::open(*path).map_err(|e| match e {
            Failure::BadData(msg) | Failure::Usage(msg) => Failure::Usage(format!("can't open {msg}")),
            Failure::BrokenPipe => Failure::BrokenPipe,
        })?);
    }

    let mut out = Out { inner: io::BufWriter::with_capacity(1 << 16, sink), failed: None };
    let several = inputs.len() > 1;
    let mut shared = if several && args.memo { Some(Memo::new()) } else { None };
    for inp in inputs {
        if several {
            let line = render_preamble(&preamble, &inp.name) + "\n";
            if out.write_all(line.as_bytes()).is_err() {
                return out.failure();
            }
        }
        let mut reader = IoRead::new(inp.reader);
        let res = pikl::dis::dis(&mut reader, &mut out, shared.as_mut(), &options);
        if let Err(e) = res {
            if out.failed.is_some() {
                return out.failure();
            }
            let _ = out.flush();
            out.failure()?;
            return Err(Failure::BadData(format!("{}: {e}", inp.name)));
        }
    }
    let _ = out.flush();
    out.failure()
}
