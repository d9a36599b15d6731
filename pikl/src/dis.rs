//! A symbolic disassembler: Python's `pickletools.dis`, character for character.
//!
//! Works on the op layer only (no object model is built), so it lists pickles the unpickler
//! refuses. Like `pickletools.genops` it reads the stream linearly: a `FRAME` opcode is listed
//! with its length and the frame's contents follow as ordinary opcodes.
//!
//! The sanity checks of `pickletools.dis` are made too (memo keys stored twice or never, stack
//! underflow, missing MARK, stack not empty at STOP, ...): on a failure the lines up to and
//! including the offending opcode are written, as pickletools prints them, and the error carries
//! pickletools' `ValueError` message.
//!
//! ```
//! use pikl::dis::{dis_slice, DisOptions};
//!
//! let (text, result) = dis_slice(b"\x80\x02]q\x00K\x01a.", &DisOptions::default());
//! result?;
//! assert_eq!(
//!     text,
//!     "    0: \\x80 PROTO      2
//!     2: ]    EMPTY_LIST
//!     3: q    BINPUT     0
//!     5: K    BININT1    1
//!     7: a    APPEND
//!     8: .    STOP
//! highest protocol among opcodes = 2
//! "
//! );
//! # Ok::<(), pikl::Error>(())
//! ```

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io;

use num_bigint::BigInt;

use crate::error::{Error, Result};
use crate::opcodes::{ArgKind, Opcode, StackKind};
use crate::read::{Read, SliceRead};
use crate::value::{Graph, Object, PyStr, Value};

/// Options of [`dis`], as the keyword arguments of `pickletools.dis`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DisOptions {
    /// Number of blanks by which to indent a new MARK level (`indentlevel`, default 4).
    pub indent: usize,
    /// Column hint for a short description of each opcode, 0 for none (`annotate`, default 0;
    /// `python -m pickletools -a` uses 30).
    pub annotate: usize,
}

impl Default for DisOptions {
    fn default() -> Self {
        DisOptions { indent: 4, annotate: 0 }
    }
}

/// The annotation column `python -m pickletools -a` asks for.
pub const CLI_ANNOTATE: usize = 30;

/// A memo key: a Python int (bools are the ints 0 and 1).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Key {
    Int(i128),
    Big(BigInt),
}

/// The disassembler's emulation of the unpickler memo: which keys were stored, and the kind of
/// stack object each holds (never the values themselves).
///
/// Pass the same memo to several [`dis`] calls to disassemble consecutive pickles written by
/// one pickler (pickletools' `memo` argument, `python -m pickletools -m`).
#[derive(Clone, Debug, Default)]
pub struct Memo {
    keys: HashMap<Key, StackKind>,
}

impl Memo {
    /// An empty memo.
    pub fn new() -> Self {
        Memo::default()
    }

    /// Number of keys stored.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when nothing was stored.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Forgets every key.
    pub fn clear(&mut self) {
        self.keys.clear();
    }
}

// ---------------------------------------------------------------------------------------------
// Decoded arguments, as pickletools' argument readers return them.

/// An opcode argument decoded as pickletools decodes it.
pub(crate) enum ArgValue {
    None,
    Int(i128),
    Big(BigInt),
    Bool(bool),
    Float(f64),
    /// A str, in surrogatepass UTF-8.
    Str(Vec<u8>),
    Bytes(Vec<u8>),
    ByteArray(Vec<u8>),
}

/// Python's default limit on decimal digits of int/str conversions.
const MAX_STR_DIGITS: usize = 4300;

impl ArgValue {
    fn from_big(b: BigInt) -> ArgValue {
        match i128::try_from(&b) {
            Ok(v) => ArgValue::Int(v),
            Err(_) => ArgValue::Big(b),
        }
    }

    /// The memo key this argument names (for `PUT`/`GET` and their binary forms).
    pub(crate) fn key(&self) -> Option<Key> {
        match self {
            ArgValue::Int(i) => Some(Key::Int(*i)),
            ArgValue::Big(b) => Some(Key::Big(b.clone())),
            ArgValue::Bool(b) => Some(Key::Int(*b as i128)),
            _ => None,
        }
    }

