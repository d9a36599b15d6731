//! The op layer: reading one opcode and its argument, knowing nothing of the object model.
//!
//! The unpickler, the disassembler and any scanner read pickles through [`read_arg`], so a
//! listing tool can show a pickle the unpickler would refuse.

use crate::error::{Error, Result};
use crate::opcodes::{ArgKind, Opcode};
use crate::read::{Bytes, Read};

/// A decoded opcode argument.
pub enum Arg<'de, 's> {
    /// No argument.
    None,
    /// `uint1`, `uint2`, `uint4`, `int4`, `uint8`.
    Int(i128),
    /// `float8`.
    Float(f64),
    /// Length-prefixed payloads (`string1/4`, `bytes1/4/8`, `bytearray8`,
    /// `unicodestring1/4/8`) and the two's complement bytes of `long1` / `long4`.
    Bytes(Bytes<'de, 's>),
    /// Newline-terminated text arguments (`stringnl`, `decimalnl_*`, `floatnl`,
    /// `unicodestringnl`, `stringnl_noescape`), without the newline.
    Line(Bytes<'de, 's>),
    /// `stringnl_noescape_pair`: module and name lines of `GLOBAL` / `INST`.
    Pair(Vec<u8>, Vec<u8>),
}

/// Every byte's opcode, for a lookup instead of a match on the hot path.
static BYTE_TO_OPCODE: [Option<Opcode>; 256] = {
    let mut table = [None; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = Opcode::from_u8(b as u8);
        b += 1;
    }
    table
};

/// Reads one byte and maps it to an opcode; an unknown byte is an unpickling error.
#[inline]
pub fn read_opcode<'de, R: Read<'de>>(r: &mut R) -> Result<(u64, Opcode)> {
    let pos = r.position();
    let b = r.read_byte()?;
    match BYTE_TO_OPCODE[b as usize] {
        Some(op) => Ok((pos, op)),
        None => Err(unknown_opcode(pos, b)),
    }
}

#[cold]
fn unknown_opcode(pos: u64, b: u8) -> Error {
    Error::unpickling(pos, format!("invalid load key, {}.", py_byte_repr(b)))
}

/// Python's repr of a one-byte bytes object's content, as CPython quotes it in messages.
fn py_byte_repr(b: u8) -> String {
    match b {
        0x20..=0x7E if b != b'\'' && b != b'\\' => format!("'{}'", b as char),
        _ => format!("'\\x{b:02x}'"),
    }
}

/// Reads a little-endian `u16`.
#[inline]
pub(crate) fn read_u16<'de, R: Read<'de>>(r: &mut R) -> Result<u16> {
    Ok(u16::from_le_bytes(le(&r.read_exact(2)?)))
}

/// Reads a little-endian `u32`.
#[inline]
pub(crate) fn read_u32<'de, R: Read<'de>>(r: &mut R) -> Result<u32> {
    Ok(u32::from_le_bytes(le(&r.read_exact(4)?)))
}

/// Reads a little-endian `i32`.
#[inline]
pub(crate) fn read_i32<'de, R: Read<'de>>(r: &mut R) -> Result<i32> {
    Ok(i32::from_le_bytes(le(&r.read_exact(4)?)))
}

/// Reads a big-endian `f64` (`BINFLOAT`).
#[inline]
pub(crate) fn read_f64<'de, R: Read<'de>>(r: &mut R) -> Result<f64> {
    Ok(f64::from_be_bytes(le(&r.read_exact(8)?)))
}

/// Reads a little-endian `u64`.
#[inline]
pub(crate) fn read_u64<'de, R: Read<'de>>(r: &mut R) -> Result<u64> {
    Ok(u64::from_le_bytes(le(&r.read_exact(8)?)))
}

/// Reads the length prefix of `op` (whose argument is length-prefixed), refusing negative and
/// oversized lengths as CPython does.
#[inline]
pub(crate) fn read_len<'de, R: Read<'de>>(r: &mut R, op: Opcode) -> Result<usize> {
    let pos = r.position();
    match op.arg() {
        ArgKind::Long1 | ArgKind::String1 | ArgKind::Bytes1 | ArgKind::Unicode1 => Ok(r.read_byte()? as usize),
        ArgKind::Long4 | ArgKind::String4 => {
            let n = read_i32(r)?;
            if n < 0 {
                let what = if op.arg() == ArgKind::Long4 { "LONG" } else { "BINSTRING" };
                return Err(negative_len(pos, what));
            }
            Ok(n as usize)
        }
        ArgKind::Bytes4 | ArgKind::Unicode4 => to_len(pos, read_u32(r)? as u64),
        ArgKind::Bytes8 | ArgKind::ByteArray8 | ArgKind::Unicode8 => {
            let n = read_u64(r)?;
            if n > i64::MAX as u64 {
                return Err(Error::unpickling(
                    pos,
                    format!("{} exceeds system's maximum size of {} bytes", op.name(), i64::MAX),
                ));
            }
            to_len(pos, n)
        }
        _ => unreachable!("{} has no length prefix", op.name()),
    }
}

#[inline]
fn le<const N: usize>(b: &[u8]) -> [u8; N] {
    b.try_into().expect("read_exact returned N bytes")
}

#[cold]
fn negative_len(pos: u64, what: &str) -> Error {
    Error::unpickling(pos, format!("{what} pickle has negative byte count"))
}

/// Converts a declared length to `usize` (a length beyond the address space cannot be backed by
/// data, so it is reported as truncation).
#[inline]
fn to_len(pos: u64, n: u64) -> Result<usize> {
    usize::try_from(n).map_err(|_| Error::eof(pos))
}

/// Reads the argument of `op`, whose opcode byte was just read.
#[inline]
pub fn read_arg<'de, 's, R: Read<'de>>(r: &'s mut R, op: Opcode) -> Result<Arg<'de, 's>> {
    Ok(match op.arg() {
        ArgKind::None => Arg::None,
        ArgKind::UInt1 => Arg::Int(r.read_byte()? as i128),
        ArgKind::UInt2 => Arg::Int(read_u16(r)? as i128),
        ArgKind::UInt4 => Arg::Int(read_u32(r)? as i128),
        ArgKind::Int4 => Arg::Int(read_i32(r)? as i128),
        ArgKind::UInt8 => Arg::Int(read_u64(r)? as i128),
        ArgKind::Float8 => Arg::Float(read_f64(r)?),
        ArgKind::Long1
        | ArgKind::String1
        | ArgKind::Bytes1
        | ArgKind::Unicode1
        | ArgKind::Long4
        | ArgKind::String4
        | ArgKind::Bytes4
        | ArgKind::Unicode4
        | ArgKind::Bytes8
        | ArgKind::ByteArray8
        | ArgKind::Unicode8 => {
            let n = read_len(r, op)?;
            Arg::Bytes(r.read_exact(n)?)
        }
        ArgKind::StringNl
        | ArgKind::StringNlNoescape
        | ArgKind::DecimalNlShort
        | ArgKind::DecimalNlLong
        | ArgKind::FloatNl
        | ArgKind::UnicodeStringNl => Arg::Line(r.read_line()?),
        ArgKind::StringNlNoescapePair => {
            let first = r.read_line()?.to_vec();
            let second = r.read_line()?.to_vec();
            Arg::Pair(first, second)
        }
    })
}
