//! `pikl json` and `pikl from-json`: pickles to JSON Lines and back, through the documented
//! mapping of `pikl::json` (docs/json-mapping.md).

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};

use pikl::json::{self, Decoder, Documents, Encoder};
use pikl::{Pickler, Unpickler, Value};

use crate::input;
use crate::Failure;

pub const JSON_AFTER_HELP: &str = "\
Values JSON has (None, bool, int, finite float, str, list, dict with str keys) are written as
themselves; everything else is an object with a \"$\" tag, such as {\"$tuple\": [1, 2]} or
{\"$bytes\": \"base64\"}. Shared and recursive objects get \"$id\" and are referred to with
{\"$ref\": n}. A stream of several pickles gives one line per pickle, each loaded with a memo of
its own unless --memo is given. The mapping is specified in docs/json-mapping.md.

Example:
  pikl json data.pkl
  pikl json data.pkl | pikl from-json --protocol 4 -o copy.pkl";

pub const FROM_JSON_AFTER_HELP: &str = "\
Reads the JSON that `pikl json` writes (one document per line, or any whitespace-separated
documents) and writes one pickle per document, all with one pickler. When a document refers
to an object of an earlier one ({\"$ref\": n} of an earlier \"$id\"), the memo is kept across
pickles so the stream must be loaded with one Unpickler, as the original was; otherwise each
pickle stands alone.

Example:
  pikl from-json data.json --protocol 5 -o data.pkl";

/// Arguments of `pikl json`.
#[derive(clap::Args)]
pub struct Args {
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

/// Arguments of `pikl from-json`.
#[derive(clap::Args)]
pub struct FromArgs {
    /// Protocol to write, 0 to 5; negative means the highest.
    #[arg(short, long, allow_hyphen_values = true, default_value_t = 4)]
    protocol: i32,
    /// Write here instead of stdout.
    #[arg(short, long)]
    output: Option<String>,
    /// The JSON file; `-` or omitted for stdin.
    file: Option<String>,
}

fn open_output(path: Option<&str>) -> Result<Box<dyn Write>, Failure> {
    Ok(match path {
        None | Some("-") => Box::new(io::stdout().lock()),
        Some(p) => Box::new(File::create(p).map_err(|e| Failure::BadData(format!("{p}: {e}")))?),
    })
}

pub fn run(args: Args) -> Result<(), Failure> {
    let opts = args.decode.options()?;
    let inp = input::open(args.file.as_deref())?;
    let mut u = Unpickler::from_reader(inp.reader).with_options(opts);
    if let Some(size) = inp.size {
        u.reserve_for_input(size);
    }
    // Every pickle first: an object shared by two pickles gets its `$id` in the first.
    let mut roots: Vec<Value> = Vec::new();
    loop {
        match u.at_end() {
            Ok(true) if !roots.is_empty() => break,
            Ok(_) => {}
            Err(e) => return Err(Failure::BadData(format!("{}: {e}", inp.name))),
        }
        roots.push(args.memo.load(&mut u, &inp.name, roots.len())?);
    }
    let mut out = BufWriter::with_capacity(1 << 16, open_output(args.output.as_deref())?);
    let mut enc = Encoder::new(u.graph(), &roots);
    let result = (|| -> Result<(), Failure> {
        for &root in &roots {
            enc.write(root, &mut out)?;
            out.write_all(b"\n")?;
        }
        Ok(())
    })();
    let flushed = out.flush();
    result?;
    flushed.map_err(Failure::from)
}

pub fn run_from(args: FromArgs) -> Result<(), Failure> {
    let proto = pikl::resolve_protocol(Some(args.protocol)).map_err(|e| Failure::Usage(e.to_string()))?;
    let mut inp = input::open(args.file.as_deref())?;
    let name = inp.name.clone();
    let mut data = Vec::new();
    inp.reader.read_to_end(&mut data).map_err(|e| Failure::BadData(format!("{name}: {e}")))?;
    let text = std::str::from_utf8(&data).map_err(|e| {
        Failure::BadData(format!("{name}: invalid JSON at byte {}: the text is not UTF-8", e.valid_up_to()))
    })?;
    let mut dec = Decoder::new();
    let mut docs: Vec<(usize, Value)> = Vec::new();
    for (n, doc) in Documents::new(text).enumerate() {
        let (start, j) = doc.map_err(|e| Failure::BadData(format!("{name}: {e}")))?;
        let v = dec.decode(&j);
        json::drop_json(j);
        let v = v.map_err(|e| Failure::BadData(format!("{name}: document {} (byte {start}): {e}", n + 1)))?;
        docs.push((start, v));
    }
    if docs.is_empty() {
        return Err(Failure::BadData(format!("{name}: no JSON document")));
    }
    let keep_memo = dec.refers_across();
    let graph = dec.into_graph();
    let out = open_output(args.output.as_deref())?;
    let mut p = Pickler::new(BufWriter::with_capacity(1 << 16, out), Some(proto as i32)).expect("valid protocol");
    for (n, &(start, v)) in docs.iter().enumerate() {
        if n > 0 && !keep_memo {
            p.clear_memo();
        }
        if let Err(e) = p.dump(&graph, v) {
            if e.category() == pikl::Category::Io {
                let broken = std::error::Error::source(&e)
                    .and_then(|s| s.downcast_ref::<io::Error>())
                    .is_some_and(input::is_broken_pipe);
                if broken {
                    return Ok(());
                }
            }
            return Err(Failure::BadData(format!("{name}: document {} (byte {start}): {e}", n + 1)));
        }
    }
    let mut w = p.into_inner();
    w.flush().map_err(Failure::from)
}
