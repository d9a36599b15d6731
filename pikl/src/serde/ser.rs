//! The serde writer: opcodes straight from serde's calls, as CPython's pickler writes the
//! equivalent Python value (same opcodes, same memo, same batches and frames).

use std::collections::HashMap;
use std::io::Write;

use serde::ser::{self, Serialize};

use super::de::BIGINT_TOKEN;
use super::error::{Error, Result};
use super::options::SerOptions;
use crate::compat;
use crate::opcodes::Opcode as Op;

/// Frames are committed once they hold this much.
const FRAME_SIZE_TARGET: usize = 64 * 1024;
const FRAME_HEADER: usize = 9;
/// A stream without frames is handed to the writer in blocks of about this size.
const FLUSH_SIZE: usize = 1 << 20;
/// Items per APPENDS / SETITEMS batch.
const BATCH: usize = 1000;
const NIL: u32 = u32::MAX;

/// Where committed bytes go: nowhere (the buffer is the result) or a writer.
pub(crate) trait Sink {
    /// True when committed bytes are handed out as they are ready.
    const STREAM: bool;
    fn write_all(&mut self, b: &[u8]) -> Result<()>;
    fn flush(&mut self) -> Result<()>;
}

/// `to_vec`: everything stays in the buffer.
pub(crate) struct NoSink;

impl Sink for NoSink {
    const STREAM: bool = false;
    fn write_all(&mut self, _: &[u8]) -> Result<()> {
        Ok(())
    }
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
}

/// `to_writer`.
pub(crate) struct IoSink<W>(pub(crate) W);

impl<W: Write> Sink for IoSink<W> {
    const STREAM: bool = true;
    fn write_all(&mut self, b: &[u8]) -> Result<()> {
        self.0.write_all(b).map_err(|e| crate::Error::io(e).into())
    }
    fn flush(&mut self) -> Result<()> {
        self.0.flush().map_err(|e| crate::Error::io(e).into())
    }
}

/// The output buffer, with protocol 4 framing as CPython frames: a frame is open whenever
/// framing is on, and is committed at the first value boundary once it holds 64 KiB.
struct Out<S> {
    buf: Vec<u8>,
    framing: bool,
    /// Position of the open frame's header in `buf`.
    frame_start: usize,
    /// [`Out::boundary`] does something once `buf` is this long.
    limit: usize,
    /// Bytes already handed to the sink.
    flushed: u64,
    sink: S,
}

impl<S: Sink> Out<S> {
    fn new(sink: S) -> Self {
        let limit = if S::STREAM { FLUSH_SIZE } else { usize::MAX };
        Out { buf: Vec::with_capacity(1 << 12), framing: false, frame_start: 0, limit, flushed: 0, sink }
    }

    #[inline]
    fn pos(&self) -> u64 {
        self.flushed + self.buf.len() as u64
    }

