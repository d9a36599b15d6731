//! The tape: a lightweight pickle machine that builds a compact tree for serde visitors.
//!
//! Pickle is postfix (a tuple's items come before it, a dict's state after its instance), so a
//! pull-based visitor cannot follow the stream directly. The tape runs the machine first,
//! without the object model's costs: a value is one `u64`, the byte offset of the opcode that
//! pushed it (its data is read from the input again when it is visited, so strs and bytes stay
//! borrowed), or an index into [`Tape::objs`] for containers and the few values that had to be
//! computed. Dicts are lists of pairs (no hashing), containers are runs of items in one arena,
//! and the memo holds copies of items, so a shared subtree is visited again wherever it is
//! referenced. No recursion: nesting costs heap, not stack.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::io::{self, BufRead};
use std::rc::Rc;

use num_bigint::BigInt;

use super::options::DeOptions;
use crate::codec::{self, Encoding};
use crate::compat;
use crate::error::{Error, Result};
use crate::index_assign::{IndexedSeq, INDEX_TOO_BIG};
use crate::opcodes::Opcode;
use crate::ops::{read_i32, read_len, read_opcode, read_u16, read_u32, read_u64};
use crate::read::Read;
use crate::text::{self, FloatError, ParsedInt};

use self::Obj as TObj;

/// A value: the byte offset of the opcode that pushed it, or [`OBJ`] and an object index.
pub(crate) type Item = u64;
/// Marks an [`Item`] naming an object.
pub(crate) const OBJ: u64 = 1 << 63;

/// Sizes of the fixed-size int and float opcodes (opcode and argument), by opcode; 0 for
/// every other opcode.
const RUN_SIZE: [u8; 256] = {
    let mut t = [0; 256];
    t[Opcode::BinInt1 as usize] = 2;
    t[Opcode::BinInt2 as usize] = 3;
    t[Opcode::BinInt as usize] = 5;
    t[Opcode::BinFloat as usize] = 9;
    t
};

/// Most list items SETITEM on lists may copy in one pickle (see [`Machine::assign_items`]).
const ASSIGN_BUDGET: usize = 1 << 22;

/// "No index".
pub(crate) const NIL: u32 = u32::MAX;

/// Items of a container: a first run inline, then runs of [`Tape::segs`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Chain {
    pub(crate) start: u32,
    pub(crate) len: u32,
    pub(crate) next: u32,
    last: u32,
    pub(crate) total: u32,
}

impl Chain {
    pub(crate) const EMPTY: Chain = Chain { start: 0, len: 0, next: NIL, last: NIL, total: 0 };
}

/// A run of items after a chain's first.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Seg {
    pub(crate) start: u32,
    pub(crate) len: u32,
    pub(crate) next: u32,
}

/// An object: containers (dict items are key, value, key, value...), values computed while
/// loading (kept in [`Tape::data`] or inline), classes and instances.
#[derive(Debug)]
pub(crate) enum Obj {
    List(Chain),
    Tuple(Chain),
    Dict(Chain),
    Set(Chain),
    FrozenSet(Chain),
    /// Surrogatepass UTF-8 in [`Tape::data`].
    Str(usize, usize),
    /// Bytes in [`Tape::data`].
    Bytes(usize, usize),
    /// A bytearray (mutable: APPEND extends it), or READONLY_BUFFER's view of one.
    ByteArray(Box<ByteArray>),
    /// An int beyond `i64`, two's complement little-endian in [`Tape::data`].
    Long(usize, usize),
    Int(i64),
    Bool(bool),
    Float(f64),
    /// A class or function, by (module, qualified name).
    Global(Box<(String, String)>),
    /// An object built by a call, with what BUILD and the item opcodes gave it.
    Instance(Box<Inst>),
    /// Something serde has no mapping for (a complex, a persistent id, ...), by Python type.
    Unsupported(&'static str),
}

/// A bytearray's bytes.
#[derive(Debug)]
pub(crate) enum Buf {
    /// A range of the input (BYTEARRAY8's payload, `bytearray(b'...')`'s argument), until
    /// something is appended.
    Input(usize, usize),
    Owned(Vec<u8>),
}

/// A bytearray: unhashable, and APPEND extends it with ints in `range(256)`.
#[derive(Debug)]
pub(crate) struct ByteArray {
    pub(crate) buf: Buf,
    /// READONLY_BUFFER's read-only memoryview of a bytearray (a copy, as the unpickler makes):
    /// still unhashable, but nothing can be appended to it.
    pub(crate) readonly: bool,
}

/// An instance: `callable(*args)` or `cls.__new__(cls, *args, **kwargs)`, then BUILD.
#[derive(Debug)]
pub(crate) struct Inst {
    pub(crate) callable: Item,
    pub(crate) args: Item,
    pub(crate) state: Option<Item>,
    pub(crate) list: Chain,
    pub(crate) dict: Chain,
}

/// A loaded pickle.
pub(crate) struct Tape {
    pub(crate) items: Vec<Item>,
    pub(crate) segs: Vec<Seg>,
    pub(crate) objs: Vec<Obj>,
    /// The byte offset of the opcode that made each object.
    pub(crate) obj_pos: Vec<u64>,
    pub(crate) data: Vec<u8>,
    pub(crate) max_depth: usize,
    /// Python 2 strs (`SHORT_BINSTRING`, `BINSTRING`) read as bytes (`encoding="bytes"`).
    pub(crate) py2_bytes: bool,
}

/// Working buffers kept per thread between reads, so that reading many pickles does not pay
/// for fresh memory each time (page faults dominate the cost of a large flat list).
#[derive(Default)]
struct Spare {
    items: Vec<Item>,
    segs: Vec<Seg>,
    objs: Vec<Obj>,
    obj_pos: Vec<u64>,
    data: Vec<u8>,
    stack: Vec<Item>,
    memo: Vec<Item>,
}

thread_local! {
    static SPARE: RefCell<Spare> = RefCell::new(Spare::default());
}

/// The largest buffer kept for the next read, in bytes: at most 5 MiB stay with a thread
/// (64 MiB each made `from_slice` of 5M ints 21% faster when repeated, but a service whose
/// threads each once read a large pickle kept hundreds of MiB per thread).
const KEEP: usize = 1 << 20;

fn take<T>(slot: fn(&mut Spare) -> &mut Vec<T>) -> Vec<T> {
    SPARE
        .try_with(|s| s.try_borrow_mut().map(|mut s| std::mem::take(slot(&mut s))).unwrap_or_default())
        .unwrap_or_default()
}

fn give<T>(mut v: Vec<T>, slot: fn(&mut Spare) -> &mut Vec<T>) {
    if v.capacity() == 0 || v.capacity().saturating_mul(std::mem::size_of::<T>().max(1)) > KEEP {
        return;
    }
    v.clear();
    let _ = SPARE.try_with(|s| {
        if let Ok(mut s) = s.try_borrow_mut() {
            let slot = slot(&mut s);
            if slot.capacity() < v.capacity() {
                *slot = v;
            }
        }
    });
}

impl Drop for Tape {
    fn drop(&mut self) {
        give(std::mem::take(&mut self.items), |s| &mut s.items);
        give(std::mem::take(&mut self.segs), |s| &mut s.segs);
        give(std::mem::take(&mut self.objs), |s| &mut s.objs);
        give(std::mem::take(&mut self.obj_pos), |s| &mut s.obj_pos);
        give(std::mem::take(&mut self.data), |s| &mut s.data);
    }
}

impl Tape {
    pub(crate) fn new(max_depth: usize, py2_bytes: bool) -> Self {
        Tape {
            items: take(|s| &mut s.items),
            segs: take(|s| &mut s.segs),
            objs: take(|s| &mut s.objs),
            obj_pos: take(|s| &mut s.obj_pos),
            data: take(|s| &mut s.data),
            max_depth,
            py2_bytes,
        }
    }

    #[inline]
    pub(crate) fn obj(&self, i: u64) -> &Obj {
        &self.objs[(i & !OBJ) as usize]
    }

    /// The byte offset where `item` was made.
    #[inline]
    pub(crate) fn pos(&self, item: Item) -> u64 {
        if item & OBJ != 0 {
            self.obj_pos[(item & !OBJ) as usize]
        } else {
            item
        }
    }

    #[inline]
    pub(crate) fn data(&self, start: usize, end: usize) -> &[u8] {
        &self.data[start..end]
    }

    /// Appends `vals` to the items arena and to `chain`.
    fn link(&mut self, chain: &mut Chain, vals: &[Item]) -> Result<()> {
        let n = vals.len();
        if n == 0 {
            return Ok(());
        }
        let s = self.items.len();
        let (Ok(s32), Ok(n32)) = (u32::try_from(s + n), u32::try_from(n)) else {
            return Err(bad("pickle has too many items for the serde reader"));
        };
        let s32 = s32 - n32;
        crate::value::extend_big(&mut self.items, vals);
        let c = chain;
        let total = c.total.checked_add(n32).ok_or_else(|| bad("container too large"))?;
        if c.total == 0 {
            c.start = s32;
            c.len = n32;
        } else if c.last == NIL && c.start + c.len == s32 {
            c.len += n32;
        } else if c.last != NIL && {
            let l = &self.segs[c.last as usize];
            l.start + l.len == s32
        } {
            self.segs[c.last as usize].len += n32;
        } else {
            let idx = u32::try_from(self.segs.len()).map_err(|_| bad("too many runs"))?;
            self.segs.push(Seg { start: s32, len: n32, next: NIL });
            if c.last == NIL {
                c.next = idx;
            } else {
                self.segs[c.last as usize].next = idx;
            }
            c.last = idx;
        }
        c.total = total;
        Ok(())
    }

    #[inline]
    fn add(&mut self, pos: u64, obj: Obj) -> Result<Item> {
        let i = self.objs.len() as u64;
        if i >= u32::MAX as u64 {
            return Err(bad("too many objects for the serde reader"));
        }
        self.objs.push(obj);
        self.obj_pos.push(pos);
        Ok(i | OBJ)
    }

    fn owned(&mut self, b: &[u8]) -> (usize, usize) {
        let s = self.data.len();
        self.data.extend_from_slice(b);
        (s, self.data.len())
    }

