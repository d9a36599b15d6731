//! The unpickler: runs the pickle machine over a byte source and builds a [`Graph`].
//!
//! One value stack plus a stack of mark positions; a dense memo vector with a sparse fallback;
//! no recursion. Python code is never run: globals stay (module, name) data and calls become
//! [`Instance`] records, except the well-known reconstructions of builtin types (`set`,
//! `frozenset`, `bytearray`, `complex`, `_codecs.encode`), which become native objects.

mod window;

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashMap;

use hashbrown::HashTable;
use std::io::BufRead;

use num_bigint::BigInt;

use crate::codec::{self, DecodeErrors, Encoding};
use crate::compat;
use crate::error::{Error, Result};
use crate::index_assign::{IndexedSeq, INDEX_TOO_BIG};
use crate::opcodes::Opcode;
use crate::ops::{self, read_f64, read_i32, read_len, read_opcode, read_u16, read_u32, read_u64};
use crate::read::{Bytes, IoRead, Read, SliceRead};
use crate::text::{self, FloatError, ParsedInt};
use crate::value::{Construct, Graph, Instance, Items, KeyShape, ObjId, Object, PickleBuffer, PyStr, Value, ValueRef};

/// The highest protocol this crate reads and writes.
pub const HIGHEST_PROTOCOL: u8 = 5;

/// Options of an [`Unpickler`], with safe defaults.
#[derive(Clone, Debug)]
pub struct UnpicklerOptions {
    /// How Python 2 `str` data (`STRING`, `BINSTRING`, `SHORT_BINSTRING`) is decoded.
    pub encoding: Encoding,
    /// What to do with bytes `encoding` cannot decode.
    pub errors: DecodeErrors,
    /// Map Python 2 module and class names to Python 3 ones in pickles of protocol < 3.
    pub fix_imports: bool,
    /// Most memo entries a stream may define.
    pub max_memo_len: usize,
    /// Most MARKs open at once.
    pub max_depth: usize,
    /// Most objects the graph may hold (memory is about 40 bytes an object plus payloads).
    pub max_objects: usize,
}

impl Default for UnpicklerOptions {
    fn default() -> Self {
        UnpicklerOptions {
            encoding: Encoding::Ascii,
            errors: DecodeErrors::Strict,
            fix_imports: true,
            max_memo_len: 1 << 30,
            max_depth: 1 << 20,
            max_objects: (u32::MAX - 16) as usize,
        }
    }
}

/// Resolves a persistent id to an object (Python's `persistent_load`).
pub type PersistentLoad<'de> = Box<dyn FnMut(&mut Graph<'de>, Value) -> Result<Value> + 'de>;
/// Resolves a global (Python's `find_class`); the default keeps it as data.
pub type FindClass<'de> = Box<dyn FnMut(&mut Graph<'de>, &str, &str) -> Result<Value> + 'de>;

/// The memo: a dense vector for the small keys picklers write, a map for the rest.
#[derive(Default)]
struct Memo {
    dense: Vec<Option<Value>>,
    sparse: HashMap<u64, Value>,
    len: usize,
}

impl Memo {
    #[inline]
    fn get(&self, key: u64) -> Option<Value> {
        self.get_ref(key).copied()
    }

    /// The entry under `key`, by reference: the loader copies it onto its stack in one move
    /// (an `Option<Value>` returned by value was spilled in overlapping pieces and re-read, a
    /// store-forwarding stall per GET).
    #[inline]
    fn get_ref(&self, key: u64) -> Option<&Value> {
        match self.dense.get(key as usize) {
            Some(slot) => slot.as_ref(),
            None => self.sparse.get(&key),
        }
    }

    #[inline(always)]
    fn put(&mut self, key: u64, v: Value, max: usize) -> Result<()> {
        // The usual case: the next key in order (MEMOIZE, or a pickler's PUTs).
        if key as usize == self.dense.len() && self.sparse.is_empty() && self.len < max {
            self.dense.push(Some(v));
            self.len += 1;
            return Ok(());
        }
        self.put_slow(key, v, max)
    }

    /// [`Memo::put`] of an object, whose value is written straight into the table: a `Value`
    /// read whole just after it was stored in pieces is a store-forwarding stall. (Calling
    /// `put` with `Value::Obj(id)` instead, the compiler merges the two calls and the stall
    /// comes back: 46% of the loader's samples on dict.p5.)
    #[inline(always)]
    fn put_obj(&mut self, key: u64, id: ObjId, max: usize) -> Result<()> {
        if key as usize == self.dense.len() && self.sparse.is_empty() && self.len < max {
            self.dense.push(Some(Value::Obj(id)));
            self.len += 1;
            return Ok(());
        }
        self.put_slow(key, Value::Obj(id), max)
    }

    fn put_slow(&mut self, key: u64, v: Value, max: usize) -> Result<()> {
        let k = key as usize;
        if k < self.dense.len() {
            if self.dense[k].replace(v).is_none() {
                self.len += 1;
            }
            return Ok(());
        }
        if self.len >= max {
            return Err(memo_full(max));
        }
        if k == self.dense.len() && self.sparse.is_empty() {
            // The usual case: the next key in order.
            self.dense.push(Some(v));
            self.len += 1;
        } else if key <= (self.dense.len() as u64) * 2 + 1024
            && (self.sparse.is_empty() || !self.sparse.contains_key(&key))
        {
            self.dense.resize(k + 1, None);
            self.dense[k] = Some(v);
            self.len += 1;
        } else if self.sparse.insert(key, v).is_none() {
            self.len += 1;
        }
        Ok(())
    }

    fn clear(&mut self) {
        *self = Memo::default();
    }
}

/// CPython's shared singletons: the empty and one-character Latin-1 strs, the empty and
/// one-byte bytes, and one object per global name.
#[derive(Default)]
struct Interned {
    /// One-character Latin-1 strs by code point (`u32::MAX` for the empty str), sorted: at
    /// most 257, usually a few, so a search beats allocating a table per load.
    strs: Vec<(u32, ObjId)>,
    empty_bytes: Option<ObjId>,
    keys: HashMap<std::string::String, ObjId>,
    /// One object per global name: (hash of module and name, the [`Object::Global`]).
    globals: HashTable<(u64, ObjId)>,
    /// The first str object STACK_GLOBAL took each module name from: a global whose module
    /// name comes from another str object keeps that one (see [`Global`]).
    module_strs: Vec<ObjId>,
}

/// Module names past this many keep no str of their own (a hostile stream naming a million
/// modules would make the scan quadratic): their globals share one str per name.
const MODULE_STRS_MAX: usize = 64;

/// Hash of a global's module and name, for [`Interned::globals`].
fn global_hash(module: &str, name: &str) -> u64 {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::with_seed(0x474c_4f42).hash_one((module, name))
}

impl Interned {
    /// Adds the str `s`, or returns CPython's shared object for it (empty or one Latin-1
    /// character).
    #[inline]
    fn str<'de>(&mut self, graph: &mut Graph<'de>, s: PyStr<'de>) -> Value {
        if s.as_bytes().len() <= 2 {
            let key = shared_str_key(s.as_bytes());
            return Value::Obj(self.short_str(graph, key, || s));
        }
        graph.add(Object::Str(s))
    }

    /// A str of up to 2 bytes, whose [`shared_str_key`] is `key`: the one shared object for a
    /// one-character str, as CPython's are. `make` builds the str, straight into the graph when
    /// a new object is needed. Returns the object's id. (A str passed in and moved, or a
    /// `Value` returned through memory, was copied in pieces and read back whole: a
    /// store-forwarding stall.)
    #[inline]
    pub(super) fn short_str<'de>(
        &mut self,
        graph: &mut Graph<'de>,
        key: Option<u32>,
        make: impl FnOnce() -> PyStr<'de>,
    ) -> ObjId {
        let Some(key) = key else {
            return graph.add_built(|| Object::Str(make()));
        };
        if self.strs.capacity() == 0 {
            self.strs = Vec::with_capacity(16);
        }
        match self.strs.binary_search_by_key(&key, |e| e.0) {
            Ok(i) => self.strs[i].1,
            Err(i) => {
                let id = graph.add_built(|| Object::Str(make()));
                self.strs.insert(i, (key, id));
                id
            }
        }
    }
}