    /// The argument as an integer, when it is one that fits.
    pub(crate) fn as_int(&self) -> Option<i128> {
        match self {
            ArgValue::Int(i) => Some(*i),
            ArgValue::Bool(b) => Some(*b as i128),
            _ => None,
        }
    }

    /// Python's `repr()` of the argument; an error message when Python's `repr` raises.
    fn repr(&self, out: &mut String) -> std::result::Result<(), String> {
        match self {
            ArgValue::None => out.push_str("None"),
            ArgValue::Int(i) => {
                let _ = write!(out, "{i}");
            }
            ArgValue::Big(b) => {
                // Python refuses to convert ints of more than 4300 digits; a value of more
                // than 14300 bits certainly has more.
                let too_big = b.bits() > 14300 || {
                    let s = b.to_string();
                    let digits = s.trim_start_matches('-').len();
                    if digits <= MAX_STR_DIGITS {
                        out.push_str(&s);
                    }
                    digits > MAX_STR_DIGITS
                };
                if too_big {
                    return Err(format!(
                        "Exceeds the limit ({MAX_STR_DIGITS} digits) for integer string conversion; \
                         use sys.set_int_max_str_digits() to increase the limit"
                    ));
                }
            }
            ArgValue::Bool(b) => out.push_str(if *b { "True" } else { "False" }),
            ArgValue::Float(f) => {
                let _ = write!(out, "{}", Graph::new().view(Value::Float(*f)));
            }
            ArgValue::Str(s) => out.push_str(&str_repr(s)),
            ArgValue::Bytes(b) => {
                let _ = crate::value::write_bytes_repr(out, b);
            }
            ArgValue::ByteArray(b) => {
                out.push_str("bytearray(");
                let _ = crate::value::write_bytes_repr(out, b);
                out.push(')');
            }
        }
        Ok(())
    }
}

/// Python's `repr(str)` of surrogatepass UTF-8 text.
fn str_repr(s: &[u8]) -> String {
    let Some(s) = PyStr::from_surrogatepass(s) else {
        return String::from_utf8_lossy(s).into_owned();
    };
    let mut g = Graph::new();
    let v = g.add(Object::Str(s));
    g.view(v).to_string()
}

/// Python's `repr(bytes)`.
fn bytes_repr(b: &[u8]) -> String {
    let mut s = String::new();
    let _ = crate::value::write_bytes_repr(&mut s, b);
    s
}

/// One opcode as `pickletools.genops` yields it.
pub(crate) struct Op {
    pub(crate) pos: u64,
    pub(crate) opcode: Opcode,
    pub(crate) arg: ArgValue,
}

/// A `ValueError` of pickletools about the opcode at `pos`.
#[cold]
fn value_error(pos: u64, opcode: Option<Opcode>, msg: impl Into<String>) -> Error {
    let e = Error::unpickling(pos, msg);
    match opcode {
        Some(op) => e.in_opcode(op),
        None => e,
    }
}

/// The stream ended: pickletools' message for the reader that ran short.
#[cold]
fn short(pos: u64, opcode: Opcode, msg: impl Into<String>) -> Error {
    Error::eof(pos).with_message(msg).in_opcode(opcode)
}

/// Reads the opcode at the current position and its argument, as `pickletools.genops` does
/// (never entering frames).
pub(crate) fn read_op<'de, R: Read<'de>>(r: &mut R) -> Result<Op> {
    let pos = r.position();
    let code = match r.read_byte() {
        Ok(b) => b,
        Err(e) if e.is_eof() => {
            return Err(Error::eof(pos).with_message("pickle exhausted before seeing STOP"));
        }
        Err(e) => return Err(e),
    };
    let Some(opcode) = Opcode::from_u8(code) else {
        return Err(value_error(pos, None, format!("at position {pos}, opcode {} unknown", bytes_repr(&[code]))));
    };
    let arg = read_arg(r, pos, opcode).map_err(|e| e.in_opcode(opcode))?;
    Ok(Op { pos, opcode, arg })
}