    /// Items of `chain`, in order.
    #[inline]
    pub(crate) fn iter(&self, chain: &Chain) -> ChainIter<'_> {
        let first = if chain.total == 0 { &[][..] } else { &self.items[chain.start as usize..][..chain.len as usize] };
        ChainIter {
            cur: first.iter(),
            items: &self.items,
            segs: &self.segs,
            next: chain.next,
            rest: chain.total - first.len() as u32,
        }
    }
}

/// Walks a [`Chain`]: the current run as a slice iterator, then the runs of [`Tape::segs`].
#[derive(Clone)]
pub(crate) struct ChainIter<'t> {
    cur: std::slice::Iter<'t, Item>,
    items: &'t [Item],
    segs: &'t [Seg],
    next: u32,
    /// Items in the runs after the current one.
    rest: u32,
}

impl<'t> ChainIter<'t> {
    pub(crate) fn empty() -> Self {
        ChainIter { cur: [].iter(), items: &[], segs: &[], next: NIL, rest: 0 }
    }

    #[inline]
    pub(crate) fn remaining(&self) -> usize {
        self.cur.len() + self.rest as usize
    }

    /// Moves to the chain's next run and takes its first item.
    #[cold]
    #[inline(never)]
    fn next_run(&mut self) -> Option<Item> {
        while self.rest > 0 {
            let s = self.segs[self.next as usize];
            self.cur = self.items[s.start as usize..][..s.len as usize].iter();
            self.next = s.next;
            self.rest -= s.len;
            if let Some(&v) = self.cur.next() {
                return Some(v);
            }
        }
        None
    }
}

impl Iterator for ChainIter<'_> {
    type Item = Item;

    #[inline(always)]
    fn next(&mut self) -> Option<Item> {
        match self.cur.next() {
            Some(&v) => Some(v),
            None => self.next_run(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining(), Some(self.remaining()))
    }
}

#[cold]
fn bad(msg: impl Into<String>) -> Error {
    Error::unpickling_msg(msg)
}

#[cold]
fn underflow() -> Error {
    bad("unpickling stack underflow")
}

/// What an offset item is, read from the input: the opcode's value.
pub(crate) enum Scalar<'a> {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// Surrogatepass UTF-8.
    Str(&'a [u8]),
    Bytes(&'a [u8]),
    /// Little-endian two's complement of more than 8 bytes.
    Long(&'a [u8]),
}

#[inline]
fn arr<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    b[at..at + N].try_into().expect("checked while loading")
}

#[inline]
fn len_at(b: &[u8], at: usize, width: usize) -> usize {
    match width {
        1 => b[at] as usize,
        4 => u32::from_le_bytes(arr(b, at)) as usize,
        _ => u64::from_le_bytes(arr(b, at)) as usize,
    }
}

/// The value of the opcode at `off` of `input`, which the tape builder read and checked.
/// `py2_bytes`: Python 2 strs are bytes.
#[inline]
pub(crate) fn scalar(input: &[u8], off: usize, py2_bytes: bool) -> Scalar<'_> {
    const SHORT_BINUNICODE: u8 = Opcode::ShortBinUnicode as u8;
    const BINUNICODE: u8 = Opcode::BinUnicode as u8;
    const BINUNICODE8: u8 = Opcode::BinUnicode8 as u8;
    const SHORT_BINBYTES: u8 = Opcode::ShortBinBytes as u8;
    const BINBYTES: u8 = Opcode::BinBytes as u8;
    const BINBYTES8: u8 = Opcode::BinBytes8 as u8;
    const BYTEARRAY8: u8 = Opcode::ByteArray8 as u8;
    const SHORT_BINSTRING: u8 = Opcode::ShortBinString as u8;
    const BINSTRING: u8 = Opcode::BinString as u8;
    const BININT1: u8 = Opcode::BinInt1 as u8;
    const BININT2: u8 = Opcode::BinInt2 as u8;
    const BININT: u8 = Opcode::BinInt as u8;
    const BINFLOAT: u8 = Opcode::BinFloat as u8;
    const LONG1: u8 = Opcode::Long1 as u8;
    const LONG4: u8 = Opcode::Long4 as u8;
    const NONE: u8 = Opcode::None as u8;
    const NEWTRUE: u8 = Opcode::NewTrue as u8;
    const NEWFALSE: u8 = Opcode::NewFalse as u8;
    let b = input;
    let data = |w: usize| {
        let n = len_at(b, off + 1, w);
        &b[off + 1 + w..off + 1 + w + n]
    };
    match b[off] {
        BININT1 => Scalar::Int(b[off + 1] as i64),
        BININT2 => Scalar::Int(u16::from_le_bytes(arr(b, off + 1)) as i64),
        BININT => Scalar::Int(i32::from_le_bytes(arr(b, off + 1)) as i64),
        BINFLOAT => Scalar::Float(f64::from_be_bytes(arr(b, off + 1))),
        SHORT_BINUNICODE => Scalar::Str(data(1)),
        BINUNICODE => Scalar::Str(data(4)),
        BINUNICODE8 => Scalar::Str(data(8)),
        SHORT_BINBYTES => Scalar::Bytes(data(1)),
        BINBYTES => Scalar::Bytes(data(4)),
        BINBYTES8 | BYTEARRAY8 => Scalar::Bytes(data(8)),
        SHORT_BINSTRING | BINSTRING => {
            let d = data(if b[off] == SHORT_BINSTRING { 1 } else { 4 });
            if py2_bytes {
                Scalar::Bytes(d)
            } else {
                Scalar::Str(d)
            }
        }
        LONG1 | LONG4 => {
            let d = data(if b[off] == LONG1 { 1 } else { 4 });
            if d.len() <= 8 {
                let mut buf = if d.last().is_some_and(|&x| x & 0x80 != 0) { [0xFF; 8] } else { [0; 8] };
                buf[..d.len()].copy_from_slice(d);
                Scalar::Int(i64::from_le_bytes(buf))
            } else {
                Scalar::Long(d)
            }
        }
        NONE => Scalar::None,
        NEWTRUE => Scalar::Bool(true),
        NEWFALSE => Scalar::Bool(false),
        op => unreachable!("opcode {op:#x} does not push a scalar"),
    }
}

/// The memo: dense for the keys picklers write, sparse beyond.
#[derive(Default)]
struct Memo {
    dense: Vec<Item>,
    sparse: HashMap<u64, Item>,
    len: usize,
}

/// An empty dense memo slot.
const EMPTY: Item = u64::MAX;

impl Memo {
    #[inline]
    fn get(&self, key: u64) -> Result<Item> {
        let v = match self.dense.get(key as usize) {
            Some(&slot) if slot != EMPTY => Some(slot),
            Some(_) => None,
            None => self.sparse.get(&key).copied(),
        };
        v.ok_or_else(|| bad(format!("Memo value not found at index {key}")))
    }

    /// The dense entry of `key`, if set.
    #[inline(always)]
    fn get_dense(&self, key: usize) -> Option<Item> {
        match self.dense.get(key) {
            Some(&slot) if slot != EMPTY => Some(slot),
            _ => None,
        }
    }

    /// Sets `key` as [`Memo::put`] would when it is a dense key (`false`, untouched, otherwise).
    #[inline(always)]
    fn put_dense(&mut self, key: usize, v: Item, max: usize) -> bool {
        if key < self.dense.len() {
            if std::mem::replace(&mut self.dense[key], v) == EMPTY {
                self.len += 1;
            }
            true
        } else if key == self.dense.len() && self.sparse.is_empty() && self.len < max {
            self.dense.push(v);
            self.len += 1;
            true
        } else {
            false
        }
    }

    #[inline]
    fn put(&mut self, key: u64, v: Item, max: usize) -> Result<()> {
        let k = key as usize;
        if k < self.dense.len() {
            if std::mem::replace(&mut self.dense[k], v) == EMPTY {
                self.len += 1;
            }
            return Ok(());
        }
        if self.len >= max {
            return Err(bad(format!("memo exceeds the limit of {max} entries")));
        }
        if k == self.dense.len() && self.sparse.is_empty() {
            self.dense.push(v);
            self.len += 1;
        } else if key <= (self.dense.len() as u64) * 2 + 1024 && !self.sparse.contains_key(&key) {
            self.dense.resize(k + 1, EMPTY);
            self.dense[k] = v;
            self.len += 1;
        } else if self.sparse.insert(key, v).is_none() {
            self.len += 1;
        }
        Ok(())
    }
}

/// A reader that keeps every byte it hands out, so a pickle read from a stream can be visited
/// like one read from a slice.
pub(crate) struct Tee<R> {
    pub(crate) inner: R,
    pub(crate) record: Rc<RefCell<Vec<u8>>>,
    /// Stream offset of the start of `inner`'s buffer.
    consumed: u64,
}

impl<R> Tee<R> {
    pub(crate) fn new(inner: R, record: Rc<RefCell<Vec<u8>>>) -> Self {
        Tee { inner, record, consumed: 0 }
    }

    /// Records the bytes of `buf` (at stream offset `at`) not recorded yet: the record is
    /// every byte the reader has seen, which may run ahead of what was consumed.
    fn note(record: &RefCell<Vec<u8>>, at: u64, buf: &[u8]) {
        let mut record = record.borrow_mut();
        let seen = record.len() as u64;
        let end = at + buf.len() as u64;
        if end > seen && at <= seen {
            record.extend_from_slice(&buf[(seen - at) as usize..]);
        }
    }
}

impl<R: BufRead> io::Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        Self::note(&self.record, self.consumed, &buf[..n]);
        self.consumed += n as u64;
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Tee<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        let buf = self.inner.fill_buf()?;
        Self::note(&self.record, self.consumed, buf);
        Ok(buf)
    }

    fn consume(&mut self, n: usize) {
        self.inner.consume(n);
        self.consumed += n as u64;
    }
}

/// The bytes the items' offsets point into.
pub(crate) enum Input<'de> {
    Slice(&'de [u8]),
    Record(Rc<RefCell<Vec<u8>>>),
}