/// The key of CPython's shared str for the (valid, surrogatepass) UTF-8 `bytes` of a str of up
/// to 2 bytes: its one code point below 256 (`u32::MAX` for the empty str), or `None` for a
/// str that is not shared.
#[inline]
pub(super) fn shared_str_key(bytes: &[u8]) -> Option<u32> {
    match *bytes {
        [] => Some(u32::MAX),
        // One byte of valid UTF-8 is ASCII.
        [a] => Some(a as u32),
        // One code point below 256 in two bytes of UTF-8 (C2 xx or C3 xx).
        [a @ 0xC2..=0xC3, b] => Some(((a as u32 & 0x1F) << 6) | (b as u32 & 0x3F)),
        // Two ASCII characters, or a code point from 256 up.
        _ => None,
    }
}

/// Working buffers one unpickler hands on to the next on its thread: a small `loads` would
/// otherwise allocate and free its stack, marks, memo and one-character strs every time
/// (three of tuple.p5's six allocations: 3006 -> 2672 instructions a load).
struct Spare {
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: Vec<Option<Value>>,
    strs: Vec<(u32, ObjId)>,
    module_strs: Vec<ObjId>,
}

/// Buffers larger than this many entries are freed rather than kept for the next unpickler.
const SPARE_MAX: usize = 1 << 12;

thread_local! {
    static SPARE: Cell<Option<Spare>> = const { Cell::new(None) };
}

/// Objects to reserve room for in the arena for `len` bytes of input.
fn arena_hint(len: u64) -> usize {
    usize::try_from(len / 8).unwrap_or(usize::MAX).min(1 << 22)
}

/// Memo entries to reserve room for for `len` bytes of input.
fn memo_hint(len: u64) -> usize {
    usize::try_from(len / 8).unwrap_or(usize::MAX).min(1 << 20)
}

/// Makes room in the memo's dense part for `want` entries in all.
fn reserve_memo(dense: &mut Vec<Option<Value>>, want: usize) {
    let old = dense.capacity();
    if old == 0 {
        // `with_capacity` skips `reserve`'s growth path: this runs once per small load.
        *dense = Vec::with_capacity(want);
    } else {
        dense.reserve(want.saturating_sub(dense.len()));
    }
    crate::mem_advice::advise_vec(dense, old);
}

/// Reads pickles from a byte source into one shared [`Graph`].
pub struct Unpickler<'de, R> {
    reader: R,
    graph: Graph<'de>,
    stack: Vec<Value>,
    marks: Vec<usize>,
    /// Stack position of the innermost mark (0 without one): nothing below it can be popped.
    fence: usize,
    memo: Memo,
    proto: u8,
    opts: UnpicklerOptions,
    interned: Interned,
    /// The last record-like dict's keys (see [`KeyShape`]); cleared whenever code outside the
    /// unpickler gets mutable access to the graph.
    key_shape: KeyShape,
    persistent_load: Option<PersistentLoad<'de>>,
    find_class: Option<FindClass<'de>>,
    extensions: HashMap<u32, (String, String)>,
    buffers: std::collections::VecDeque<PickleBuffer>,
    buffers_given: bool,
    noload: bool,
    persistent_ids: Vec<Value>,
}

impl<'de> Unpickler<'de, SliceRead<'de>> {
    /// An unpickler over a byte slice; strs and bytes borrow from it.
    #[inline]
    pub fn from_slice(data: &'de [u8]) -> Self {
        Self::sized(SliceRead::new(data), data.len() as u64)
    }
}

impl<R: BufRead> Unpickler<'static, IoRead<R>> {
    /// An unpickler over any buffered reader, streaming with bounded memory.
    pub fn from_reader(reader: R) -> Self {
        Self::new(IoRead::new(reader))
    }
}

#[cold]
fn underflow_msg(mark_set: bool) -> Error {
    Error::unpickling_msg(if mark_set { "unexpected MARK found" } else { "unpickling stack underflow" })
}

/// A str from the UTF-8 (surrogatepass) bytes of BINUNICODE and friends: borrowed from a slice
/// input, else copied (inline when short).
#[inline]
fn str_from_read<'de>(b: Bytes<'de, '_>) -> Result<PyStr<'de>> {
    let s = match b {
        Bytes::Borrowed(b) => PyStr::from_surrogatepass(b),
        Bytes::Copied(b) => PyStr::copied_from_surrogatepass(b),
    };
    s.ok_or_else(|| bad("'utf-8' codec can't decode the str data (invalid UTF-8)"))
}

#[cold]
fn too_many_marks(max: usize) -> Error {
    bad(format!("more than {max} MARKs open"))
}

#[cold]
fn memo_full(max: usize) -> Error {
    Error::unpickling_msg(format!("memo exceeds the limit of {max} entries"))
}

#[cold]
fn memo_missing(key: u64) -> Error {
    bad(format!("Memo value not found at index {key}"))
}

#[cold]
fn bad(msg: impl Into<String>) -> Error {
    Error::unpickling_msg(msg)
}

impl<R> Drop for Unpickler<'_, R> {
    /// Hands the working buffers to the thread's next unpickler, if they are not too big.
    fn drop(&mut self) {
        let sizes = [self.stack.capacity(), self.marks.capacity(), self.memo.dense.capacity()];
        if sizes.iter().any(|&n| n > SPARE_MAX) {
            return;
        }
        let mut spare = Spare {
            stack: std::mem::take(&mut self.stack),
            marks: std::mem::take(&mut self.marks),
            memo: std::mem::take(&mut self.memo.dense),
            strs: std::mem::take(&mut self.interned.strs),
            module_strs: std::mem::take(&mut self.interned.module_strs),
        };
        spare.stack.clear();
        spare.marks.clear();
        spare.memo.clear();
        spare.strs.clear();
        spare.module_strs.clear();
        // `try_with`: an unpickler dropped while the thread's locals are torn down just frees.
        let _ = SPARE.try_with(|c| c.set(Some(spare)));
    }
}