/// Reads `N` bytes of a fixed-size argument.
fn fixed<'de, R: Read<'de>, const N: usize>(r: &mut R, pos: u64, opcode: Opcode, what: &str) -> Result<[u8; N]> {
    match r.read_exact(N) {
        Ok(b) => Ok(b[..].try_into().expect("read_exact returned N bytes")),
        Err(e) if e.is_eof() => Err(short(pos, opcode, format!("not enough data in stream to read {what}"))),
        Err(e) => Err(e),
    }
}

/// Reads the `n` bytes of a counted argument; `what` names the descriptor in messages.
fn counted<'de, R: Read<'de>>(r: &mut R, pos: u64, opcode: Opcode, n: u64, what: &str) -> Result<Vec<u8>> {
    let start = r.position();
    let res = match usize::try_from(n) {
        Ok(len) => r.read_exact(len).map(|b| b.to_vec()),
        Err(_) => Err(Error::eof(start)),
    };
    match res {
        Ok(v) => Ok(v),
        Err(e) if e.is_eof() => {
            if what.starts_with("long") {
                return Err(short(pos, opcode, format!("not enough data in stream to read {what}")));
            }
            let remain = e.offset().unwrap_or(start).saturating_sub(start);
            Err(short(pos, opcode, format!("expected {n} bytes in a {what}, but only {remain} remain")))
        }
        Err(e) => Err(e),
    }
}

/// Reads a newline-terminated argument, without the newline.
fn line<'de, R: Read<'de>>(r: &mut R, pos: u64, opcode: Opcode, what: &str) -> Result<Vec<u8>> {
    match r.read_line() {
        Ok(b) => Ok(b.to_vec()),
        Err(e) if e.is_eof() => Err(short(pos, opcode, format!("no newline found when trying to read {what}"))),
        Err(e) => Err(e),
    }
}