/// Runs the pickle machine over `r` (which reads `input`) and returns the tape and the pickled
/// value.
pub(crate) fn build<'de, R: Read<'de>>(r: &mut R, input: Input<'de>, opts: &DeOptions) -> Result<(Tape, Item)> {
    let mut m = Machine {
        tape: Tape::new(opts.max_depth, opts.encoding == Encoding::Bytes),
        stack: take(|s| &mut s.stack),
        marks: Vec::new(),
        fence: 0,
        memo: Memo { dense: take(|s| &mut s.memo), ..Memo::default() },
        proto: 0,
        opts,
        input,
        hashable_tuples: HashSet::new(),
        assigned: 0,
    };
    if r.at_end()? {
        return Err(Error::eof(r.position()).with_message("ran out of input"));
    }
    // A slice's bytes are run directly where possible (see `Machine::hot`), inside the
    // reader's window (the rest of the open frame, or of the input).
    let slice = match &m.input {
        Input::Slice(b) => Some(*b),
        Input::Record(_) => None,
    };
    loop {
        if let Some(data) = slice {
            let start = r.position() as usize;
            let lim = start + r.window().len();
            let end = m.hot(data, start, lim)?;
            r.advance(end - start);
        }
        let (pos, op) = read_opcode(r)?;
        let res = m.step(r, op, pos);
        match res {
            Ok(true) => {}
            Ok(false) => {
                let root = m.pop().map_err(|e| e.at(pos).in_opcode(op))?;
                give(std::mem::take(&mut m.stack), |s| &mut s.stack);
                give(std::mem::take(&mut m.memo.dense), |s| &mut s.memo);
                return Ok((m.tape, root));
            }
            Err(e) => return Err(e.at(pos).in_opcode(op)),
        }
    }
}

struct Machine<'de, 'o> {
    tape: Tape,
    stack: Vec<Item>,
    marks: Vec<usize>,
    fence: usize,
    memo: Memo,
    proto: u8,
    opts: &'o DeOptions,
    input: Input<'de>,
    /// Tuples (object indices) known to be hashable: a tuple's items never change, so each
    /// is walked at most once however often it is used as a key.
    hashable_tuples: HashSet<u32>,
    /// List items copied so far by SETITEM on a list (see [`Machine::assign_items`]).
    assigned: usize,
}

/// Which builtin a REDUCE calls, when serde reads the result natively.
enum Builtin {
    Set,
    FrozenSet,
    ByteArray,
    Bytes,
    Encode,
    Reconstructor,
    Complex,
}

impl Machine<'_, '_> {
    #[inline]
    fn push(&mut self, v: Item) {
        self.stack.push(v);
    }

    #[inline]
    fn pop(&mut self) -> Result<Item> {
        if self.stack.len() > self.fence {
            Ok(self.stack.pop().expect("above fence"))
        } else {
            Err(underflow())
        }
    }

    #[inline]
    fn top(&self) -> Result<Item> {
        if self.stack.len() > self.fence {
            Ok(*self.stack.last().expect("above fence"))
        } else {
            Err(underflow())
        }
    }

    /// The value just below the items from `start` (the container they go into).
    #[inline]
    fn below(&self, start: usize) -> Result<Item> {
        if start > self.fence {
            Ok(self.stack[start - 1])
        } else {
            Err(underflow())
        }
    }

    #[inline]
    fn pop_mark(&mut self) -> Result<usize> {
        let Some(start) = self.marks.pop() else {
            return Err(bad("could not find MARK"));
        };
        self.fence = self.marks.last().copied().unwrap_or(0);
        Ok(start)
    }

    fn owned_str(&mut self, pos: u64, b: &[u8]) -> Result<Item> {
        let (s, e) = self.tape.owned(b);
        self.tape.add(pos, Obj::Str(s, e))
    }

    fn owned_bytes(&mut self, pos: u64, b: &[u8]) -> Result<Item> {
        let (s, e) = self.tape.owned(b);
        self.tape.add(pos, Obj::Bytes(s, e))
    }

    fn int(&mut self, pos: u64, p: ParsedInt) -> Result<Item> {
        match p {
            ParsedInt::Small(i) => self.tape.add(pos, Obj::Int(i)),
            ParsedInt::Big(b) => self.big(pos, &b),
        }
    }

    fn big(&mut self, pos: u64, b: &BigInt) -> Result<Item> {
        let bytes = b.to_signed_bytes_le();
        let (s, e) = self.tape.owned(&bytes);
        self.tape.add(pos, Obj::Long(s, e))
    }

    /// A Python 2 `str`, per the `encoding` option. Text that decodes to itself stays where it
    /// is (the item is the opcode's offset).
    fn py2_str(&mut self, pos: u64, b: &[u8], in_input: bool) -> Result<Item> {
        let enc = self.opts.encoding;
        if enc == Encoding::Bytes {
            return if in_input { Ok(pos) } else { self.owned_bytes(pos, b) };
        }
        let same = match enc {
            Encoding::Ascii | Encoding::Latin1 => b.is_ascii(),
            Encoding::Utf8 => std::str::from_utf8(b).is_ok(),
            _ => false,
        };
        if same {
            return if in_input { Ok(pos) } else { self.owned_str(pos, b) };
        }
        let decoded = codec::decode(b, enc, self.opts.errors).map_err(|e| bad(e.to_string()))?;
        self.owned_str(pos, &decoded)
    }

    fn global(&mut self, pos: u64, module: &str, name: &str) -> Result<Item> {
        let (module, name) =
            if self.proto < 3 && self.opts.fix_imports { compat::map_py2_global(module, name) } else { (module, name) };
        self.tape.add(pos, Obj::Global(Box::new((module.to_owned(), name.to_owned()))))
    }

    fn obj(&self, v: Item) -> Option<&Obj> {
        (v & OBJ != 0).then(|| self.tape.obj(v))
    }

    fn chain_of(&self, v: Item) -> Option<Chain> {
        match self.obj(v)? {
            Obj::List(c) | Obj::Tuple(c) | Obj::Set(c) | Obj::FrozenSet(c) => Some(*c),
            _ => None,
        }
    }

    fn tuple_of(&self, v: Item) -> Option<Chain> {
        match self.obj(v)? {
            Obj::Tuple(c) => Some(*c),
            _ => None,
        }
    }

    fn dict_of(&self, v: Item) -> Option<Chain> {
        match self.obj(v)? {
            Obj::Dict(c) => Some(*c),
            _ => None,
        }
    }

    /// The text of a str item (a copy).
    fn text_of(&self, v: Item) -> Option<Vec<u8>> {
        if v & OBJ != 0 {
            return match self.tape.obj(v) {
                Obj::Str(s, e) => Some(self.tape.data(*s, *e).to_vec()),
                _ => None,
            };
        }
        let of = |b: &[u8]| match scalar(b, v as usize, self.tape.py2_bytes) {
            Scalar::Str(s) => Some(s.to_vec()),
            _ => None,
        };
        match &self.input {
            Input::Slice(b) => of(b),
            Input::Record(r) => of(&r.borrow()),
        }
    }

    fn is_bytes(&self, v: Item) -> bool {
        if v & OBJ != 0 {
            return matches!(self.tape.obj(v), Obj::Bytes(..));
        }
        let of = |b: &[u8]| matches!(scalar(b, v as usize, self.tape.py2_bytes), Scalar::Bytes(_));
        match &self.input {
            Input::Slice(b) => of(b),
            Input::Record(r) => of(&r.borrow()),
        }
    }

    fn is_callable(&self, v: Item) -> bool {
        matches!(self.obj(v), Some(Obj::Global(_) | Obj::Instance(_) | Obj::Unsupported(_)))
    }

    fn builtin(&self, callable: Item) -> Option<Builtin> {
        let Some(Obj::Global(g)) = self.obj(callable) else { return None };
        Some(match (g.0.as_str(), g.1.as_str()) {
            ("builtins", "set") => Builtin::Set,
            ("builtins", "frozenset") => Builtin::FrozenSet,
            ("builtins", "bytearray") => Builtin::ByteArray,
            ("builtins", "bytes") => Builtin::Bytes,
            ("builtins", "complex") => Builtin::Complex,
            ("_codecs", "encode") => Builtin::Encode,
            ("copyreg", "_reconstructor") => Builtin::Reconstructor,
            _ => return None,
        })
    }

    fn instance(&mut self, pos: u64, callable: Item, args: Item) -> Result<Item> {
        let inst = Inst { callable, args, state: None, list: Chain::EMPTY, dict: Chain::EMPTY };
        self.tape.add(pos, Obj::Instance(Box::new(inst)))
    }

    /// A str encoded as Latin-1 (`_codecs.encode(s, 'latin1')`, `bytearray(s, 'latin-1')`).
    fn latin1(&self, s: Item, enc: Item) -> Option<Vec<u8>> {
        let enc = String::from_utf8(self.text_of(enc)?).ok()?;
        if Encoding::from_name(&enc) != Some(Encoding::Latin1) {
            return None;
        }
        let s = String::from_utf8(self.text_of(s)?).ok()?;
        s.chars().map(|c| u8::try_from(c as u32).ok()).collect()
    }

    /// `callable(*args)`: the builtins serde reads natively, else an instance.
    fn reduce(&mut self, pos: u64, callable: Item, args: Item) -> Result<Item> {
        if !self.is_callable(callable) {
            return Err(bad("REDUCE needs a callable (a class or function)"));
        }
        let Some(arg_chain) = self.tuple_of(args) else {
            return Err(bad("argument list must be a tuple"));
        };
        let argv: Vec<Item> = self.tape.iter(&arg_chain).collect();
        let native = match (self.builtin(callable), argv.as_slice()) {
            (Some(Builtin::Set), []) => Some(Obj::Set(Chain::EMPTY)),
            (Some(Builtin::FrozenSet), []) => Some(Obj::FrozenSet(Chain::EMPTY)),
            // Unhashable items: an instance, as the unpickler (CPython raises TypeError).
            (Some(Builtin::Set | Builtin::FrozenSet), [items]) => match self.chain_of(*items) {
                Some(c) if self.all_hashable(c) => Some(if matches!(self.builtin(callable), Some(Builtin::Set)) {
                    Obj::Set(c)
                } else {
                    Obj::FrozenSet(c)
                }),
                _ => None,
            },
            (Some(Builtin::Bytes), []) => Some(Obj::Bytes(0, 0)),
            (Some(Builtin::ByteArray), []) => Some(Self::bytearray(Buf::Owned(Vec::new()))),
            (Some(Builtin::ByteArray), [b]) => self.bytes_buf(*b).map(Self::bytearray),
            (Some(Builtin::ByteArray), [s, enc]) => self.latin1(*s, *enc).map(|d| Self::bytearray(Buf::Owned(d))),
            (Some(Builtin::Encode), [s, enc]) => match self.latin1(*s, *enc) {
                Some(data) => return self.owned_bytes(pos, &data),
                None => None,
            },
            (Some(Builtin::Complex), _) => Some(Obj::Unsupported("complex")),
            (Some(Builtin::Reconstructor), [cls, base, state]) => return self.reconstructor(pos, *cls, *base, *state),
            _ => None,
        };
        match native {
            Some(obj) => self.tape.add(pos, obj),
            None => self.instance(pos, callable, args),
        }
    }