    #[inline(always)]
    fn put(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    #[inline(always)]
    fn byte(&mut self, b: u8) {
        self.buf.push(b);
    }

    /// Two header bytes, up to 32 bytes of data and an optional trailing byte, with one
    /// capacity check and fixed-size copies (no call to `memcpy` for short strs).
    #[inline(always)]
    fn short(&mut self, op: u8, data: &[u8], trailer: Option<u8>) {
        let n = data.len();
        debug_assert!(n <= 32);
        let len = self.buf.len();
        self.buf.extend_from_slice(&[0u8; 35]);
        let dst = &mut self.buf[len..len + 35];
        dst[0] = op;
        dst[1] = n as u8;
        let d = &mut dst[2..];
        if n >= 16 {
            d[..16].copy_from_slice(&data[..16]);
            d[n - 16..n].copy_from_slice(&data[n - 16..]);
        } else if n >= 8 {
            d[..8].copy_from_slice(&data[..8]);
            d[n - 8..n].copy_from_slice(&data[n - 8..]);
        } else if n >= 4 {
            d[..4].copy_from_slice(&data[..4]);
            d[n - 4..n].copy_from_slice(&data[n - 4..]);
        } else {
            // Up to 3 bytes: a loop, not a call to `memcpy`.
            for (x, y) in d.iter_mut().zip(data) {
                *x = *y;
            }
        }
        let mut end = len + 2 + n;
        if let Some(t) = trailer {
            self.buf[end] = t;
            end += 1;
        }
        self.buf.truncate(end);
    }

    fn start_framing(&mut self) {
        self.framing = true;
        self.open_frame();
    }

    fn open_frame(&mut self) {
        self.frame_start = self.buf.len();
        self.buf.extend_from_slice(&[0; FRAME_HEADER]);
        self.limit = self.frame_start + FRAME_HEADER + FRAME_SIZE_TARGET;
    }

    /// Writes the open frame's header, or drops it for a frame of fewer than 4 bytes.
    fn commit_frame(&mut self) {
        let start = self.frame_start;
        let len = self.buf.len() - start - FRAME_HEADER;
        if len >= 4 {
            self.buf[start] = Op::Frame as u8;
            self.buf[start + 1..start + FRAME_HEADER].copy_from_slice(&(len as u64).to_le_bytes());
        } else {
            self.buf.drain(start..start + FRAME_HEADER);
        }
    }

    fn flush_buf(&mut self) -> Result<()> {
        if S::STREAM {
            self.sink.write_all(&self.buf)?;
            self.flushed += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
    }

    /// Called before each value is written (CPython's `_Pickler_OpcodeBoundary`).
    #[inline]
    fn boundary(&mut self) -> Result<()> {
        if self.buf.len() >= self.limit {
            self.boundary_slow()?;
        }
        Ok(())
    }

    #[cold]
    fn boundary_slow(&mut self) -> Result<()> {
        if self.framing {
            self.commit_frame();
            self.flush_buf()?;
            self.open_frame();
        } else {
            self.flush_buf()?;
            self.limit = if S::STREAM { self.buf.len() + FLUSH_SIZE } else { usize::MAX };
        }
        Ok(())
    }

    /// An opcode's header and payload; a payload of 64 KiB or more goes between frames.
    fn payload(&mut self, header: &[u8], data: &[u8]) -> Result<()> {
        if data.len() < FRAME_SIZE_TARGET || !self.framing {
            self.put(header);
            if S::STREAM && data.len() >= FRAME_SIZE_TARGET {
                self.flush_buf()?;
                self.sink.write_all(data)?;
                self.flushed += data.len() as u64;
            } else {
                self.put(data);
            }
            return Ok(());
        }
        self.commit_frame();
        self.put(header);
        if S::STREAM {
            self.flush_buf()?;
            self.sink.write_all(data)?;
            self.flushed += data.len() as u64;
        } else {
            self.put(data);
        }
        self.open_frame();
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        if self.framing {
            self.commit_frame();
            self.framing = false;
        }
        if S::STREAM {
            self.flush_buf()?;
            self.sink.flush()?;
        }
        Ok(())
    }
}

/// The writer of one pickle.
pub(crate) struct Ser<'o, S> {
    out: Out<S>,
    proto: u8,
    memoize: bool,
    fix_imports: bool,
    opts: &'o SerOptions,
    memo_len: u32,
    /// Memo indices of CPython's shared strs: one Latin-1 character (by code point) or empty
    /// (256).
    chars: Vec<u32>,
    /// Memo indices of CPython's shared bytes: one byte, or empty (256).
    bytes1: Vec<u32>,
    /// Memo indices of interned strs (field and variant names, module names), by content.
    names: HashMap<&'static str, u32, foldhash::fast::RandomState>,
    /// The last names looked up, by address: most records repeat the same few.
    name_cache: [(usize, usize, u32); 64],
    /// Module names and globals written, by content.
    modules: HashMap<String, u32>,
    globals: HashMap<(String, String), u32>,
    latin1: u32,
    /// Inside a dict key: sequences become tuples, dicts are refused.
    in_key: u32,
    /// The next bytes are a big int's (see [`super::bigint`]).
    bigint: bool,
    /// Memoizing at protocol 4+: MEMOIZE after each value.
    fast_memo: bool,
    /// The last struct name looked up in the options, and its class.
    last_struct: (usize, Option<(&'o str, &'o str)>),
}

impl<'o, S: Sink> Ser<'o, S> {
    pub(crate) fn new(sink: S, opts: &'o SerOptions) -> Result<Self> {
        let proto = opts.get_protocol();
        if proto > crate::HIGHEST_PROTOCOL {
            return Err(Error::ser(format!("pickle protocol must be <= {}, not {proto}", crate::HIGHEST_PROTOCOL)));
        }
        Ok(Ser {
            out: Out::new(sink),
            proto,
            memoize: opts.get_memoize(),
            fix_imports: opts.get_fix_imports(),
            opts,
            memo_len: 0,
            chars: vec![NIL; 257],
            bytes1: vec![NIL; 257],
            names: HashMap::default(),
            name_cache: [(0, 0, NIL); 64],
            modules: HashMap::new(),
            globals: HashMap::new(),
            latin1: NIL,
            in_key: 0,
            bigint: false,
            fast_memo: opts.get_memoize() && proto >= 4,
            last_struct: (0, None),
        })
    }

    /// Writes the whole pickle of `value`.
    pub(crate) fn dump<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        if self.proto >= 2 {
            self.out.put(&[Op::Proto as u8, self.proto]);
        }
        if self.proto >= 4 {
            self.out.start_framing();
        }
        value.serialize(&mut *self)?;
        self.out.byte(Op::Stop as u8);
        self.out.finish()
    }

    pub(crate) fn into_vec(self) -> Vec<u8> {
        self.out.buf
    }

    #[inline]
    fn pos(&self) -> u64 {
        self.out.pos()
    }

    // ---- memo ----

    /// Memoizes the value just written; returns its index (`NIL` when memoizing is off, or
    /// once the memo holds 2^32 - 1 entries: later values are written without a memo entry).
    #[inline(always)]
    fn put(&mut self) -> u32 {
        if self.fast_memo && self.memo_len < NIL - 1 {
            let idx = self.memo_len;
            self.memo_len += 1;
            self.out.byte(Op::Memoize as u8);
            return idx;
        }
        self.put_slow()
    }

    #[inline(never)]
    fn put_slow(&mut self) -> u32 {
        if !self.memoize || self.memo_len >= NIL - 1 {
            return NIL;
        }
        let idx = self.memo_len;
        self.memo_len += 1;
        if self.proto >= 4 {
            self.out.byte(Op::Memoize as u8);
        } else if self.proto >= 1 {
            if idx < 256 {
                self.out.put(&[Op::BinPut as u8, idx as u8]);
            } else {
                let b = idx.to_le_bytes();
                self.out.put(&[Op::LongBinPut as u8, b[0], b[1], b[2], b[3]]);
            }
        } else {
            self.out.byte(Op::Put as u8);
            self.out.put(itoa::Buffer::new().format(idx).as_bytes());
            self.out.byte(b'\n');
        }
        idx
    }