fn read_arg<'de, R: Read<'de>>(r: &mut R, pos: u64, op: Opcode) -> Result<ArgValue> {
    let bad = |msg: String| value_error(pos, Some(op), msg);
    Ok(match op.arg() {
        ArgKind::None => ArgValue::None,
        ArgKind::UInt1 => ArgValue::Int(fixed::<R, 1>(r, pos, op, "uint1")?[0] as i128),
        ArgKind::UInt2 => ArgValue::Int(u16::from_le_bytes(fixed(r, pos, op, "uint2")?) as i128),
        ArgKind::UInt4 => ArgValue::Int(u32::from_le_bytes(fixed(r, pos, op, "uint4")?) as i128),
        ArgKind::Int4 => ArgValue::Int(i32::from_le_bytes(fixed(r, pos, op, "int4")?) as i128),
        ArgKind::UInt8 => ArgValue::Int(u64::from_le_bytes(fixed(r, pos, op, "uint8")?) as i128),
        ArgKind::Float8 => ArgValue::Float(f64::from_be_bytes(fixed(r, pos, op, "float8")?)),
        ArgKind::Long1 => {
            let n = fixed::<R, 1>(r, pos, op, "uint1")?[0];
            ArgValue::from_big(BigInt::from_signed_bytes_le(&counted(r, pos, op, n as u64, "long1")?))
        }
        ArgKind::Long4 => {
            let n = i32::from_le_bytes(fixed(r, pos, op, "int4")?);
            if n < 0 {
                return Err(bad(format!("long4 byte count < 0: {n}")));
            }
            ArgValue::from_big(BigInt::from_signed_bytes_le(&counted(r, pos, op, n as u64, "long4")?))
        }
        ArgKind::String1 => {
            let n = fixed::<R, 1>(r, pos, op, "uint1")?[0];
            ArgValue::Str(latin1(&counted(r, pos, op, n as u64, "string1")?))
        }
        ArgKind::String4 => {
            let n = i32::from_le_bytes(fixed(r, pos, op, "int4")?);
            if n < 0 {
                return Err(bad(format!("string4 byte count < 0: {n}")));
            }
            ArgValue::Str(latin1(&counted(r, pos, op, n as u64, "string4")?))
        }
        ArgKind::Bytes1 => {
            let n = fixed::<R, 1>(r, pos, op, "uint1")?[0];
            ArgValue::Bytes(counted(r, pos, op, n as u64, "bytes1")?)
        }
        ArgKind::Bytes4 => {
            let n = u32::from_le_bytes(fixed(r, pos, op, "uint4")?);
            ArgValue::Bytes(counted(r, pos, op, n as u64, "bytes4")?)
        }
        ArgKind::Bytes8 | ArgKind::ByteArray8 | ArgKind::Unicode8 => {
            let what = op.arg().name();
            let n = u64::from_le_bytes(fixed(r, pos, op, "uint8")?);
            if n > i64::MAX as u64 {
                return Err(bad(format!("{what} byte count > sys.maxsize: {n}")));
            }
            let data = counted(r, pos, op, n, what)?;
            match op.arg() {
                ArgKind::Bytes8 => ArgValue::Bytes(data),
                ArgKind::ByteArray8 => ArgValue::ByteArray(data),
                _ => ArgValue::Str(utf8_surrogatepass(data).map_err(bad)?),
            }
        }
        ArgKind::Unicode1 => {
            let n = fixed::<R, 1>(r, pos, op, "uint1")?[0];
            ArgValue::Str(utf8_surrogatepass(counted(r, pos, op, n as u64, "unicodestring1")?).map_err(bad)?)
        }
        ArgKind::Unicode4 => {
            let n = u32::from_le_bytes(fixed(r, pos, op, "uint4")?);
            ArgValue::Str(utf8_surrogatepass(counted(r, pos, op, n as u64, "unicodestring4")?).map_err(bad)?)
        }
        ArgKind::StringNl => ArgValue::Str(stringnl(&line(r, pos, op, "stringnl")?, true).map_err(bad)?),
        ArgKind::StringNlNoescape => ArgValue::Str(stringnl(&line(r, pos, op, "stringnl")?, false).map_err(bad)?),
        ArgKind::StringNlNoescapePair => {
            let first = stringnl(&line(r, pos, op, "stringnl")?, false).map_err(bad)?;
            let mut pair = first;
            let second = stringnl(&line(r, pos, op, "stringnl")?, false).map_err(bad)?;
            pair.push(b' ');
            pair.extend_from_slice(&second);
            ArgValue::Str(pair)
        }
        ArgKind::DecimalNlShort => {
            let s = line(r, pos, op, "stringnl")?;
            match &s[..] {
                b"00" => ArgValue::Bool(false),
                b"01" => ArgValue::Bool(true),
                _ => ArgValue::from_big(py_int(&s).map_err(bad)?),
            }
        }
        ArgKind::DecimalNlLong => {
            let s = line(r, pos, op, "stringnl")?;
            let digits = match s.split_last() {
                Some((b'L', rest)) => rest,
                _ => &s[..],
            };
            ArgValue::from_big(py_int(digits).map_err(bad)?)
        }
        ArgKind::FloatNl => ArgValue::Float(py_float(&line(r, pos, op, "stringnl")?).map_err(bad)?),
        ArgKind::UnicodeStringNl => {
            let s = line(r, pos, op, "unicodestringnl")?;
            ArgValue::Str(crate::text::raw_unicode_escape_decode(&s).map_err(bad)?)
        }
    })
}

/// Latin-1 bytes as UTF-8.
fn latin1(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    for &c in b {
        crate::value::push_code_point(&mut out, c as u32);
    }
    out
}

