//! The pickler: writes a [`Graph`] the way CPython 3.11's C pickler writes the same objects.
//!
//! Byte-identical output needs CPython's choices, all made here: which objects are memoized
//! (by identity, with CPython's singletons — empty and one-character Latin-1 strs, empty and
//! one-byte bytes, classes — memoized by content), the shortest int opcodes, batches of 1000
//! for APPENDS / SETITEMS / ADDITEMS, recursive tuples (POP_MARK or POPs, then GET), the
//! reductions used below an opcode's protocol (`_codecs.encode` for bytes, `set` / `frozenset`
//! / `bytearray` calls), Python 2 names below protocol 3, and framing. Saving is iterative: a
//! graph nested a million deep is written without recursion.

use std::cell::Cell;
use std::collections::HashMap;
use std::io::Write;

use crate::compat;

use crate::error::{Error, Result};
use crate::frame_writer::{put_16, FrameWriter, Scratch};
use crate::opcodes::Opcode as Op;
use crate::value::{Construct, Graph, Instance, ObjId, Object, PickleBuffer, PyStr, Value, ValueRef};

/// The protocol used when none is given, as the seed documents (Python 2's default).
pub const DEFAULT_PROTOCOL: u8 = 0;

/// How often one object may be re-entered while its reduction is being written.
const MAX_REENTRY: u32 = 32;

/// No opcode after a [`Task::SaveSeq`] or [`Task::SavePairs`] (no opcode is 0).
const NO_OP: u8 = 0;

/// Items per APPENDS / SETITEMS / ADDITEMS batch.
const BATCH: usize = 1000;

/// Resolves a protocol argument as Python does: `None` → [`DEFAULT_PROTOCOL`], negative → the
/// highest, above 5 → an error.
pub fn resolve_protocol(protocol: Option<i32>) -> Result<u8> {
    match protocol {
        None => Ok(DEFAULT_PROTOCOL),
        Some(p) if p < 0 => Ok(crate::HIGHEST_PROTOCOL),
        Some(p) if p <= crate::HIGHEST_PROTOCOL as i32 => Ok(p as u8),
        Some(p) => Err(Error::pickling(format!("pickle protocol must be <= {}, not {p}", crate::HIGHEST_PROTOCOL))),
    }
}

/// What the memo is keyed by: an object's identity, or the content of a CPython singleton.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Key {
    Obj(u32),
    /// A one-character Latin-1 str (`u32::MAX` for the empty str).
    Char(u32),
    /// A one-byte bytes (`256` for the empty bytes).
    Byte(u16),
    /// A class or function by (module, qualified name), numbered by [`PicklerMemo::name`].
    Global(u32),
    /// A module name str written by STACK_GLOBAL, numbered likewise.
    Module(u32),
    /// The interned `'latin1'` str of `_codecs.encode` reductions.
    Latin1,
    /// The `cls.__new__` of the NEWOBJ_EX emulation below protocol 4, by instance.
    NewFunc(u32),
}

/// The pickler's memo: which objects were written, under which index.
#[derive(Default)]
pub struct PicklerMemo {
    /// By object id: the memo index, or [`NONE`].
    objs: Vec<u32>,
    /// One-character Latin-1 strs by code point, the empty str at 256 (allocated on first use).
    chars: Vec<u32>,
    /// One-byte bytes by byte, the empty bytes at 256 (allocated on first use).
    bytes: Vec<u32>,
    other: HashMap<Key, u32, foldhash::fast::FixedState>,
    /// Numbers for (module, name) pairs and module names, so keys stay `Copy`.
    names: hashbrown::HashMap<(String, String), u32, foldhash::fast::FixedState>,
    /// By (module, name) number: true once `compat::map_py3_global` was found to leave the pair
    /// as it is (kept with the numbers).
    unmapped: Vec<bool>,
    len: u32,
    /// The number of objects of the graph being written: the object table's bound.
    graph_len: usize,
}

const NONE: u32 = u32::MAX;

/// The biggest memo table [`dumps`] keeps for the next call on its thread.
const RECYCLE_MAX: usize = 1 << 16;

/// The biggest task stack [`Pickler::dump`] keeps for the next call on its thread.
const TASKS_RECYCLE_MAX: usize = 1 << 10;

thread_local! {
    /// The task stack of the last [`Pickler::dump`] on this thread, empty.
    static TASK_CACHE: Cell<Vec<Task<'static>>> = const { Cell::new(Vec::new()) };
    /// The memo of the last [`dumps`] on this thread, emptied: the next one reuses its tables
    /// rather than allocating them again.
    static MEMO_CACHE: Cell<Option<Box<PicklerMemo>>> = const { Cell::new(None) };
}

/// A (module, name) pair looked up in [`PicklerMemo::names`] without allocating: it hashes as
/// the owned pair does.
#[derive(Hash)]
struct NameRef<'a>(&'a str, &'a str);

impl hashbrown::Equivalent<(String, String)> for NameRef<'_> {
    fn equivalent(&self, key: &(String, String)) -> bool {
        self.0 == key.0 && self.1 == key.1
    }
}

/// Where a singleton key's index lives in a table of 257 (`u32::MAX` and 256: empty).
#[inline]
fn singleton_slot(c: u32) -> usize {
    (c as usize).min(256)
}

impl PicklerMemo {
    /// The number of a (module, name) pair (`name` empty for a module alone).
    fn name(&mut self, module: &str, name: &str) -> u32 {
        if let Some(&n) = self.names.get(&NameRef(module, name)) {
            return n;
        }
        let next = self.names.len() as u32;
        self.names.insert((module.to_owned(), name.to_owned()), next);
        next
    }

    /// True when [`compat::map_py3_global`] leaves the (module, name) pair numbered `n` as it is.
    fn unmapped(&self, n: u32) -> bool {
        self.unmapped.get(n as usize).copied().unwrap_or(false)
    }

    fn set_unmapped(&mut self, n: u32) {
        let n = n as usize;
        if n >= self.unmapped.len() {
            self.unmapped.resize(n + 1, false);
        }
        self.unmapped[n] = true;
    }

    /// Forgets every entry, keeping the tables' memory and the (module, name) numbers (which
    /// only key entries, so they stay valid from one pickle to the next). `None` when the
    /// tables grew too big to keep around.
    fn recycle(mut self: Box<Self>) -> Option<Box<Self>> {
        if self.objs.capacity() > RECYCLE_MAX || self.other.capacity() > RECYCLE_MAX || self.names.len() > RECYCLE_MAX {
            return None;
        }
        self.objs.clear();
        for table in [&mut self.chars, &mut self.bytes] {
            if !table.is_empty() {
                table.fill(NONE);
            }
        }
        self.other.clear();
        self.len = 0;
        self.graph_len = 0;
        Some(self)
    }

    /// Makes room for objects numbered below `n`, so inserts do not grow the table one object
    /// at a time.
    fn reserve_objs(&mut self, n: usize, graph_len: usize) {
        self.graph_len = graph_len;
        if self.objs.len() < n {
            self.objs.resize(n, NONE);
        }
    }

    /// The memo index of object `i`, if it was written.
    #[inline(always)]
    fn obj(&self, i: u32) -> Option<u32> {
        self.objs.get(i as usize).copied().filter(|&x| x != NONE)
    }

    #[inline]
    fn get(&self, key: &Key) -> Option<u32> {
        let idx = match *key {
            Key::Obj(i) => self.objs.get(i as usize).copied(),
            Key::Char(c) => self.chars.get(singleton_slot(c)).copied(),
            Key::Byte(b) => self.bytes.get(singleton_slot(b as u32)).copied(),
            ref k => return self.other.get(k).copied(),
        };
        idx.filter(|&x| x != NONE)
    }

    #[inline(always)]
    fn insert(&mut self, key: Option<Key>) -> u32 {
        let idx = self.len;
        self.len += 1;
        match key {
            Some(Key::Obj(i)) => match self.objs.get_mut(i as usize) {
                Some(slot) => *slot = idx,
                None => self.insert_cold(Key::Obj(i), idx),
            },
            Some(Key::Char(c)) => match self.chars.get_mut(singleton_slot(c)) {
                Some(slot) => *slot = idx,
                None => self.insert_cold(Key::Char(c), idx),
            },
            Some(k) => self.insert_cold(k, idx),
            None => {}
        }
        idx
    }

    #[cold]
    #[inline(never)]
    fn insert_cold(&mut self, key: Key, idx: u32) {
        let (table, i) = match key {
            Key::Obj(i) => (&mut self.objs, i as usize),
            Key::Char(c) => (&mut self.chars, singleton_slot(c)),
            Key::Byte(b) => (&mut self.bytes, singleton_slot(b as u32)),
            k => {
                self.other.insert(k, idx);
                return;
            }
        };
        if i >= table.len() {
            // Singleton tables are allocated whole; the object table doubles (up to the
            // graph's size), so this cold path runs a few times only.
            let min = match key {
                Key::Obj(_) => (table.len() * 2).min(self.graph_len),
                _ => 257,
            };
            table.resize((i + 1).max(min), NONE);
        }
        table[i] = idx;
    }

    /// Number of memo entries.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// True when nothing is memoized.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The memo index of a graph object, if it was written.
    pub fn index_of(&self, v: Value) -> Option<u32> {
        v.obj_id().and_then(|id| self.get(&Key::Obj(id.0)))
    }
}

/// Decides which objects are written as persistent ids (Python's `persistent_id`).
pub type PersistentId<'h> = Box<dyn FnMut(ValueRef<'_, '_>) -> Option<Value> + 'h>;
/// Receives protocol 5 buffers; returning `false` sends a buffer out of band.
pub type BufferCallback<'h> = Box<dyn FnMut(&PickleBuffer) -> bool + 'h>;

/// Writes pickles to a [`Write`], CPython's way. One pickler may `dump` many times with one
/// memo, so an object dumped twice is written once and then referenced.
///
/// If `dump` fails, committed frames (protocol 4+) and payloads of 64 KiB or more written so
/// far may already have reached the writer; use [`dumps`] for all-or-nothing output.
pub struct Pickler<'h, W: Write> {
    out: FrameWriter<W>,
    proto: u8,
    /// Boxed, so that [`dumps`] can hand it to the next call cheaply.
    memo: Box<PicklerMemo>,
    fix_imports: bool,
    persistent_id: Option<PersistentId<'h>>,
    buffer_callback: Option<BufferCallback<'h>>,
    // Fixed hashers: a std `RandomState` reads thread-local keys each time a pickler is made.
    extensions: HashMap<(String, String), u32, foldhash::fast::FixedState>,
    extension_names: HashMap<u32, (String, String), foldhash::fast::FixedState>,
    /// Instances whose reduction is being written (not yet memoized).
    reducing: HashMap<u32, u32, foldhash::fast::FixedState>,
}