    /// `copyreg._reconstructor(cls, base, state)`: how protocols 0 and 1 write a plain instance
    /// (base `object`) or an instance of a builtin type's subclass.
    fn reconstructor(&mut self, pos: u64, cls: Item, base: Item, state: Item) -> Result<Item> {
        let base_name = match self.obj(base) {
            Some(Obj::Global(g)) if g.0 == "builtins" => Some(g.1.clone()),
            _ => None,
        };
        let mut inst = Inst { callable: cls, args: 0, state: None, list: Chain::EMPTY, dict: Chain::EMPTY };
        let none = self.obj(state).is_none() && {
            let of = |b: &[u8]| matches!(scalar(b, state as usize, false), Scalar::None);
            match &self.input {
                Input::Slice(b) => of(b),
                Input::Record(r) => of(&r.borrow()),
            }
        };
        match base_name.as_deref() {
            Some("object") if none => inst.args = self.tape.add(pos, Obj::Tuple(Chain::EMPTY))?,
            Some("tuple") if self.tuple_of(state).is_some() => inst.args = state,
            Some("list") if self.chain_of(state).is_some() => {
                inst.list = self.chain_of(state).expect("checked");
                inst.args = self.tape.add(pos, Obj::Tuple(Chain::EMPTY))?;
            }
            Some("dict") if self.dict_of(state).is_some() => {
                inst.dict = self.dict_of(state).expect("checked");
                inst.args = self.tape.add(pos, Obj::Tuple(Chain::EMPTY))?;
            }
            _ => {
                let mut c = Chain::EMPTY;
                self.tape.link(&mut c, &[state])?;
                inst.args = self.tape.add(pos, Obj::Tuple(c))?;
            }
        }
        self.tape.add(pos, Obj::Instance(Box::new(inst)))
    }

    fn append(&mut self, target: Item, items: &[Item]) -> Result<()> {
        if target & OBJ == 0 {
            return Err(bad("APPEND needs a list"));
        }
        let i = (target & !OBJ) as usize;
        let mut chain = match &self.tape.objs[i] {
            Obj::List(c) => *c,
            Obj::Instance(inst) => inst.list,
            Obj::ByteArray(ba) if !ba.readonly => return self.bytearray_extend(i, items),
            _ => return Err(bad("APPEND needs a list")),
        };
        self.tape.link(&mut chain, items)?;
        match &mut self.tape.objs[i] {
            Obj::List(c) => *c = chain,
            Obj::Instance(inst) => inst.list = chain,
            _ => unreachable!(),
        }
        Ok(())
    }

    fn set_items(&mut self, target: Item, items: &[Item]) -> Result<()> {
        if target & OBJ == 0 {
            return Err(bad("SETITEM needs a dict"));
        }
        let i = (target & !OBJ) as usize;
        let mut chain = match &self.tape.objs[i] {
            Obj::Dict(c) => {
                let c = *c;
                for &k in items.iter().step_by(2) {
                    self.check_hashable(k)?;
                }
                c
            }
            // As the unpickler: `__setitem__` of an unknown class may take any key.
            Obj::Instance(inst) => inst.dict,
            Obj::List(_) => return self.assign_items(i, items),
            Obj::ByteArray(ba) if !ba.readonly => return self.assign_items(i, items),
            _ => return Err(bad("SETITEM needs a dict")),
        };
        self.tape.link(&mut chain, items)?;
        match &mut self.tape.objs[i] {
            Obj::Dict(c) => *c = chain,
            Obj::Instance(inst) => inst.dict = chain,
            _ => unreachable!(),
        }
        Ok(())
    }

    /// SETITEM(S) on a list or bytearray: `target[index] = value` for each pair, as CPython's
    /// `PyObject_SetItem` (an int index, negative from the end). A list's items are copied to
    /// a run of their own first (their runs may be shared with a set made from the list), at
    /// most [`ASSIGN_BUDGET`] items in all, so a hostile stream cannot make this quadratic.
    fn assign_items(&mut self, i: usize, items: &[Item]) -> Result<()> {
        if let Obj::List(c) = self.tape.objs[i] {
            self.assigned = self.assigned.saturating_add(c.total as usize);
            if self.assigned > ASSIGN_BUDGET {
                return Err(bad("too many list item assignments for the serde reader"));
            }
            let mut all: Vec<Item> = self.tape.iter(&c).collect();
            for pair in items.chunks_exact(2) {
                let at = self.position_of(pair[0], IndexedSeq::List, all.len())?;
                all[at] = pair[1];
            }
            let mut fresh = Chain::EMPTY;
            self.tape.link(&mut fresh, &all)?;
            self.tape.objs[i] = Obj::List(fresh);
            return Ok(());
        }
        let mut bytes = self.take_bytearray(i);
        for pair in items.chunks_exact(2) {
            let at = self.position_of(pair[0], IndexedSeq::ByteArray, bytes.len())?;
            bytes[at] = self.byte_of(pair[1])?;
        }
        if let Obj::ByteArray(ba) = &mut self.tape.objs[i] {
            ba.buf = Buf::Owned(bytes);
        }
        Ok(())
    }

    /// The bytes of the bytearray object `i`, owned (taken from it, or copied from the input);
    /// the caller puts them back.
    fn take_bytearray(&mut self, i: usize) -> Vec<u8> {
        let Obj::ByteArray(ba) = &mut self.tape.objs[i] else { unreachable!("a bytearray") };
        match &mut ba.buf {
            Buf::Owned(b) => std::mem::take(b),
            Buf::Input(s, e) => match &self.input {
                Input::Slice(b) => b[*s..*e].to_vec(),
                Input::Record(r) => r.borrow()[*s..*e].to_vec(),
            },
        }
    }

    /// Where the index `key` points among `len` items of `seq`.
    fn position_of(&self, key: Item, seq: IndexedSeq, len: usize) -> Result<usize> {
        let index = self.index_of(key, seq)?;
        seq.position(index, len).map_err(bad)
    }

    /// An int used as a list or bytearray index.
    fn index_of(&self, key: Item, seq: IndexedSeq) -> Result<i64> {
        /// A two's complement int of more than 8 bytes, if it fits an `i64`.
        fn long_i64(d: &[u8]) -> Option<i64> {
            let neg = d.last().is_some_and(|&b| b & 0x80 != 0);
            let fill = if neg { 0xFF } else { 0 };
            if d.len() > 8 && d[8..].iter().any(|&b| b != fill) {
                return None;
            }
            let mut buf = [fill; 8];
            let n = d.len().min(8);
            buf[..n].copy_from_slice(&d[..n]);
            let v = i64::from_le_bytes(buf);
            ((v < 0) == neg).then_some(v)
        }
        let too_big = || bad(INDEX_TOO_BIG);
        if key & OBJ == 0 {
            let got = self.with_scalar(key, |sc| match sc {
                Scalar::Int(i) => Some(Some(i)),
                Scalar::Bool(b) => Some(Some(b as i64)),
                Scalar::Long(d) => Some(long_i64(d)),
                _ => None,
            });
            if let Some(i) = got {
                return i.ok_or_else(too_big);
            }
        } else {
            match self.tape.obj(key) {
                Obj::Int(i) => return Ok(*i),
                Obj::Bool(b) => return Ok(*b as i64),
                Obj::Long(s, e) => return long_i64(self.tape.data(*s, *e)).ok_or_else(too_big),
                _ => {}
            }
        }
        Err(bad(seq.bad_index(self.type_name(key))))
    }

    fn add_items(&mut self, target: Item, items: &[Item]) -> Result<()> {
        let Some(Obj::Set(c)) = self.obj(target) else {
            return Err(bad("ADDITEMS needs a set"));
        };
        let mut chain = *c;
        for &v in items {
            self.check_hashable(v)?;
        }
        self.tape.link(&mut chain, items)?;
        self.tape.objs[(target & !OBJ) as usize] = Obj::Set(chain);
        Ok(())
    }

    fn build(&mut self, target: Item, state: Item) -> Result<()> {
        // As CPython's load_build: a None state sets nothing on any object; a dict state goes
        // into the object's `__dict__`, which builtin values lack (classes have one).
        let none = self.obj(state).is_none() && {
            let of = |b: &[u8]| matches!(scalar(b, state as usize, false), Scalar::None);
            match &self.input {
                Input::Slice(b) => of(b),
                Input::Record(r) => of(&r.borrow()),
            }
        };
        let empty_dict = matches!(self.obj(state), Some(Obj::Dict(c)) if c.total == 0);
        if target & OBJ == 0 {
            return if none { Ok(()) } else { Err(bad("BUILD needs an instance")) };
        }
        let i = (target & !OBJ) as usize;
        let prev = match &mut self.tape.objs[i] {
            Obj::Instance(inst) => inst.state.replace(state),
            _ if none => return Ok(()),
            Obj::Global(_) | Obj::Unsupported(_) if empty_dict => return Ok(()),
            _ => return Err(bad("BUILD needs an instance")),
        };
        // A second BUILD with dict states updates the first, as `__dict__.update` would.
        if let Some(prev) = prev {
            if let (Some(old), Some(new)) = (self.dict_of(prev), self.dict_of(state)) {
                let mut merged = Chain::EMPTY;
                let items: Vec<Item> = self.tape.iter(&old).chain(self.tape.iter(&new)).collect();
                self.tape.link(&mut merged, &items)?;
                let pos = self.tape.pos(prev);
                let d = self.tape.add(pos, Obj::Dict(merged))?;
                if let Obj::Instance(inst) = &mut self.tape.objs[i] {
                    inst.state = Some(d);
                }
            }
        }
        Ok(())
    }

