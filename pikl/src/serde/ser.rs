//! The serde writer: opcodes straight from serde's calls, as CPython's pickler writes the
//! equivalent Python value (same opcodes, same memo, same batches and frames).

use std::collections::HashMap;
use std::io::Write;
use std::ptr;

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
/// Free bytes the buffer has after every [`Out::boundary`] and every checked write: room for
/// one atom (the longest, a short str with its MEMOIZE, is 35 bytes) written without a
/// capacity check.
const SLACK: usize = 64;

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
/// framing is on, and is committed at the first value boundary once it holds 64 KiB. Its
/// header's 9 bytes are reserved when it opens and filled in when it is committed.
///
/// Writes come in two kinds. Checked ones ([`Out::put`], [`Out::byte`]) make room first and
/// leave at least [`SLACK`] bytes free after them; so does [`Out::boundary`], called before
/// every value. The unchecked ones ([`Out::raw`], [`Out::raw_short`]) write one value's few
/// bytes straight after a boundary or a checked write, into that slack.
struct Out<S> {
    buf: Vec<u8>,
    framing: bool,
    /// Position of the open frame's header in `buf`.
    frame_start: usize,
    /// The open frame is committed (or, without frames, the buffer is handed to the sink) at
    /// the first boundary once `buf` is this long.
    frame_limit: usize,
    /// [`Out::boundary`] does something once `buf` is this long: the smaller of `frame_limit`
    /// and the length that leaves less than [`SLACK`] bytes free.
    limit: usize,
    /// Bytes already handed to the sink.
    flushed: u64,
    sink: S,
}

impl<S: Sink> Out<S> {
    fn new(sink: S) -> Self {
        let frame_limit = if S::STREAM { FLUSH_SIZE } else { usize::MAX };
        let mut out = Out {
            buf: Vec::with_capacity(1 << 12),
            framing: false,
            frame_start: 0,
            frame_limit,
            limit: 0,
            flushed: 0,
            sink,
        };
        out.set_limit();
        out
    }

    #[inline(always)]
    fn set_limit(&mut self) {
        self.limit = self.frame_limit.min(self.buf.capacity().saturating_sub(SLACK));
    }

    #[inline]
    fn pos(&self) -> u64 {
        self.flushed + self.buf.len() as u64
    }

    /// Makes room for `n` bytes and [`SLACK`] more.
    #[cold]
    #[inline(never)]
    fn grow(&mut self, n: usize) {
        self.buf.reserve(n + SLACK);
        self.set_limit();
    }

    /// A checked write.
    #[inline(always)]
    fn put(&mut self, b: &[u8]) {
        let len = self.buf.len();
        if self.buf.capacity() - len < b.len() + SLACK {
            self.grow(b.len());
        }
        // SAFETY: the capacity was checked (or made) just above.
        unsafe {
            ptr::copy_nonoverlapping(b.as_ptr(), self.buf.as_mut_ptr().add(len), b.len());
            self.buf.set_len(len + b.len());
        }
    }

    /// Once the first `done` of a container's `total` items (the length serde announced, 0 if
    /// none) have taken the bytes since `start`, reserves room for the rest at that rate (plus
    /// an eighth) in one allocation, instead of doubling the buffer over and over: each
    /// regrowth copies the buffer and faults in fresh pages (`to_vec` of 5M ints in the serde
    /// bench: 23.3 -> 9.8 ms). Only when the buffer is the result and at least as many items
    /// are still to come; a hint that asks too much (a lying `Serialize`) is ignored.
    #[cold]
    fn presize(&mut self, start: usize, done: usize, total: usize) {
        /// More than this is left to ordinary growth.
        const MAX_PRESIZE: usize = 1 << 32;
        if S::STREAM || done == 0 || total <= 2 * done {
            return;
        }
        let per_item = (self.buf.len().saturating_sub(start)) / done;
        let rest = (total - done).saturating_mul(per_item + per_item / 8 + 1);
        if rest <= MAX_PRESIZE && self.buf.try_reserve_exact(rest.saturating_add(SLACK)).is_ok() {
            self.set_limit();
        }
    }

    /// Makes room for `n` bytes of unchecked writes.
    #[inline(always)]
    fn ensure(&mut self, n: usize) {
        if self.buf.capacity() - self.buf.len() < n + SLACK {
            self.grow(n);
        }
    }

    #[inline(always)]
    fn byte(&mut self, b: u8) {
        self.put(&[b]);
    }

    /// Takes back the MARK just written.
    #[inline]
    fn unmark(&mut self) {
        debug_assert_eq!(self.buf.last(), Some(&(Op::Mark as u8)));
        self.buf.pop();
    }

    /// Writes the `N` bytes of `b` at the end of the buffer and keeps the first `keep` of them.
    ///
    /// # Safety
    ///
    /// Only into the slack: after a boundary or a checked write, with at most [`SLACK`] bytes
    /// written (by this and other unchecked writes) since.
    #[inline(always)]
    unsafe fn raw<const N: usize>(&mut self, b: [u8; N], keep: usize) {
        let len = self.buf.len();
        debug_assert!(N <= SLACK && keep <= N && self.buf.capacity() - len >= N);
        ptr::write_unaligned(self.buf.as_mut_ptr().add(len).cast::<[u8; N]>(), b);
        self.buf.set_len(len + keep);
    }