/// One step of the iterative save.
/// Which of CPython's batching loops writes the items.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Batching {
    /// `batch_list_exact` / `batch_dict_exact` on a list or dict, before the first batch.
    ExactFirst,
    /// The same, after the first batch.
    Exact,
    /// `batch_list` / `batch_dict` on a reduction's `listitems` / `dictitems`.
    Iter,
}

enum Task<'g> {
    Save(Value),
    /// Save these values in order, then write the opcode (unless [`NO_OP`]).
    SaveSeq(&'g [Value], u8),
    /// Save these keys and values in order.
    SavePairs(&'g [(Value, Value)], u8),
    /// Save each value, each followed by the opcode (APPEND at protocol 0).
    SaveEach(&'g [Value], u8),
    /// Save each key and value, each pair followed by the opcode (SETITEM at protocol 0).
    SavePairsEach(&'g [(Value, Value)], u8),
    /// Save without consulting `persistent_id` (a persistent id itself).
    SaveNoPers(Value),
    Op(u8),
    Str(&'g str, Option<Key>),
    OwnedStr(String, Option<Key>),
    /// A bytes object CPython creates on the fly (fresh, or a singleton when short).
    FreshBytes(&'g [u8]),
    Global(&'g str, &'g str),
    /// Memoize an object just written (or a fresh helper object when `None`).
    Put(Option<Key>),
    /// A memo GET of something written earlier in this pickle.
    GetKey(Key),
    /// After a reduction of a native object: memoize it, or POP + GET if saving its arguments
    /// already did (a recursive object), as `save_reduce` does.
    ReduceDone(Key),
    /// A fresh list or dict (`list(obj)`, `dict(obj)` of a base-type reduction).
    FreshList(&'g [Value]),
    FreshDict(&'g [(Value, Value)]),
    FreshTuple(&'g [Value]),
    /// The argument tuple of a reduction, fresh with its list arguments.
    ReduceArgs(&'g [Value]),
    OwnedBytes(Vec<u8>),
    /// datetime args with the fold bit cleared.
    FoldedArgs {
        data: &'g [u8],
        fold_byte: usize,
        rest: &'g [Value],
    },
    /// After a tuple's items: TUPLE / TUPLEn, or POP(_MARK) + GET if it turned up in the memo.
    TupleEnd {
        key: Key,
        len: usize,
        marked: bool,
    },
    FrozenSetEnd(Key),
    /// After a REDUCE / NEWOBJ: memoize (or POP + GET if recursive), then the items of a base
    /// type (`list`, `dict`), the instance's own items if `own`, and the state.
    ReduceEnd {
        key: Key,
        inst: &'g Instance,
        list: &'g [Value],
        dict: &'g [(Value, Value)],
        own: bool,
    },
    Appends {
        items: &'g [Value],
        batching: Batching,
    },
    SetItems {
        items: &'g [(Value, Value)],
        batching: Batching,
    },
    AddItems(&'g [Value]),
}

impl<'h, W: Write> Pickler<'h, W> {
    /// A pickler writing `protocol` (see [`resolve_protocol`]).
    pub fn new(out: W, protocol: Option<i32>) -> Result<Self> {
        Self::with_writer(FrameWriter::new(out), protocol)
    }

    fn with_writer(out: FrameWriter<W>, protocol: Option<i32>) -> Result<Self> {
        Self::with_writer_memo(out, protocol, Box::default())
    }

    fn with_writer_memo(out: FrameWriter<W>, protocol: Option<i32>, memo: Box<PicklerMemo>) -> Result<Self> {
        Ok(Pickler {
            out,
            proto: resolve_protocol(protocol)?,
            memo,
            fix_imports: true,
            persistent_id: None,
            buffer_callback: None,
            extensions: Default::default(),
            extension_names: Default::default(),
            reducing: Default::default(),
        })
    }

    /// A pickler with Python's deprecated `bin` flag: protocol 1 when true, else 0.
    #[deprecated(note = "use `Pickler::new(out, Some(1))`: the `bin` flag is Python 2's")]
    pub fn with_bin(out: W, bin: bool) -> Self {
        Self::new(out, Some(bin as i32)).expect("protocols 0 and 1 are valid")
    }

    /// The protocol written.
    pub fn protocol(&self) -> u8 {
        self.proto
    }

    /// Writes Python 3 names (no `fix_imports` mapping) below protocol 3 when `false`.
    pub fn set_fix_imports(&mut self, on: bool) {
        self.fix_imports = on;
    }

    /// Writes objects for which `f` returns an id as that persistent id instead.
    pub fn set_persistent_id(&mut self, f: impl FnMut(ValueRef<'_, '_>) -> Option<Value> + 'h) {
        self.persistent_id = Some(Box::new(f));
    }

    /// At protocol 5, asks `f` about each buffer: `false` sends it out of band (NEXT_BUFFER).
    pub fn set_buffer_callback(&mut self, f: impl FnMut(&PickleBuffer) -> bool + 'h) {
        self.buffer_callback = Some(Box::new(f));
    }

    /// Registers an extension code (`copyreg.add_extension`): at protocol 2+ the global is
    /// written as EXT1/2/4, and an [`Object::Extension`] with that code can be named below.
    pub fn add_extension(&mut self, module: &str, name: &str, code: u32) {
        self.extensions.insert((module.into(), name.into()), code);
        self.extension_names.insert(code, (module.into(), name.into()));
    }

    /// The memo.
    pub fn memo(&self) -> &PicklerMemo {
        &self.memo
    }

    /// Follows a renumbering of the graph (from
    /// [`Unpickler::collect_garbage`](crate::Unpickler::collect_garbage)): memo entries of freed
    /// objects are dropped.
    pub fn renumber(&mut self, map: &[Option<crate::ObjId>]) {
        let old = std::mem::take(&mut self.memo.objs);
        for (i, idx) in old.into_iter().enumerate() {
            if idx == NONE {
                continue;
            }
            if let Some(Some(new)) = map.get(i) {
                let n = new.index();
                if n >= self.memo.objs.len() {
                    self.memo.objs.resize(n + 1, NONE);
                }
                self.memo.objs[n] = idx;
            }
        }
    }

    /// Forgets the memo: objects dumped before are written again in full.
    pub fn clear_memo(&mut self) {
        *self.memo = PicklerMemo::default();
    }

    /// The writer.
    pub fn get_ref(&self) -> &W {
        self.out.get_ref()
    }

    /// The writer, giving up the pickler.
    pub fn into_inner(self) -> W {
        self.out.into_inner()
    }

    /// Writes one pickle of `v` (a value of `graph`). The memo is kept across calls, so pass
    /// the same graph each time.
    pub fn dump(&mut self, graph: &Graph, v: Value) -> Result<()> {
        // The memo's object table, sized for the graph (up to a bound, for a small value of a
        // huge graph) so that memoizing does not grow it one object at a time.
        self.memo.reserve_objs(graph.len().min(1 << 12), graph.len());
        if self.proto >= 2 {
            self.out.write(&[Op::Proto as u8, self.proto]);
        }
        if self.proto >= 4 {
            self.out.set_framing(true);
        }
        let res = self.save_all(graph, v);
        self.reducing.clear();
        if let Err(e) = res {
            self.out.discard();
            return Err(e);
        }
        self.out.write_byte(Op::Stop as u8);
        self.out.finish()
    }

    fn save_all<'g>(&mut self, g: &'g Graph, root: Value) -> Result<()> {
        // The task stack of the last pickle on this thread (empty), rather than a new one.
        // `try_with`: while the thread's locals are torn down, a pickler allocates afresh.
        let mut tasks: Vec<Task<'g>> = TASK_CACHE.try_with(Cell::take).unwrap_or_default();
        if tasks.capacity() == 0 {
            tasks.reserve(16);
        }
        tasks.push(Task::Save(root));
        let tasks = self.run_tasks(g, tasks)?;
        if tasks.capacity() <= TASKS_RECYCLE_MAX {
            // An empty vector of the same layout, collected in place: the allocation is kept.
            let empty: Vec<Task<'static>> = tasks.into_iter().map(|_| Task::Op(NO_OP)).collect();
            let _ = TASK_CACHE.try_with(|c| c.set(empty));
        }
        Ok(())
    }

    /// Runs the tasks until none is left, and returns the (empty) stack.
    fn run_tasks<'g>(&mut self, g: &'g Graph, mut tasks: Vec<Task<'g>>) -> Result<Vec<Task<'g>>> {
        while let Some(task) = tasks.pop() {
            match task {
                Task::Save(v) => self.save_one(g, v, &mut tasks)?,
                Task::SaveSeq(items, end) => {
                    // Items in order; leaves are written inline, and a container's tasks run
                    // before the rest of the sequence.
                    let fast = self.fast_path();
                    let mut rest = items;
                    let mut finished = true;
                    while let [v, tail @ ..] = rest {
                        if fast {
                            if let Value::Obj(id) = *v {
                                rest = tail;
                                self.out.boundary()?;
                                if self.save_obj_fast(g, id, &mut tasks, || seq_cont(rest, end))? {
                                    finished = false;
                                    break;
                                }
                                continue;
                            }
                            let n = self.out.write_run::<10, _>(rest, encode_values)?;
                            rest = &rest[n..];
                            if n > 0 {
                                continue;
                            }
                        }
                        let [v, tail @ ..] = rest else { break };
                        rest = tail;
                        let before = tasks.len();
                        self.save_one(g, *v, &mut tasks)?;
                        if tasks.len() > before {
                            if let Some(cont) = seq_cont(rest, end) {
                                tasks.insert(before, cont);
                            }
                            finished = false;
                            break;
                        }
                    }
                    if finished && end != NO_OP {
                        self.out.write_byte(end);
                    }
                }
                Task::SavePairs(items, end) => {
                    let fast = self.fast_path();
                    let mut rest = items;
                    let mut finished = true;
                    while let [(k, v), tail @ ..] = rest {
                        if fast {
                            let (k, v) = (*k, *v);
                            if !matches!(k, Value::Obj(_)) && !matches!(v, Value::Obj(_)) {
                                let n = self.out.write_run::<20, _>(rest, encode_pairs)?;
                                rest = &rest[n..];
                                if n > 0 {
                                    continue;
                                }
                            } else {
                                rest = tail;
                                self.out.boundary()?;
                                let before = tasks.len();
                                if self.save_value_fast(g, k, &mut tasks, || None)? {
                                    tasks.insert(before, Task::Save(v));
                                    if let Some(cont) = pairs_cont(rest, end) {
                                        tasks.insert(before, cont);
                                    }
                                    finished = false;
                                    break;
                                }
                                self.out.boundary()?;
                                if self.save_value_fast(g, v, &mut tasks, || pairs_cont(rest, end))? {
                                    finished = false;
                                    break;
                                }
                                continue;
                            }
                        }
                        let [(k, v), tail @ ..] = rest else { break };
                        rest = tail;
                        let before = tasks.len();
                        self.save_one(g, *k, &mut tasks)?;
                        if tasks.len() > before {
                            tasks.insert(before, Task::Save(*v));
                            if let Some(cont) = pairs_cont(rest, end) {
                                tasks.insert(before, cont);
                            }
                            finished = false;
                            break;
                        }
                        self.save_one(g, *v, &mut tasks)?;
                        if tasks.len() > before {
                            if let Some(cont) = pairs_cont(rest, end) {
                                tasks.insert(before, cont);
                            }
                            finished = false;
                            break;
                        }
                    }
                    if finished && end != NO_OP {
                        self.out.write_byte(end);
                    }
                }
                Task::SaveEach(items, op) => {
                    let mut rest = items;
                    while let [v, tail @ ..] = rest {
                        rest = tail;
                        if let Some(before) = self.save_inline_or_queue(g, *v, &mut tasks)? {
                            // Below the item's tasks: its opcode, then the rest.
                            tasks.insert(before, Task::Op(op));
                            if !rest.is_empty() {
                                tasks.insert(before, Task::SaveEach(rest, op));
                            }
                            break;
                        }
                        self.out.write_byte(op);
                    }
                }
                Task::SavePairsEach(items, op) => {
                    let mut rest = items;
                    while let [(k, v), tail @ ..] = rest {
                        rest = tail;
                        let queued = match self.save_inline_or_queue(g, *k, &mut tasks)? {
                            Some(before) => {
                                tasks.insert(before, Task::Save(*v));
                                Some(before)
                            }
                            None => self.save_inline_or_queue(g, *v, &mut tasks)?,
                        };
                        if let Some(before) = queued {
                            // Below the queued tasks: the pair's opcode, then the rest.
                            tasks.insert(before, Task::Op(op));
                            if !rest.is_empty() {
                                tasks.insert(before, Task::SavePairsEach(rest, op));
                            }
                            break;
                        }
                        self.out.write_byte(op);
                    }
                }
                Task::SaveNoPers(v) => {
                    self.out.boundary()?;
                    self.save(g, v, &mut tasks)?;
                }
                Task::Op(op) => self.out.write_byte(op),
                Task::Str(s, key) => {
                    self.out.boundary()?;
                    self.save_text(s, key)?;
                }
                Task::OwnedStr(s, key) => {
                    self.out.boundary()?;
                    self.save_text(&s, key)?;
                }
                Task::FreshBytes(b) => {
                    self.out.boundary()?;
                    self.save_bytes(b, None, &mut tasks)?;
                }
                Task::Global(m, n) => {
                    self.out.boundary()?;
                    self.save_global(m, n, None, &mut tasks)?;
                }
                Task::Put(key) => self.put(key),
                Task::GetKey(key) => self.get(&key),
                Task::ReduceDone(key) => {
                    if self.memo.get(&key).is_some() {
                        self.out.write_byte(Op::Pop as u8);
                        self.get(&key);
                    } else {
                        self.put(Some(key));
                    }
                }
                Task::OwnedBytes(b) => {
                    self.out.boundary()?;
                    if self.proto >= 3 {
                        self.save_bytes_data(&b, None)?;
                    } else {
                        tasks.push(Task::Put(None));
                        tasks.push(Task::Op(Op::Reduce as u8));
                        self.push_tuple_of(
                            &mut tasks,
                            vec![TupleItem::OwnedStr(crate::latin1::decode(&b)), TupleItem::Latin1],
                        );
                        tasks.push(Task::Global("_codecs", "encode"));
                    }
                }
                Task::ReduceArgs(items) => {
                    // A list argument is `list(self)` of a set or list subclass's `__reduce__`:
                    // fresh each call too, so a recursive object gets its items again.
                    self.out.boundary()?;
                    let args = items
                        .iter()
                        .map(|&v| match g.object(v) {
                            Some(Object::List(list)) => TupleItem::List(list),
                            _ => TupleItem::Value(v),
                        })
                        .collect();
                    self.push_tuple_of(&mut tasks, args);
                }
                Task::FreshTuple(items) => {
                    self.out.boundary()?;
                    self.push_tuple_of(&mut tasks, items.iter().map(|&v| TupleItem::Value(v)).collect());
                }
                Task::FoldedArgs { data, fold_byte, rest } => {
                    let mut b = data.to_vec();
                    b[fold_byte] &= 0x7F;
                    let mut items = vec![TupleItem::OwnedBytes(b)];
                    items.extend(rest.iter().map(|&v| TupleItem::Value(v)));
                    self.push_tuple_of(&mut tasks, items);
                }
                Task::FreshList(items) => {
                    self.out.boundary()?;
                    self.write_empty(Op::EmptyList, Op::List);
                    self.put(None);
                    if !items.is_empty() {
                        tasks.push(Task::Appends { items, batching: Batching::ExactFirst });
                    }
                }
                Task::FreshDict(items) => {
                    self.out.boundary()?;
                    self.write_empty(Op::EmptyDict, Op::Dict);
                    self.put(None);
                    if !items.is_empty() {
                        tasks.push(Task::SetItems { items, batching: Batching::ExactFirst });
                    }
                }
                Task::TupleEnd { key, len, marked } => {
                    if self.memo.get(&key).is_some() {
                        if !marked {
                            for _ in 0..len {
                                self.out.write_byte(Op::Pop as u8);
                            }
                        } else if self.proto >= 1 {
                            self.out.write_byte(Op::PopMark as u8);
                        } else {
                            for _ in 0..=len {
                                self.out.write_byte(Op::Pop as u8);
                            }
                        }
                        self.get(&key);
                    } else {
                        self.out.write_byte(match (marked, len) {
                            (true, _) => Op::Tuple as u8,
                            (false, 1) => Op::Tuple1 as u8,
                            (false, 2) => Op::Tuple2 as u8,
                            _ => Op::Tuple3 as u8,
                        });
                        self.put(Some(key));
                    }
                }
                Task::FrozenSetEnd(key) => {
                    if self.memo.get(&key).is_some() {
                        self.out.write_byte(Op::PopMark as u8);
                        self.get(&key);
                    } else {
                        self.out.write_byte(Op::FrozenSet as u8);
                        self.put(Some(key));
                    }
                }
                Task::ReduceEnd { key, inst, list, dict, own } => {
                    if let Key::Obj(id) = key {
                        if let Some(n) = self.reducing.get_mut(&id) {
                            *n -= 1;
                        }
                    }
                    if self.memo.get(&key).is_some() {
                        self.out.write_byte(Op::Pop as u8);
                        self.get(&key);
                        continue;
                    }
                    self.put(Some(key));
                    self.push_state(inst, key, &mut tasks);
                    // listitems then dictitems (a base type's first, then the instance's own).
                    if own && !inst.dict_items.is_empty() {
                        tasks.push(Task::SetItems { items: &inst.dict_items, batching: Batching::Iter });
                    }
                    if !dict.is_empty() {
                        tasks.push(Task::SetItems { items: dict, batching: Batching::Iter });
                    }
                    if own && !inst.list_items.is_empty() {
                        tasks.push(Task::Appends { items: &inst.list_items, batching: Batching::Iter });
                    }
                    if !list.is_empty() {
                        tasks.push(Task::Appends { items: list, batching: Batching::Iter });
                    }
                }
                Task::Appends { items, batching } => self.batch_appends(items, batching, &mut tasks),
                Task::SetItems { items, batching } => self.batch_setitems(items, batching, &mut tasks),
                Task::AddItems(items) => {
                    let n = items.len().min(BATCH);
                    self.out.write_byte(Op::Mark as u8);
                    if n == BATCH {
                        tasks.push(Task::AddItems(&items[n..]));
                    }
                    tasks.push(Task::SaveSeq(&items[..n], Op::AddItems as u8));
                }
            }
        }
        Ok(tasks)
    }

    /// An empty list or dict: `EMPTY_LIST` / `EMPTY_DICT`, or `MARK LIST` / `MARK DICT` at
    /// protocol 0.
    fn write_empty(&mut self, binary: Op, text: Op) {
        if self.proto >= 1 {
            self.out.write_byte(binary as u8);
        } else {
            self.out.write(&[Op::Mark as u8, text as u8]);
        }
    }

    // ---- memo ----

    #[inline(always)]
    fn put(&mut self, key: Option<Key>) {
        let idx = self.memo.insert(key);
        if self.proto >= 4 {
            self.out.write_byte(Op::Memoize as u8);
        } else if self.proto >= 1 {
            let (word, n) = memo_op_word(idx, Op::BinPut, Op::LongBinPut);
            let mut b = [0; 16];
            b[..8].copy_from_slice(&word);
            self.out.write_16(b, n);
        } else {
            self.write_memo_op(idx, Op::BinPut, Op::LongBinPut, Op::Put);
        }
    }

    fn get(&mut self, key: &Key) {
        let idx = self.memo.get(key).expect("memoized");
        self.write_get(idx);
    }

    /// [`Pickler::write_get`] from protocol 1 (no decimal text).
    #[inline(always)]
    fn write_get_fast(&mut self, idx: u32) {
        debug_assert!(self.proto >= 1);
        let (word, n) = if idx < 256 {
            (Op::BinGet as u128 | (idx as u128) << 8, 2)
        } else {
            (Op::LongBinGet as u128 | (idx as u128) << 8, 5)
        };
        self.out.write_16(word.to_le_bytes(), n);
    }

    fn write_get(&mut self, idx: u32) {
        self.write_memo_op(idx, Op::BinGet, Op::LongBinGet, Op::Get);
    }

    /// A memo index as PUT / GET write it: one byte, four bytes, or decimal text at protocol 0.
    fn write_memo_op(&mut self, idx: u32, short: Op, long: Op, text: Op) {
        if self.proto == 0 {
            let (b, n) = text_line(text as u8, false, idx);
            self.out.write_16(b, n);
        } else if idx < 256 {
            self.out.write(&[short as u8, idx as u8]);
        } else {
            self.out.write_byte(long as u8);
            self.out.write(&idx.to_le_bytes());
        }
    }

    /// Writes a memo GET if `key` was written before.
    fn try_get(&mut self, key: &Key) -> bool {
        match self.memo.get(key) {
            Some(idx) => {
                self.write_get(idx);
                true
            }
            None => false,
        }
    }

    /// Writes `v` on the spot when it is a protocol 0 scalar or needs no task; else queues its
    /// tasks and returns where they start, so the caller can queue what follows below them.
    #[inline(always)]
    fn save_inline_or_queue<'g>(&mut self, g: &'g Graph, v: Value, tasks: &mut Vec<Task<'g>>) -> Result<Option<usize>> {
        if self.save_text_scalar(v)? {
            return Ok(None);
        }
        let before = tasks.len();
        self.save_one(g, v, tasks)?;
        Ok((tasks.len() > before).then_some(before))
    }

    /// [`Pickler::save_one`] of a protocol 0 int (of 32 bits) or None, without a
    /// `persistent_id` hook; false (nothing written) for anything else.
    #[inline(always)]
    fn save_text_scalar(&mut self, v: Value) -> Result<bool> {
        if self.persistent_id.is_some() {
            return Ok(false);
        }
        self.out.boundary()?;
        Ok(match v {
            Value::Int(i) => match i32::try_from(i) {
                Ok(small) => {
                    let (b, n) = text_line(Op::Int as u8, small < 0, small.unsigned_abs());
                    self.out.write_16(b, n);
                    true
                }
                Err(_) => false,
            },
            Value::None => {
                self.out.write_byte(Op::None as u8);
                true
            }
            _ => false,
        })
    }

    /// True when values may be saved by [`Pickler::save_value_fast`] and scalars written by
    /// [`encode_scalar`]: protocol 2 or higher (their opcodes) and no `persistent_id` hook
    /// (which sees every value).
    #[inline(always)]
    fn fast_path(&self) -> bool {
        self.proto >= 2 && self.persistent_id.is_none()
    }

    /// [`Pickler::save`] of a scalar or (by [`Pickler::save_obj_fast`]) an object, when
    /// [`Pickler::fast_path`] holds and after the boundary.
    #[inline(always)]
    fn save_value_fast<'g>(
        &mut self,
        g: &'g Graph,
        v: Value,
        tasks: &mut Vec<Task<'g>>,
        cont: impl FnOnce() -> Option<Task<'g>>,
    ) -> Result<bool> {
        match v {
            Value::Obj(id) => self.save_obj_fast(g, id, tasks, cont),
            _ => {
                if let Some((bytes, n)) = encode_scalar(v) {
                    self.out.write_16(bytes, n);
                }
                Ok(false)
            }
        }
    }

    /// [`Pickler::save`] of an object when [`Pickler::fast_path`] holds and after the boundary:
    /// strs, lists, dicts and tuples here, the rest by `save`. If it pushes tasks, it pushes
    /// `cont` (what comes after this object) below them first and returns true.
    #[inline(always)]
    fn save_obj_fast<'g>(
        &mut self,
        g: &'g Graph,
        id: ObjId,
        tasks: &mut Vec<Task<'g>>,
        cont: impl FnOnce() -> Option<Task<'g>>,
    ) -> Result<bool> {
        let key = Key::Obj(id.0);
        match g.get(id) {
            Object::Str(s) => {
                let b = s.as_bytes();
                // Maybe one of CPython's singletons: up to two bytes, but not two ASCII
                // characters.
                if b.len() < 2 || b.len() == 2 && b[0] >= 0x80 {
                    return self.save_short_str(s, key);
                }
                if let Some(idx) = self.memo.obj(id.0) {
                    self.write_get_fast(idx);
                    return Ok(false);
                }
                if b.len() <= 0xFF && self.proto >= 4 {
                    self.memo.insert(Some(key));
                    self.out.write_short(Op::ShortBinUnicode as u8, b, Op::Memoize as u8);
                    return Ok(false);
                }
                if self.proto < 4 && b.len() < crate::frame_writer::FRAME_SIZE_TARGET {
                    // Protocols 2 and 3: BINUNICODE, then BINPUT / LONG_BINPUT (no frames).
                    let idx = self.memo.insert(Some(key));
                    let mut head = [Op::BinUnicode as u8, 0, 0, 0, 0, 0, 0, 0];
                    head[1..5].copy_from_slice(&(b.len() as u32).to_le_bytes());
                    let (tail, tail_len) = memo_op_word(idx, Op::BinPut, Op::LongBinPut);
                    self.out.write_around(head, 5, b, tail, tail_len);
                    return Ok(false);
                }
                self.save_pystr(s, Some(key))?;
                Ok(false)
            }
            _ => self.save_container_fast(g, id, tasks, cont),
        }
    }

    /// [`Pickler::save_obj_fast`] of a str of up to two bytes, out of line.
    #[cold]
    #[inline(never)]
    fn save_short_str(&mut self, s: &PyStr, key: Key) -> Result<bool> {
        // One of CPython's singletons (the empty str, one Latin-1 character): memoized by
        // content.
        let b = s.as_bytes();
        let Some(key) = singleton_str_key(s) else {
            self.save_pystr(s, Some(key))?;
            return Ok(false);
        };
        if let Some(idx) = self.memo.get(&key) {
            self.write_get_fast(idx);
            return Ok(false);
        }
        let idx = self.memo.insert(Some(key));
        if self.proto >= 4 {
            self.out.write_short(Op::ShortBinUnicode as u8, b, Op::Memoize as u8);
        } else {
            let head = [Op::BinUnicode as u8, b.len() as u8, 0, 0, 0, 0, 0, 0];
            let (tail, tail_len) = memo_op_word(idx, Op::BinPut, Op::LongBinPut);
            self.out.write_around(head, 5, b, tail, tail_len);
        }
        Ok(false)
    }

    /// The rest of [`Pickler::save_obj_fast`], out of line so that the str path stays small.
    #[inline(never)]
    fn save_container_fast<'g>(
        &mut self,
        g: &'g Graph,
        id: ObjId,
        tasks: &mut Vec<Task<'g>>,
        cont: impl FnOnce() -> Option<Task<'g>>,
    ) -> Result<bool> {
        let key = Key::Obj(id.0);
        match g.get(id) {
            Object::List(items) => {
                if let Some(idx) = self.memo.obj(id.0) {
                    self.write_get_fast(idx);
                    return Ok(false);
                }
                self.out.write_byte(Op::EmptyList as u8);
                self.put(Some(key));
                if items.is_empty() {
                    return Ok(false);
                }
                // One batch starting with scalars: written here, without a task unless an
                // object follows them.
                if (2..=BATCH).contains(&items.len()) && !matches!(items[0], Value::Obj(_)) {
                    self.out.write_byte(Op::Mark as u8);
                    let n = self.out.write_run::<10, _>(items, encode_values)?;
                    if n == items.len() {
                        self.out.write_byte(Op::Appends as u8);
                        return Ok(false);
                    }
                    if let Some(cont) = cont() {
                        tasks.push(cont);
                    }
                    tasks.push(Task::SaveSeq(&items[n..], Op::Appends as u8));
                    return Ok(true);
                }
                if let Some(cont) = cont() {
                    tasks.push(cont);
                }
                self.batch_appends(items, Batching::ExactFirst, tasks);
                Ok(true)
            }
            Object::Dict(d) => {
                if let Some(idx) = self.memo.obj(id.0) {
                    self.write_get_fast(idx);
                    return Ok(false);
                }
                self.out.write_byte(Op::EmptyDict as u8);
                self.put(Some(key));
                if d.is_empty() {
                    return Ok(false);
                }
                // As for lists; below 1000 items (a full batch is followed by an empty one).
                let e = d.entries();
                if (2..BATCH).contains(&e.len()) && !matches!(e[0].0, Value::Obj(_)) && !matches!(e[0].1, Value::Obj(_))
                {
                    self.out.write_byte(Op::Mark as u8);
                    let n = self.out.write_run::<20, _>(e, encode_pairs)?;
                    if n == e.len() {
                        self.out.write_byte(Op::SetItems as u8);
                        return Ok(false);
                    }
                    if let Some(cont) = cont() {
                        tasks.push(cont);
                    }
                    tasks.push(Task::SavePairs(&e[n..], Op::SetItems as u8));
                    return Ok(true);
                }
                if let Some(cont) = cont() {
                    tasks.push(cont);
                }
                self.batch_setitems(e, Batching::ExactFirst, tasks);
                Ok(true)
            }
            Object::Tuple(items) if !items.is_empty() => {
                if let Some(idx) = self.memo.obj(id.0) {
                    self.write_get_fast(idx);
                    return Ok(false);
                }
                let n = items.len();
                let marked = n > 3;
                if marked {
                    self.out.write_byte(Op::Mark as u8);
                }
                // Leading scalars here; if they are all, the tuple ends here too (scalars cannot
                // have memoized it).
                let done = if matches!(items[0], Value::Obj(_)) {
                    0
                } else {
                    self.out.write_run::<10, _>(items, encode_values)?
                };
                if done == n {
                    self.out.write_byte(match n {
                        _ if marked => Op::Tuple as u8,
                        1 => Op::Tuple1 as u8,
                        2 => Op::Tuple2 as u8,
                        _ => Op::Tuple3 as u8,
                    });
                    self.put(Some(key));
                    return Ok(false);
                }
                if let Some(cont) = cont() {
                    tasks.push(cont);
                }
                tasks.push(Task::TupleEnd { key, len: n, marked });
                tasks.push(Task::SaveSeq(&items[done..], NO_OP));
                Ok(true)
            }
            _ => {
                let before = tasks.len();
                self.save(g, Value::Obj(id), tasks)?;
                if tasks.len() == before {
                    return Ok(false);
                }
                if let Some(cont) = cont() {
                    tasks.insert(before, cont);
                }
                Ok(true)
            }
        }
    }

    // ---- atoms ----

    fn save_int(&mut self, i: i64) {
        if let Ok(small) = i32::try_from(i) {
            if self.proto >= 1 {
                if (0..=0xFF).contains(&small) {
                    self.out.write(&[Op::BinInt1 as u8, small as u8]);
                } else if (0..=0xFFFF).contains(&small) {
                    let b = (small as u16).to_le_bytes();
                    self.out.write(&[Op::BinInt2 as u8, b[0], b[1]]);
                } else {
                    self.out.write_byte(Op::BinInt as u8);
                    self.out.write(&small.to_le_bytes());
                }
            } else {
                let (b, n) = text_line(Op::Int as u8, small < 0, small.unsigned_abs());
                self.out.write_16(b, n);
            }
            return;
        }
        if self.proto >= 2 {
            let b = i.to_le_bytes();
            let mut n = 8;
            while n > 1 && ((b[n - 1] == 0 && b[n - 2] & 0x80 == 0) || (b[n - 1] == 0xFF && b[n - 2] & 0x80 != 0)) {
                n -= 1;
            }
            self.out.write(&[Op::Long1 as u8, n as u8]);
            self.out.write(&b[..n]);
        } else {
            self.out.write_byte(Op::Long as u8);
            self.out.write(itoa::Buffer::new().format(i).as_bytes());
            self.out.write(b"L\n");
        }
    }

    fn save_bigint(&mut self, i: &num_bigint::BigInt) {
        if self.proto >= 2 {
            let b = i.to_signed_bytes_le();
            if b.len() < 256 {
                self.out.write(&[Op::Long1 as u8, b.len() as u8]);
            } else {
                self.out.write_byte(Op::Long4 as u8);
                self.out.write(&(b.len() as u32).to_le_bytes());
            }
            self.out.write(&b);
        } else {
            self.out.write_byte(Op::Long as u8);
            self.out.write(i.to_string().as_bytes());
            self.out.write(b"L\n");
        }
    }

    fn save_float(&mut self, f: f64) {
        if self.proto >= 1 {
            self.out.write_byte(Op::BinFloat as u8);
            self.out.write(&f.to_be_bytes());
        } else {
            let mut s = String::with_capacity(24);
            s.push('F');
            crate::value::format_float(&mut s, f, true);
            s.push('\n');
            self.out.write(s.as_bytes());
        }
    }

    /// A str: its memo key is its content for CPython's singletons, else `key`.
    fn save_pystr(&mut self, s: &PyStr, key: Option<Key>) -> Result<()> {
        let key = singleton_str_key(s).or(key);
        if let Some(k) = &key {
            if self.try_get(k) {
                return Ok(());
            }
        }
        let bytes = s.as_bytes();
        if self.proto >= 1 {
            let n = bytes.len();
            if n <= 0xFF && self.proto >= 4 {
                self.out.write_payload(&[Op::ShortBinUnicode as u8, n as u8], bytes)?;
            } else if n > 0xFFFF_FFFF {
                if self.proto < 4 {
                    return Err(Error::pickling("cannot serialize a string larger than 4GiB"));
                }
                let mut h = vec![Op::BinUnicode8 as u8];
                h.extend_from_slice(&(n as u64).to_le_bytes());
                self.out.write_payload(&h, bytes)?;
            } else {
                let mut h = [Op::BinUnicode as u8, 0, 0, 0, 0];
                h[1..].copy_from_slice(&(n as u32).to_le_bytes());
                self.out.write_payload(&h, bytes)?;
            }
        } else if bytes.iter().all(|&b| (0x20..0x80).contains(&b) && b != b'\\' || b == b'\t') {
            // ASCII that `raw-unicode-escape` leaves as it is (no backslash, NUL, LF, CR, ^Z).
            self.out.write_byte(Op::Unicode as u8);
            self.out.write(bytes);
            self.out.write_byte(b'\n');
        } else {
            let mut text = Vec::with_capacity(bytes.len() + 2);
            text.push(Op::Unicode as u8);
            raw_unicode_escape(s.code_points(), &mut text);
            text.push(b'\n');
            self.out.write(&text);
        }
        self.put(key);
        Ok(())
    }

    fn save_text(&mut self, s: &str, key: Option<Key>) -> Result<()> {
        self.save_pystr(&PyStr::new(s), key)
    }

    fn save_bytes_data(&mut self, b: &[u8], key: Option<Key>) -> Result<()> {
        let n = b.len();
        if n <= 0xFF {
            self.out.write_payload(&[Op::ShortBinBytes as u8, n as u8], b)?;
        } else if n <= 0xFFFF_FFFF {
            let mut h = [Op::BinBytes as u8, 0, 0, 0, 0];
            h[1..].copy_from_slice(&(n as u32).to_le_bytes());
            self.out.write_payload(&h, b)?;
        } else {
            if self.proto < 4 {
                return Err(Error::pickling("cannot serialize a bytes object larger than 4 GiB"));
            }
            let mut h = vec![Op::BinBytes8 as u8];
            h.extend_from_slice(&(n as u64).to_le_bytes());
            self.out.write_payload(&h, b)?;
        }
        self.put(key);
        Ok(())
    }

    fn save_bytearray_data(&mut self, b: &[u8], key: Option<Key>) -> Result<()> {
        let mut h = vec![Op::ByteArray8 as u8];
        h.extend_from_slice(&(b.len() as u64).to_le_bytes());
        self.out.write_payload(&h, b)?;
        self.put(key);
        Ok(())
    }

    // ---- globals ----

    /// Writes the global `module.name`; `module_str` is the graph's str object its module name
    /// was loaded from (memoized as that object at protocols 4 and 5).
    fn save_global<'g>(
        &mut self,
        module: &'g str,
        name: &'g str,
        module_str: Option<ObjId>,
        tasks: &mut Vec<Task<'g>>,
    ) -> Result<()> {
        let number = self.memo.name(module, name);
        let key = Key::Global(number);
        if self.try_get(&key) {
            return Ok(());
        }
        if self.proto >= 2 {
            if let Some(&code) = (!self.extensions.is_empty())
                .then(|| self.extensions.get(&(module.to_owned(), name.to_owned())))
                .flatten()
            {
                self.write_ext(code);
                return Ok(());
            }
        }
        if self.proto >= 4 {
            tasks.push(Task::Put(Some(key)));
            tasks.push(Task::Op(Op::StackGlobal as u8));
            tasks.push(Task::Str(name, None));
            // The loaded str object where there is one; else CPython shares a module's name str
            // between its globals, except that builtins' functions and types carry two
            // different "builtins" strs.
            let key = match module_str {
                Some(id) => Key::Obj(id.0),
                None => {
                    let kind = if module == "builtins" && is_builtin_type(name) { "#type" } else { "" };
                    Key::Module(self.memo.name(module, kind))
                }
            };
            tasks.push(Task::Str(module, Some(key)));
            return Ok(());
        }
        if let Some((parent, last)) = name.rsplit_once('.') {
            // `getattr(parent, last)`, not memoized by the reduction itself.
            tasks.push(Task::Put(Some(key)));
            tasks.push(Task::Op(Op::Reduce as u8));
            self.push_tuple_of(tasks, vec![TupleItem::Global(module, parent), TupleItem::Str(last)]);
            tasks.push(Task::Global("builtins", "getattr"));
            return Ok(());
        }
        let (m, n) = if self.proto < 3 && self.fix_imports && !self.memo.unmapped(number) {
            let mapped = compat::map_py3_global(module, name);
            if mapped == (module, name) {
                self.memo.set_unmapped(number);
            }
            mapped
        } else {
            (module, name)
        };
        if m.contains('\n') || n.contains('\n') {
            return Err(Error::pickling(format!(
                "can't pickle global {m:?}.{n:?}: a newline cannot be written in a GLOBAL line"
            )));
        }
        let encodable = |s: &str| self.proto == 3 || s.is_ascii();
        if !encodable(m) {
            return Err(Error::pickling(format!(
                "can't pickle module identifier '{m}' using pickle protocol {}",
                self.proto
            )));
        }
        if !encodable(n) {
            return Err(Error::pickling(format!(
                "can't pickle global identifier '{n}' using pickle protocol {}",
                self.proto
            )));
        }
        self.out.write_byte(Op::Global as u8);
        self.out.write(m.as_bytes());
        self.out.write_byte(b'\n');
        self.out.write(n.as_bytes());
        self.out.write_byte(b'\n');
        self.put(Some(key));
        Ok(())
    }

    fn write_ext(&mut self, code: u32) {
        if code <= 0xFF {
            self.out.write(&[Op::Ext1 as u8, code as u8]);
        } else if code <= 0xFFFF {
            let b = (code as u16).to_le_bytes();
            self.out.write(&[Op::Ext2 as u8, b[0], b[1]]);
        } else {
            self.out.write_byte(Op::Ext4 as u8);
            self.out.write(&(code as i32).to_le_bytes());
        }
    }

    /// The state after a reduction: `BUILD`, or `state_setter(obj, state)` then POP.
    fn push_state<'g>(&mut self, inst: &'g Instance, key: Key, tasks: &mut Vec<Task<'g>>) {
        let Some(state) = inst.state.filter(|&s| s != Value::None) else { return };
        match inst.state_setter {
            None => {
                tasks.push(Task::Op(Op::Build as u8));
                tasks.push(Task::Save(state));
            }
            Some(setter) => {
                tasks.push(Task::Op(Op::Pop as u8));
                tasks.push(Task::Op(Op::Reduce as u8));
                tasks.push(Task::Op(Op::Tuple2 as u8));
                tasks.push(Task::Save(state));
                tasks.push(Task::GetKey(key));
                tasks.push(Task::Save(setter));
            }
        }
    }

    /// Pushes tasks that write a fresh (never shared) tuple of helper items.
    fn push_tuple_of<'g>(&mut self, tasks: &mut Vec<Task<'g>>, items: Vec<TupleItem<'g>>) {
        let n = items.len();
        if n == 0 {
            tasks.push(Task::Op(Op::EmptyTuple as u8));
            if self.proto == 0 {
                tasks.pop();
                tasks.push(Task::Op(Op::Tuple as u8));
                tasks.push(Task::Op(Op::Mark as u8));
            }
            return;
        }
        tasks.push(Task::Put(None));
        let short = n <= 3 && self.proto >= 2;
        tasks.push(Task::Op(if short {
            [0, Op::Tuple1 as u8, Op::Tuple2 as u8, Op::Tuple3 as u8][n]
        } else {
            Op::Tuple as u8
        }));
        for item in items.into_iter().rev() {
            tasks.push(match item {
                TupleItem::Value(v) => Task::Save(v),
                TupleItem::Str(s) => Task::Str(s, None),
                TupleItem::OwnedStr(s) => Task::OwnedStr(s, None),
                TupleItem::FreshBytes(b) => Task::FreshBytes(b),
                TupleItem::OwnedBytes(b) => Task::OwnedBytes(b),
                TupleItem::List(items) => Task::FreshList(items),
                TupleItem::Dict(items) => Task::FreshDict(items),
                TupleItem::Tuple(items) => Task::FreshTuple(items),
                TupleItem::Latin1 => Task::Str("latin1", Some(Key::Latin1)),
                TupleItem::Global(m, n) => Task::Global(m, n),
            });
        }
        if !short {
            tasks.push(Task::Op(Op::Mark as u8));
        }
    }

    // ---- objects ----

    fn save_pers<'g>(&mut self, g: &'g Graph, pid: Value, tasks: &mut Vec<Task<'g>>) -> Result<()> {
        if self.proto >= 1 {
            tasks.push(Task::Op(Op::BinPersId as u8));
            tasks.push(Task::SaveNoPers(pid));
            return Ok(());
        }
        let text = match g.view(pid).as_pystr() {
            Some(s) => s.to_string_lossy().into_owned(),
            None => g.view(pid).to_string(),
        };
        if !text.is_ascii() || text.contains('\n') {
            return Err(Error::pickling("persistent IDs in protocol 0 must be ASCII strings"));
        }
        self.out.write_byte(Op::PersId as u8);
        self.out.write(text.as_bytes());
        self.out.write_byte(b'\n');
        Ok(())
    }

    /// Saves one value as CPython's `save()` does: a frame boundary, then `persistent_id`.
    #[inline]
    fn save_one<'g>(&mut self, g: &'g Graph, v: Value, tasks: &mut Vec<Task<'g>>) -> Result<()> {
        self.out.boundary()?;
        if let Some(f) = self.persistent_id.as_mut() {
            if let Some(pid) = f(g.view(v)) {
                return self.save_pers(g, pid, tasks);
            }
        }
        self.save(g, v, tasks)
    }

    fn save<'g>(&mut self, g: &'g Graph, v: Value, tasks: &mut Vec<Task<'g>>) -> Result<()> {
        if self.proto >= 2 {
            if let Some((bytes, n)) = encode_scalar(v) {
                self.out.write_16(bytes, n);
                return Ok(());
            }
        }
        let id = match v {
            Value::None => {
                self.out.write_byte(Op::None as u8);
                return Ok(());
            }
            Value::Bool(b) => {
                if self.proto >= 2 {
                    self.out.write_byte(if b { Op::NewTrue as u8 } else { Op::NewFalse as u8 });
                } else {
                    self.out.write(if b { b"I01\n" } else { b"I00\n" });
                }
                return Ok(());
            }
            Value::Int(i) => {
                self.save_int(i);
                return Ok(());
            }
            Value::Float(f) => {
                self.save_float(f);
                return Ok(());
            }
            Value::Obj(id) => id,
        };
        let obj = g.get(id);
        let key = Key::Obj(id.0);
        match obj {
            Object::Int(i) => {
                self.save_bigint(i);
                return Ok(());
            }
            Object::Str(s) => return self.save_pystr(s, Some(key)),
            Object::Global(gl) => return self.save_global(&gl.module, &gl.name, gl.module_str(), tasks),
            Object::Extension(code) => return self.save_extension(*code, tasks),
            Object::PersistentId(pid) => return self.save_pers(g, *pid, tasks),
            _ => {}
        }
        let key = match obj {
            Object::Bytes(b) if b.is_empty() || g.is_byte_singleton(id) => singleton_bytes_key(b).unwrap_or(key),
            _ => key,
        };
        if self.try_get(&key) {
            return Ok(());
        }
        match obj {
            Object::Bytes(b) => self.save_bytes(b, Some(key), tasks),
            Object::ByteArray(b) => {
                if self.proto >= 5 {
                    return self.save_bytearray_data(b, Some(key));
                }
                // `bytearray(bytes(obj))`, or `bytearray()` when empty.
                tasks.push(Task::ReduceDone(key));
                tasks.push(Task::Op(Op::Reduce as u8));
                let args = if b.is_empty() { vec![] } else { vec![TupleItem::FreshBytes(b)] };
                self.push_tuple_of(tasks, args);
                tasks.push(Task::Global("builtins", "bytearray"));
                Ok(())
            }
            _ => self.save_container(g, obj, key, tasks),
        }
    }

    /// A bytes object: BINBYTES from protocol 3, else `_codecs.encode(str, 'latin1')`.
    fn save_bytes<'g>(&mut self, b: &'g [u8], key: Option<Key>, tasks: &mut Vec<Task<'g>>) -> Result<()> {
        if self.proto >= 3 {
            return self.save_bytes_data(b, key);
        }
        tasks.push(match key {
            Some(key) => Task::ReduceDone(key),
            None => Task::Put(None),
        });
        tasks.push(Task::Op(Op::Reduce as u8));
        if b.is_empty() {
            self.push_tuple_of(tasks, vec![]);
            tasks.push(Task::Global("builtins", "bytes"));
        } else {
            self.push_tuple_of(tasks, vec![TupleItem::OwnedStr(crate::latin1::decode(b)), TupleItem::Latin1]);
            tasks.push(Task::Global("_codecs", "encode"));
        }
        Ok(())
    }

    fn save_extension<'g>(&mut self, code: u32, tasks: &mut Vec<Task<'g>>) -> Result<()> {
        if self.proto >= 2 {
            self.write_ext(code);
            return Ok(());
        }
        match self.extension_names.get(&code).cloned() {
            Some((m, n)) => {
                // Owned names: write the GLOBAL directly.
                let _ = tasks;
                let key = Key::Global(self.memo.name(&m, &n));
                if self.try_get(&key) {
                    return Ok(());
                }
                let (mm, nn) = if self.proto < 3 && self.fix_imports {
                    compat::map_py3_global(&m, &n)
                } else {
                    (m.as_str(), n.as_str())
                };
                let line = format!("c{mm}\n{nn}\n");
                self.out.write(line.as_bytes());
                self.put(Some(key));
                Ok(())
            }
            None => Err(Error::pickling(format!(
                "extension code {code} cannot be written below protocol 2 without a registry naming it"
            ))),
        }
    }

    fn save_container<'g>(&mut self, g: &'g Graph, obj: &'g Object, key: Key, tasks: &mut Vec<Task<'g>>) -> Result<()> {
        match obj {
            Object::List(items) => {
                self.write_empty(Op::EmptyList, Op::List);
                self.put(Some(key));
                if !items.is_empty() {
                    tasks.push(Task::Appends { items, batching: Batching::ExactFirst });
                }
            }
            Object::Dict(d) => {
                self.write_empty(Op::EmptyDict, Op::Dict);
                self.put(Some(key));
                if !d.is_empty() {
                    tasks.push(Task::SetItems { items: d.entries(), batching: Batching::ExactFirst });
                }
            }
            Object::Tuple(items) => {
                let n = items.len();
                if n == 0 {
                    self.push_tuple_of(tasks, vec![]);
                    return Ok(());
                }
                let marked = !(n <= 3 && self.proto >= 2);
                tasks.push(Task::TupleEnd { key, len: n, marked });
                tasks.push(Task::SaveSeq(items, NO_OP));
                if marked {
                    self.out.write_byte(Op::Mark as u8);
                }
            }
            Object::Set(s) => {
                if self.proto < 4 {
                    return self.save_set_reduce("set", s.items(), key, tasks);
                }
                self.out.write_byte(Op::EmptySet as u8);
                self.put(Some(key));
                if !s.is_empty() {
                    tasks.push(Task::AddItems(s.items()));
                }
            }
            Object::FrozenSet(s) => {
                if self.proto < 4 {
                    return self.save_set_reduce("frozenset", s.items(), key, tasks);
                }
                self.out.write_byte(Op::Mark as u8);
                tasks.push(Task::FrozenSetEnd(key));
                tasks.push(Task::SaveSeq(s.items(), NO_OP));
            }
            Object::Complex(re, im) => {
                tasks.push(Task::ReduceDone(key));
                tasks.push(Task::Op(Op::Reduce as u8));
                self.push_tuple_of(
                    tasks,
                    vec![TupleItem::Value(Value::Float(*re)), TupleItem::Value(Value::Float(*im))],
                );
                tasks.push(Task::Global("builtins", "complex"));
            }
            Object::Buffer(b) => self.save_buffer(b, key)?,
            Object::Instance(inst) => self.save_instance(g, inst, key, tasks)?,
            _ => unreachable!("atoms are saved before containers"),
        }
        Ok(())
    }

    /// `set(list)` / `frozenset(list)` below protocol 4; the list is a fresh object.
    fn save_set_reduce<'g>(
        &mut self,
        name: &'static str,
        items: &'g [Value],
        key: Key,
        tasks: &mut Vec<Task<'g>>,
    ) -> Result<()> {
        tasks.push(Task::ReduceDone(key));
        tasks.push(Task::Op(Op::Reduce as u8));
        // `(list(obj),)`: a fresh tuple holding a fresh list.
        self.push_tuple_of(tasks, vec![TupleItem::List(items)]);
        tasks.push(Task::Global("builtins", name));
        Ok(())
    }

    fn save_buffer(&mut self, b: &PickleBuffer, key: Key) -> Result<()> {
        if self.proto < 5 {
            return Err(Error::pickling("PickleBuffer can only be pickled with protocol >= 5"));
        }
        let in_band = match self.buffer_callback.as_mut() {
            Some(f) => f(b),
            None => true,
        };
        if in_band {
            if b.readonly {
                self.save_bytes_data(&b.data, Some(key))
            } else {
                self.save_bytearray_data(&b.data, Some(key))
            }
        } else {
            self.out.write_byte(Op::NextBuffer as u8);
            if b.readonly {
                self.out.write_byte(Op::ReadonlyBuffer as u8);
            }
            Ok(())
        }
    }

    fn save_instance<'g>(
        &mut self,
        g: &'g Graph,
        inst: &'g Instance,
        key: Key,
        tasks: &mut Vec<Task<'g>>,
    ) -> Result<()> {
        if !inst.set_items.is_empty() {
            return Err(Error::pickling("an instance built with ADDITEMS cannot be re-pickled"));
        }
        // An object reached again while its own reduction is being written, before it could be
        // memoized, is written again inside it (as CPython does; an instance in between usually
        // ends it). One that keeps coming back would be written forever: CPython raises
        // RecursionError there.
        let Key::Obj(id) = key else { unreachable!("instances are keyed by identity") };
        let depth = self.reducing.entry(id).or_insert(0);
        *depth += 1;
        if *depth > MAX_REENTRY {
            return Err(Error::pickling(format!(
                "recursive object: {} contains itself through its reduction arguments, which cannot be written at protocol {}",
                g.view(inst.callable),
                self.proto
            )));
        }
        let args: &'g [Value] = match g.object(inst.args) {
            Some(Object::Tuple(items)) => items,
            _ => &[],
        };
        if let Some(plan) = default_reduce(g, inst, args, self.proto < 2) {
            return self.save_default_reduce(g, inst, key, plan, tasks);
        }
        let obj_id = id;
        tasks.push(Task::ReduceEnd { key, inst, list: &[], dict: &[], own: true });
        match inst.construct {
            Construct::NewObjEx if self.proto >= 4 => {
                tasks.push(Task::Op(Op::NewObjEx as u8));
                tasks.push(Task::Save(inst.kwargs.unwrap_or(Value::None)));
                tasks.push(newobj_args(g, inst.args));
                tasks.push(Task::Save(inst.callable));
            }
            Construct::NewObjEx => {
                // `partial(cls.__new__, cls, *args, **kwargs)()`, as `save_reduce` writes
                // `copyreg.__newobj_ex__` below protocol 4.
                let func = Key::NewFunc(obj_id);
                tasks.push(Task::Op(Op::Reduce as u8));
                tasks.push(Task::Op(Op::EmptyTuple as u8));
                // The partial's state: (func, (cls, *args), kwargs or None, None).
                tasks.push(Task::Op(Op::Build as u8));
                tasks.push(Task::Put(None));
                tasks.push(Task::Op(Op::Tuple as u8));
                tasks.push(Task::Save(Value::None));
                let kwargs = inst.kwargs.filter(|&k| !g.view(k).is_empty());
                tasks.push(Task::Save(kwargs.unwrap_or(Value::None)));
                let mut cls_args = vec![TupleItem::Value(inst.callable)];
                cls_args.extend(args.iter().map(|&v| TupleItem::Value(v)));
                self.push_tuple_of(tasks, cls_args);
                tasks.push(Task::GetKey(func));
                tasks.push(Task::Op(Op::Mark as u8));
                // partial(func)
                tasks.push(Task::Put(None));
                tasks.push(Task::Op(Op::Reduce as u8));
                tasks.push(Task::Put(None));
                tasks.push(Task::Op(Op::Tuple1 as u8));
                // func = getattr(cls, '__new__')
                tasks.push(Task::Put(Some(func)));
                tasks.push(Task::Op(Op::Reduce as u8));
                self.push_tuple_of(tasks, vec![TupleItem::Value(inst.callable), TupleItem::Str("__new__")]);
                tasks.push(Task::Global("builtins", "getattr"));
                tasks.push(Task::Global("functools", "partial"));
            }
            _ => {
                tasks.push(Task::Op(Op::Reduce as u8));
                tasks.push(self.reduce_args_task(g, inst, args));
                tasks.push(Task::Save(inst.callable));
            }
        }
        Ok(())
    }

    /// The args of a REDUCE; `datetime` drops the `fold` bit below protocol 4, as its
    /// `__reduce_ex__` does.
    fn reduce_args_task<'g>(&self, g: &'g Graph, inst: &'g Instance, args: &'g [Value]) -> Task<'g> {
        if self.proto < 4 {
            if let Some(gl) = g.view(inst.callable).as_global() {
                let fold_byte = match (gl.module.as_str(), gl.name.as_str()) {
                    ("datetime", "datetime") => Some(2),
                    ("datetime", "time") => Some(0),
                    _ => None,
                };
                if let (Some(i), Some(&first)) = (fold_byte, args.first()) {
                    if let Some(Object::Bytes(b)) = g.object(first) {
                        if b.len() > i && b[i] & 0x80 != 0 {
                            return Task::FoldedArgs { data: b, fold_byte: i, rest: &args[1..] };
                        }
                    }
                }
            }
        }
        fresh_args(g, inst.args)
    }

    fn save_default_reduce<'g>(
        &mut self,
        g: &'g Graph,
        inst: &'g Instance,
        key: Key,
        plan: DefaultReduce<'g>,
        tasks: &mut Vec<Task<'g>>,
    ) -> Result<()> {
        if self.proto >= 2 {
            tasks.push(Task::ReduceEnd { key, inst, list: plan.list, dict: plan.dict, own: true });
            tasks.push(Task::Op(Op::NewObj as u8));
            match plan.newargs {
                // `__getnewargs__` makes a fresh tuple of the object's own items (`tuple(self)`
                // of a namedtuple): a list among them is shared, not a fresh copy.
                NewArgs::Node(v) => tasks.push(newobj_args(g, v)),
                NewArgs::Items(items) => {
                    self.push_tuple_of(tasks, items.iter().map(|&v| TupleItem::Value(v)).collect())
                }
            }
            tasks.push(Task::Save(plan.cls));
            return Ok(());
        }
        // copyreg._reconstructor(cls, base, base(obj)).
        let list = if plan.list.is_empty() { &inst.list_items[..] } else { plan.list };
        let dict = if plan.dict.is_empty() { &inst.dict_items[..] } else { plan.dict };
        let newargs: &'g [Value] = match plan.newargs {
            NewArgs::Node(v) => match g.object(v) {
                Some(Object::Tuple(items)) => items,
                _ => &[],
            },
            NewArgs::Items(items) => items,
        };
        // The instance's items went into `base(obj)`.
        tasks.push(Task::ReduceEnd { key, inst, list: &[], dict: &[], own: false });
        tasks.push(Task::Op(Op::Reduce as u8));
        let (base, state): (&'static str, TupleItem<'g>) = if !list.is_empty() || plan.base == Some("list") {
            ("list", TupleItem::List(list))
        } else if !dict.is_empty() || plan.base == Some("dict") {
            ("dict", TupleItem::Dict(dict))
        } else if let [one] = newargs {
            match *one {
                Value::Int(_) => ("int", TupleItem::Value(*one)),
                Value::Float(_) => ("float", TupleItem::Value(*one)),
                Value::Obj(id) => match g.get(id) {
                    Object::Int(_) => ("int", TupleItem::Value(*one)),
                    Object::Str(_) => ("str", TupleItem::Value(*one)),
                    Object::Bytes(_) => ("bytes", TupleItem::Value(*one)),
                    _ => ("tuple", TupleItem::Tuple(newargs)),
                },
                _ => ("tuple", TupleItem::Tuple(newargs)),
            }
        } else if !newargs.is_empty() {
            ("tuple", TupleItem::Tuple(newargs))
        } else {
            ("object", TupleItem::Value(Value::None))
        };
        if let TupleItem::Dict(items) = &state {
            // `base(obj)` is a real dict: a key the loader kept on an instance without hashing
            // it (SETITEM on a class it does not know) cannot go in one.
            for &(k, _) in items.iter() {
                g.hash(k)?;
            }
        }
        self.push_tuple_of(tasks, vec![TupleItem::Value(plan.cls), TupleItem::Global("builtins", base), state]);
        tasks.push(Task::Global("copyreg", "_reconstructor"));
        Ok(())
    }

    /// One APPENDS batch (CPython's `batch_list_exact` for lists, `batch_list` for the
    /// `listitems` of a reduction), then the rest as a new task.
    #[inline]
    fn batch_appends<'g>(&mut self, items: &'g [Value], batching: Batching, tasks: &mut Vec<Task<'g>>) {
        if self.proto == 0 {
            if !items.is_empty() {
                tasks.push(Task::SaveEach(items, Op::Append as u8));
            }
            return;
        }
        let n = items.len().min(BATCH);
        let single = match batching {
            Batching::ExactFirst => items.len() == 1,
            Batching::Exact => false,
            Batching::Iter => n == 1,
        };
        if n == 0 {
            return;
        }
        if single {
            tasks.push(Task::Op(Op::Append as u8));
            tasks.push(Task::Save(items[0]));
            return;
        }
        self.out.write_byte(Op::Mark as u8);
        if items.len() > n {
            let next = if batching == Batching::Iter { Batching::Iter } else { Batching::Exact };
            tasks.push(Task::Appends { items: &items[n..], batching: next });
        }
        tasks.push(Task::SaveSeq(&items[..n], Op::Appends as u8));
    }

    /// One SETITEMS batch. A dict proper repeats CPython's empty trailing batch when its size is
    /// a multiple of 1000 (`batch_dict_exact` loops while a batch was full).
    #[inline]
    fn batch_setitems<'g>(&mut self, items: &'g [(Value, Value)], batching: Batching, tasks: &mut Vec<Task<'g>>) {
        if self.proto == 0 {
            if !items.is_empty() {
                tasks.push(Task::SavePairsEach(items, Op::SetItem as u8));
            }
            return;
        }
        let n = items.len().min(BATCH);
        let single = match batching {
            Batching::ExactFirst => items.len() == 1,
            Batching::Exact => false,
            Batching::Iter => n == 1,
        };
        if n == 0 && batching == Batching::Iter {
            return;
        }
        if single {
            tasks.push(Task::Op(Op::SetItem as u8));
            tasks.push(Task::Save(items[0].1));
            tasks.push(Task::Save(items[0].0));
            return;
        }
        self.out.write_byte(Op::Mark as u8);
        let more = match batching {
            Batching::Iter => items.len() > n,
            _ => n == BATCH,
        };
        if more {
            let next = if batching == Batching::Iter { Batching::Iter } else { Batching::Exact };
            tasks.push(Task::SetItems { items: &items[n..], batching: next });
        }
        tasks.push(Task::SavePairs(&items[..n], Op::SetItems as u8));
    }
}