    /// `f` of the value of an offset item.
    fn with_scalar<T>(&self, v: Item, f: impl FnOnce(Scalar<'_>) -> T) -> T {
        debug_assert!(v & OBJ == 0);
        match &self.input {
            Input::Slice(b) => f(scalar(b, v as usize, self.tape.py2_bytes)),
            Input::Record(r) => f(scalar(&r.borrow(), v as usize, self.tape.py2_bytes)),
        }
    }

    fn bytearray(buf: Buf) -> Obj {
        Obj::ByteArray(Box::new(ByteArray { buf, readonly: false }))
    }

    /// The bytes of a bytes item, for `bytearray(b)`: where they are in the input, or a copy.
    fn bytes_buf(&self, v: Item) -> Option<Buf> {
        if v & OBJ != 0 {
            return match self.tape.obj(v) {
                Obj::Bytes(s, e) => Some(Buf::Owned(self.tape.data(*s, *e).to_vec())),
                _ => None,
            };
        }
        self.with_scalar(v, |sc| match sc {
            Scalar::Bytes(d) => {
                // `d` is the tail of the opcode at `v`: its payload.
                let (off, n) = (v as usize, d.len());
                let width = match self.opcode_at(off) {
                    Some(op) if op == Opcode::ShortBinBytes as u8 || op == Opcode::ShortBinString as u8 => 1,
                    Some(op) if op == Opcode::BinBytes as u8 || op == Opcode::BinString as u8 => 4,
                    _ => 8,
                };
                let start = off + 1 + width;
                Some(Buf::Input(start, start + n))
            }
            _ => None,
        })
    }

    fn opcode_at(&self, off: usize) -> Option<u8> {
        match &self.input {
            Input::Slice(b) => b.get(off).copied(),
            Input::Record(r) => r.borrow().get(off).copied(),
        }
    }

    /// The Python type name of `v`, for messages.
    fn type_name(&self, v: Item) -> &'static str {
        if v & OBJ == 0 {
            return self.with_scalar(v, |sc| match sc {
                Scalar::None => "NoneType",
                Scalar::Bool(_) => "bool",
                Scalar::Int(_) | Scalar::Long(_) => "int",
                Scalar::Float(_) => "float",
                Scalar::Str(_) => "str",
                Scalar::Bytes(_) => "bytes",
            });
        }
        match self.tape.obj(v) {
            Obj::List(_) => "list",
            Obj::Tuple(_) => "tuple",
            Obj::Dict(_) => "dict",
            Obj::Set(_) => "set",
            Obj::FrozenSet(_) => "frozenset",
            Obj::Str(..) => "str",
            Obj::Bytes(..) => "bytes",
            Obj::ByteArray(ba) if ba.readonly => "memoryview",
            Obj::ByteArray(_) => "bytearray",
            Obj::Long(..) | Obj::Int(_) => "int",
            Obj::Bool(_) => "bool",
            Obj::Float(_) => "float",
            Obj::Global(_) => "type",
            Obj::Instance(_) => "object",
            Obj::Unsupported(what) => what,
        }
    }

    /// `v` as a byte, as `bytearray.extend` takes it: an int in `range(256)` (a bool is one).
    fn byte_of(&self, v: Item) -> Result<u8> {
        /// A two's complement int's value when in `range(256)`.
        fn long_byte(d: &[u8]) -> Option<u8> {
            let (&first, rest) = d.split_first()?;
            (rest.iter().all(|&b| b == 0) && (!rest.is_empty() || first < 0x80)).then_some(first)
        }
        let byte = |b: Option<u8>| b.ok_or_else(|| bad("byte must be in range(0, 256)"));
        if v & OBJ == 0 {
            let got = self.with_scalar(v, |sc| match sc {
                Scalar::Int(i) => Some(u8::try_from(i).ok()),
                Scalar::Bool(b) => Some(Some(b as u8)),
                Scalar::Long(d) => Some(long_byte(d)),
                _ => None,
            });
            if let Some(b) = got {
                return byte(b);
            }
        } else {
            match self.tape.obj(v) {
                Obj::Int(i) => return byte(u8::try_from(*i).ok()),
                Obj::Bool(b) => return Ok(*b as u8),
                Obj::Long(s, e) => return byte(long_byte(self.tape.data(*s, *e))),
                _ => {}
            }
        }
        Err(bad(format!("'{}' object cannot be interpreted as an integer", self.type_name(v))))
    }

    /// APPEND and APPENDS onto the bytearray object `i`: `bytearray.extend(items)`, which takes
    /// all of them or none.
    #[cold]
    fn bytearray_extend(&mut self, i: usize, items: &[Item]) -> Result<()> {
        let add = items.iter().map(|&v| self.byte_of(v)).collect::<Result<Vec<u8>>>()?;
        let mut owned = self.take_bytearray(i);
        owned.extend_from_slice(&add);
        if let Obj::ByteArray(ba) = &mut self.tape.objs[i] {
            ba.buf = Buf::Owned(owned);
        }
        Ok(())
    }

    /// Refuses what CPython cannot hash, as a dict key or a set item: a list, dict, set or
    /// bytearray, or a tuple holding one, however deep. The common keys (strs, ints: offset
    /// items) cost one test.
    #[inline(always)]
    fn check_hashable(&mut self, v: Item) -> Result<()> {
        if v & OBJ == 0 {
            return Ok(());
        }
        match self.unhashable(v) {
            None => Ok(()),
            Some(name) => Err(bad(format!("unhashable type: '{name}'"))),
        }
    }

    /// Whether every item of `chain` is hashable.
    fn all_hashable(&mut self, chain: Chain) -> bool {
        let items: Vec<Item> = self.tape.iter(&chain).filter(|v| v & OBJ != 0).collect();
        items.into_iter().all(|v| self.unhashable(v).is_none())
    }