/// `str(data, 'utf-8', 'surrogatepass')`, with CPython's `UnicodeDecodeError` message.
fn utf8_surrogatepass(data: Vec<u8>) -> std::result::Result<Vec<u8>, String> {
    if PyStr::from_surrogatepass(&data[..]).is_some() {
        return Ok(data);
    }
    let mut i = 0;
    loop {
        let err = match std::str::from_utf8(&data[i..]) {
            Ok(_) => return Ok(data),
            Err(e) => e,
        };
        let at = i + err.valid_up_to();
        let rest = &data[at..];
        if rest.len() >= 3 && rest[0] == 0xED && (0xA0..=0xBF).contains(&rest[1]) && (0x80..=0xBF).contains(&rest[2]) {
            i = at + 3;
            continue;
        }
        let (len, reason) = match err.error_len() {
            None => (rest.len(), "unexpected end of data"),
            Some(n) if matches!(rest[0], 0x80..=0xC1 | 0xF5..=0xFF) => (n, "invalid start byte"),
            Some(n) => (n, "invalid continuation byte"),
        };
        return Err(if len == 1 {
            format!("'utf-8' codec can't decode byte 0x{:02x} in position {at}: {reason}", rest[0])
        } else {
            format!("'utf-8' codec can't decode bytes in position {at}-{}: {reason}", at + len - 1)
        });
    }
}

/// `read_stringnl(decode=True)`: strip the quotes (when asked), undo the escapes and decode
/// as ASCII.
fn stringnl(data: &[u8], stripquotes: bool) -> std::result::Result<Vec<u8>, String> {
    let mut d = data;
    if stripquotes {
        match d.first() {
            Some(&q @ (b'"' | b'\'')) => {
                if d.last() != Some(&q) {
                    return Err(format!(
                        "strinq quote {} not found at both ends of {}",
                        bytes_repr(&[q]),
                        bytes_repr(d)
                    ));
                }
                d = if d.len() >= 2 { &d[1..d.len() - 1] } else { &[] };
            }
            _ => return Err(format!("no string quotes around {}", bytes_repr(d))),
        }
    }
    let decoded = crate::text::escape_decode(d)?;
    if let Some(p) = decoded.iter().position(|&b| b >= 0x80) {
        return Err(format!(
            "'ascii' codec can't decode byte 0x{:02x} in position {p}: ordinal not in range(128)",
            decoded[p]
        ));
    }
    Ok(decoded)
}

/// Python's `Py_ISSPACE`.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

/// Python's `int(s)` for a bytes `s` (base 10), with its error messages.
fn py_int(s: &[u8]) -> std::result::Result<BigInt, String> {
    let invalid = || {
        let mut r = bytes_repr(&s[..s.len().min(200)]);
        if r.len() > 200 {
            r.truncate(200);
        }
        format!("invalid literal for int() with base 10: {r}")
    };
    let mut i = 0;
    while i < s.len() && is_space(s[i]) {
        i += 1;
    }
    let neg = match s.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    if s.get(i) == Some(&b'_') {
        return Err(invalid());
    }
    let start = i;
    let mut digits = 0usize;
    let mut prev = 0u8;
    while let Some(&c) = s.get(i) {
        if c == b'_' {
            if prev == b'_' {
                return Err(invalid());
            }
        } else if c.is_ascii_digit() {
            digits += 1;
        } else {
            break;
        }
        prev = c;
        i += 1;
    }
    if prev == b'_' {
        return Err(invalid());
    }
    if digits > MAX_STR_DIGITS {
        return Err(format!(
            "Exceeds the limit ({MAX_STR_DIGITS} digits) for integer string conversion: value has {digits} digits; \
             use sys.set_int_max_str_digits() to increase the limit"
        ));
    }
    let end = i;
    while i < s.len() && is_space(s[i]) {
        i += 1;
    }
    if digits == 0 || i != s.len() {
        return Err(invalid());
    }
    let clean: Vec<u8> = s[start..end].iter().copied().filter(|&c| c != b'_').collect();
    let mag = BigInt::parse_bytes(&clean, 10).ok_or_else(invalid)?;
    Ok(if neg { -mag } else { mag })
}