/// The arguments NEWOBJ passes to `cls.__new__`.
enum NewArgs<'g> {
    /// The instance's own args tuple.
    Node(Value),
    /// A fresh tuple of these items.
    Items(&'g [Value]),
}

/// An object reduced by `object.__reduce_ex__`: `NEWOBJ(cls, args)` from protocol 2,
/// `copyreg._reconstructor(cls, base, base(obj))` below.
struct DefaultReduce<'g> {
    cls: Value,
    newargs: NewArgs<'g>,
    /// The base a `copyreg._reconstructor` named (`list`, `dict`), kept even with no items.
    base: Option<&'static str>,
    /// Items of a list or dict base.
    list: &'g [Value],
    dict: &'g [(Value, Value)],
}

/// Recognizes a default reduction in either of its forms.
fn default_reduce<'g>(g: &'g Graph, inst: &'g Instance, args: &'g [Value], below_2: bool) -> Option<DefaultReduce<'g>> {
    match inst.construct {
        Construct::NewObj => {
            return Some(DefaultReduce {
                cls: inst.callable,
                newargs: NewArgs::Node(inst.args),
                base: None,
                list: &[],
                dict: &[],
            })
        }
        Construct::Inst | Construct::Obj => {
            return Some(DefaultReduce {
                cls: inst.callable,
                newargs: NewArgs::Items(&[]),
                base: None,
                list: &[],
                dict: &[],
            })
        }
        Construct::NewObjEx => {
            return (below_2).then_some(DefaultReduce {
                cls: inst.callable,
                newargs: NewArgs::Items(&[]),
                base: None,
                list: &[],
                dict: &[],
            })
        }
        Construct::Reduce => {}
    }
    let gl = g.view(inst.callable).as_global()?;
    if gl.module != "copyreg" || gl.name != "_reconstructor" || args.len() != 3 {
        return None;
    }
    let base = g.view(args[1]).as_global()?;
    if base.module != "builtins" {
        return None;
    }
    let (cls, state) = (args[0], args[2]);
    // Only a class by name goes to NEWOBJ, which loads nothing else (CPython raises at load
    // time too); any other callable keeps the REDUCE it came as.
    if !below_2 {
        g.view(cls).as_global()?;
    }
    let mut plan = DefaultReduce { cls, newargs: NewArgs::Items(&[]), base: None, list: &[], dict: &[] };
    match (base.name.as_str(), g.object(state)) {
        ("object", None) if state == Value::None => {}
        ("list", Some(Object::List(items))) => (plan.list, plan.base) = (items, Some("list")),
        ("dict", Some(Object::Dict(d))) => (plan.dict, plan.base) = (d.entries(), Some("dict")),
        ("tuple", Some(Object::Tuple(items))) => plan.newargs = NewArgs::Items(items),
        ("int" | "float" | "str" | "bytes", _) => plan.newargs = NewArgs::Items(std::slice::from_ref(&args[2])),
        _ => return None,
    }
    Some(plan)
}