    /// An int from [`encode_int`]: `bytes` at offset 2, then `head` at offset 0, `len` kept.
    ///
    /// # Safety
    ///
    /// As [`Out::raw`] (10 bytes).
    #[inline(always)]
    unsafe fn raw_int(&mut self, head: u64, bytes: u64, len: usize) {
        let n = self.buf.len();
        debug_assert!(self.buf.capacity() - n >= 10);
        let dst = self.buf.as_mut_ptr().add(n);
        ptr::write_unaligned(dst.add(2).cast::<[u8; 8]>(), bytes.to_le_bytes());
        ptr::write_unaligned(dst.cast::<[u8; 8]>(), head.to_le_bytes());
        self.buf.set_len(n + len);
    }

    /// Two header bytes, up to 32 bytes of data and an optional trailing byte, with
    /// fixed-size copies (no call to `memcpy` for short strs).
    ///
    /// # Safety
    ///
    /// As [`Out::raw`]: this writes up to 35 bytes.
    #[inline(always)]
    unsafe fn raw_short(&mut self, op: u8, data: &[u8], trailer: Option<u8>) {
        let n = data.len();
        let len = self.buf.len();
        debug_assert!(n <= 32 && self.buf.capacity() - len >= 35);
        let dst = self.buf.as_mut_ptr().add(len);
        ptr::write_unaligned(dst.cast::<[u8; 2]>(), [op, n as u8]);
        let d = dst.add(2);
        let s = data.as_ptr();
        if n >= 16 {
            ptr::write_unaligned(d.cast::<[u8; 16]>(), ptr::read_unaligned(s.cast::<[u8; 16]>()));
            ptr::write_unaligned(
                d.add(n - 16).cast::<[u8; 16]>(),
                ptr::read_unaligned(s.add(n - 16).cast::<[u8; 16]>()),
            );
        } else if n >= 8 {
            ptr::write_unaligned(d.cast::<[u8; 8]>(), ptr::read_unaligned(s.cast::<[u8; 8]>()));
            ptr::write_unaligned(d.add(n - 8).cast::<[u8; 8]>(), ptr::read_unaligned(s.add(n - 8).cast::<[u8; 8]>()));
        } else if n >= 4 {
            ptr::write_unaligned(d.cast::<[u8; 4]>(), ptr::read_unaligned(s.cast::<[u8; 4]>()));
            ptr::write_unaligned(d.add(n - 4).cast::<[u8; 4]>(), ptr::read_unaligned(s.add(n - 4).cast::<[u8; 4]>()));
        } else if n > 0 {
            // 1 to 3 bytes: first, middle and last.
            *d = *s;
            *d.add(n / 2) = *s.add(n / 2);
            *d.add(n - 1) = *s.add(n - 1);
        }
        let mut end = len + 2 + n;
        if let Some(t) = trailer {
            *dst.add(2 + n) = t;
            end += 1;
        }
        self.buf.set_len(end);
    }

    fn start_framing(&mut self) {
        self.framing = true;
        self.open_frame();
    }