/// Python's `float(s)` for a bytes `s`, with its error message.
fn py_float(s: &[u8]) -> std::result::Result<f64, String> {
    let invalid = || format!("could not convert string to float: {}", bytes_repr(s));
    // _Py_string_to_number_with_underscores: underscores only between digits.
    let upto_nul = &s[..s.iter().position(|&c| c == 0).unwrap_or(s.len())];
    let mut text = Vec::with_capacity(s.len());
    if upto_nul.contains(&b'_') {
        let mut prev = 0u8;
        for &c in upto_nul {
            if c == b'_' {
                if !prev.is_ascii_digit() {
                    return Err(invalid());
                }
            } else {
                text.push(c);
                if prev == b'_' && !c.is_ascii_digit() {
                    return Err(invalid());
                }
            }
            prev = c;
        }
        if prev == b'_' || upto_nul.len() != s.len() {
            return Err(invalid());
        }
    } else {
        text.extend_from_slice(s);
    }
    let mut a = 0;
    let mut b = text.len();
    while a < b && is_space(text[a]) {
        a += 1;
    }
    while b > a + 1 && is_space(text[b - 1]) {
        b -= 1;
    }
    let t = &text[a..b];
    // Rust's grammar for f64 is Python's (digits, point, exponent, inf, infinity, nan, signs),
    // once limited to the characters Python accepts.
    let ok = !t.is_empty() && t.iter().all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'+' | b'-'));
    let parsed = if ok { std::str::from_utf8(t).ok().and_then(|t| t.parse::<f64>().ok()) } else { None };
    parsed.ok_or_else(invalid)
}

// ---------------------------------------------------------------------------------------------
// The disassembler.

/// Writes `text` to `out`.
fn emit<W: io::Write + ?Sized>(out: &mut W, text: &str) -> Result<()> {
    out.write_all(text.as_bytes()).map_err(Error::io)
}

/// Python's `repr()` of a stack as pickletools prints it: `[list, any, mark]`.
fn stack_repr(stack: &[StackKind]) -> String {
    let names: Vec<&str> = stack.iter().map(|k| k.name()).collect();
    format!("[{}]", names.join(", "))
}

/// Disassembles one pickle from `input`'s current position through its first `STOP`, writing
/// what `pickletools.dis(input, out, memo, options.indent, options.annotate)` prints.
///
/// `memo`, when given, is used and updated (pickletools' `memo` argument): passing the same
/// memo to the next call continues across pickles written by one pickler. Offsets are the
/// reader's positions, so a second call on the same reader continues the numbering.
///
/// On a malformed pickle (or a failed check), the lines up to and including the faulty opcode
/// are written first, exactly as pickletools prints them before raising, and the error's
/// message is pickletools' `ValueError` message; its offset is the opcode's. Write failures
/// are returned as I/O errors.
pub fn dis<'de, R: Read<'de>, W: io::Write + ?Sized>(
    input: &mut R,
    out: &mut W,
    memo: Option<&mut Memo>,
    options: &DisOptions,
) -> Result<()> {
    let res = dis_one(input, out, memo, options);
    input.commit();
    res
}