/// An item of a helper tuple the pickler builds (as CPython builds reduce arguments).
enum TupleItem<'g> {
    Value(Value),
    Str(&'g str),
    OwnedStr(String),
    FreshBytes(&'g [u8]),
    List(&'g [Value]),
    Dict(&'g [(Value, Value)]),
    Tuple(&'g [Value]),
    OwnedBytes(Vec<u8>),
    Latin1,
    Global(&'g str, &'g str),
}

/// The arguments of a reduction: CPython's `__reduce__` builds a fresh tuple each call, so it is
/// never a shared (memo) object.
/// The args tuple of NEWOBJ / NEWOBJ_EX: a fresh tuple whose items keep their identity.
fn newobj_args<'g>(g: &'g Graph, args: Value) -> Task<'g> {
    match g.object(args) {
        Some(Object::Tuple(items)) => Task::FreshTuple(items),
        _ => Task::Save(args),
    }
}

fn fresh_args<'g>(g: &'g Graph, args: Value) -> Task<'g> {
    match g.object(args) {
        Some(Object::Tuple(items)) => Task::ReduceArgs(items),
        _ => Task::Save(args),
    }
}

/// True for the names of `builtins` that are classes (their `__module__` str differs from the
/// functions').
fn is_builtin_type(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_uppercase())
        || matches!(
            name,
            "bool"
                | "bytearray"
                | "bytes"
                | "classmethod"
                | "complex"
                | "dict"
                | "enumerate"
                | "filter"
                | "float"
                | "frozenset"
                | "int"
                | "list"
                | "map"
                | "memoryview"
                | "object"
                | "property"
                | "range"
                | "reversed"
                | "set"
                | "slice"
                | "staticmethod"
                | "str"
                | "super"
                | "tuple"
                | "type"
                | "zip"
        )
}