impl<'de, R: Read<'de>> Unpickler<'de, R> {
    /// An unpickler over a [`Read`] source.
    #[inline]
    pub fn new(reader: R) -> Self {
        Self::sized(reader, 0)
    }

    /// An unpickler sized for `len` bytes of input (see [`Unpickler::reserve_for_input`]),
    /// built where it is returned: a small `loads` moving its 576 bytes twice spent 10% of its
    /// time in `memcpy`.
    #[inline]
    fn sized(reader: R, len: u64) -> Self {
        let mut spare = SPARE.try_with(Cell::take).ok().flatten().unwrap_or_else(|| Spare {
            stack: Vec::with_capacity(64),
            marks: Vec::with_capacity(16),
            memo: Vec::new(),
            strs: Vec::new(),
            module_strs: Vec::new(),
        });
        let mut graph = Graph::new();
        graph.adopt_pool();
        if len > 0 {
            graph.reserve(arena_hint(len));
            reserve_memo(&mut spare.memo, memo_hint(len));
        }
        Unpickler {
            reader,
            graph,
            stack: spare.stack,
            marks: spare.marks,
            fence: 0,
            memo: Memo { dense: spare.memo, ..Memo::default() },
            proto: 0,
            opts: UnpicklerOptions::default(),
            interned: Interned { strs: spare.strs, module_strs: spare.module_strs, ..Interned::default() },
            key_shape: KeyShape::default(),
            persistent_load: None,
            find_class: None,
            extensions: HashMap::new(),
            buffers: Default::default(),
            buffers_given: false,
            noload: false,
            persistent_ids: Vec::new(),
        }
    }

    /// Sizes the object arena and the memo for about `len` bytes of pickles (say, a file's
    /// size), so they rarely move while loading; [`Unpickler::from_slice`] does this itself.
    /// Capped: a huge input reserves at most a few hundred MiB of address space, which pages
    /// in only as it is used.
    pub fn reserve_for_input(&mut self, len: u64) {
        self.graph.reserve(arena_hint(len).saturating_sub(self.graph.len()));
        reserve_memo(&mut self.memo.dense, memo_hint(len));
    }

    /// Sets the options.
    pub fn with_options(mut self, opts: UnpicklerOptions) -> Self {
        self.opts = opts;
        self
    }

    /// The options.
    pub fn options_mut(&mut self) -> &mut UnpicklerOptions {
        &mut self.opts
    }

    /// Resolves persistent ids with `f` (by default they stay [`Object::PersistentId`]).
    pub fn set_persistent_load(&mut self, f: impl FnMut(&mut Graph<'de>, Value) -> Result<Value> + 'de) {
        self.persistent_load = Some(Box::new(f));
    }

    /// Resolves globals with `f` (by default they stay [`Object::Global`]).
    pub fn set_find_class(&mut self, f: impl FnMut(&mut Graph<'de>, &str, &str) -> Result<Value> + 'de) {
        self.find_class = Some(Box::new(f));
    }

    /// Registers an extension code (`copyreg.add_extension`), so `EXT1/2/4` load as globals.
    pub fn add_extension(&mut self, code: u32, module: impl Into<String>, name: impl Into<String>) {
        self.extensions.insert(code, (module.into(), name.into()));
    }

    /// Supplies the out-of-band buffers `NEXT_BUFFER` takes, in order.
    pub fn set_buffers(&mut self, buffers: impl IntoIterator<Item = Vec<u8>>) {
        self.buffers = buffers.into_iter().map(|data| PickleBuffer { data, readonly: false }).collect();
        self.buffers_given = true;
    }

    /// The graph holding every object loaded so far.
    pub fn graph(&self) -> &Graph<'de> {
        &self.graph
    }

    /// The graph, mutably (for hooks' objects or building on loaded values).
    pub fn graph_mut(&mut self) -> &mut Graph<'de> {
        self.key_shape.clear();
        &mut self.graph
    }

    /// The graph, giving up the unpickler.
    #[inline]
    pub fn into_graph(mut self) -> Graph<'de> {
        self.take_graph()
    }

    /// The graph, leaving an empty one (for `loads`, which then drops the unpickler where it
    /// is instead of moving it).
    #[inline]
    pub(crate) fn take_graph(&mut self) -> Graph<'de> {
        std::mem::take(&mut self.graph)
    }

    /// A readable view of `v`.
    pub fn view(&self, v: Value) -> ValueRef<'_, 'de> {
        self.graph.view(v)
    }

    /// The memo: the values PUT / MEMOIZE defined, by key.
    pub fn memo_get(&self, key: u64) -> Option<Value> {
        self.memo.get(key)
    }

    /// Forgets the memo (Python's `Unpickler.memo.clear()`).
    pub fn clear_memo(&mut self) {
        self.memo.clear();
    }

    /// Frees the objects no later pickle of the stream can refer to: everything not reachable
    /// from the memo (or from `keep`, renumbered in place). Values from earlier loads that are
    /// not in `keep` become invalid. Streams of many pickles stay in bounded memory when the
    /// caller collects between loads. Returns the new id of each old id (`None`: freed), for
    /// a [`Pickler`](crate::Pickler) writing from this graph ([`Pickler::renumber`](crate::Pickler::renumber)).
    pub fn collect_garbage(&mut self, keep: &mut [Value]) -> Vec<Option<ObjId>> {
        self.key_shape.clear();
        let memo_values = self.memo.dense.iter().flatten().copied().chain(self.memo.sparse.values().copied());
        let interned = self
            .interned
            .strs
            .iter()
            .map(|&(_, id)| id)
            .chain(self.interned.empty_bytes)
            .chain(self.interned.globals.iter().map(|&(_, id)| id))
            .chain(self.interned.keys.values().copied())
            .chain(self.interned.module_strs.iter().copied())
            .map(Value::Obj);
        let roots: Vec<Value> = memo_values.chain(interned).chain(keep.iter().copied()).collect();
        let map = self.graph.compact(roots);
        let remap = |v: &mut Value| {
            if let Value::Obj(id) = *v {
                *v = Value::Obj(map[id.index()].expect("roots are kept"));
            }
        };
        self.memo.dense.iter_mut().flatten().for_each(remap);
        self.memo.sparse.values_mut().for_each(remap);
        keep.iter_mut().for_each(remap);
        let remap_id = |id: &mut ObjId| *id = map[id.index()].expect("roots are kept");
        self.interned.strs.iter_mut().for_each(|(_, id)| remap_id(id));
        self.interned.empty_bytes.iter_mut().for_each(remap_id);
        self.interned.globals.iter_mut().for_each(|(_, id)| remap_id(id));
        self.interned.keys.values_mut().for_each(remap_id);
        self.interned.module_strs.iter_mut().for_each(remap_id);
        map
    }

    /// Byte offset of the next pickle in the stream.
    pub fn position(&self) -> u64 {
        self.reader.position()
    }

    /// True when the stream has no more pickles.
    pub fn at_end(&mut self) -> Result<bool> {
        self.reader.at_end()
    }

    /// Reads one pickle. Called again, reads the next pickle of the stream with the same memo,
    /// as one `pickle.Unpickler` does: right for pickles one [`Pickler`](crate::Pickler) wrote
    /// with several `dump` calls. A file of separate `pickle.dump(obj, f)` calls (each pickle
    /// numbering its memo from 0, as `pickle.load(f)` in a loop reads them) needs
    /// [`Unpickler::clear_memo`] before each further `load`: at protocols 4 and 5 a memo kept
    /// across them can make a GET name another pickle's object without any error.
    ///
    /// ```
    /// // pickle.dump([v, v], f, 4) for v in (['a'], ['b']): two separate dumps.
    /// let data = b"\x80\x04\x95\x0e\0\0\0\0\0\0\0]\x94(]\x94\x8c\x01a\x94ah\x01e.\
    ///              \x80\x04\x95\x0e\0\0\0\0\0\0\0]\x94(]\x94\x8c\x01b\x94ah\x01e.";
    /// let mut u = pikl::Unpickler::from_slice(data);
    /// let first = u.load()?;
    /// u.clear_memo();
    /// let second = u.load()?;
    /// assert_eq!(u.view(first).to_string(), "[['a'], ['a']]");
    /// assert_eq!(u.view(second).to_string(), "[['b'], ['b']]");
    /// # Ok::<(), pikl::Error>(())
    /// ```
    pub fn load(&mut self) -> Result<Value> {
        self.noload = false;
        let res = self.run();
        self.reader.commit();
        res
    }

    /// Walks one pickle without building instances or resolving globals, and returns the
    /// persistent ids it met.
    pub fn noload(&mut self) -> Result<Vec<Value>> {
        self.noload = true;
        self.persistent_ids.clear();
        let res = self.run();
        self.reader.commit();
        self.noload = false;
        res.map(|_| std::mem::take(&mut self.persistent_ids))
    }

    fn run(&mut self) -> Result<Value> {
        self.stack.clear();
        self.marks.clear();
        self.fence = 0;
        self.proto = 0;
        // A frame may hold the next pickle too: CPython's unpickler reads on inside it.
        if self.reader.at_end()? {
            return Err(Error::eof(self.reader.position()).with_message("ran out of input"));
        }
        loop {
            // The most frequent opcodes run straight from the reader's window; the rest, and
            // any the window cuts or that fail, go one at a time through `step`.
            self.run_window();
            if self.graph.len() >= self.opts.max_objects {
                let pos = self.reader.position();
                return Err(bad(format!("more than {} objects", self.opts.max_objects)).at(pos));
            }
            let (pos, op) = read_opcode(&mut self.reader)?;
            let res = self.step(op);
            match res {
                Ok(true) => {}
                Ok(false) => return self.pop().map_err(|e| e.at(pos).in_opcode(op)),
                Err(e) => return Err(e.at(pos).in_opcode(op)),
            }
        }
    }

    // ---- stack ----

    #[inline]
    fn push(&mut self, v: Value) {
        self.stack.push(v);
    }

    #[inline]
    fn pop(&mut self) -> Result<Value> {
        if self.stack.len() > self.fence {
            Ok(self.stack.pop().expect("above fence"))
        } else {
            Err(underflow_msg(!self.marks.is_empty()))
        }
    }

    #[inline]
    fn top(&self) -> Result<Value> {
        if self.stack.len() > self.fence {
            Ok(*self.stack.last().expect("above fence"))
        } else {
            Err(underflow_msg(!self.marks.is_empty()))
        }
    }

    /// Opens a mark at the top of the stack (MARK).
    #[inline(always)]
    fn mark(&mut self) -> Result<()> {
        if self.marks.len() >= self.opts.max_depth {
            return Err(too_many_marks(self.opts.max_depth));
        }
        self.marks.push(self.stack.len());
        self.fence = self.stack.len();
        Ok(())
    }

    /// Removes the innermost mark and returns the position where its items start.
    #[inline]
    fn pop_mark(&mut self) -> Result<usize> {
        let Some(start) = self.marks.pop() else {
            return Err(bad("could not find MARK"));
        };
        self.fence = self.marks.last().copied().unwrap_or(0);
        Ok(start)
    }

    /// The stack's items from `start` on, taken off it into a buffer of their own.
    fn take_items(&mut self, start: usize) -> Items {
        let items = self.graph.values_from(&self.stack[start..]);
        self.stack.truncate(start);
        items
    }

    fn add(&mut self, obj: Object<'de>) -> Value {
        self.graph.add(obj)
    }

    // ---- values ----

    fn new_str(&mut self, s: PyStr<'de>) -> Value {
        self.interned.str(&mut self.graph, s)
    }

    /// A bytes object; the empty one is CPython's singleton.
    fn new_bytes(&mut self, b: Cow<'de, [u8]>) -> Value {
        if b.is_empty() {
            if let Some(id) = self.interned.empty_bytes {
                return Value::Obj(id);
            }
            let v = self.add(Object::Bytes(b));
            self.interned.empty_bytes = v.obj_id();
            return v;
        }
        self.add(Object::Bytes(b))
    }

    /// A bytes object made from a buffer, as `PyBytes_FromStringAndSize` makes it: one-byte
    /// results are CPython's shared singletons too.
    fn new_bytes_copied(&mut self, b: Cow<'de, [u8]>) -> Value {
        match *b {
            [c] => self.graph.byte_singleton(c),
            _ => self.new_bytes(b),
        }
    }

    fn new_int(&mut self, p: ParsedInt) -> Value {
        match p {
            ParsedInt::Small(v) => Value::Int(v),
            ParsedInt::Big(b) => self.add(Object::Int(b)),
        }
    }

    /// A Python 2 `str`, decoded per the `encoding` option.
    fn py2_str(&mut self, raw: &[u8]) -> Result<Value> {
        if self.opts.encoding == Encoding::Bytes {
            return Ok(self.new_bytes_copied(Cow::Owned(raw.to_vec())));
        }
        let decoded = codec::decode(raw, self.opts.encoding, self.opts.errors).map_err(|e| bad(e.to_string()))?;
        let s = PyStr::from_surrogatepass(decoded).expect("decoder writes surrogatepass UTF-8");
        Ok(self.new_str(s))
    }

    fn global(&mut self, module: &str, name: &str) -> Result<Value> {
        self.global_from(module, name, None)
    }

    /// The first str object STACK_GLOBAL took the module name `module` from; `s` becomes it
    /// when there is none (or when [`MODULE_STRS_MAX`] names are kept already).
    fn first_module_str(&mut self, module: &str, s: ObjId) -> ObjId {
        let graph = &self.graph;
        let strs = &mut self.interned.module_strs;
        match strs.iter().find(|&&id| graph.view(Value::Obj(id)).as_str() == Some(module)) {
            Some(&id) => id,
            None => {
                if strs.len() < MODULE_STRS_MAX {
                    strs.push(s);
                }
                s
            }
        }
    }

    /// [`Unpickler::global`], for STACK_GLOBAL: `module_str` is the str object the module name
    /// came from, kept with a new global when the name is written back unchanged.
    fn global_from(&mut self, module: &str, name: &str, module_str: Option<Value>) -> Result<Value> {
        if self.noload {
            return Ok(Value::None);
        }
        let (module, name) =
            if self.proto < 3 && self.opts.fix_imports { compat::map_py2_global(module, name) } else { (module, name) };
        if let Some(f) = self.find_class.as_mut() {
            self.key_shape.clear();
            return f(&mut self.graph, module, name);
        }
        // What CPython finds there reports its own module and name (`functools.reduce` is
        // `_functools.reduce`), and is written back under those.
        let (module, name) = crate::canonical::canonical(module, name);
        let h = global_hash(module, name);
        let graph = &self.graph;
        let same = |&(eh, id): &(u64, ObjId)| {
            eh == h && matches!(graph.get(id), Object::Global(g) if g.module == module && g.name == name)
        };
        if let Some(&(_, id)) = self.interned.globals.find(h, same) {
            return Ok(Value::Obj(id));
        }
        // The writer shares one str per module name, as CPython does for globals whose
        // `__module__` is one object; a module name loaded from a second str object of the same
        // text (CPython wrote it again) is kept with the global, to be written again too. A
        // one-character name is CPython's Latin-1 singleton: shared anyway. For "builtins" the
        // writer knows CPython's two strs itself (types' and functions'), and writes globals of
        // its own there (`bytearray`, `set`, ...) that a loaded str would not meet.
        let second_str = module_str.and_then(Value::obj_id).filter(|&s| {
            module.chars().nth(1).is_some()
                && module != "builtins"
                && self.graph.view(Value::Obj(s)).as_str() == Some(module)
                && self.first_module_str(module, s) != s
        });
        let v = self.graph.add_global(module, name, second_str.map(Value::Obj));
        self.interned.globals.insert_unique(h, (h, v.obj_id().expect("object")), |e| e.0);
        Ok(v)
    }

    fn persistent(&mut self, pid: Value) -> Result<Value> {
        if self.noload {
            self.persistent_ids.push(pid);
            return Ok(Value::None);
        }
        match self.persistent_load.as_mut() {
            Some(f) => {
                self.key_shape.clear();
                f(&mut self.graph, pid)
            }
            None => Ok(self.add(Object::PersistentId(pid))),
        }
    }

    /// True for a value that can stand for a tuple: a tuple, or a persistent id (whatever
    /// `persistent_load` would have returned).
    fn is_tuple_like(&self, v: Value) -> bool {
        matches!(self.graph.object(v), Some(Object::Tuple(_) | Object::PersistentId(_)))
    }

    fn tuple_items(&self, v: Value) -> Option<&[Value]> {
        match self.graph.object(v) {
            Some(Object::Tuple(items)) => Some(items),
            _ => None,
        }
    }

    fn is_callable(&self, v: Value) -> bool {
        matches!(
            self.graph.object(v),
            Some(Object::Global(_) | Object::Instance(_) | Object::PersistentId(_) | Object::Extension(_))
        )
    }

    fn type_name(&self, v: Value) -> &'static str {
        self.graph.view(v).type_name()
    }

    /// `callable(*args)`: a native object for the well-known builtins, else an instance.
    fn reduce(&mut self, callable: Value, args: Value) -> Result<Value> {
        if self.noload {
            return Ok(Value::None);
        }
        if !self.is_callable(callable) {
            return Err(bad(format!("'{}' object is not callable", self.type_name(callable))));
        }
        if !self.is_tuple_like(args) {
            return Err(bad("argument list must be a tuple"));
        }
        if self.tuple_items(args).is_none() {
            return Ok(self.add(Object::Instance(Box::new(Instance::new(callable, Construct::Reduce, args, None)))));
        }
        if let Some(v) = self.call_method(callable, args)? {
            return Ok(v);
        }
        if let Some(v) = self.reduce_native(callable, args)? {
            return Ok(v);
        }
        if let Some(v) = self.partial_newobj_ex(callable, args) {
            return Ok(v);
        }
        let args = self.py2_datetime_args(callable, args);
        Ok(self.add(Object::Instance(Box::new(Instance::new(callable, Construct::Reduce, args, None)))))
    }

    /// A discarded `state_setter(obj, state)` call (how CPython writes a `__reduce__` with a
    /// state setter): recorded on `obj` as its state and setter.
    fn state_setter_call(&mut self, popped: Value) {
        let g = &self.graph;
        let Some(call) = g.view(popped).as_instance() else { return };
        let args = g.view(call.args).as_slice().unwrap_or(&[]);
        if call.construct != Construct::Reduce || args.len() != 2 || g.view(call.callable).as_global().is_none() {
            return;
        }
        let (setter, target, state) = (call.callable, args[0], args[1]);
        if let Some(Object::Instance(inst)) = target.obj_id().map(|id| self.graph.get_mut(id)) {
            if inst.state.is_none() && inst.state_setter.is_none() {
                inst.state = Some(state);
                inst.state_setter = Some(setter);
            }
        }
    }

    /// `getattr(obj, 'append')(x)` and the like on a native list, set or dict: the mutation a
    /// `__reduce__` with a state setter or item calls performs, done on the data. Returns the
    /// call's result (None).
    fn call_method(&mut self, callable: Value, args: Value) -> Result<Option<Value>> {
        let g = &self.graph;
        let Some(method) = g.view(callable).as_instance() else { return Ok(None) };
        let is_getattr =
            g.view(method.callable).as_global().is_some_and(|gl| gl.module == "builtins" && gl.name == "getattr");
        let parts = g.view(method.args).as_slice().unwrap_or(&[]);
        if !is_getattr || method.construct != Construct::Reduce || parts.len() != 2 {
            return Ok(None);
        }
        let (target, name) = (parts[0], g.view(parts[1]).as_str().unwrap_or(""));
        let call_args = self.tuple_items(args).unwrap_or(&[]).to_vec();
        let Some(id) = target.obj_id() else { return Ok(None) };
        let unhashable = |e: crate::value::Unhashable| bad(format!("unhashable type: '{}'", e.0));
        match (self.graph.get(id), name, call_args.as_slice()) {
            (Object::List(_), "append", [x]) => self.append(target, &[*x])?,
            (Object::List(_), "extend", [xs]) => {
                let Some(items) = self.graph.view(*xs).as_slice().map(<[Value]>::to_vec) else { return Ok(None) };
                self.append(target, &items)?;
            }
            (Object::Set(_), "add", [x]) => self.graph.set_add_all(id, [*x]).map_err(unhashable)?,
            (Object::Dict(_), "__setitem__", [k, v]) => self.graph.dict_set(id, *k, *v).map_err(unhashable)?,
            (Object::Dict(_), "update", [d]) => {
                let Some(entries) = self.graph.view(*d).as_dict().map(|d| d.entries().to_vec()) else {
                    return Ok(None);
                };
                self.graph.dict_set_all(id, entries).map_err(unhashable)?;
            }
            _ => return Ok(None),
        }
        Ok(Some(Value::None))
    }

    /// `partial(cls.__new__, cls, *args, **kwargs)()`: how CPython writes `NEWOBJ_EX` below
    /// protocol 4. Recognized as the NEWOBJ_EX it stands for.
    fn partial_newobj_ex(&mut self, callable: Value, args: Value) -> Option<Value> {
        let g = &self.graph;
        if !self.tuple_items(args)?.is_empty() {
            return None;
        }
        let partial = g.view(callable).as_instance()?;
        let pg = g.view(partial.callable).as_global()?;
        if (pg.module.as_str(), pg.name.as_str()) != ("functools", "partial") {
            return None;
        }
        let state = g.view(partial.state?).as_slice()?;
        let [func, cls_args, kwargs, Value::None] = *state else { return None };
        let f = g.view(func).as_instance()?;
        let fg = g.view(f.callable).as_global()?;
        let fargs = g.view(f.args).as_slice()?;
        if (fg.module.as_str(), fg.name.as_str()) != ("builtins", "getattr")
            || fargs.len() != 2
            || g.view(fargs[1]).as_str() != Some("__new__")
        {
            return None;
        }
        let cls = fargs[0];
        let cls_args = g.view(cls_args).as_slice()?;
        if cls_args.first() != Some(&cls) {
            return None;
        }
        let rest = cls_args[1..].to_vec();
        if kwargs != Value::None && g.view(kwargs).as_dict().is_none() {
            return None;
        }
        let new_args = self.add(Object::Tuple(rest.into()));
        let kwargs = if kwargs == Value::None { self.add(Object::Dict(Default::default())) } else { kwargs };
        Some(self.add(Object::Instance(Box::new(Instance::new(cls, Construct::NewObjEx, new_args, Some(kwargs))))))
    }

    /// `datetime.date/time/datetime(latin1_str)`, as Python 2 pickled them: the constructor
    /// takes the str's Latin-1 bytes, so they are kept as bytes.
    fn py2_datetime_args(&mut self, callable: Value, args: Value) -> Value {
        let is_datetime = self
            .graph
            .view(callable)
            .as_global()
            .is_some_and(|g| g.module == "datetime" && matches!(g.name.as_str(), "date" | "time" | "datetime"));
        let items = self.tuple_items(args).unwrap_or(&[]);
        if !is_datetime || items.is_empty() {
            return args;
        }
        let Some(data) = self.graph.view(items[0]).as_pystr().and_then(latin1_encode) else {
            return args;
        };
        let mut items = items.to_vec();
        items[0] = self.new_bytes_copied(Cow::Owned(data));
        self.add(Object::Tuple(items.into()))
    }

    fn reduce_native(&mut self, callable: Value, args: Value) -> Result<Option<Value>> {
        let Some(Object::Global(g)) = self.graph.object(callable) else {
            return Ok(None);
        };
        let which = match (g.module.as_str(), g.name.as_str()) {
            ("builtins", n @ ("set" | "frozenset" | "bytearray" | "complex" | "bytes")) => n,
            ("_codecs", "encode") => "encode",
            _ => return Ok(None),
        };
        // Every form below takes at most two arguments: copied out of the graph (which the
        // arms add to) onto the stack rather than into a new `Vec`.
        let items = self.tuple_items(args).expect("checked tuple");
        if items.len() > 2 {
            return Ok(None);
        }
        let mut arg_buf = [Value::None; 2];
        arg_buf[..items.len()].copy_from_slice(items);
        let args = &arg_buf[..items.len()];
        let g = &self.graph;
        let obj = match (which, args) {
            ("set" | "frozenset", []) => Vec::new(),
            ("set" | "frozenset", [items]) => match g.object(*items) {
                Some(Object::List(v) | Object::Tuple(v)) => v.to_vec(),
                Some(Object::Set(s) | Object::FrozenSet(s)) => s.items().to_vec(),
                _ => return Ok(None),
            },
            ("bytearray", []) => return Ok(Some(self.add(Object::ByteArray(Vec::new())))),
            ("bytearray", [b]) => match g.object(*b) {
                Some(Object::Bytes(b)) => {
                    let data = b.to_vec();
                    return Ok(Some(self.add(Object::ByteArray(data))));
                }
                _ => return Ok(None),
            },
            ("bytearray", [s, enc]) => match (g.view(*s).as_pystr(), g.view(*enc).as_str()) {
                (Some(s), Some(e)) if Encoding::from_name(e) == Some(Encoding::Latin1) => match latin1_encode(s) {
                    Some(data) => return Ok(Some(self.add(Object::ByteArray(data)))),
                    None => return Ok(None),
                },
                _ => return Ok(None),
            },
            ("bytes", []) => return Ok(Some(self.new_bytes(Cow::Borrowed(&[])))),
            ("complex", parts) if parts.len() <= 2 => {
                let mut re_im = [0.0f64; 2];
                for (slot, &p) in re_im.iter_mut().zip(parts) {
                    *slot = match p {
                        Value::Float(f) => f,
                        Value::Int(i) => i as f64,
                        Value::Bool(b) => b as i64 as f64,
                        _ => return Ok(None),
                    };
                }
                return Ok(Some(self.add(Object::Complex(re_im[0], re_im[1]))));
            }
            ("encode", [s, enc]) => match (g.view(*s).as_pystr(), g.view(*enc).as_str()) {
                (Some(s), Some(e)) if Encoding::from_name(e) == Some(Encoding::Latin1) => match latin1_encode(s) {
                    Some(data) => return Ok(Some(self.new_bytes_copied(Cow::Owned(data)))),
                    None => return Ok(None),
                },
                _ => return Ok(None),
            },
            _ => return Ok(None),
        };
        let hashable = obj.iter().all(|&v| self.graph.hash(v).is_ok());
        if !hashable {
            return Ok(None);
        }
        let v = if which == "set" { self.graph.set(obj) } else { self.graph.frozenset(obj) };
        Ok(Some(v.expect("checked hashable")))
    }

    /// `class(*args)` for OBJ and INST (CPython's `instantiate`): refused for what cannot be
    /// called, a native object for the well-known builtins (as REDUCE gives), else an instance.
    fn instantiate(&mut self, class: Value, construct: Construct, args: Value) -> Result<Value> {
        if self.noload {
            return Ok(Value::None);
        }
        if !self.is_callable(class) {
            return Err(bad(format!("'{}' object is not callable", self.type_name(class))));
        }
        if let Some(v) = self.reduce_native(class, args)? {
            return Ok(v);
        }
        Ok(self.new_instance(class, construct, args, None))
    }

    fn new_instance(&mut self, callable: Value, construct: Construct, args: Value, kwargs: Option<Value>) -> Value {
        if self.noload {
            return Value::None;
        }
        self.add(Object::Instance(Box::new(Instance::new(callable, construct, args, kwargs))))
    }

    /// Applies `op` to the object just below the mark at `start` with the items above it
    /// (APPENDS, SETITEMS, ADDITEMS), then drops those items; no temporary vector.
    fn apply_marked(&mut self, start: usize, op: fn(&mut Self, Value, &[Value]) -> Result<()>) -> Result<()> {
        if start <= self.fence {
            return Err(underflow_msg(!self.marks.is_empty()));
        }
        if start == self.stack.len() {
            // No items: nothing to do, whatever the target (as CPython's do_append,
            // do_setitems and load_additems).
            return Ok(());
        }
        let target = self.stack[start - 1];
        let stack = std::mem::take(&mut self.stack);
        let res = op(self, target, &stack[start..]);
        self.stack = stack;
        self.stack.truncate(start);
        res
    }

    /// A value stored in a bytearray: an int in range(256) (or a bool), as CPython converts it.
    fn byte_of(&self, v: Value) -> Result<u8> {
        match v {
            Value::Int(i) if (0..256).contains(&i) => Ok(i as u8),
            Value::Bool(b) => Ok(b as u8),
            Value::Int(_) => Err(bad("byte must be in range(0, 256)")),
            v if matches!(self.graph.object(v), Some(Object::Int(_))) => Err(bad("byte must be in range(0, 256)")),
            v => Err(bad(format!("'{}' object cannot be interpreted as an integer", self.type_name(v)))),
        }
    }

    fn append(&mut self, target: Value, items: &[Value]) -> Result<()> {
        let Value::Obj(id) = target else {
            return if self.noload { Ok(()) } else { Err(bad(format!("cannot append to {}", self.type_name(target)))) };
        };
        if let Object::ByteArray(_) = self.graph.get(id) {
            // CPython calls `bytearray.extend(items)`: ints in range(256) only.
            let add = items.iter().map(|&item| self.byte_of(item)).collect::<Result<Vec<u8>>>()?;
            if let Object::ByteArray(bytes) = self.graph.get_mut(id) {
                bytes.extend_from_slice(&add);
            }
            return Ok(());
        }
        if self.graph.list_extend(id, items) {
            return Ok(());
        }
        match self.graph.get_mut(id) {
            Object::Instance(inst) => inst.list_items.extend_from_slice(items),
            other => return Err(bad(format!("'{}' object has no attribute 'append'", other.type_name()))),
        }
        Ok(())
    }

    fn set_items(&mut self, target: Value, items: &[Value]) -> Result<()> {
        let Value::Obj(id) = target else {
            return if self.noload {
                Ok(())
            } else {
                Err(bad(format!("cannot set items on {}", self.type_name(target))))
            };
        };
        match self.graph.get_mut(id) {
            Object::Dict(_) => {
                let pairs = &items[..items.len() & !1];
                self.graph
                    .dict_set_pairs(id, pairs, &mut self.key_shape)
                    .map_err(|e| bad(format!("unhashable type: '{}'", e.0)))?;
            }
            Object::Instance(inst) => inst.dict_items.extend(items.chunks_exact(2).map(|p| (p[0], p[1]))),
            Object::List(_) | Object::ByteArray(_) if !self.noload => return self.assign_items(id, items),
            Object::List(_) | Object::ByteArray(_) => {}
            other => {
                return Err(bad(format!("'{}' object does not support item assignment", other.type_name())));
            }
        }
        Ok(())
    }

    /// SETITEM(S) on a list or bytearray: `target[index] = value` for each pair, as CPython's
    /// `PyObject_SetItem` does it (an int index, negative from the end).
    fn assign_items(&mut self, id: ObjId, items: &[Value]) -> Result<()> {
        let (seq, len) = match self.graph.get(id) {
            Object::ByteArray(b) => (IndexedSeq::ByteArray, b.len()),
            Object::List(l) => (IndexedSeq::List, l.len()),
            _ => unreachable!("assign_items on a list or bytearray"),
        };
        for pair in items.chunks_exact(2) {
            let (key, value) = (pair[0], pair[1]);
            let index = match key {
                Value::Int(i) => i,
                Value::Bool(b) => b as i64,
                k if matches!(self.graph.object(k), Some(Object::Int(_))) => return Err(bad(INDEX_TOO_BIG)),
                k => return Err(bad(seq.bad_index(self.type_name(k)))),
            };
            let at = seq.position(index, len).map_err(bad)?;
            let byte = if seq == IndexedSeq::ByteArray { self.byte_of(value)? } else { 0 };
            match self.graph.get_mut(id) {
                Object::ByteArray(b) => b[at] = byte,
                Object::List(l) => l[at] = value,
                _ => unreachable!("a list or bytearray"),
            }
        }
        Ok(())
    }

    fn add_items(&mut self, target: Value, items: &[Value]) -> Result<()> {
        let Value::Obj(id) = target else {
            return if self.noload {
                Ok(())
            } else {
                Err(bad(format!("cannot add items to {}", self.type_name(target))))
            };
        };
        match self.graph.get_mut(id) {
            Object::Set(_) => {
                self.graph
                    .set_add_all(id, items.iter().copied())
                    .map_err(|e| bad(format!("unhashable type: '{}'", e.0)))?;
            }
            Object::Instance(inst) => inst.set_items.extend_from_slice(items),
            other => return Err(bad(format!("'{}' object has no attribute 'add'", other.type_name()))),
        }
        Ok(())
    }

    /// CPython interns the str keys of a dict state (`PyUnicode_InternInPlace`): identifier
    /// keys become the interpreter's shared interned strs, distinct from equal strs elsewhere.
    fn intern_state_keys(&mut self, state: Value) {
        let dicts: Vec<Value> = match self.graph.object(state) {
            Some(Object::Dict(_)) => vec![state],
            Some(Object::Tuple(parts)) if parts.len() == 2 => parts.to_vec(),
            _ => return,
        };
        for d in dicts {
            let Some(id) = d.obj_id() else { continue };
            let Object::Dict(dict) = self.graph.get(id) else { continue };
            let mut replace = Vec::new();
            for (i, (k, _)) in dict.iter().enumerate() {
                if let Some(s) = self.graph.view(k).as_str() {
                    if is_identifier(s) && s.len() > 1 {
                        replace.push((i, s.to_owned()));
                    }
                }
            }
            for (i, s) in replace {
                let interned = match self.interned.keys.get(&s) {
                    Some(&id) => Value::Obj(id),
                    None => {
                        let v = self.add(Object::Str(PyStr::new(s.clone())));
                        self.interned.keys.insert(s, v.obj_id().expect("object"));
                        v
                    }
                };
                if let Object::Dict(dict) = self.graph.get_mut(id) {
                    dict.replace_key(i, interned);
                }
            }
        }
    }

    fn build(&mut self, target: Value, state: Value) -> Result<()> {
        if !self.noload {
            self.intern_state_keys(state);
        }
        // CPython's load_build: a None state sets nothing on any object; a dict state goes into
        // the object's `__dict__`, which builtin values lack (classes and functions have one).
        let Value::Obj(id) = target else {
            return if self.noload || state == Value::None {
                Ok(())
            } else {
                Err(bad(format!("cannot BUILD {}", self.type_name(target))))
            };
        };
        let empty_dict = self.graph.view(state).as_dict().is_some_and(|d| d.is_empty());
        let previous = match self.graph.get_mut(id) {
            Object::Instance(inst) => inst.state.replace(state),
            _ if state == Value::None => return Ok(()),
            Object::Global(_) | Object::PersistentId(_) | Object::Extension(_) if empty_dict => return Ok(()),
            other => return Err(bad(format!("'{}' object has no attribute '__dict__'", other.type_name()))),
        };
        // A second BUILD with dict states updates the first, as `__dict__.update` would.
        if let Some(prev) = previous {
            let (Some(old), Some(new)) = (self.graph.view(prev).as_dict(), self.graph.view(state).as_dict()) else {
                return Ok(());
            };
            let entries: Vec<_> = old.iter().chain(new.iter()).collect();
            let merged = self.graph.dict(entries).map_err(|e| bad(format!("unhashable type: '{}'", e.0)))?;
            if let Object::Instance(inst) = self.graph.get_mut(id) {
                inst.state = Some(merged);
            }
        }
        Ok(())
    }

    #[inline(always)]
    fn memo_lookup(&self, key: u64) -> Result<Value> {
        match self.memo.get(key) {
            Some(v) => Ok(v),
            None => Err(memo_missing(key)),
        }
    }

    #[inline(always)]
    fn memo_put(&mut self, key: u64) -> Result<()> {
        let v = self.top()?;
        self.memo.put(key, v, self.opts.max_memo_len)
    }

    fn text_memo_key(line: &[u8], what: &str) -> Result<u64> {
        if let Some(key) = text::plain_decimal(line) {
            return Ok(key);
        }
        let s = std::str::from_utf8(line).map_err(|_| bad(format!("invalid {what} argument")))?;
        let s = s.trim_matches(|c: char| c.is_ascii_whitespace());
        if s.starts_with('-') {
            return Err(bad(format!("negative {what} argument")));
        }
        s.parse::<u64>().map_err(|_| bad(format!("invalid {what} argument: {s:?}")))
    }

    fn take_buffer(&mut self) -> Result<Value> {
        if !self.buffers_given {
            return Err(bad("pickle stream refers to out-of-band data but no *buffers* argument was given"));
        }
        let Some(buf) = self.buffers.pop_front() else {
            return Err(bad("not enough out-of-band buffers"));
        };
        Ok(self.add(Object::Buffer(buf)))
    }

    /// Executes one opcode; `Ok(false)` at STOP.
    #[inline]
    fn step(&mut self, op: Opcode) -> Result<bool> {
        use Opcode::*;
        let r = &mut self.reader;
        match op {
            // The window path (`run_window`) runs these unless the window cuts them.
            BinGet => {
                let k = r.read_byte()?;
                let v = self.memo_lookup(k as u64)?;
                self.push(v);
            }
            LongBinGet => {
                let k = read_u32(r)?;
                let v = self.memo_lookup(k as u64)?;
                self.push(v);
            }
            Memoize => self.memo_put(self.memo.len as u64)?,
            BinPut => {
                let k = r.read_byte()?;
                self.memo_put(k as u64)?;
            }
            LongBinPut => {
                let k = read_u32(r)?;
                self.memo_put(k as u64)?;
            }
            BinInt1 => {
                let b = r.read_byte()?;
                self.push(Value::Int(b as i64));
            }
            BinInt2 => {
                let i = read_u16(r)?;
                self.push(Value::Int(i as i64));
            }
            BinInt => {
                let i = read_i32(r)?;
                self.push(Value::Int(i as i64));
            }
            Long1 => {
                let n = r.read_byte()?;
                let parsed = decode_long(&r.read_exact(n as usize)?);
                let v = self.new_int(parsed);
                self.push(v);
            }
            ShortBinUnicode | BinUnicode => {
                let n = read_len(r, op)?;
                let s = str_from_read(r.read_exact(n)?)?;
                let v = self.new_str(s);
                self.push(v);
            }
            BinFloat => {
                let f = read_f64(r)?;
                self.push(Value::Float(f));
            }
            None => self.push(Value::None),
            NewTrue => self.push(Value::Bool(true)),
            NewFalse => self.push(Value::Bool(false)),
            Mark => self.mark()?,
            EmptyList => {
                let v = self.add(Object::List(Items::new()));
                self.push(v);
            }
            EmptyDict => {
                let v = self.add(Object::Dict(Default::default()));
                self.push(v);
            }
            Stop => return Ok(false),
            Pop => {
                if self.marks.last() == Some(&self.stack.len()) {
                    self.pop_mark()?;
                } else {
                    let v = self.pop()?;
                    self.state_setter_call(v);
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
                self.push(Value::Float(f));
            }
            Int => {
                let line = r.read_line()?;
                let v = if let Some(b) = text::int_bool(&line) {
                    Value::Bool(b)
                } else {
                    let p = text::parse_int(&line).ok_or_else(|| bad("could not convert string to int"))?;
                    self.new_int(p)
                };
                self.push(v);
            }
            Long => {
                let line = r.read_line()?;
                let p = text::parse_long(&line)
                    .ok_or_else(|| bad(format!("invalid literal for int() with base 0: {}", py_bytes_repr(&line))))?;
                let v = self.new_int(p);
                self.push(v);
            }
            Long4 => {
                let n = read_len(r, op)?;
                let b = r.read_exact(n)?;
                let v = decode_long(&b);
                let v = self.new_int(v);
                self.push(v);
            }
            PersId => {
                let line = r.read_line()?;
                if !line.is_ascii() {
                    return Err(bad("persistent IDs in protocol 0 must be ASCII strings"));
                }
                let s = PyStr::new(std::string::String::from_utf8(line.to_vec()).expect("ascii"));
                let pid = self.new_str(s);
                let v = self.persistent(pid)?;
                self.push(v);
            }
            BinPersId => {
                let pid = self.pop()?;
                let v = self.persistent(pid)?;
                self.push(v);
            }
            Reduce => {
                let args = self.pop()?;
                let callable = self.pop()?;
                let v = self.reduce(callable, args)?;
                self.push(v);
            }
            String => {
                let line = r.read_line()?;
                let quoted = line.len() >= 2 && line[0] == line[line.len() - 1] && matches!(line[0], b'"' | b'\'');
                if !quoted {
                    return Err(bad("the STRING opcode argument must be quoted"));
                }
                let raw = text::escape_decode(&line[1..line.len() - 1]).map_err(bad)?;
                let v = self.py2_str(&raw)?;
                self.push(v);
            }
            BinString | ShortBinString => {
                let n = read_len(r, op)?;
                let raw = r.read_exact(n)?.to_vec();
                let v = self.py2_str(&raw)?;
                self.push(v);
            }
            Unicode => {
                let line = r.read_line()?;
                let s = if text::is_plain_ascii(&line) {
                    PyStr::from_surrogatepass(line.into_cow()).expect("ASCII is UTF-8")
                } else {
                    let decoded = text::raw_unicode_escape_decode(&line).map_err(bad)?;
                    PyStr::from_surrogatepass(decoded).expect("decoder writes surrogatepass UTF-8")
                };
                let v = self.new_str(s);
                self.push(v);
            }
            BinUnicode8 => {
                let n = read_len(r, op)?;
                let s = str_from_read(r.read_exact(n)?)?;
                let v = self.new_str(s);
                self.push(v);
            }
            BinBytes | ShortBinBytes | BinBytes8 => {
                let n = read_len(r, op)?;
                let cow = r.read_exact(n)?.into_cow();
                let v = self.new_bytes(cow);
                self.push(v);
            }
            ByteArray8 => {
                let n = read_len(r, op)?;
                let data = r.read_exact(n)?.to_vec();
                let v = self.add(Object::ByteArray(data));
                self.push(v);
            }
            NextBuffer => {
                let v = self.take_buffer()?;
                self.push(v);
            }
            ReadonlyBuffer => {
                let v = self.top()?;
                match self.graph.object(v) {
                    Some(Object::Bytes(_)) => {}
                    Some(Object::ByteArray(data)) => {
                        let data = data.clone();
                        let b = self.add(Object::Buffer(PickleBuffer { data, readonly: true }));
                        *self.stack.last_mut().expect("top") = b;
                    }
                    _ => match v.obj_id().map(|id| self.graph.get_mut(id)) {
                        Some(Object::Buffer(b)) => b.readonly = true,
                        _ if self.noload => {}
                        _ => return Err(bad("READONLY_BUFFER needs a buffer on the stack")),
                    },
                }
            }
            EmptyTuple => {
                let v = self.add(Object::Tuple(Items::new()));
                self.push(v);
            }
            Tuple => {
                let start = self.pop_mark()?;
                let items = self.take_items(start);
                let v = Value::Obj(self.graph.add_container(|| Object::Tuple(items)));
                self.push(v);
            }
            Tuple1 | Tuple2 | Tuple3 => {
                let n = (op as u8 - Tuple1 as u8 + 1) as usize;
                if self.stack.len() < self.fence + n {
                    return Err(underflow_msg(!self.marks.is_empty()));
                }
                let items = self.take_items(self.stack.len() - n);
                let v = Value::Obj(self.graph.add_container(|| Object::Tuple(items)));
                self.push(v);
            }
            List => {
                let start = self.pop_mark()?;
                let items = self.take_items(start);
                let v = Value::Obj(self.graph.add_container(|| Object::List(items)));
                self.push(v);
            }
            Append => {
                let item = self.pop()?;
                let target = self.top()?;
                self.append(target, &[item])?;
            }
            Appends => {
                let start = self.pop_mark()?;
                self.apply_marked(start, Self::append)?;
            }
            Dict => {
                let start = self.pop_mark()?;
                let items = self.stack.split_off(start);
                if items.len() % 2 != 0 {
                    return Err(bad("odd number of items for DICT"));
                }
                let v = self.add(Object::Dict(Default::default()));
                self.set_items(v, &items)?;
                self.push(v);
            }
            SetItem => {
                let value = self.pop()?;
                let key = self.pop()?;
                let target = self.top()?;
                self.set_items(target, &[key, value])?;
            }
            SetItems => {
                let start = self.pop_mark()?;
                if (self.stack.len() - start) % 2 != 0 {
                    return Err(bad("odd number of items for SETITEMS"));
                }
                self.apply_marked(start, Self::set_items)?;
            }
            EmptySet => {
                let v = self.add(Object::Set(Default::default()));
                self.push(v);
            }
            AddItems => {
                let start = self.pop_mark()?;
                self.apply_marked(start, Self::add_items)?;
            }
            FrozenSet => {
                let start = self.pop_mark()?;
                let items = self.stack.split_off(start);
                let v = self.graph.frozenset(items).map_err(|e| bad(format!("unhashable type: '{}'", e.0)))?;
                self.push(v);
            }
            Get => {
                let line = r.read_line()?;
                let key = Self::text_memo_key(&line, "GET")?;
                let v = self.memo_lookup(key)?;
                self.push(v);
            }
            Put => {
                let line = r.read_line()?;
                let key = Self::text_memo_key(&line, "PUT")?;
                self.memo_put(key)?;
            }
            Global | Inst => {
                let (module, name) = match ops::read_arg(r, op)? {
                    ops::Arg::Pair(m, n) => (m, n),
                    _ => unreachable!("GLOBAL and INST take a pair"),
                };
                let module = std::string::String::from_utf8(module).map_err(|_| bad("GLOBAL module is not UTF-8"))?;
                let name = std::string::String::from_utf8(name).map_err(|_| bad("GLOBAL name is not UTF-8"))?;
                let class = self.global(&module, &name)?;
                let v = if op == Inst {
                    let start = self.pop_mark()?;
                    let items = self.stack.split_off(start);
                    let args = self.add(Object::Tuple(items.into()));
                    self.instantiate(class, Construct::Inst, args)?
                } else {
                    class
                };
                self.push(v);
            }
            StackGlobal => {
                // A persistent id whose id is a str stands for that str (what an identity
                // `persistent_load` returns).
                let as_str = |g: &Graph<'de>, v: Value| match g.object(v) {
                    Some(Object::PersistentId(pid)) => *pid,
                    _ => v,
                };
                let (name, module) = (self.pop()?, self.pop()?);
                let (name, module) = (as_str(&self.graph, name), as_str(&self.graph, module));
                let (Some(m), Some(n)) = (self.graph.view(module).as_pystr(), self.graph.view(name).as_pystr()) else {
                    return Err(bad("STACK_GLOBAL requires str"));
                };
                let (m, n) = (m.to_string_lossy().into_owned(), n.to_string_lossy().into_owned());
                let v = self.global_from(&m, &n, Some(module))?;
                self.push(v);
            }
            Obj => {
                let start = self.pop_mark()?;
                let mut items = self.stack.split_off(start);
                if items.is_empty() {
                    return Err(underflow_msg(!self.marks.is_empty()));
                }
                let class = items.remove(0);
                let args = self.add(Object::Tuple(items.into()));
                let v = self.instantiate(class, Construct::Obj, args)?;
                self.push(v);
            }
            NewObj => {
                let args = self.pop()?;
                let class = self.pop()?;
                if !self.noload {
                    if !self.is_callable(class) {
                        return Err(bad(format!(
                            "NEWOBJ class argument must be a type, not {}",
                            self.type_name(class)
                        )));
                    }
                    if !self.is_tuple_like(args) {
                        return Err(bad(format!("NEWOBJ args argument must be a tuple, not {}", self.type_name(args))));
                    }
                }
                let v = self.new_instance(class, Construct::NewObj, args, Option::None);
                self.push(v);
            }
            NewObjEx => {
                let kwargs = self.pop()?;
                let args = self.pop()?;
                let class = self.pop()?;
                if !self.noload {
                    if !self.is_callable(class) {
                        return Err(bad(format!(
                            "NEWOBJ_EX class argument must be a type, not {}",
                            self.type_name(class)
                        )));
                    }
                    if self.tuple_items(args).is_none() {
                        return Err(bad(format!(
                            "NEWOBJ_EX args argument must be a tuple, not {}",
                            self.type_name(args)
                        )));
                    }
                    if self.graph.view(kwargs).as_dict().is_none() {
                        return Err(bad(format!(
                            "NEWOBJ_EX kwargs argument must be a dict, not {}",
                            self.type_name(kwargs)
                        )));
                    }
                }
                let v = self.new_instance(class, Construct::NewObjEx, args, Some(kwargs));
                self.push(v);
            }
            Build => {
                let state = self.pop()?;
                let target = self.top()?;
                self.build(target, state)?;
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
                let code = code as u32;
                let v = match self.extensions.get(&code).cloned() {
                    Some((m, n)) => self.global(&m, &n)?,
                    Option::None if self.noload => Value::None,
                    Option::None => self.add(Object::Extension(code)),
                };
                self.push(v);
            }
            Proto => {
                let p = r.read_byte()?;
                if p > HIGHEST_PROTOCOL {
                    return Err(Error::unpickling_msg(format!("unsupported pickle protocol: {p}")));
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

/// Little-endian two's complement (`LONG1` / `LONG4`), as `pickle.decode_long`.
fn decode_long(b: &[u8]) -> ParsedInt {
    if b.len() <= 8 {
        let mut buf = if b.last().is_some_and(|&x| x & 0x80 != 0) { [0xFF; 8] } else { [0; 8] };
        buf[..b.len()].copy_from_slice(b);
        return ParsedInt::Small(i64::from_le_bytes(buf));
    }
    text::small_or_big(BigInt::from_signed_bytes_le(b))
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// Encodes a str as Latin-1, if every code point fits.
fn latin1_encode(s: &PyStr) -> Option<Vec<u8>> {
    crate::latin1::encode(s.as_bytes())
}

fn py_bytes_repr(b: &[u8]) -> std::string::String {
    let mut s = std::string::String::new();
    let _ = crate::value::write_bytes_repr(&mut s, b);
    s
}