    /// The type name of what makes `v` unhashable, if it is. Offset items (scalars) are
    /// hashable; so are instances and classes, whose `__hash__` the reader cannot know.
    #[inline]
    fn unhashable(&mut self, v: Item) -> Option<&'static str> {
        if v & OBJ == 0 {
            return None;
        }
        match self.tape.obj(v) {
            Obj::List(_) => Some("list"),
            Obj::Dict(_) => Some("dict"),
            Obj::Set(_) => Some("set"),
            Obj::ByteArray(_) => Some("bytearray"),
            Obj::Tuple(_) => self.unhashable_tuple(v),
            // Its items were checked when it was made.
            _ => None,
        }
    }

    /// [`Machine::unhashable`] of a tuple: a walk with an explicit stack (no recursion), which
    /// skips the tuples already found hashable. A tuple's items were made before it, so the
    /// walk cannot loop.
    #[cold]
    #[inline(never)]
    fn unhashable_tuple(&mut self, root: Item) -> Option<&'static str> {
        let tape = &self.tape;
        let known = &mut self.hashable_tuples;
        let index = |v: Item| (v & !OBJ) as u32;
        if known.contains(&index(root)) {
            return None;
        }
        let Obj::Tuple(c) = tape.obj(root) else { return None };
        let mut stack = vec![(index(root), tape.iter(c))];
        while let Some((idx, items)) = stack.last_mut() {
            let idx = *idx;
            let Some(v) = items.next() else {
                known.insert(idx);
                stack.pop();
                continue;
            };
            if v & OBJ == 0 {
                continue;
            }
            match tape.obj(v) {
                Obj::List(_) => return Some("list"),
                Obj::Dict(_) => return Some("dict"),
                Obj::Set(_) => return Some("set"),
                Obj::ByteArray(_) => return Some("bytearray"),
                Obj::Tuple(c) if !known.contains(&index(v)) => {
                    // Items come before their tuple: a deeper tuple has a smaller index.
                    if index(v) >= idx {
                        return Some("tuple");
                    }
                    stack.push((index(v), tape.iter(c)));
                }
                _ => {}
            }
        }
        None
    }

    fn memo_put(&mut self, key: u64) -> Result<()> {
        let v = self.top()?;
        self.memo.put(key, v, self.opts.max_memo_len)
    }

    fn text_memo_key(line: &[u8], what: &str) -> Result<u64> {
        let s = std::str::from_utf8(line).map_err(|_| bad(format!("invalid {what} argument")))?;
        let s = s.trim_matches(|c: char| c.is_ascii_whitespace());
        if s.starts_with('-') {
            return Err(bad(format!("negative {what} argument")));
        }
        s.parse::<u64>().map_err(|_| bad(format!("invalid {what} argument: {s:?}")))
    }

    /// Moves the stack's items from `start` into a new container object.
    #[inline]
    fn collect(&mut self, pos: u64, start: usize, make: fn(Chain) -> Obj) -> Result<Item> {
        let mut c = Chain::EMPTY;
        self.tape.link(&mut c, &self.stack[start..])?;
        self.stack.truncate(start);
        self.tape.add(pos, make(c))
    }

    /// Links the stack's items from `start` into the container below them.
    #[inline]
    fn extend(&mut self, start: usize, f: fn(&mut Self, Item, &[Item]) -> Result<()>) -> Result<()> {
        let target = self.below(start)?;
        if start == self.stack.len() {
            // No items: nothing to do, whatever the target (as CPython).
            return Ok(());
        }
        let items = std::mem::take(&mut self.stack);
        let res = f(self, target, &items[start..]);
        self.stack = items;
        self.stack.truncate(start);
        res
    }

    /// The opcodes that build containers from the stack, without an argument.
    fn structural(&mut self, op: Opcode, pos: u64) -> Result<()> {
        use Opcode::*;
        match op {
            EmptyList => {
                let v = self.tape.add(pos, TObj::List(Chain::EMPTY))?;
                self.push(v);
            }
            EmptyDict => {
                let v = self.tape.add(pos, TObj::Dict(Chain::EMPTY))?;
                self.push(v);
            }
            EmptyTuple => {
                let v = self.tape.add(pos, TObj::Tuple(Chain::EMPTY))?;
                self.push(v);
            }
            EmptySet => {
                let v = self.tape.add(pos, TObj::Set(Chain::EMPTY))?;
                self.push(v);
            }
            Appends => {
                let start = self.pop_mark()?;
                self.extend(start, Self::append)?;
            }
            Append => {
                let item = self.pop()?;
                let target = self.top()?;
                self.append(target, &[item])?;
            }
            SetItems => {
                let start = self.pop_mark()?;
                if (self.stack.len() - start) % 2 != 0 {
                    return Err(bad("odd number of items for SETITEMS"));
                }
                self.extend(start, Self::set_items)?;
            }
            SetItem => {
                let value = self.pop()?;
                let key = self.pop()?;
                let target = self.top()?;
                self.set_items(target, &[key, value])?;
            }
            AddItems => {
                let start = self.pop_mark()?;
                self.extend(start, Self::add_items)?;
            }
            Tuple1 | Tuple2 | Tuple3 => {
                let n = (op as u8 - Tuple1 as u8 + 1) as usize;
                if self.stack.len() < self.fence + n {
                    return Err(underflow());
                }
                let start = self.stack.len() - n;
                let v = self.collect(pos, start, TObj::Tuple)?;
                self.push(v);
            }
            Tuple | List | FrozenSet => {
                let start = self.pop_mark()?;
                if op == FrozenSet {
                    for i in start..self.stack.len() {
                        self.check_hashable(self.stack[i])?;
                    }
                }
                let make = match op {
                    Tuple => TObj::Tuple,
                    List => TObj::List,
                    _ => TObj::FrozenSet,
                };
                let v = self.collect(pos, start, make)?;
                self.push(v);
            }
            Dict => {
                let start = self.pop_mark()?;
                if (self.stack.len() - start) % 2 != 0 {
                    return Err(bad("odd number of items for DICT"));
                }
                for i in (start..self.stack.len()).step_by(2) {
                    self.check_hashable(self.stack[i])?;
                }
                let v = self.collect(pos, start, TObj::Dict)?;
                self.push(v);
            }
            _ => unreachable!("not a structural opcode"),
        }
        Ok(())
    }

    /// Runs the frequent opcodes of `data[pos..lim]` (the readable window: the open frame or
    /// the rest of the input) directly, and returns where it stopped: at an opcode it leaves to
    /// [`Machine::step`], or at one whose bytes or memo entry it cannot vouch for, which `step`
    /// then runs again with its checks and messages.
    #[inline(never)]
    fn hot(&mut self, data: &[u8], mut pos: usize, lim: usize) -> Result<usize> {
        const BININT1: u8 = Opcode::BinInt1 as u8;
        const BININT2: u8 = Opcode::BinInt2 as u8;
        const BININT: u8 = Opcode::BinInt as u8;
        const BINFLOAT: u8 = Opcode::BinFloat as u8;
        const LONG1: u8 = Opcode::Long1 as u8;
        const SHORT_BINUNICODE: u8 = Opcode::ShortBinUnicode as u8;
        const SHORT_BINBYTES: u8 = Opcode::ShortBinBytes as u8;
        const BINUNICODE: u8 = Opcode::BinUnicode as u8;
        const BINBYTES: u8 = Opcode::BinBytes as u8;
        const NONE: u8 = Opcode::None as u8;
        const NEWTRUE: u8 = Opcode::NewTrue as u8;
        const NEWFALSE: u8 = Opcode::NewFalse as u8;
        const BINGET: u8 = Opcode::BinGet as u8;
        const LONG_BINGET: u8 = Opcode::LongBinGet as u8;
        const BINPUT: u8 = Opcode::BinPut as u8;
        const LONG_BINPUT: u8 = Opcode::LongBinPut as u8;
        const MEMOIZE: u8 = Opcode::Memoize as u8;
        const MARK: u8 = Opcode::Mark as u8;
        const EMPTY_LIST: u8 = Opcode::EmptyList as u8;
        const EMPTY_DICT: u8 = Opcode::EmptyDict as u8;
        const EMPTY_TUPLE: u8 = Opcode::EmptyTuple as u8;
        const APPENDS: u8 = Opcode::Appends as u8;
        const APPEND: u8 = Opcode::Append as u8;
        const SETITEMS: u8 = Opcode::SetItems as u8;
        const SETITEM: u8 = Opcode::SetItem as u8;
        const TUPLE1: u8 = Opcode::Tuple1 as u8;
        const TUPLE2: u8 = Opcode::Tuple2 as u8;
        const TUPLE3: u8 = Opcode::Tuple3 as u8;
        const TUPLE: u8 = Opcode::Tuple as u8;
        const LIST: u8 = Opcode::List as u8;
        const DICT: u8 = Opcode::Dict as u8;
        let data = &data[..lim];
        let u32_at = |at: usize| u32::from_le_bytes(data[at..at + 4].try_into().expect("4 bytes")) as usize;
        while let Some(&op) = data.get(pos) {
            let p = pos as u64;
            let left = lim - pos;
            match op {
                BININT1 | BININT2 | BININT | BINFLOAT | LONG1 => {
                    // A run of ints and floats stays here: each size comes from a table rather
                    // than from the dispatch jump, which ints of mixed widths mispredicted
                    // about once an item.
                    let mut q = pos;
                    while let Some(&op) = data.get(q) {
                        // LONG1's size in arithmetic, not a branch (its table entry is 0).
                        let long_len = data.get(q + 1).map_or(0, |&len| 2 + len as usize);
                        let n = RUN_SIZE[op as usize] as usize + (op == LONG1) as usize * long_len;
                        if n == 0 || lim - q < n {
                            break;
                        }
                        self.stack.push(q as u64);
                        q += n;
                    }
                    if q == pos {
                        // Cut short: `step` reports it.
                        break;
                    }
                    pos = q;
                }
                SHORT_BINUNICODE | SHORT_BINBYTES => {
                    if left < 2 || left - 2 < data[pos + 1] as usize {
                        break;
                    }
                    self.stack.push(p);
                    pos += 2 + data[pos + 1] as usize;
                }
                BINUNICODE | BINBYTES => {
                    if left < 5 || left - 5 < u32_at(pos + 1) {
                        break;
                    }
                    self.stack.push(p);
                    pos += 5 + u32_at(pos + 1);
                }
                NONE | NEWTRUE | NEWFALSE => {
                    self.stack.push(p);
                    pos += 1;
                }
                BINGET | LONG_BINGET => {
                    let (key, n) = match op {
                        BINGET if left >= 2 => (data[pos + 1] as usize, 2),
                        LONG_BINGET if left >= 5 => (u32_at(pos + 1), 5),
                        _ => break,
                    };
                    let Some(v) = self.memo.get_dense(key) else { break };
                    self.stack.push(v);
                    pos += n;
                }
                MEMOIZE | BINPUT | LONG_BINPUT => {
                    let (key, n) = match op {
                        MEMOIZE => (self.memo.len, 1),
                        BINPUT if left >= 2 => (data[pos + 1] as usize, 2),
                        LONG_BINPUT if left >= 5 => (u32_at(pos + 1), 5),
                        _ => break,
                    };
                    if self.stack.len() <= self.fence {
                        break;
                    }
                    let v = *self.stack.last().expect("above fence");
                    if !self.memo.put_dense(key, v, self.opts.max_memo_len) {
                        break;
                    }
                    pos += n;
                }
                MARK => {
                    if self.marks.len() >= self.opts.max_marks {
                        break;
                    }
                    self.marks.push(self.stack.len());
                    self.fence = self.stack.len();
                    pos += 1;
                }
                EMPTY_LIST | EMPTY_DICT | EMPTY_TUPLE | APPENDS | APPEND | SETITEMS | SETITEM | TUPLE1 | TUPLE2
                | TUPLE3 | TUPLE | LIST | DICT => {
                    let op = Opcode::from_u8(op).expect("an opcode");
                    if let Err(e) = self.structural(op, p) {
                        return Err(e.at(p).in_opcode(op));
                    }
                    pos += 1;
                }
                _ => break,
            }
        }
        Ok(pos)
    }

    /// Executes one opcode; `Ok(false)` at STOP.
    #[inline]
    fn step<'de, R: Read<'de>>(&mut self, r: &mut R, op: Opcode, pos: u64) -> Result<bool> {
        use Opcode::*;
        match op {
            BinInt1 => {
                r.read_byte()?;
                self.push(pos);
            }
            BinInt2 => {
                r.read_exact(2)?;
                self.push(pos);
            }
            BinInt | BinFloat => {
                r.read_exact(if op == BinInt { 4 } else { 8 })?;
                self.push(pos);
            }
            ShortBinUnicode | ShortBinBytes | Long1 => {
                let n = r.read_byte()? as usize;
                r.read_exact(n)?;
                self.push(pos);
            }
            BinUnicode | BinUnicode8 | BinBytes | BinBytes8 | Long4 => {
                let n = read_len(r, op)?;
                r.read_exact(n)?;
                self.push(pos);
            }
            ByteArray8 => {
                // An object, not an offset: APPEND changes it in place, for every reference.
                let n = read_len(r, op)?;
                r.read_exact(n)?;
                let start = pos as usize + 9;
                let buf = Buf::Input(start, start + n);
                let v = self.tape.add(pos, TObj::ByteArray(Box::new(ByteArray { buf, readonly: false })))?;
                self.push(v);
            }
            Memoize => {
                let v = self.top()?;
                let key = self.memo.len as u64;
                self.memo.put(key, v, self.opts.max_memo_len)?;
            }
            BinPut => {
                let key = r.read_byte()? as u64;
                self.memo_put(key)?;
            }
            LongBinPut => {
                let key = read_u32(r)? as u64;
                self.memo_put(key)?;
            }
            BinGet => {
                let key = r.read_byte()? as u64;
                let v = self.memo.get(key)?;
                self.push(v);
            }
            LongBinGet => {
                let key = read_u32(r)? as u64;
                let v = self.memo.get(key)?;
                self.push(v);
            }
            Mark => {
                if self.marks.len() >= self.opts.max_marks {
                    return Err(bad(format!("more than {} MARKs open", self.opts.max_marks)));
                }
                self.marks.push(self.stack.len());
                self.fence = self.stack.len();
            }
            NewTrue | NewFalse | None => self.push(pos),
            EmptyList | EmptyDict | EmptyTuple | EmptySet | Appends | Append | SetItems | SetItem | AddItems
            | Tuple1 | Tuple2 | Tuple3 | Tuple | List | FrozenSet | Dict => self.structural(op, pos)?,
            Stop => return Ok(false),
            Pop => {
                if self.marks.last() == Some(&self.stack.len()) {
                    self.pop_mark()?;
                } else {
                    self.pop()?;
                }
            }
            PopMark => {
                let start = self.pop_mark()?;
                self.stack.truncate(start);
            }
            Dup => {
                let v = self.top()?;
                self.push(v);
            }
            Float => {
                let line = r.read_line()?;
                let f = text::parse_float(&line).map_err(|e| match e {
                    FloatError::Invalid => bad("could not convert string to float"),
                    FloatError::Overflow => bad("float overflow"),
                })?;
                let v = self.tape.add(pos, TObj::Float(f))?;
                self.push(v);
            }
            Int => {
                let line = r.read_line()?;
                let v = match &*line {
                    b"00" => self.tape.add(pos, TObj::Bool(false))?,
                    b"01" => self.tape.add(pos, TObj::Bool(true))?,
                    l => {
                        let p = text::parse_int(l).ok_or_else(|| bad("invalid literal for int() with base 0"))?;
                        self.int(pos, p)?
                    }
                };
                self.push(v);
            }
            Long => {
                let line = r.read_line()?;
                let p = text::parse_long(&line).ok_or_else(|| bad("invalid literal for int() with base 0"))?;
                let v = self.int(pos, p)?;
                self.push(v);
            }
            String => {
                let line = r.read_line()?;
                let quoted = line.len() >= 2 && line[0] == line[line.len() - 1] && matches!(line[0], b'"' | b'\'');
                if !quoted {
                    return Err(bad("the STRING opcode argument must be quoted"));
                }
                let raw = text::escape_decode(&line[1..line.len() - 1]).map_err(bad)?;
                let v = self.py2_str(pos, &raw, false)?;
                self.push(v);
            }
            BinString | ShortBinString => {
                let n = read_len(r, op)?;
                let b = r.read_exact(n)?.to_vec();
                let v = self.py2_str(pos, &b, true)?;
                self.push(v);
            }
            Unicode => {
                let line = r.read_line()?;
                let v = if text::is_plain_ascii(&line) {
                    self.owned_str(pos, &line)?
                } else {
                    let decoded = text::raw_unicode_escape_decode(&line).map_err(bad)?;
                    self.owned_str(pos, &decoded)?
                };
                self.push(v);
            }
            NextBuffer => {
                return Err(bad("out-of-band buffers (NEXT_BUFFER) are not supported by the serde reader"));
            }
            ReadonlyBuffer => {
                // Only bytes-like values: buffers themselves are refused above (NEXT_BUFFER). A
                // bytearray becomes a read-only view of a copy of it (as the unpickler does).
                let v = self.top()?;
                if let Some(TObj::ByteArray(ba)) = self.obj(v) {
                    if !ba.readonly {
                        let buf = match &ba.buf {
                            Buf::Input(s, e) => Buf::Input(*s, *e),
                            Buf::Owned(b) => Buf::Owned(b.clone()),
                        };
                        let view = self.tape.add(pos, TObj::ByteArray(Box::new(ByteArray { buf, readonly: true })))?;
                        *self.stack.last_mut().expect("top") = view;
                    }
                } else if !self.is_bytes(v) {
                    return Err(bad("READONLY_BUFFER needs a buffer on the stack"));
                }
            }
            Get => {
                let line = r.read_line()?;
                let key = Self::text_memo_key(&line, "GET")?;
                let v = self.memo.get(key)?;
                self.push(v);
            }
            Put => {
                let line = r.read_line()?;
                let key = Self::text_memo_key(&line, "PUT")?;
                self.memo_put(key)?;
            }
            Global | Inst => {
                let module = std::string::String::from_utf8(r.read_line()?.to_vec())
                    .map_err(|_| bad("GLOBAL module is not UTF-8"))?;
                let name = std::string::String::from_utf8(r.read_line()?.to_vec())
                    .map_err(|_| bad("GLOBAL name is not UTF-8"))?;
                let class = self.global(pos, &module, &name)?;
                let v = if op == Inst {
                    let start = self.pop_mark()?;
                    let args = self.collect(pos, start, TObj::Tuple)?;
                    self.instance(pos, class, args)?
                } else {
                    class
                };
                self.push(v);
            }
            StackGlobal => {
                let name = self.pop()?;
                let module = self.pop()?;
                let (Some(m), Some(n)) = (self.text_of(module), self.text_of(name)) else {
                    return Err(bad("STACK_GLOBAL requires str"));
                };
                let m = std::string::String::from_utf8_lossy(&m).into_owned();
                let n = std::string::String::from_utf8_lossy(&n).into_owned();
                let v = self.global(pos, &m, &n)?;
                self.push(v);
            }
            Reduce => {
                let args = self.pop()?;
                let callable = self.pop()?;
                let v = self.reduce(pos, callable, args)?;
                self.push(v);
            }
            Obj => {
                let start = self.pop_mark()?;
                if self.stack.len() == start {
                    return Err(underflow());
                }
                let class = self.stack[start];
                if !self.is_callable(class) {
                    return Err(bad("OBJ class is not callable"));
                }
                let args = self.collect(pos, start + 1, TObj::Tuple)?;
                self.stack.truncate(start);
                let v = self.instance(pos, class, args)?;
                self.push(v);
            }
            NewObj | NewObjEx => {
                let kwargs = if op == NewObjEx { Some(self.pop()?) } else { Option::None };
                let args = self.pop()?;
                let class = self.pop()?;
                if !self.is_callable(class) {
                    return Err(bad("NEWOBJ class argument isn't a type object"));
                }
                if self.tuple_of(args).is_none() {
                    return Err(bad("NEWOBJ expected an arg tuple."));
                }
                if let Some(kwargs) = kwargs.filter(|&k| self.dict_of(k).is_none()) {
                    let t = self.type_name(kwargs);
                    return Err(bad(format!("NEWOBJ_EX kwargs argument must be a dict, not {t}")));
                }
                let v = self.instance(pos, class, args)?;
                self.push(v);
            }
            Build => {
                let state = self.pop()?;
                let target = self.top()?;
                self.build(target, state)?;
            }
            PersId => {
                r.read_line()?;
                let v = self.tape.add(pos, TObj::Unsupported("persistent id"))?;
                self.push(v);
            }
            BinPersId => {
                self.pop()?;
                let v = self.tape.add(pos, TObj::Unsupported("persistent id"))?;
                self.push(v);
            }
            Ext1 | Ext2 | Ext4 => {
                let code = match op {
                    Ext1 => r.read_byte()? as i64,
                    Ext2 => read_u16(r)? as i64,
                    _ => read_i32(r)? as i64,
                };
                if code <= 0 {
                    return Err(bad("EXT specifies code <= 0"));
                }
                let v = self.tape.add(pos, TObj::Unsupported("extension"))?;
                self.push(v);
            }
            Proto => {
                let p = r.read_byte()?;
                if p > crate::HIGHEST_PROTOCOL {
                    return Err(bad(format!("unsupported pickle protocol: {p}")));
                }
                self.proto = p;
            }
            Frame => {
                let n = read_u64(r)?;
                r.begin_frame(n)?;
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    //! The bytearray and hashability rules, checked against CPython 3.11's `pickle.loads` of
    //! the same bytes (noted per case).

    use serde::de::IgnoredAny;

    use crate::serde::DeOptions;

    /// Loads `data` as `T` from a slice and from a stream (whose offsets point into the
    /// recorded input instead), which must agree.
    fn load<T: serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(data: &[u8]) -> Result<T, String> {
        let a = crate::from_slice::<T>(data, DeOptions::default()).map_err(|e| e.to_string());
        let b = crate::from_reader::<_, T>(data, DeOptions::default()).map_err(|e| e.to_string());
        assert_eq!(a, b, "slice and stream differ on {data:?}");
        a
    }

    /// `data` is refused with `what`, at its last opcode before STOP.
    fn refused(data: &[u8], what: &str) {
        refused_at(data, what, data.len() as u64 - 2);
    }

    fn refused_at(data: &[u8], what: &str, at: u64) {
        let e = load::<IgnoredAny>(data).expect_err("CPython refuses it");
        let shown = &data[..data.len().min(80)];
        assert!(e.contains(what) && e.contains(&format!("at byte {at} ")), "{shown:?}: {e}");
    }

    /// `BYTEARRAY8` of `b`, protocol 5.
    fn ba(b: &[u8]) -> Vec<u8> {
        let mut v = vec![0x96];
        v.extend_from_slice(&(b.len() as u64).to_le_bytes());
        v.extend_from_slice(b);
        v
    }

    fn p5(parts: &[&[u8]]) -> Vec<u8> {
        let mut v = b"\x80\x05".to_vec();
        for p in parts {
            v.extend_from_slice(p);
        }
        v.push(b'.');
        v
    }

    #[test]
    fn append_extends_a_bytearray() {
        // bytearray(b'abA'), bytearray(b'ab\x01') (True), bytearray(b'\x01\x02'),
        // bytearray(b'\xff') (LONG1), bytearray(b'\x05') (a 9-byte LONG1 of 5), bytearray(b'').
        let ab = ba(b"ab");
        let empty = ba(b"");
        assert_eq!(load::<Vec<u8>>(&p5(&[&ab, b"K\x41a"])), Ok(b"abA".to_vec()));
        assert_eq!(load::<Vec<u8>>(&p5(&[&ab, b"\x88a"])), Ok(b"ab\x01".to_vec()));
        assert_eq!(load::<Vec<u8>>(&p5(&[&ab, b"I01\na"])), Ok(b"ab\x01".to_vec()));
        assert_eq!(load::<Vec<u8>>(&p5(&[&empty, b"(K\x01K\x02e"])), Ok(b"\x01\x02".to_vec()));
        assert_eq!(load::<Vec<u8>>(&p5(&[&empty, b"\x8a\x02\xff\x00a"])), Ok(b"\xff".to_vec()));
        assert_eq!(load::<Vec<u8>>(&p5(&[&empty, b"\x8a\x09\x05\0\0\0\0\0\0\0\0a"])), Ok(b"\x05".to_vec()));
        assert_eq!(load::<Vec<u8>>(&p5(&[&empty, b"L200L\na"])), Ok(b"\xc8".to_vec()));
        assert_eq!(load::<Vec<u8>>(&p5(&[&empty, b"(e"])), Ok(b"".to_vec()));
        // Memoized, appended, then fetched: one object, (bytearray(b'zAB'), bytearray(b'zAB')).
        let shared = p5(&[&ba(b"z"), b"\x94K\x41a(K\x42eh\x00\x86"]);
        assert_eq!(load::<(Vec<u8>, Vec<u8>)>(&shared), Ok((b"zAB".to_vec(), b"zAB".to_vec())));
        // In a list before the APPEND: [bytearray(b'zA')].
        let in_list = p5(&[b"]", &ba(b"z"), b"\x94ah\x00K\x41a0"]);
        assert_eq!(load::<Vec<Vec<u8>>>(&in_list), Ok(vec![b"zA".to_vec()]));
        // bytearray(b'ab') and bytearray('ab', 'latin-1') by REDUCE (protocols 0 to 4).
        let reduce = b"\x80\x04cbuiltins\nbytearray\nC\x02ab\x85RK\x41a.";
        assert_eq!(load::<Vec<u8>>(reduce), Ok(b"abA".to_vec()));
        let latin1 = b"\x80\x02c__builtin__\nbytearray\nX\x02\x00\x00\x00ab\x8c\x07latin-1\x86RK\x41a.";
        assert_eq!(load::<Vec<u8>>(latin1), Ok(b"abA".to_vec()));
        assert_eq!(load::<Vec<u8>>(b"\x80\x04cbuiltins\nbytearray\n)RK\x41a."), Ok(b"A".to_vec()));
        // Two bytearrays appended in turn.
        let two = p5(&[&ba(b"x"), b"\x94", &ba(b"y"), b"\x94K\x01ah\x00K\x02ah\x01K\x03ah\x00K\x04a\x86"]);
        assert_eq!(load::<(Vec<u8>, Vec<u8>)>(&two), Ok((b"y\x01\x03".to_vec(), b"x\x02\x04".to_vec())));
    }

    #[test]
    fn append_onto_a_bytearray_takes_bytes_only() {
        let ab = ba(b"ab");
        // ValueError: byte must be in range(0, 256)
        refused(&p5(&[&ab, b"M\x00\x01a"]), "byte must be in range(0, 256)");
        refused(&p5(&[&ab, b"J\xff\xff\xff\xffa"]), "byte must be in range(0, 256)");
        refused(&p5(&[&ab, b"\x8a\x09\0\0\0\0\0\0\0\0\x01a"]), "byte must be in range(0, 256)");
        refused(&p5(&[&ab, b"\x8a\x01\xffa"]), "byte must be in range(0, 256)");
        refused(&p5(&[&ab, b"L-1L\na"]), "byte must be in range(0, 256)");
        // TypeError: 'str' object cannot be interpreted as an integer (and float, None, ...)
        refused(&p5(&[&ab, b"\x8c\x01xa"]), "'str' object cannot be interpreted as an integer");
        refused(&p5(&[&ab, b"G?\xf0\0\0\0\0\0\0a"]), "'float' object");
        refused(&p5(&[&ab, b"Na"]), "'NoneType' object");
        refused(&p5(&[&ab, b"]a"]), "'list' object");
        refused(&p5(&[&ab, b"(K\x01\x8c\x01xe"]), "'str' object");
        // AttributeError: 'bytes' / 'memoryview' object has no attribute 'append'
        refused(&p5(&[b"C\x01zK\x41a"]), "APPEND needs a list");
        refused(&p5(&[&ab, b"\x98K\x41a"]), "APPEND needs a list");
        let view = p5(&[&ab, b"\x94\x98K\x41ah\x00\x86"]);
        refused_at(&view, "APPEND needs a list", view.len() as u64 - 5);
        refused(b"\x80\x04cbuiltins\nbytes\n)RK\x41a.", "APPEND needs a list");
    }

    #[test]
    fn keys_and_set_items_must_be_hashable() {
        // TypeError: unhashable type: 'list' (and the others), for every opcode that hashes.
        refused(b"\x80\x04}]K\x01s.", "unhashable type: 'list'");
        refused(b"\x80\x04}]\x85K\x01s.", "unhashable type: 'list'");
        refused(b"\x80\x04}}\x85\x85K\x01s.", "unhashable type: 'dict'");
        refused(&p5(&[b"}", &ba(b""), b"K\x01s"]), "unhashable type: 'bytearray'");
        refused(&p5(&[b"}", &ba(b""), b"\x98K\x01s"]), "unhashable type: 'bytearray'");
        refused(b"\x80\x04(]K\x01d.", "unhashable type: 'list'");
        refused(b"\x80\x04}(]K\x01u.", "unhashable type: 'list'");
        refused(b"\x80\x04}(K\x01K\x02]K\x01u.", "unhashable type: 'list'");
        refused(b"\x80\x04\x8f(]\x90.", "unhashable type: 'list'");
        refused(b"\x80\x04\x8f(}\x90.", "unhashable type: 'dict'");
        refused(b"\x80\x04\x8f(\x8f\x90.", "unhashable type: 'set'");
        refused(b"\x80\x04(]\x91.", "unhashable type: 'list'");
        refused(b"\x80\x04(\x8f\x85\x91.", "unhashable type: 'set'");
        refused(b"\x80\x04(K\x01]\x86\x85\x91.", "unhashable type: 'list'");
        // Hashable: {frozenset({1}): 1}, {<class 'object'>: 1}, {<object>: 1}, {b'z': 1},
        // {(1, ('a',)): 1}, a memoryview of bytes.
        load::<IgnoredAny>(b"\x80\x04}(K\x01\x91K\x01s.").unwrap();
        load::<IgnoredAny>(b"\x80\x04}cbuiltins\nobject\nK\x01s.").unwrap();
        load::<IgnoredAny>(b"\x80\x04}cbuiltins\nobject\n)RK\x01s.").unwrap();
        load::<IgnoredAny>(b"\x80\x05}C\x01z\x98K\x01s.").unwrap();
        load::<IgnoredAny>(b"\x80\x04}K\x01\x8c\x01a\x85\x86K\x01s.").unwrap();
        // `__setitem__` of an instance of an unknown class: any key, as the unpickler.
        load::<IgnoredAny>(b"\x80\x04cm\nC\n)\x81]K\x01s.").unwrap();
        // set([[]]) and frozenset([[]]) raise TypeError in CPython; both readers keep the call
        // as an instance (they cannot call builtins).
        load::<IgnoredAny>(b"\x80\x04cbuiltins\nfrozenset\n]]a\x85R.").unwrap();
    }

    #[test]
    fn hashability_is_checked_without_recursion_or_blowup() {
        // A list under 200k TUPLE1s: refused, without deep recursion.
        let mut deep = b"\x80\x04}]".to_vec();
        deep.extend(std::iter::repeat_n(0x85, 200_000));
        deep.extend_from_slice(b"K\x01s.");
        refused(&deep, "unhashable type: 'list'");
        // A tuple DAG of 2^300 paths, (t, t) for t = (t', t') ...: each tuple is walked once.
        // The dict is dropped, so that visiting does not walk the DAG.
        let mut dag = b"\x80\x04}K\x01\x85".to_vec();
        for _ in 0..300 {
            dag.extend_from_slice(b"2\x86");
        }
        dag.extend_from_slice(b"K\x01s0N.");
        load::<IgnoredAny>(&dag).unwrap();
        // The same with a list at the bottom, used as a key twice (the second walk stops at
        // the first unhashable item again).
        let mut bad_dag = b"\x80\x04}]\x85".to_vec();
        for _ in 0..300 {
            bad_dag.extend_from_slice(b"2\x86");
        }
        bad_dag.extend_from_slice(b"K\x01s0N.");
        refused_at(&bad_dag, "unhashable type: 'list'", bad_dag.len() as u64 - 4);
    }

    #[test]
    fn newobj_ex_needs_dict_kwargs() {
        // UnpicklingError: NEWOBJ_EX kwargs argument must be a dict, not tuple
        refused(b"\x80\x04cbuiltins\nobject\n))\x92.", "NEWOBJ_EX kwargs argument must be a dict");
        load::<IgnoredAny>(b"\x80\x04cbuiltins\nobject\n)}\x92.").unwrap();
    }
}

#[cfg(test)]
mod retention_tests {
    use super::{Spare, SPARE};
    use crate::serde::{DeOptions, SerOptions};
    use std::mem::size_of;

    fn kept_bytes() -> usize {
        SPARE.with(|s| {
            let s = s.borrow();
            let Spare { items, segs, objs, obj_pos, data, stack, memo } = &*s;
            items.capacity() * size_of::<super::Item>()
                + segs.capacity() * size_of::<super::Seg>()
                + objs.capacity() * size_of::<super::Obj>()
                + obj_pos.capacity() * size_of::<u64>()
                + data.capacity()
                + (stack.capacity() + memo.capacity()) * size_of::<super::Item>()
        })
    }

    #[test]
    fn a_large_read_leaves_at_most_a_few_mib_with_the_thread() {
        std::thread::spawn(|| {
            // 2M ints (16 MB of items) and a 12 MiB str: far beyond what a thread keeps.
            let big: Vec<u64> = (0..2_000_000).collect();
            let bytes = crate::to_vec(&(big, "x".repeat(12 << 20)), SerOptions::new()).unwrap();
            let back: (Vec<u64>, String) = crate::from_slice(&bytes, DeOptions::new()).unwrap();
            assert_eq!((back.0.len(), back.1.len()), (2_000_000, 12 << 20));
            let kept = kept_bytes();
            assert!(kept <= 8 << 20, "{kept} bytes kept");
            // A small read afterwards leaves its buffers for the next one.
            let small = crate::to_vec(&vec![1u64; 100], SerOptions::new()).unwrap();
            assert_eq!(crate::from_slice::<Vec<u64>>(&small, DeOptions::new()).unwrap().len(), 100);
            assert!(kept_bytes() > 0, "nothing kept after a small read");
        })
        .join()
        .unwrap();
    }
}