fn dis_one<'de, R: Read<'de>, W: io::Write + ?Sized>(
    input: &mut R,
    out: &mut W,
    memo: Option<&mut Memo>,
    options: &DisOptions,
) -> Result<()> {
    let mut local = Memo::new();
    let memo = match memo {
        Some(m) => m,
        None => &mut local,
    };
    let mut stack: Vec<StackKind> = Vec::new();
    let mut markstack: Vec<u64> = Vec::new();
    let mut maxproto = -1i32;
    let indentchunk = " ".repeat(options.indent);
    let mut annocol = options.annotate;
    let mut line = String::new();
    loop {
        let Op { pos, opcode, arg } = read_op(input)?;
        let info = opcode.info();
        let name = info.name;
        line.clear();
        let _ = write!(line, "{pos:5}: ");
        emit(out, &line)?;
        line.clear();

        let code = info.code;
        let code_repr =
            if (0x20..0x7f).contains(&code) { (code as char).to_string() } else { format!("\\x{code:02x}") };
        let _ = write!(line, "{code_repr:<4} ");
        for _ in 0..markstack.len() {
            line.push_str(&indentchunk);
        }
        line.push_str(name);

        maxproto = maxproto.max(info.proto as i32);
        let before = info.stack_before;
        let mut after_memo = [StackKind::Any];
        let mut after: &[StackKind] = info.stack_after;
        let mut numtopop = before.len();

        let fail = |msg: String| value_error(pos, Some(opcode), msg);

        // See whether a MARK should be popped.
        let mut markmsg: Option<String> = None;
        let mut errormsg: Option<String> = None;
        if before.contains(&StackKind::Mark) || (opcode == Opcode::Pop && stack.last() == Some(&StackKind::Mark)) {
            if let Some(markpos) = markstack.pop() {
                markmsg = Some(format!("(MARK at {markpos})"));
                // Pop everything at and after the topmost markobject.
                loop {
                    match stack.pop() {
                        Some(StackKind::Mark) => break,
                        Some(_) => {}
                        None => return Err(fail("list index out of range".into())),
                    }
                }
                numtopop = before.iter().position(|&k| k == StackKind::Mark).unwrap_or(0);
            } else {
                markmsg = Some("no MARK exists on stack".into());
                errormsg = markmsg.clone();
            }
        }

        // Check for correct memo usage.
        match opcode {
            Opcode::Put | Opcode::BinPut | Opcode::LongBinPut | Opcode::Memoize => {
                let key = if opcode == Opcode::Memoize {
                    let idx = memo.len();
                    markmsg = Some(format!("(as {idx})"));
                    Key::Int(idx as i128)
                } else {
                    arg.key().expect("memo opcodes have int arguments")
                };
                match memo.keys.entry(key) {
                    Entry::Occupied(_) => {
                        let mut r = String::new();
                        arg.repr(&mut r).map_err(fail)?;
                        errormsg = Some(format!("memo key {r} already defined"));
                    }
                    Entry::Vacant(slot) => match stack.last() {
                        None => errormsg = Some("stack is empty -- can't store into memo".into()),
                        Some(StackKind::Mark) => errormsg = Some("can't store markobject in the memo".into()),
                        Some(&top) => {
                            slot.insert(top);
                        }
                    },
                }
            }
            Opcode::Get | Opcode::BinGet | Opcode::LongBinGet => {
                let key = arg.key().expect("memo opcodes have int arguments");
                match memo.keys.get(&key) {
                    Some(&kind) => {
                        after_memo[0] = kind;
                        after = &after_memo;
                    }
                    None => {
                        let mut r = String::new();
                        arg.repr(&mut r).map_err(fail)?;
                        errormsg = Some(format!("memo key {r} has never been stored into"));
                    }
                }
            }
            _ => {}
        }

        let has_arg = !matches!(arg, ArgValue::None);
        if has_arg || markmsg.is_some() {
            // make a mild effort to align arguments
            for _ in name.len()..10 {
                line.push(' ');
            }
            if has_arg {
                line.push(' ');
                arg.repr(&mut line).map_err(fail)?;
            }
            if let Some(m) = &markmsg {
                line.push(' ');
                line.push_str(m);
            }
        }
        if options.annotate != 0 {
            let len = line.chars().count();
            for _ in len..annocol {
                line.push(' ');
            }
            // make a mild effort to align annotations
            annocol = len.max(annocol);
            if annocol > 50 {
                annocol = options.annotate;
            }
            line.push(' ');
            line.push_str(info.doc);
        }
        line.push('\n');
        emit(out, &line)?;

        if let Some(msg) = errormsg {
            // Note that we delayed complaining until the offending opcode was printed.
            return Err(fail(msg));
        }

        // Emulate the stack effects.
        if stack.len() < numtopop {
            return Err(fail(format!("tries to pop {numtopop} items from stack with only {} items", stack.len())));
        }
        stack.truncate(stack.len() - numtopop);
        if after.contains(&StackKind::Mark) {
            markstack.push(pos);
        }
        stack.extend_from_slice(after);

        if opcode == Opcode::Stop {
            emit(out, &format!("highest protocol among opcodes = {maxproto}\n"))?;
            if !stack.is_empty() {
                return Err(fail(format!("stack not empty after STOP: {}", stack_repr(&stack))));
            }
            return Ok(());
        }
    }
}