    fn open_frame(&mut self) {
        self.frame_start = self.buf.len();
        self.put(&[0; FRAME_HEADER]);
        self.frame_limit = self.frame_start + FRAME_HEADER + FRAME_SIZE_TARGET;
        self.set_limit();
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

    /// Called before each value is written (CPython's `_Pickler_OpcodeBoundary`); leaves at
    /// least [`SLACK`] bytes free.
    #[inline(always)]
    fn boundary(&mut self) -> Result<()> {
        if self.buf.len() >= self.limit {
            self.boundary_slow()?;
        }
        Ok(())
    }

    #[cold]
    #[inline(never)]
    fn boundary_slow(&mut self) -> Result<()> {
        if self.buf.len() >= self.frame_limit {
            if self.framing {
                self.commit_frame();
                self.flush_buf()?;
                self.open_frame();
            } else {
                self.flush_buf()?;
                self.frame_limit = if S::STREAM { self.buf.len() + FLUSH_SIZE } else { usize::MAX };
            }
        }
        if self.buf.capacity() - self.buf.len() < SLACK {
            self.buf.reserve(SLACK);
        }
        self.set_limit();
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
                self.set_limit_after_flush();
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

    /// Without frames, the next flush is due [`FLUSH_SIZE`] bytes after the one just made.
    fn set_limit_after_flush(&mut self) {
        if !self.framing {
            self.frame_limit = if S::STREAM { self.buf.len() + FLUSH_SIZE } else { usize::MAX };
            self.set_limit();
        }
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

/// Writes the pickle of `value` to `sink`; returns the buffer (empty when `sink` streams).
///
/// The writer is compiled three times over: protocol 4+ memoizing (the default), protocol 4+
/// without memo, and everything else (protocols 0 to 3), so the common paths test neither the
/// protocol nor the memo.
pub(crate) fn dump<S: Sink, T: Serialize + ?Sized>(sink: S, value: &T, opts: &SerOptions) -> Result<Vec<u8>> {
    let proto = opts.get_protocol();
    if proto > crate::HIGHEST_PROTOCOL {
        return Err(Error::ser(format!("pickle protocol must be <= {}, not {proto}", crate::HIGHEST_PROTOCOL)));
    }
    match (proto >= 4, opts.get_memoize()) {
        (true, true) => Ser::<S, true, true>::new(sink, opts).run(value),
        (true, false) => Ser::<S, true, false>::new(sink, opts).run(value),
        _ => Ser::<S, false, false>::new(sink, opts).run(value),
    }
}

/// The writer of one pickle. `P4`: the protocol is 4 or 5 (frames, MEMOIZE, every binary
/// opcode). `MEMO` (with `P4` only): memoizing; below protocol 4 the memo is `memoize`.
pub(crate) struct Ser<'o, S, const P4: bool, const MEMO: bool> {
    out: Out<S>,
    proto: u8,
    memoize: bool,
    fix_imports: bool,
    opts: &'o SerOptions,
    has_classes: bool,
    /// Memo entries written so far.
    memo_len: u64,
    /// Memo indices of CPython's shared strs: one Latin-1 character (by code point) or empty
    /// (256).
    chars: Vec<u32>,
    /// Memo indices of CPython's shared bytes: one byte, or empty (256).
    bytes1: Vec<u32>,
    /// Memo indices of interned strs (field and variant names, module names), by content.
    names: HashMap<&'static str, u32, foldhash::fast::RandomState>,
    /// The last names looked up, by address: most records repeat the same few.
    name_cache: [(usize, usize, u32); 64],
    /// Field names by their position in their struct: see [`Ser::write_field_name`].
    fields: [FieldSlot; FIELD_SLOTS],
    /// Module names and globals written, by content.
    modules: HashMap<String, u32>,
    globals: HashMap<(String, String), u32>,
    latin1: u32,
    /// Inside a dict key: sequences become tuples, dicts are refused.
    in_key: u32,
    /// The next bytes are a big int's (see [`super::bigint`]).
    bigint: bool,
    /// The last struct name looked up in the options, and its class.
    last_struct: (usize, Option<(&'o str, &'o str)>),
}

/// Struct positions with a slot of [`Ser::fields`] (later positions share them).
const FIELD_SLOTS: usize = 16;

/// A field name by position: its address and length, and its BINGET or LONG_BINGET.
#[derive(Clone, Copy)]
struct FieldSlot {
    addr: usize,
    len: usize,
    /// The GET's bytes, of which `get_len` count.
    get: u64,
    get_len: u64,
}

/// A memo index as kept in the writer's tables: `NIL` past the 2^32 - 1 that GET can reach
/// (such a value is written again rather than fetched).
#[inline(always)]
fn memo_index(i: u64) -> u32 {
    if i < NIL as u64 {
        i as u32
    } else {
        NIL
    }
}

/// The key of CPython's shared strs (the empty str and one Latin-1 character).
#[inline]
fn shared_str_key(s: &str) -> Option<usize> {
    let mut cs = s.chars();
    match (cs.next(), cs.next()) {
        (None, _) => Some(256),
        (Some(c), None) if (c as u32) < 256 => Some(c as usize),
        _ => None,
    }
}

/// How an int is written from protocol 2, by its count of leading redundant bits `lz` (1 to
/// 64; those of `i ^ (i >> 63)`), plus 65 for a negative int: `[opcode, length, n, shift]`,
/// where LONG1's `n` is its count of bytes (5 to 8; 0 for the others) and `shift` is 8 when the
/// int's bytes follow `n`.
const INT_FORMS: [[u8; 4]; 130] = {
    let mut t = [[0u8; 4]; 130];
    let mut lz = 1;
    while lz <= 64 {
        let long_n = ((72 - lz) / 8) as u8;
        let long = [Op::Long1 as u8, 2 + long_n, long_n, 8];
        t[lz] = if lz >= 56 {
            [Op::BinInt1 as u8, 2, 0, 0]
        } else if lz >= 48 {
            [Op::BinInt2 as u8, 3, 0, 0]
        } else if lz >= 33 {
            [Op::BinInt as u8, 5, 0, 0]
        } else {
            long
        };
        t[65 + lz] = if lz >= 33 { [Op::BinInt as u8, 5, 0, 0] } else { long };
        lz += 1;
    }
    t
};

/// An int as CPython writes it from protocol 2: BININT1, BININT2, BININT, or LONG1 with its
/// minimal two's complement bytes (5 to 8 of them). Computed without branches on the value
/// (the widths of real data are rarely predictable), as two overlapping words: the opcode and
/// the start of its argument, then the int's 8 bytes (LONG1's bytes, after its length byte),
/// and how many of those 10 bytes to keep.
#[inline(always)]
fn encode_int(i: i64) -> (u64, u64, usize) {
    let u = i as u64;
    let sign = (i >> 63) as u64;
    let lz = (u ^ sign).leading_zeros() as usize;
    let [op, len, n, shift] = INT_FORMS[lz + (sign as usize & 65)];
    let first = (u << shift) | n as u64;
    (op as u64 | (first << 8), u, len as usize)
}

impl<'o, S: Sink, const P4: bool, const MEMO: bool> Ser<'o, S, P4, MEMO> {
    fn new(sink: S, opts: &'o SerOptions) -> Self {
        Ser {
            out: Out::new(sink),
            proto: opts.get_protocol(),
            memoize: opts.get_memoize(),
            fix_imports: opts.get_fix_imports(),
            opts,
            has_classes: opts.has_classes(),
            memo_len: 0,
            chars: vec![NIL; 257],
            bytes1: vec![NIL; 257],
            names: HashMap::default(),
            name_cache: [(0, 0, NIL); 64],
            fields: [FieldSlot { addr: 0, len: 0, get: 0, get_len: 0 }; FIELD_SLOTS],
            modules: HashMap::new(),
            globals: HashMap::new(),
            latin1: NIL,
            in_key: 0,
            bigint: false,
            last_struct: (0, None),
        }
    }

    /// Writes the whole pickle of `value`.
    fn run<T: Serialize + ?Sized>(mut self, value: &T) -> Result<Vec<u8>> {
        if self.proto >= 2 {
            self.out.put(&[Op::Proto as u8, self.proto]);
        }
        if P4 {
            self.out.start_framing();
        }
        value.serialize(&mut self)?;
        self.out.byte(Op::Stop as u8);
        self.out.finish()?;
        Ok(self.out.buf)
    }

    #[inline]
    fn pos(&self) -> u64 {
        self.out.pos()
    }

    /// Memoizing.
    #[inline(always)]
    fn memo(&self) -> bool {
        if P4 {
            MEMO
        } else {
            self.memoize
        }
    }

    /// The protocol is at least `p`.
    #[inline(always)]
    fn proto_ge(&self, p: u8) -> bool {
        (P4 && p <= 4) || self.proto >= p
    }

    // ---- memo ----

    /// Memoizes the value just written; returns its index (`NIL` when memoizing is off, or
    /// past the indices GET can reach).
    #[inline(always)]
    fn put(&mut self) -> u32 {
        if P4 {
            if !MEMO {
                return NIL;
            }
            self.out.byte(Op::Memoize as u8);
            return self.count_memo();
        }
        self.put_slow()
    }

    /// Counts a MEMOIZE written by a fused write; returns its index.
    #[inline(always)]
    fn count_memo(&mut self) -> u32 {
        let idx = self.memo_len;
        self.memo_len += 1;
        memo_index(idx)
    }

    /// PUT, BINPUT or LONG_BINPUT, below protocol 4 (where a PUT's index must fit 32 bits).
    #[inline(never)]
    fn put_slow(&mut self) -> u32 {
        if !self.memoize || self.memo_len >= (NIL - 1) as u64 {
            return NIL;
        }
        let idx = self.memo_len as u32;
        self.memo_len += 1;
        if self.proto >= 1 {
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

    /// BINGET or LONG_BINGET of a memo entry (a checked write).
    #[inline(always)]
    fn get(&mut self, idx: u32) {
        self.out.ensure(5);
        // SAFETY: room was made just above.
        unsafe { self.get_raw(idx) }
    }

    /// BINGET or LONG_BINGET, unchecked.
    ///
    /// # Safety
    ///
    /// As [`Out::raw`] (5 bytes).
    #[inline(always)]
    unsafe fn get_raw(&mut self, idx: u32) {
        if self.proto_ge(1) {
            let b = idx.to_le_bytes();
            if idx < 256 {
                self.out.raw([Op::BinGet as u8, b[0]], 2);
            } else {
                self.out.raw([Op::LongBinGet as u8, b[0], b[1], b[2], b[3]], 5);
            }
        } else {
            self.get_text(idx);
        }
    }

    #[inline(never)]
    fn get_text(&mut self, idx: u32) {
        self.out.byte(Op::Get as u8);
        self.out.put(itoa::Buffer::new().format(idx).as_bytes());
        self.out.byte(b'\n');
    }

    // ---- atoms ----

    /// An int.
    ///
    /// # Safety
    ///
    /// As [`Out::raw`] (10 bytes).
    #[inline(always)]
    unsafe fn write_i64(&mut self, i: i64) {
        if self.proto_ge(2) {
            let (head, bytes, len) = encode_int(i);
            self.out.raw_int(head, bytes, len);
            return;
        }
        self.write_i64_slow(i);
    }

    /// An int, checked.
    fn write_i64_checked(&mut self, i: i64) {
        self.out.ensure(10);
        // SAFETY: room was made just above.
        unsafe { self.write_i64(i) }
    }

    /// Protocols 0 and 1.
    #[inline(never)]
    fn write_i64_slow(&mut self, i: i64) {
        if let Ok(small) = i32::try_from(i) {
            if self.proto >= 1 {
                if (0..=0xFF).contains(&small) {
                    return self.out.put(&[Op::BinInt1 as u8, small as u8]);
                }
                if (0..=0xFFFF).contains(&small) {
                    let b = (small as u16).to_le_bytes();
                    return self.out.put(&[Op::BinInt2 as u8, b[0], b[1]]);
                }
                let b = small.to_le_bytes();
                return self.out.put(&[Op::BinInt as u8, b[0], b[1], b[2], b[3]]);
            }
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
        if self.proto_ge(2) {
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
            return self.write_i64_checked(i);
        }
        if let Ok(i) = i128::try_from(u) {
            return self.write_i128(i);
        }
        if self.proto_ge(2) {
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
            self.write_i64_checked(i64::from_le_bytes(buf));
            return Ok(());
        }
        if self.proto_ge(2) {
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

    /// A float.
    ///
    /// # Safety
    ///
    /// As [`Out::raw`] (9 bytes).
    #[inline(always)]
    unsafe fn write_f64(&mut self, f: f64) {
        if self.proto_ge(1) {
            let b = f.to_be_bytes();
            self.out.raw([Op::BinFloat as u8, b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]], 9);
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

    /// A str's opcode and data, without memoizing (checked writes).
    fn str_data(&mut self, s: &str) -> Result<()> {
        let n = s.len();
        if self.proto_ge(4) && n <= 32 {
            self.out.ensure(35);
            // SAFETY: room was made just above.
            unsafe { self.out.raw_short(Op::ShortBinUnicode as u8, s.as_bytes(), None) };
            return Ok(());
        }
        self.str_data_long(s)
    }

    #[inline(never)]
    fn str_data_long(&mut self, s: &str) -> Result<()> {
        let n = s.len();
        if self.proto_ge(4) && n <= 0xFF {
            self.out.put(&[Op::ShortBinUnicode as u8, n as u8]);
            self.out.put(s.as_bytes());
            return Ok(());
        }
        if self.proto_ge(1) {
            if n > 0xFFFF_FFFF {
                if !self.proto_ge(4) {
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
        crate::pickler::raw_unicode_escape(s.chars().map(u32::from), &mut text);
        text.push(b'\n');
        self.out.put(&text);
        Ok(())
    }

    /// A str value: CPython's one-character and empty strs are shared objects, so they are
    /// memoized by content; other strs are fresh objects.
    ///
    /// # Safety
    ///
    /// As [`Out::raw`] (35 bytes).
    #[inline(always)]
    unsafe fn write_str(&mut self, s: &str) -> Result<()> {
        let n = s.len();
        if self.memo() && n <= 2 {
            if let Some(k) = shared_str_key(s) {
                return self.write_shared_str(s, k);
            }
        }
        if P4 && n <= 32 {
            if MEMO {
                // SHORT_BINUNICODE and MEMOIZE in one write.
                self.out.raw_short(Op::ShortBinUnicode as u8, s.as_bytes(), Some(Op::Memoize as u8));
                self.count_memo();
            } else {
                self.out.raw_short(Op::ShortBinUnicode as u8, s.as_bytes(), None);
            }
            return Ok(());
        }
        self.str_data(s)?;
        self.put();
        Ok(())
    }

    #[inline(never)]
    fn write_shared_str(&mut self, s: &str, k: usize) -> Result<()> {
        if self.chars[k] != NIL {
            self.get(self.chars[k]);
            return Ok(());
        }
        self.str_data(s)?;
        self.chars[k] = self.put();
        Ok(())
    }

    /// An interned str (a field or variant name): written once, then fetched from the memo.
    ///
    /// # Safety
    ///
    /// As [`Out::raw`] (35 bytes).
    #[inline(always)]
    unsafe fn write_name(&mut self, s: &'static str) -> Result<()> {
        self.write_name_idx(s).map(drop)
    }

    /// [`Ser::write_name`], returning the name's memo index (`NIL` when it has none).
    ///
    /// # Safety
    ///
    /// As [`Out::raw`] (35 bytes).
    #[inline(always)]
    unsafe fn write_name_idx(&mut self, s: &'static str) -> Result<u32> {
        if !self.memo() {
            if P4 && s.len() <= 32 {
                self.out.raw_short(Op::ShortBinUnicode as u8, s.as_bytes(), None);
                return Ok(NIL);
            }
            return self.str_data(s).map(|()| NIL);
        }
        let addr = s.as_ptr() as usize;
        let slot = (addr.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) & 63;
        let (a, l, idx) = self.name_cache[slot];
        if a == addr && l == s.len() {
            self.get_raw(idx);
            return Ok(idx);
        }
        self.write_name_slow(s, addr, slot)
    }

    #[cold]
    fn write_name_slow(&mut self, s: &'static str, addr: usize, slot: usize) -> Result<u32> {
        let idx = match self.names.get(s) {
            Some(&idx) => {
                self.get(idx);
                idx
            }
            None => {
                // One-character names are CPython's shared strs as well.
                let single = shared_str_key(s);
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
        if idx != NIL {
            self.names.insert(s, idx);
            self.name_cache[slot] = (addr, s.len(), idx);
        }
        Ok(idx)
    }

    /// A struct's field name, the `pos`-th of its struct: as [`Ser::write_name`], but first
    /// looked up by position (a struct's fields come in the same order every time), with its
    /// GET ready to copy.
    ///
    /// # Safety
    ///
    /// As [`Out::raw`] (35 bytes).
    #[inline(always)]
    unsafe fn write_field_name(&mut self, s: &'static str, pos: usize) -> Result<()> {
        if !self.memo() || !self.proto_ge(1) {
            return self.write_name(s);
        }
        let f = &self.fields[pos % FIELD_SLOTS];
        if f.addr == s.as_ptr() as usize && f.len == s.len() {
            let (get, n) = (f.get, f.get_len);
            self.out.raw(get.to_le_bytes(), n as usize);
            return Ok(());
        }
        self.write_field_name_slow(s, pos)
    }

    #[inline(never)]
    fn write_field_name_slow(&mut self, s: &'static str, pos: usize) -> Result<()> {
        // SAFETY: called right after a boundary.
        let idx = unsafe { self.write_name_idx(s)? };
        if idx != NIL {
            let b = idx.to_le_bytes();
            let (get, get_len) = if idx < 256 {
                ([Op::BinGet as u8, b[0], 0, 0, 0, 0, 0, 0], 2)
            } else {
                ([Op::LongBinGet as u8, b[0], b[1], b[2], b[3], 0, 0, 0], 5)
            };
            self.fields[pos % FIELD_SLOTS] =
                FieldSlot { addr: s.as_ptr() as usize, len: s.len(), get: u64::from_le_bytes(get), get_len };
        }
        Ok(())
    }

    fn write_bytes(&mut self, b: &[u8]) -> Result<()> {
        let single = match b {
            [] => Some(256),
            [c] => Some(*c as usize),
            _ => None,
        };
        if let Some(k) = single.filter(|_| self.memo()) {
            if self.bytes1[k] != NIL {
                self.get(self.bytes1[k]);
                return Ok(());
            }
        }
        if self.proto_ge(3) {
            let n = b.len();
            if n <= 0xFF {
                self.out.payload(&[Op::ShortBinBytes as u8, n as u8], b)?;
            } else if n <= 0xFFFF_FFFF {
                let l = (n as u32).to_le_bytes();
                self.out.payload(&[Op::BinBytes as u8, l[0], l[1], l[2], l[3]], b)?;
            } else {
                if !self.proto_ge(4) {
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
            let text = crate::latin1::decode(b);
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
        if self.proto_ge(1) {
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
        if self.proto_ge(4) {
            self.out.boundary()?;
            match self.modules.get(module) {
                Some(&idx) if self.memo() => self.get(idx),
                _ => {
                    self.str_data(module)?;
                    let idx = self.put();
                    if self.memo() && idx != NIL {
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
        if self.memo() && idx != NIL {
            self.globals.insert((module.to_owned(), name.to_owned()), idx);
        }
        Ok(())
    }

    /// The class a struct is written as, if any.
    #[inline(always)]
    fn class_of(&mut self, name: &'static str) -> Option<(&'o str, &'o str)> {
        if !self.has_classes {
            return None;
        }
        self.class_of_slow(name)
    }

    #[inline(never)]
    fn class_of_slow(&mut self, name: &'static str) -> Option<(&'o str, &'o str)> {
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
        if self.proto_ge(2) {
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

    /// An empty list, memoized.
    ///
    /// # Safety
    ///
    /// As [`Out::raw`] (2 bytes).
    #[inline(always)]
    unsafe fn empty_list(&mut self) {
        self.empty_container(Op::EmptyList as u8, Op::List as u8)
    }

    /// An empty dict, memoized.
    ///
    /// # Safety
    ///
    /// As [`Out::raw`] (2 bytes).
    #[inline(always)]
    unsafe fn empty_dict(&mut self) {
        self.empty_container(Op::EmptyDict as u8, Op::Dict as u8)
    }

    #[inline(always)]
    unsafe fn empty_container(&mut self, empty: u8, from_mark: u8) {
        if P4 {
            if MEMO {
                self.out.raw([empty, Op::Memoize as u8], 2);
                self.count_memo();
            } else {
                self.out.raw([empty], 1);
            }
            return;
        }
        if self.proto >= 1 {
            self.out.byte(empty);
        } else {
            self.out.put(&[Op::Mark as u8, from_mark]);
        }
        self.put();
    }

    #[inline(always)]
    fn items(&self, len: Option<usize>) -> Items {
        if !self.proto_ge(1) || len == Some(1) {
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
        if len <= 3 && self.proto_ge(2) {
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
pub(crate) struct SeqSer<'a, 'o, S, const P4: bool, const MEMO: bool> {
    ser: &'a mut Ser<'o, S, P4, MEMO>,
    kind: SeqKind,
    count: usize,
    /// [`SeqSer::end_batch`] is due once `count` reaches this: every [`BATCH`] items of a
    /// batched list, every item of a list of single APPENDs, never for a tuple.
    batch_end: usize,
    /// The length serde announced (0 if none) and where the items began: see [`Out::presize`].
    len: usize,
    start: usize,
}

#[derive(Clone, Copy)]
enum SeqKind {
    List(Items),
    Tuple(TupleKind),
    /// A tuple variant's tuple inside its one-item dict.
    VariantTuple(TupleKind),
}

impl<'a, 'o, S: Sink, const P4: bool, const MEMO: bool> SeqSer<'a, 'o, S, P4, MEMO> {
    /// A list whose EMPTY_LIST (and memo entry) was just written; a batched list opens its first
    /// batch with a MARK now (taken back if no item comes).
    ///
    /// # Safety
    ///
    /// As [`Out::raw`] (1 byte).
    #[inline(always)]
    unsafe fn list(ser: &'a mut Ser<'o, S, P4, MEMO>, items: Items, len: Option<usize>) -> Self {
        let start = ser.out.buf.len();
        let len = len.unwrap_or(0);
        match items {
            Items::Batched => {
                ser.out.raw([Op::Mark as u8], 1);
                SeqSer { ser, kind: SeqKind::List(items), count: 0, batch_end: BATCH, len, start }
            }
            Items::Single => SeqSer { ser, kind: SeqKind::List(items), count: 0, batch_end: 1, len, start },
        }
    }

    fn tuple(ser: &'a mut Ser<'o, S, P4, MEMO>, kind: SeqKind) -> Self {
        SeqSer { ser, kind, count: 0, batch_end: usize::MAX, len: 0, start: 0 }
    }

    #[inline(always)]
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        let i = self.count;
        value.serialize(&mut *self.ser).map_err(|e| e.index(i))?;
        self.count = i + 1;
        if self.count == self.batch_end {
            self.end_batch();
        }
        Ok(())
    }

    /// APPENDS and the next batch's MARK, or a single item's APPEND.
    #[inline]
    fn end_batch(&mut self) {
        if let SeqKind::List(Items::Batched) = self.kind {
            if self.batch_end == BATCH {
                self.ser.out.presize(self.start, BATCH, self.len);
            }
            self.ser.out.put(&[Op::Appends as u8, Op::Mark as u8]);
            self.batch_end += BATCH;
        } else {
            self.ser.out.byte(Op::Append as u8);
            self.batch_end += 1;
        }
    }

    #[inline]
    fn finish(self) -> Result<()> {
        match self.kind {
            SeqKind::List(Items::Batched) => {
                if self.count + BATCH == self.batch_end {
                    // No item since the batch's MARK, the last byte written.
                    self.ser.out.unmark();
                } else {
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
pub(crate) struct MapSer<'a, 'o, S, const P4: bool, const MEMO: bool> {
    ser: &'a mut Ser<'o, S, P4, MEMO>,
    items: Items,
    count: usize,
    /// [`MapSer::end_batch`] is due once `count` reaches this: every [`BATCH`] items of a
    /// batched dict, every item of a dict of single SETITEMs.
    batch_end: usize,
    /// Ends with BUILD (an instance's state).
    build: bool,
    /// Ends a `{variant: {...}}` too.
    variant: bool,
    /// Nothing was opened (an instance without state).
    empty: bool,
    /// The length serde announced (0 if none) and where the items began: see [`Out::presize`].
    len: usize,
    start: usize,
}

impl<'a, 'o, S: Sink, const P4: bool, const MEMO: bool> MapSer<'a, 'o, S, P4, MEMO> {
    /// A dict whose EMPTY_DICT (and memo entry) was just written; a batched dict opens its first
    /// batch with a MARK now (taken back if no item comes).
    ///
    /// # Safety
    ///
    /// As [`Out::raw`] (1 byte).
    #[inline(always)]
    unsafe fn dict(ser: &'a mut Ser<'o, S, P4, MEMO>, items: Items, build: bool, variant: bool) -> Self {
        let start = ser.out.buf.len();
        let batch_end = match items {
            Items::Batched => {
                ser.out.raw([Op::Mark as u8], 1);
                BATCH
            }
            Items::Single => 1,
        };
        MapSer { ser, items, count: 0, batch_end, build, variant, empty: false, len: 0, start }
    }

    /// An instance without state: no dict at all.
    fn stateless(ser: &'a mut Ser<'o, S, P4, MEMO>) -> Self {
        MapSer {
            ser,
            items: Items::Single,
            count: 0,
            batch_end: usize::MAX,
            build: false,
            variant: false,
            empty: true,
            len: 0,
            start: 0,
        }
    }

    #[inline(always)]
    fn after_value(&mut self) {
        self.count += 1;
        if self.count == self.batch_end {
            self.end_batch();
        }
    }

    /// SETITEMS and the next batch's MARK, or a single item's SETITEM.
    #[inline]
    fn end_batch(&mut self) {
        if self.items == Items::Batched {
            if self.batch_end == BATCH {
                self.ser.out.presize(self.start, BATCH, self.len);
            }
            self.ser.out.put(&[Op::SetItems as u8, Op::Mark as u8]);
            self.batch_end += BATCH;
        } else {
            self.ser.out.byte(Op::SetItem as u8);
            self.batch_end += 1;
        }
    }

    #[inline]
    fn finish(self) -> Result<()> {
        if !self.empty && self.items == Items::Batched {
            if self.count == 0 {
                // The MARK just after EMPTY_DICT is the last byte written.
                self.ser.out.unmark();
            } else {
                // Also after a batch of exactly BATCH items: CPython's batch_dict_exact then
                // ends the dict with an empty batch, `MARK SETITEMS`.
                self.ser.out.byte(Op::SetItems as u8);
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

    #[inline(always)]
    fn field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<()> {
        self.ser.out.boundary()?;
        // SAFETY: right after a boundary.
        unsafe { self.ser.write_field_name(key, self.count)? };
        value.serialize(&mut *self.ser).map_err(|e| e.key(key))?;
        self.after_value();
        Ok(())
    }
}

macro_rules! int_serializers {
    ($($m:ident: $t:ty),*) => {
        $(
            #[inline(always)]
            fn $m(self, v: $t) -> Result<()> {
                self.out.boundary()?;
                // SAFETY: right after a boundary.
                unsafe { self.write_i64(v as i64) };
                Ok(())
            }
        )*
    };
}

impl<'a, 'o, S: Sink, const P4: bool, const MEMO: bool> ser::Serializer for &'a mut Ser<'o, S, P4, MEMO> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = SeqSer<'a, 'o, S, P4, MEMO>;
    type SerializeTuple = SeqSer<'a, 'o, S, P4, MEMO>;
    type SerializeTupleStruct = SeqSer<'a, 'o, S, P4, MEMO>;
    type SerializeTupleVariant = SeqSer<'a, 'o, S, P4, MEMO>;
    type SerializeMap = MapSer<'a, 'o, S, P4, MEMO>;
    type SerializeStruct = MapSer<'a, 'o, S, P4, MEMO>;
    type SerializeStructVariant = MapSer<'a, 'o, S, P4, MEMO>;

    #[inline(always)]
    fn serialize_bool(self, v: bool) -> Result<()> {
        self.out.boundary()?;
        if self.proto_ge(2) {
            // SAFETY: right after a boundary.
            unsafe { self.out.raw([if v { Op::NewTrue as u8 } else { Op::NewFalse as u8 }], 1) };
        } else {
            self.out.put(if v { b"I01\n" } else { b"I00\n" });
        }
        Ok(())
    }

    int_serializers!(serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
                     serialize_u8: u8, serialize_u16: u16, serialize_u32: u32);

    #[inline(always)]
    fn serialize_u64(self, v: u64) -> Result<()> {
        self.out.boundary()?;
        match i64::try_from(v) {
            // SAFETY: right after a boundary.
            Ok(i) => unsafe { self.write_i64(i) },
            Err(_) => self.write_i128(v as i128),
        }
        Ok(())
    }

    fn serialize_i128(self, v: i128) -> Result<()> {
        self.out.boundary()?;
        match i64::try_from(v) {
            // SAFETY: right after a boundary.
            Ok(i) => unsafe { self.write_i64(i) },
            Err(_) => self.write_i128(v),
        }
        Ok(())
    }

    fn serialize_u128(self, v: u128) -> Result<()> {
        self.out.boundary()?;
        self.write_u128(v);
        Ok(())
    }

    #[inline(always)]
    fn serialize_f32(self, v: f32) -> Result<()> {
        self.out.boundary()?;
        // SAFETY: right after a boundary.
        unsafe { self.write_f64(v as f64) };
        Ok(())
    }

    #[inline(always)]
    fn serialize_f64(self, v: f64) -> Result<()> {
        self.out.boundary()?;
        // SAFETY: right after a boundary.
        unsafe { self.write_f64(v) };
        Ok(())
    }

    fn serialize_char(self, v: char) -> Result<()> {
        let mut buf = [0; 4];
        self.serialize_str(v.encode_utf8(&mut buf))
    }

    #[inline(always)]
    fn serialize_str(self, v: &str) -> Result<()> {
        self.out.boundary()?;
        // SAFETY: right after a boundary.
        unsafe { self.write_str(v) }
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

    #[inline(always)]
    fn serialize_none(self) -> Result<()> {
        self.out.boundary()?;
        // SAFETY: right after a boundary.
        unsafe { self.out.raw([Op::None as u8], 1) };
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
        // SAFETY: right after a boundary.
        unsafe { self.write_name(variant) }
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
        // SAFETY: right after a boundary.
        unsafe { self.empty_dict() };
        self.out.boundary()?;
        // SAFETY: right after a boundary.
        unsafe { self.write_name(variant)? };
        value.serialize(&mut *self).map_err(|e| e.key(variant))?;
        self.out.byte(Op::SetItem as u8);
        Ok(())
    }

    #[inline(always)]
    fn serialize_seq(self, len: Option<usize>) -> Result<SeqSer<'a, 'o, S, P4, MEMO>> {
        self.out.boundary()?;
        if self.in_key > 0 {
            // A list cannot be a dict key: it is written as a tuple.
            self.out.byte(Op::Mark as u8);
            return Ok(SeqSer::tuple(self, SeqKind::Tuple(TupleKind::Marked)));
        }
        let items = self.items(len);
        // SAFETY: right after a boundary (3 bytes).
        unsafe {
            self.empty_list();
            Ok(SeqSer::list(self, items, len))
        }
    }

    fn serialize_tuple(self, len: usize) -> Result<SeqSer<'a, 'o, S, P4, MEMO>> {
        self.out.boundary()?;
        let kind = self.begin_tuple(len)?;
        Ok(SeqSer::tuple(self, SeqKind::Tuple(kind)))
    }

    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<SeqSer<'a, 'o, S, P4, MEMO>> {
        self.serialize_tuple(len)
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<SeqSer<'a, 'o, S, P4, MEMO>> {
        if self.in_key > 0 {
            return Err(self.unhashable("dict"));
        }
        self.out.boundary()?;
        // SAFETY: right after a boundary.
        unsafe { self.empty_dict() };
        self.out.boundary()?;
        // SAFETY: right after a boundary.
        unsafe { self.write_name(variant)? };
        self.out.boundary()?;
        let kind = self.begin_tuple(len)?;
        Ok(SeqSer::tuple(self, SeqKind::VariantTuple(kind)))
    }

    #[inline]
    fn serialize_map(self, len: Option<usize>) -> Result<MapSer<'a, 'o, S, P4, MEMO>> {
        if self.in_key > 0 {
            return Err(self.unhashable("dict"));
        }
        self.out.boundary()?;
        let items = self.items(len);
        // SAFETY: right after a boundary (3 bytes).
        unsafe {
            self.empty_dict();
            let mut map = MapSer::dict(self, items, false, false);
            map.len = len.unwrap_or(0);
            Ok(map)
        }
    }

    #[inline(always)]
    fn serialize_struct(self, name: &'static str, len: usize) -> Result<MapSer<'a, 'o, S, P4, MEMO>> {
        if self.in_key > 0 {
            return Err(self.unhashable("dict"));
        }
        self.out.boundary()?;
        let items = self.items(Some(len));
        if let Some((module, qualname)) = self.class_of(name) {
            self.begin_instance(module, qualname)?;
            if len == 0 {
                // An empty `__dict__` is no state: CPython writes no BUILD.
                return Ok(MapSer::stateless(self));
            }
            self.out.boundary()?;
            // SAFETY: right after a boundary (3 bytes).
            unsafe {
                self.empty_dict();
                return Ok(MapSer::dict(self, items, true, false));
            }
        }
        // SAFETY: right after a boundary (3 bytes).
        unsafe {
            self.empty_dict();
            Ok(MapSer::dict(self, items, false, false))
        }
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<MapSer<'a, 'o, S, P4, MEMO>> {
        if self.in_key > 0 {
            return Err(self.unhashable("dict"));
        }
        self.out.boundary()?;
        // SAFETY: right after a boundary.
        unsafe { self.empty_dict() };
        self.out.boundary()?;
        // SAFETY: right after a boundary.
        unsafe { self.write_name(variant)? };
        self.out.boundary()?;
        let items = self.items(Some(len));
        // SAFETY: right after a boundary (3 bytes).
        unsafe {
            self.empty_dict();
            Ok(MapSer::dict(self, items, false, true))
        }
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

impl<S: Sink, const P4: bool, const MEMO: bool> ser::SerializeSeq for SeqSer<'_, '_, S, P4, MEMO> {
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

impl<S: Sink, const P4: bool, const MEMO: bool> ser::SerializeTuple for SeqSer<'_, '_, S, P4, MEMO> {
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

impl<S: Sink, const P4: bool, const MEMO: bool> ser::SerializeTupleStruct for SeqSer<'_, '_, S, P4, MEMO> {
    type Ok = ();
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.element(value)
    }

    fn end(self) -> Result<()> {
        self.finish()
    }
}

impl<S: Sink, const P4: bool, const MEMO: bool> ser::SerializeTupleVariant for SeqSer<'_, '_, S, P4, MEMO> {
    type Ok = ();
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.element(value)
    }

    fn end(self) -> Result<()> {
        self.finish()
    }
}

impl<S: Sink, const P4: bool, const MEMO: bool> ser::SerializeMap for MapSer<'_, '_, S, P4, MEMO> {
    type Ok = ();
    type Error = Error;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<()> {
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

impl<S: Sink, const P4: bool, const MEMO: bool> ser::SerializeStruct for MapSer<'_, '_, S, P4, MEMO> {
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

impl<S: Sink, const P4: bool, const MEMO: bool> ser::SerializeStructVariant for MapSer<'_, '_, S, P4, MEMO> {
    type Ok = ();
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<()> {
        self.field(key, value)
    }

    fn end(self) -> Result<()> {
        self.finish()
    }
}