    #[inline(always)]
    fn get(&mut self, idx: u32) {
        if idx < 256 && self.proto >= 1 {
            self.out.put(&[Op::BinGet as u8, idx as u8]);
        } else {
            self.get_slow(idx);
        }
    }

    #[inline(never)]
    fn get_slow(&mut self, idx: u32) {
        if self.proto >= 1 {
            let b = idx.to_le_bytes();
            self.out.put(&[Op::LongBinGet as u8, b[0], b[1], b[2], b[3]]);
        } else {
            self.out.byte(Op::Get as u8);
            self.out.put(itoa::Buffer::new().format(idx).as_bytes());
            self.out.byte(b'\n');
        }
    }

    // ---- atoms ----

    #[inline(always)]
    fn write_i64(&mut self, i: i64) {
        if self.proto >= 1 {
            if (0..=0xFF).contains(&i) {
                return self.out.put(&[Op::BinInt1 as u8, i as u8]);
            }
            if (0..=0xFFFF).contains(&i) {
                let b = (i as u16).to_le_bytes();
                return self.out.put(&[Op::BinInt2 as u8, b[0], b[1]]);
            }
            if let Ok(small) = i32::try_from(i) {
                let b = small.to_le_bytes();
                return self.out.put(&[Op::BinInt as u8, b[0], b[1], b[2], b[3]]);
            }
            if self.proto >= 2 {
                // LONG1 with the minimal two's complement bytes: 5 to 8 of them.
                let n = (72 - (i ^ (i >> 63)).leading_zeros()) as usize / 8;
                let b = i.to_le_bytes();
                self.out.put(&[Op::Long1 as u8, n as u8, b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
                let len = self.out.buf.len();
                self.out.buf.truncate(len - (8 - n));
                return;
            }
        }
        self.write_i64_slow(i);
    }

    #[inline(never)]
    fn write_i64_slow(&mut self, i: i64) {
        if let (0, Ok(small)) = (self.proto, i32::try_from(i)) {
            self.out.byte(Op::Int as u8);
            self.out.put(itoa::Buffer::new().format(small).as_bytes());
            self.out.byte(b'\n');
        } else {
            self.write_i128(i as i128);
        }
    }

    /// An int beyond 32 bits: LONG1 with its minimal two's complement bytes from protocol 2,
    /// else `LONG` text.
    fn write_i128(&mut self, i: i128) {
        if self.proto >= 2 {
            let b = i.to_le_bytes();
            let n = minimal_len(&b);
            self.out.put(&[Op::Long1 as u8, n as u8]);
            self.out.put(&b[..n]);
        } else {
            self.out.byte(Op::Long as u8);
            self.out.put(itoa::Buffer::new().format(i).as_bytes());
            self.out.put(b"L\n");
        }
    }

    fn write_u128(&mut self, u: u128) {
        if let Ok(i) = i64::try_from(u) {
            return self.write_i64(i);
        }
        if let Ok(i) = i128::try_from(u) {
            return self.write_i128(i);
        }
        if self.proto >= 2 {
            let mut b = [0u8; 17];
            b[..16].copy_from_slice(&u.to_le_bytes());
            self.out.put(&[Op::Long1 as u8, 17]);
            self.out.put(&b);
        } else {
            self.out.byte(Op::Long as u8);
            self.out.put(itoa::Buffer::new().format(u).as_bytes());
            self.out.put(b"L\n");
        }
    }

    /// A big int from its two's complement little-endian bytes.
    fn write_long_bytes(&mut self, b: &[u8]) -> Result<()> {
        let n = minimal_len(b);
        let b = if b.is_empty() { &[0u8][..] } else { &b[..n.max(1)] };
        if b.len() <= 8 {
            let mut buf = if b.last().is_some_and(|&x| x & 0x80 != 0) { [0xFF; 8] } else { [0; 8] };
            buf[..b.len()].copy_from_slice(b);
            self.write_i64(i64::from_le_bytes(buf));
            return Ok(());
        }
        if self.proto >= 2 {
            if b.len() < 256 {
                self.out.put(&[Op::Long1 as u8, b.len() as u8]);
            } else {
                let n = u32::try_from(b.len()).map_err(|_| Error::ser("int too large to pickle"))?;
                self.out.byte(Op::Long4 as u8);
                self.out.put(&n.to_le_bytes());
            }
            self.out.put(b);
        } else {
            let v = num_bigint::BigInt::from_signed_bytes_le(b);
            self.out.byte(Op::Long as u8);
            self.out.put(v.to_string().as_bytes());
            self.out.put(b"L\n");
        }
        Ok(())
    }

    #[inline(always)]
    fn write_f64(&mut self, f: f64) {
        if self.proto >= 1 {
            let b = f.to_be_bytes();
            self.out.put(&[Op::BinFloat as u8, b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        } else {
            self.write_f64_text(f);
        }
    }

    #[inline(never)]
    fn write_f64_text(&mut self, f: f64) {
        let mut s = String::with_capacity(24);
        s.push('F');
        crate::value::format_float(&mut s, f, true);
        s.push('\n');
        self.out.put(s.as_bytes());
    }

    /// A str's opcode and data, without memoizing.
    #[inline]
    fn str_data(&mut self, s: &str) -> Result<()> {
        let n = s.len();
        if self.proto >= 4 && n <= 32 {
            self.out.short(Op::ShortBinUnicode as u8, s.as_bytes(), None);
            return Ok(());
        }
        if self.proto >= 4 && n <= 0xFF {
            self.out.put(&[Op::ShortBinUnicode as u8, n as u8]);
            self.out.put(s.as_bytes());
            return Ok(());
        }
        if self.proto >= 1 {
            if n > 0xFFFF_FFFF {
                if self.proto < 4 {
                    return Err(Error::ser("cannot serialize a string larger than 4GiB"));
                }
                let mut h = [0u8; 9];
                h[0] = Op::BinUnicode8 as u8;
                h[1..].copy_from_slice(&(n as u64).to_le_bytes());
                return self.out.payload(&h, s.as_bytes());
            }
            let b = (n as u32).to_le_bytes();
            return self.out.payload(&[Op::BinUnicode as u8, b[0], b[1], b[2], b[3]], s.as_bytes());
        }
        let mut text = Vec::with_capacity(n + 2);
        text.push(Op::Unicode as u8);
        raw_unicode_escape(s, &mut text);
        text.push(b'\n');
        self.out.put(&text);
        Ok(())
    }

    /// A str value: CPython's one-character and empty strs are shared objects, so they are
    /// memoized by content; other strs are fresh objects.
    #[inline]
    fn write_str(&mut self, s: &str) -> Result<()> {
        if self.memoize && s.len() <= 2 {
            let mut cs = s.chars();
            let key = match (cs.next(), cs.next()) {
                (None, _) => Some(256),
                (Some(c), None) if (c as u32) < 256 => Some(c as usize),
                _ => None,
            };
            if let Some(k) = key {
                if self.chars[k] != NIL {
                    self.get(self.chars[k]);
                    return Ok(());
                }
                self.str_data(s)?;
                self.chars[k] = self.put();
                return Ok(());
            }
        }
        if self.fast_memo && s.len() <= 32 && self.memo_len < NIL - 1 {
            // SHORT_BINUNICODE and MEMOIZE in one write.
            self.memo_len += 1;
            self.out.short(Op::ShortBinUnicode as u8, s.as_bytes(), Some(Op::Memoize as u8));
            return Ok(());
        }
        self.str_data(s)?;
        self.put();
        Ok(())
    }

    /// An interned str (a field or variant name): written once, then fetched from the memo.
    #[inline]
    fn write_name(&mut self, s: &'static str) -> Result<()> {
        if !self.memoize {
            return self.str_data(s);
        }
        let addr = s.as_ptr() as usize;
        let slot = (addr.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) & 63;
        let (a, l, idx) = self.name_cache[slot];
        if a == addr && l == s.len() {
            self.get(idx);
            return Ok(());
        }
        self.write_name_slow(s, addr, slot)
    }

    #[cold]
    fn write_name_slow(&mut self, s: &'static str, addr: usize, slot: usize) -> Result<()> {
        let idx = match self.names.get(s) {
            Some(&idx) => {
                self.get(idx);
                idx
            }
            None => {
                // One-character names are CPython's shared strs as well.
                let mut cs = s.chars();
                let single = match (cs.next(), cs.next()) {
                    (None, _) => Some(256),
                    (Some(c), None) if (c as u32) < 256 => Some(c as usize),
                    _ => None,
                };
                if let Some(k) = single.filter(|&k| self.chars[k] != NIL) {
                    self.get(self.chars[k]);
                    self.chars[k]
                } else {
                    self.str_data(s)?;
                    let idx = self.put();
                    if let Some(k) = single {
                        self.chars[k] = idx;
                    }
                    idx
                }
            }
        };
        self.names.insert(s, idx);
        self.name_cache[slot] = (addr, s.len(), idx);
        Ok(())
    }

    fn write_bytes(&mut self, b: &[u8]) -> Result<()> {
        let single = match b {
            [] => Some(256),
            [c] => Some(*c as usize),
            _ => None,
        };
        if let Some(k) = single.filter(|_| self.memoize) {
            if self.bytes1[k] != NIL {
                self.get(self.bytes1[k]);
                return Ok(());
            }
        }
        if self.proto >= 3 {
            let n = b.len();
            if n <= 0xFF {
                self.out.payload(&[Op::ShortBinBytes as u8, n as u8], b)?;
            } else if n <= 0xFFFF_FFFF {
                let l = (n as u32).to_le_bytes();
                self.out.payload(&[Op::BinBytes as u8, l[0], l[1], l[2], l[3]], b)?;
            } else {
                if self.proto < 4 {
                    return Err(Error::ser("cannot serialize a bytes object larger than 4 GiB"));
                }
                let mut h = [0u8; 9];
                h[0] = Op::BinBytes8 as u8;
                h[1..].copy_from_slice(&(n as u64).to_le_bytes());
                self.out.payload(&h, b)?;
            }
        } else if b.is_empty() {
            // `bytes()`.
            self.write_global("builtins", "bytes")?;
            self.out.boundary()?;
            self.empty_tuple();
            self.out.byte(Op::Reduce as u8);
        } else {
            // `_codecs.encode(latin1_text, 'latin1')`, as CPython writes bytes below protocol 3.
            self.write_global("_codecs", "encode")?;
            self.out.boundary()?;
            if self.proto < 2 {
                self.out.byte(Op::Mark as u8);
            }
            self.out.boundary()?;
            let text: String = b.iter().map(|&c| c as char).collect();
            self.str_data(&text)?;
            self.put();
            self.out.boundary()?;
            if self.latin1 != NIL {
                self.get(self.latin1);
            } else {
                self.str_data("latin1")?;
                self.latin1 = self.put();
            }
            self.out.byte(if self.proto >= 2 { Op::Tuple2 as u8 } else { Op::Tuple as u8 });
            self.put();
            self.out.byte(Op::Reduce as u8);
        }
        let idx = self.put();
        if let Some(k) = single {
            self.bytes1[k] = idx;
        }
        Ok(())
    }

    fn empty_tuple(&mut self) {
        if self.proto >= 1 {
            self.out.byte(Op::EmptyTuple as u8);
        } else {
            self.out.put(&[Op::Mark as u8, Op::Tuple as u8]);
        }
    }

    /// A class or function by name, memoized by name as CPython's classes are.
    fn write_global(&mut self, module: &str, name: &str) -> Result<()> {
        self.out.boundary()?;
        if let Some(&idx) = self.globals.get(&(module.to_owned(), name.to_owned())) {
            self.get(idx);
            return Ok(());
        }
        if self.proto >= 4 {
            self.out.boundary()?;
            match self.modules.get(module) {
                Some(&idx) if self.memoize => self.get(idx),
                _ => {
                    self.str_data(module)?;
                    let idx = self.put();
                    if self.memoize {
                        self.modules.insert(module.to_owned(), idx);
                    }
                }
            }
            self.out.boundary()?;
            self.str_data(name)?;
            self.put();
            self.out.byte(Op::StackGlobal as u8);
        } else {
            if name.contains('.') {
                return Err(Error::ser(format!(
                    "the nested class name {module}.{name} can only be written from protocol 4"
                )));
            }
            let (m, n) =
                if self.proto < 3 && self.fix_imports { compat::map_py3_global(module, name) } else { (module, name) };
            if self.proto < 3 && !(m.is_ascii() && n.is_ascii()) {
                return Err(Error::ser(format!(
                    "can't pickle global identifier '{m}.{n}' using pickle protocol {}",
                    self.proto
                )));
            }
            self.out.byte(Op::Global as u8);
            self.out.put(m.as_bytes());
            self.out.byte(b'\n');
            self.out.put(n.as_bytes());
            self.out.byte(b'\n');
        }
        let idx = self.put();
        if self.memoize {
            self.globals.insert((module.to_owned(), name.to_owned()), idx);
        }
        Ok(())
    }

    /// The class a struct is written as, if any.
    fn class_of(&mut self, name: &'static str) -> Option<(&'o str, &'o str)> {
        if !self.opts.has_classes() {
            return None;
        }
        let addr = name.as_ptr() as usize ^ name.len();
        if self.last_struct.0 != addr {
            let opts: &'o SerOptions = self.opts;
            self.last_struct = (addr, opts.class_of(name));
        }
        self.last_struct.1
    }

    /// Starts an instance of `module.qualname`, as CPython writes a plain class instance:
    /// `NEWOBJ(cls, ())` from protocol 2, `copyreg._reconstructor(cls, object, None)` below.
    fn begin_instance(&mut self, module: &str, qualname: &str) -> Result<()> {
        if self.proto >= 2 {
            self.write_global(module, qualname)?;
            self.out.boundary()?;
            self.empty_tuple();
            self.out.byte(Op::NewObj as u8);
        } else {
            self.write_global("copyreg", "_reconstructor")?;
            self.out.boundary()?;
            self.out.byte(Op::Mark as u8);
            self.write_global(module, qualname)?;
            self.write_global("builtins", "object")?;
            self.out.boundary()?;
            self.out.byte(Op::None as u8);
            self.out.byte(Op::Tuple as u8);
            self.put();
            self.out.byte(Op::Reduce as u8);
        }
        self.put();
        Ok(())
    }

    #[inline(always)]
    fn empty_list(&mut self) -> Result<()> {
        if self.fast_memo && self.memo_len < NIL - 1 {
            self.memo_len += 1;
            self.out.put(&[Op::EmptyList as u8, Op::Memoize as u8]);
            return Ok(());
        }
        if self.proto >= 1 {
            self.out.byte(Op::EmptyList as u8);
        } else {
            self.out.put(&[Op::Mark as u8, Op::List as u8]);
        }
        self.put();
        Ok(())
    }

    #[inline(always)]
    fn empty_dict(&mut self) -> Result<()> {
        if self.fast_memo && self.memo_len < NIL - 1 {
            self.memo_len += 1;
            self.out.put(&[Op::EmptyDict as u8, Op::Memoize as u8]);
            return Ok(());
        }
        if self.proto >= 1 {
            self.out.byte(Op::EmptyDict as u8);
        } else {
            self.out.put(&[Op::Mark as u8, Op::Dict as u8]);
        }
        self.put();
        Ok(())
    }

    fn items(&self, len: Option<usize>) -> Items {
        if self.proto == 0 || len == Some(1) {
            Items::Single
        } else {
            Items::Batched
        }
    }

    fn begin_tuple(&mut self, len: usize) -> Result<TupleKind> {
        if len == 0 {
            self.empty_tuple();
            return Ok(TupleKind::Empty);
        }
        if len <= 3 && self.proto >= 2 {
            return Ok(TupleKind::Short(len));
        }
        self.out.byte(Op::Mark as u8);
        Ok(TupleKind::Marked)
    }

    fn end_tuple(&mut self, kind: TupleKind, written: usize) -> Result<()> {
        match kind {
            TupleKind::Empty if written == 0 => return Ok(()),
            TupleKind::Short(n) if n == written => {
                self.out.byte([0, Op::Tuple1 as u8, Op::Tuple2 as u8, Op::Tuple3 as u8][n]);
            }
            TupleKind::Marked => self.out.byte(Op::Tuple as u8),
            _ => return Err(Error::ser("a tuple's length differs from the length it declared")),
        }
        self.put();
        Ok(())
    }

    #[cold]
    fn unhashable(&self, what: &str) -> Error {
        Error::ser(format!("unhashable type: '{what}' cannot be a dict key")).at(self.pos())
    }
}

/// The path segment of a dict entry, from its key: `.name`, `['a key']`, `[3]`.
#[cold]
fn key_segment<K: Serialize + ?Sized>(key: &K) -> String {
    match super::to_object(key, SerOptions::new()) {
        Ok(loaded) => {
            let v = loaded.value();
            match v.as_str() {
                Some(s)
                    if s.chars().next().is_some_and(|c| c == '_' || c.is_alphabetic())
                        && s.chars().all(|c| c == '_' || c.is_alphanumeric()) =>
                {
                    format!(".{s}")
                }
                _ => format!("[{v}]"),
            }
        }
        Err(_) => "[<key>]".into(),
    }
}

/// The minimal length of two's complement little-endian bytes.
fn minimal_len(b: &[u8]) -> usize {
    let mut n = b.len();
    while n > 1 && ((b[n - 1] == 0 && b[n - 2] & 0x80 == 0) || (b[n - 1] == 0xFF && b[n - 2] & 0x80 != 0)) {
        n -= 1;
    }
    n
}

/// Python's `raw-unicode-escape`, as the C pickler applies it to protocol 0 strs.
fn raw_unicode_escape(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for c in s.chars() {
        let cp = c as u32;
        if cp >= 0x10000 {
            out.extend_from_slice(b"\\U");
            for shift in (0..8).rev() {
                out.push(HEX[((cp >> (shift * 4)) & 0xF) as usize]);
            }
        } else if cp >= 256 || matches!(cp, 0x5C | 0 | 0x0A | 0x0D | 0x1A) {
            out.extend_from_slice(b"\\u");
            for shift in (0..4).rev() {
                out.push(HEX[((cp >> (shift * 4)) & 0xF) as usize]);
            }
        } else {
            out.push(cp as u8);
        }
    }
}

/// How a container's items are written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Items {
    /// APPEND / SETITEM after each (protocol 0, or a single item).
    Single,
    /// MARK ... APPENDS / SETITEMS per 1000.
    Batched,
}

#[derive(Clone, Copy)]
enum TupleKind {
    Empty,
    Short(usize),
    Marked,
}

/// A list, a tuple (also a list inside a dict key, which must be hashable) or a struct variant's
/// tuple.
pub(crate) struct SeqSer<'a, 'o, S> {
    ser: &'a mut Ser<'o, S>,
    kind: SeqKind,
    /// `kind` is `List(Batched)`.
    batched: bool,
    count: usize,
    batch: usize,
}

#[derive(Clone, Copy)]
enum SeqKind {
    List(Items),
    Tuple(TupleKind),
    /// A tuple variant's tuple inside its one-item dict.
    VariantTuple(TupleKind),
}

impl<S: Sink> SeqSer<'_, '_, S> {
    #[inline(always)]
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        let i = self.count;
        self.count += 1;
        if self.batched {
            if self.batch == 0 {
                self.ser.out.byte(Op::Mark as u8);
            }
            value.serialize(&mut *self.ser).map_err(|e| e.index(i))?;
            self.batch += 1;
            if self.batch == BATCH {
                self.ser.out.byte(Op::Appends as u8);
                self.batch = 0;
            }
            return Ok(());
        }
        value.serialize(&mut *self.ser).map_err(|e| e.index(i))?;
        if let SeqKind::List(Items::Single) = self.kind {
            self.ser.out.byte(Op::Append as u8);
        }
        Ok(())
    }

    fn finish(self) -> Result<()> {
        match self.kind {
            SeqKind::List(Items::Batched) => {
                if self.batch > 0 {
                    self.ser.out.byte(Op::Appends as u8);
                }
                Ok(())
            }
            SeqKind::List(Items::Single) => Ok(()),
            SeqKind::Tuple(k) => self.ser.end_tuple(k, self.count),
            SeqKind::VariantTuple(k) => {
                self.ser.end_tuple(k, self.count)?;
                // The end of the one-item dict `{variant: (...)}`.
                self.ser.out.byte(Op::SetItem as u8);
                Ok(())
            }
        }
    }
}

/// A dict, or a struct (as a dict, or as an instance whose state is that dict).
pub(crate) struct MapSer<'a, 'o, S> {
    ser: &'a mut Ser<'o, S>,
    items: Items,
    count: usize,
    batch: usize,
    /// Ends with BUILD (an instance's state).
    build: bool,
    /// Ends a `{variant: {...}}` too.
    variant: bool,
    /// Nothing was opened (an instance without state).
    empty: bool,
}

impl<S: Sink> MapSer<'_, '_, S> {
    #[inline]
    fn before_key(&mut self) {
        if self.items == Items::Batched && self.batch == 0 {
            self.ser.out.byte(Op::Mark as u8);
        }
    }

    #[inline]
    fn after_value(&mut self) {
        self.count += 1;
        match self.items {
            Items::Single => self.ser.out.byte(Op::SetItem as u8),
            Items::Batched => {
                self.batch += 1;
                if self.batch == BATCH {
                    self.ser.out.byte(Op::SetItems as u8);
                    self.batch = 0;
                }
            }
        }
    }

    fn finish(self) -> Result<()> {
        if !self.empty && self.items == Items::Batched {
            if self.batch > 0 {
                self.ser.out.byte(Op::SetItems as u8);
            } else if self.count > 0 && self.count % BATCH == 0 {
                // CPython's batch_dict_exact ends a dict of 1000·k items with an empty batch.
                self.ser.out.put(&[Op::Mark as u8, Op::SetItems as u8]);
            }
        }
        if self.build {
            self.ser.out.byte(Op::Build as u8);
        }
        if self.variant {
            self.ser.out.byte(Op::SetItem as u8);
        }
        Ok(())
    }

    #[inline]
    fn field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<()> {
        self.before_key();
        self.ser.out.boundary()?;
        self.ser.write_name(key)?;
        value.serialize(&mut *self.ser).map_err(|e| e.key(key))?;
        self.after_value();
        Ok(())
    }
}

macro_rules! int_serializers {
    ($($m:ident: $t:ty),*) => {
        $(
            #[inline]
            fn $m(self, v: $t) -> Result<()> {
                self.out.boundary()?;
                self.write_i64(v as i64);
                Ok(())
            }
        )*
    };
}

impl<'a, 'o, S: Sink> ser::Serializer for &'a mut Ser<'o, S> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = SeqSer<'a, 'o, S>;
    type SerializeTuple = SeqSer<'a, 'o, S>;
    type SerializeTupleStruct = SeqSer<'a, 'o, S>;
    type SerializeTupleVariant = SeqSer<'a, 'o, S>;
    type SerializeMap = MapSer<'a, 'o, S>;
    type SerializeStruct = MapSer<'a, 'o, S>;
    type SerializeStructVariant = MapSer<'a, 'o, S>;

    #[inline]
    fn serialize_bool(self, v: bool) -> Result<()> {
        self.out.boundary()?;
        if self.proto >= 2 {
            self.out.byte(if v { Op::NewTrue as u8 } else { Op::NewFalse as u8 });
        } else {
            self.out.put(if v { b"I01\n" } else { b"I00\n" });
        }
        Ok(())
    }

    int_serializers!(serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
                     serialize_u8: u8, serialize_u16: u16, serialize_u32: u32);

    #[inline]
    fn serialize_u64(self, v: u64) -> Result<()> {
        self.out.boundary()?;
        match i64::try_from(v) {
            Ok(i) => self.write_i64(i),
            Err(_) => self.write_i128(v as i128),
        }
        Ok(())
    }

    fn serialize_i128(self, v: i128) -> Result<()> {
        self.out.boundary()?;
        match i64::try_from(v) {
            Ok(i) => self.write_i64(i),
            Err(_) => self.write_i128(v),
        }
        Ok(())
    }

    fn serialize_u128(self, v: u128) -> Result<()> {
        self.out.boundary()?;
        self.write_u128(v);
        Ok(())
    }

    #[inline]
    fn serialize_f32(self, v: f32) -> Result<()> {
        self.out.boundary()?;
        self.write_f64(v as f64);
        Ok(())
    }

    #[inline]
    fn serialize_f64(self, v: f64) -> Result<()> {
        self.out.boundary()?;
        self.write_f64(v);
        Ok(())
    }

    fn serialize_char(self, v: char) -> Result<()> {
        let mut buf = [0; 4];
        self.serialize_str(v.encode_utf8(&mut buf))
    }

    #[inline]
    fn serialize_str(self, v: &str) -> Result<()> {
        self.out.boundary()?;
        self.write_str(v)
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<()> {
        if self.bigint {
            self.bigint = false;
            self.out.boundary()?;
            return self.write_long_bytes(v);
        }
        self.out.boundary()?;
        self.write_bytes(v)
    }

    #[inline]
    fn serialize_none(self) -> Result<()> {
        self.out.boundary()?;
        self.out.byte(Op::None as u8);
        Ok(())
    }

    #[inline]
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<()> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<()> {
        self.serialize_none()
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<()> {
        self.serialize_none()
    }

    fn serialize_unit_variant(self, _name: &'static str, _index: u32, variant: &'static str) -> Result<()> {
        self.out.boundary()?;
        self.write_name(variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, name: &'static str, value: &T) -> Result<()> {
        if name == BIGINT_TOKEN {
            self.bigint = true;
            let r = value.serialize(&mut *self);
            self.bigint = false;
            return r;
        }
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<()> {
        if self.in_key > 0 {
            return Err(self.unhashable("dict"));
        }
        self.out.boundary()?;
        self.empty_dict()?;
        self.out.boundary()?;
        self.write_name(variant)?;
        value.serialize(&mut *self).map_err(|e| e.key(variant))?;
        self.out.byte(Op::SetItem as u8);
        Ok(())
    }

    #[inline]
    fn serialize_seq(self, len: Option<usize>) -> Result<SeqSer<'a, 'o, S>> {
        self.out.boundary()?;
        if self.in_key > 0 {
            // A list cannot be a dict key: it is written as a tuple.
            self.out.byte(Op::Mark as u8);
            return Ok(SeqSer {
                ser: self,
                kind: SeqKind::Tuple(TupleKind::Marked),
                batched: false,
                count: 0,
                batch: 0,
            });
        }
        self.empty_list()?;
        let items = self.items(len);
        Ok(SeqSer { ser: self, kind: SeqKind::List(items), batched: items == Items::Batched, count: 0, batch: 0 })
    }

    fn serialize_tuple(self, len: usize) -> Result<SeqSer<'a, 'o, S>> {
        self.out.boundary()?;
        let kind = self.begin_tuple(len)?;
        Ok(SeqSer { ser: self, kind: SeqKind::Tuple(kind), batched: false, count: 0, batch: 0 })
    }

    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<SeqSer<'a, 'o, S>> {
        self.serialize_tuple(len)
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<SeqSer<'a, 'o, S>> {
        if self.in_key > 0 {
            return Err(self.unhashable("dict"));
        }
        self.out.boundary()?;
        self.empty_dict()?;
        self.out.boundary()?;
        self.write_name(variant)?;
        self.out.boundary()?;
        let kind = self.begin_tuple(len)?;
        Ok(SeqSer { ser: self, kind: SeqKind::VariantTuple(kind), batched: false, count: 0, batch: 0 })
    }

    #[inline]
    fn serialize_map(self, len: Option<usize>) -> Result<MapSer<'a, 'o, S>> {
        if self.in_key > 0 {
            return Err(self.unhashable("dict"));
        }
        self.out.boundary()?;
        self.empty_dict()?;
        let items = self.items(len);
        Ok(MapSer { ser: self, items, count: 0, batch: 0, build: false, variant: false, empty: false })
    }

    #[inline]
    fn serialize_struct(self, name: &'static str, len: usize) -> Result<MapSer<'a, 'o, S>> {
        if self.in_key > 0 {
            return Err(self.unhashable("dict"));
        }
        self.out.boundary()?;
        let items = self.items(Some(len));
        if let Some((module, qualname)) = self.class_of(name) {
            self.begin_instance(module, qualname)?;
            if len == 0 {
                // An empty `__dict__` is no state: CPython writes no BUILD.
                return Ok(MapSer { ser: self, items, count: 0, batch: 0, build: false, variant: false, empty: true });
            }
            self.out.boundary()?;
            self.empty_dict()?;
            return Ok(MapSer { ser: self, items, count: 0, batch: 0, build: true, variant: false, empty: false });
        }
        self.empty_dict()?;
        Ok(MapSer { ser: self, items, count: 0, batch: 0, build: false, variant: false, empty: false })
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<MapSer<'a, 'o, S>> {
        if self.in_key > 0 {
            return Err(self.unhashable("dict"));
        }
        self.out.boundary()?;
        self.empty_dict()?;
        self.out.boundary()?;
        self.write_name(variant)?;
        self.out.boundary()?;
        self.empty_dict()?;
        let items = self.items(Some(len));
        Ok(MapSer { ser: self, items, count: 0, batch: 0, build: false, variant: true, empty: false })
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

impl<S: Sink> ser::SerializeSeq for SeqSer<'_, '_, S> {
    type Ok = ();
    type Error = Error;

    #[inline]
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.element(value)
    }

    #[inline]
    fn end(self) -> Result<()> {
        self.finish()
    }
}

impl<S: Sink> ser::SerializeTuple for SeqSer<'_, '_, S> {
    type Ok = ();
    type Error = Error;

    #[inline]
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.element(value)
    }

    #[inline]
    fn end(self) -> Result<()> {
        self.finish()
    }
}

impl<S: Sink> ser::SerializeTupleStruct for SeqSer<'_, '_, S> {
    type Ok = ();
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.element(value)
    }

    fn end(self) -> Result<()> {
        self.finish()
    }
}

impl<S: Sink> ser::SerializeTupleVariant for SeqSer<'_, '_, S> {
    type Ok = ();
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.element(value)
    }

    fn end(self) -> Result<()> {
        self.finish()
    }
}

impl<S: Sink> ser::SerializeMap for MapSer<'_, '_, S> {
    type Ok = ();
    type Error = Error;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<()> {
        self.before_key();
        self.ser.in_key += 1;
        let r = key.serialize(&mut *self.ser);
        self.ser.in_key -= 1;
        r.map_err(|e| e.segment(format!("[<key {}>]", self.count)))
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        value.serialize(&mut *self.ser).map_err(|e| e.segment(format!("[<value {}>]", self.count)))?;
        self.after_value();
        Ok(())
    }

    fn serialize_entry<K: Serialize + ?Sized, V: Serialize + ?Sized>(&mut self, key: &K, value: &V) -> Result<()> {
        self.serialize_key(key)?;
        value.serialize(&mut *self.ser).map_err(|e| e.segment(key_segment(key)))?;
        self.after_value();
        Ok(())
    }

    fn end(self) -> Result<()> {
        self.finish()
    }
}

impl<S: Sink> ser::SerializeStruct for MapSer<'_, '_, S> {
    type Ok = ();
    type Error = Error;

    #[inline]
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<()> {
        if self.empty {
            return Err(Error::ser("a struct declared no fields but wrote one").key(key));
        }
        self.field(key, value)
    }

    #[inline]
    fn end(self) -> Result<()> {
        self.finish()
    }
}

impl<S: Sink> ser::SerializeStructVariant for MapSer<'_, '_, S> {
    type Ok = ();
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<()> {
        self.field(key, value)
    }

    fn end(self) -> Result<()> {
        self.finish()
    }
}