/// Disassembles the first pickle of `data` (see [`dis`]): the text pickletools prints, and
/// the outcome (on an error, the text holds the lines up to the fault).
pub fn dis_slice(data: &[u8], options: &DisOptions) -> (String, Result<()>) {
    let mut out = Vec::new();
    let res = dis(&mut SliceRead::new(data), &mut out, None, options);
    (String::from_utf8(out).expect("the listing is UTF-8"), res)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(data: &[u8], options: &DisOptions) -> String {
        let (text, res) = dis_slice(data, options);
        res.unwrap();
        text
    }

    #[test]
    fn lists_protocol_0() {
        let text = listing(b"(lp0\nI1\naF1.5\naS'a\\n'\np1\na.", &DisOptions::default());
        assert_eq!(
            text,
            "    0: (    MARK
    1: l        LIST       (MARK at 0)
    2: p    PUT        0
    5: I    INT        1
    8: a    APPEND
    9: F    FLOAT      1.5
   14: a    APPEND
   15: S    STRING     'a\\n'
   22: p    PUT        1
   25: a    APPEND
   26: .    STOP
highest protocol among opcodes = 0
"
        );
    }

    #[test]
    fn annotates() {
        let text = listing(b"\x80\x03]q\x00.", &DisOptions { indent: 4, annotate: 1 });
        assert_eq!(
            text,
            "    0: \\x80 PROTO      3 Protocol version indicator.
    2: ]    EMPTY_LIST   Push an empty list.
    3: q    BINPUT     0 Store the stack top into the memo.  The stack is not popped.
    5: .    STOP         Stop the unpickling machine.
highest protocol among opcodes = 2
"
        );
    }

    #[test]
    fn reports_errors_after_the_line() {
        let (text, res) = dis_slice(b"]q\x00q\x00.", &DisOptions::default());
        assert_eq!(text, "    0: ]    EMPTY_LIST\n    1: q    BINPUT     0\n    3: q    BINPUT     0\n");
        let e = res.unwrap_err();
        assert_eq!(e.message(), "memo key 0 already defined");
        assert_eq!(e.offset(), Some(3));

        let (text, res) = dis_slice(b"K\x01K\x02.", &DisOptions::default());
        assert!(text.ends_with("highest protocol among opcodes = 1\n"));
        assert_eq!(res.unwrap_err().message(), "stack not empty after STOP: [int]");

        let (text, res) = dis_slice(b"X\x05\x00\x00\x00ab", &DisOptions::default());
        assert_eq!(text, "");
        assert_eq!(res.unwrap_err().message(), "expected 5 bytes in a unicodestring4, but only 2 remain");

        let (_, res) = dis_slice(b"N", &DisOptions::default());
        assert_eq!(res.unwrap_err().message(), "pickle exhausted before seeing STOP");
        let (_, res) = dis_slice(b"\xff", &DisOptions::default());
        assert_eq!(res.unwrap_err().message(), "at position 0, opcode b'\\xff' unknown");
    }

    #[test]
    fn parses_like_python() {
        assert_eq!(py_int(b" 1_000 ").unwrap(), BigInt::from(1000));
        assert_eq!(py_int(b"012").unwrap(), BigInt::from(12));
        assert!(py_int(b"1__0").is_err());
        assert!(py_int(b"0x10").is_err());
        assert_eq!(py_float(b" 1_0.5 ").unwrap(), 10.5);
        assert!(py_float(b"1__0").is_err());
        assert!(py_float(b"-Infinity").unwrap().is_infinite());
        assert_eq!(
            utf8_surrogatepass(b"\xe4\xb8x".to_vec()).unwrap_err(),
            "'utf-8' codec can't decode bytes in position 0-1: invalid continuation byte"
        );
        assert!(utf8_surrogatepass(b"\xed\xa0\x80".to_vec()).is_ok());
    }
}