#[inline]
fn singleton_str_key(s: &PyStr) -> Option<Key> {
    // Surrogatepass UTF-8: code points below 256 take one byte (ASCII) or two (0xC2 / 0xC3
    // and a continuation byte).
    match *s.as_bytes() {
        [] => Some(Key::Char(u32::MAX)),
        [c] if c < 0x80 => Some(Key::Char(c as u32)),
        [lead @ (0xC2 | 0xC3), cont] if cont & 0xC0 == 0x80 => {
            Some(Key::Char(((lead as u32 & 0x1F) << 6) | (cont as u32 & 0x3F)))
        }
        _ => None,
    }
}

fn singleton_bytes_key(b: &[u8]) -> Option<Key> {
    match b {
        [] => Some(Key::Byte(256)),
        [c] => Some(Key::Byte(*c as u16)),
        _ => None,
    }
}

/// Python's `raw-unicode-escape` of a str's code points, as the C pickler applies it to
/// protocol 0 strs (shared with the serde writer).
pub(crate) fn raw_unicode_escape(code_points: impl IntoIterator<Item = u32>, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for cp in code_points {
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

/// `op`, the decimal digits of `n` (with a minus sign when `neg`) and a newline, in the first
/// `len` of 16 bytes: at most 13 are used.
#[inline(always)]
fn text_line(op: u8, neg: bool, mut n: u32) -> ([u8; 16], usize) {
    let mut b = [0; 16];
    let mut pos = 15;
    b[15] = b'\n';
    loop {
        pos -= 1;
        b[pos] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if neg {
        pos -= 1;
        b[pos] = b'-';
    }
    pos -= 1;
    b[pos] = op;
    // Moved to the start.
    ((u128::from_le_bytes(b) >> (pos * 8)).to_le_bytes(), 16 - pos)
}

/// A memo PUT or GET from protocol 1: the opcode and a one-byte index, or the long opcode and
/// a four-byte index; as 8 bytes and how many of them to write.
#[inline(always)]
fn memo_op_word(idx: u32, short: Op, long: Op) -> ([u8; 8], usize) {
    if idx < 256 {
        ((short as u64 | (idx as u64) << 8).to_le_bytes(), 2)
    } else {
        ((long as u64 | (idx as u64) << 8).to_le_bytes(), 5)
    }
}

/// What is left of a [`Task::SaveSeq`] once an item pushed tasks: the rest, or its opcode.
#[inline(always)]
fn seq_cont(rest: &[Value], end: u8) -> Option<Task<'_>> {
    if !rest.is_empty() {
        Some(Task::SaveSeq(rest, end))
    } else if end != NO_OP {
        Some(Task::Op(end))
    } else {
        None
    }
}

/// What is left of a [`Task::SavePairs`] once an item pushed tasks.
#[inline(always)]
fn pairs_cont(rest: &[(Value, Value)], end: u8) -> Option<Task<'_>> {
    if !rest.is_empty() {
        Some(Task::SavePairs(rest, end))
    } else if end != NO_OP {
        Some(Task::Op(end))
    } else {
        None
    }
}

/// An int's opcode at protocol 2 or higher, as `save_int` writes it, in the low `n` bytes.
#[inline(always)]
fn encode_int(i: i64) -> (u128, usize) {
    if (0..=0xFF).contains(&i) {
        (Op::BinInt1 as u128 | (i as u128) << 8, 2)
    } else if (0..=0xFFFF).contains(&i) {
        (Op::BinInt2 as u128 | (i as u128) << 8, 3)
    } else if i32::try_from(i).is_ok() {
        (Op::BinInt as u128 | (i as u32 as u128) << 8, 5)
    } else {
        // LONG1: the shortest two's complement, at least 5 bytes here.
        let bits = 65 - (i ^ (i >> 63)).leading_zeros() as usize;
        let len = bits.div_ceil(8);
        (Op::Long1 as u128 | (len as u128) << 8 | (i as u64 as u128) << 16, 2 + len)
    }
}

/// The opcode of a scalar at protocol 2 or higher, as `save` writes it, in the first `n` of 16
/// bytes; `None` for an object.
#[inline(always)]
fn encode_scalar(v: Value) -> Option<([u8; 16], usize)> {
    // Tested in order of likelihood rather than by a jump table.
    let (word, n): (u128, usize) = if let Value::Int(i) = v {
        encode_int(i)
    } else if let Value::Float(f) = v {
        (Op::BinFloat as u128 | (f.to_bits().swap_bytes() as u128) << 8, 9)
    } else if let Value::None = v {
        (Op::None as u128, 1)
    } else if let Value::Bool(b) = v {
        (if b { Op::NewTrue } else { Op::NewFalse } as u128, 1)
    } else {
        return None;
    };
    Some((word.to_le_bytes(), n))
}

/// Scalars for [`FrameWriter::write_run`], as [`encode_scalar`]: a loop per kind, so a run of
/// floats or ints does not dispatch on every item.
#[inline(always)]
fn encode_values(items: &[Value], out: &mut Scratch) -> (usize, usize) {
    let mut pos = 0;
    let mut i = 0;
    while let Some(&first) = items.get(i) {
        match first {
            Value::Float(_) => {
                while let Some(&Value::Float(f)) = items.get(i) {
                    put_16(out, pos, ((Op::BinFloat as u128) | (f.to_bits().swap_bytes() as u128) << 8).to_le_bytes());
                    pos += 9;
                    i += 1;
                }
            }
            Value::Int(_) => {
                while let Some(&Value::Int(v)) = items.get(i) {
                    let (word, n) = encode_int(v);
                    put_16(out, pos, word.to_le_bytes());
                    pos += n;
                    i += 1;
                }
            }
            Value::Obj(_) => break,
            v => {
                let Some((bytes, n)) = encode_scalar(v) else { break };
                put_16(out, pos, bytes);
                pos += n;
                i += 1;
            }
        }
    }
    (i, pos)
}

/// Keys and values, both scalars, for [`FrameWriter::write_run`].
#[inline(always)]
fn encode_pairs(items: &[(Value, Value)], out: &mut Scratch) -> (usize, usize) {
    let mut pos = 0;
    for (i, &(k, v)) in items.iter().enumerate() {
        // Int keys first: the common scalar key.
        let (kb, kn) = match k {
            Value::Int(k) => {
                let (word, n) = encode_int(k);
                (word.to_le_bytes(), n)
            }
            k => match encode_scalar(k) {
                Some(enc) => enc,
                None => return (i, pos),
            },
        };
        let Some((vb, vn)) = encode_scalar(v) else { return (i, pos) };
        put_16(out, pos, kb);
        put_16(out, pos + kn, vb);
        pos += kn + vn;
    }
    (items.len(), pos)
}

/// Writes `v` at `protocol` into a new buffer (Python's `pickle.dumps`).
pub fn dumps(graph: &Graph, v: Value, protocol: Option<i32>) -> Result<Vec<u8>> {
    let memo = MEMO_CACHE.try_with(Cell::take).ok().flatten().unwrap_or_default();
    // The output's first buffer, by the graph's size (about 32 bytes an object, up to 4 KiB):
    // a small pickle gets a small allocation, which the allocator serves and frees cheaply.
    let capacity = graph.len().saturating_mul(32).clamp(256, 4096);
    let mut p = Pickler::with_writer_memo(FrameWriter::keeping(Vec::new(), capacity), protocol, memo)?;
    let res = p.dump(graph, v);
    let out = p.out.take_buf();
    if let Some(memo) = p.memo.recycle() {
        let _ = MEMO_CACHE.try_with(|c| c.set(Some(memo)));
    }
    res?;
    Ok(out)
}

/// Writes `v` at `protocol` to `out` (Python's `pickle.dump`).
pub fn dump<W: Write>(graph: &Graph, v: Value, out: W, protocol: Option<i32>) -> Result<()> {
    Pickler::new(out, protocol)?.dump(graph, v)
}
