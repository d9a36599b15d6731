//! The object model: everything a pickle can describe, as an arena-allocated graph.
//!
//! A [`Graph`] owns every object of one or more pickles; a [`Value`] is either a scalar (None,
//! bool, small int, float) or an [`ObjId`] naming an [`Object`] in the graph. Objects refer to
//! each other by id, so shared references and cycles are plain data: two references to one
//! object are the same id, a list containing itself holds its own id, and dropping the graph
//! drops a flat vector. Nothing here recurses over untrusted depth.

mod collections;
mod eq;
mod hash;
mod index;
mod items;
pub(crate) mod pool;
mod printable;
pub(crate) mod pystr;
mod repr;
mod view;

use std::borrow::Cow;

use num_bigint::BigInt;

pub(crate) use collections::KeyShape;
pub use collections::{Dict, Set};
pub use items::Items;
pub use pystr::{CodePoints, PyStr};
pub use repr::ReprOptions;
pub(crate) use repr::{format_float, write_bytes_repr};
pub use view::ValueRef;

pub(crate) use pystr::{is_short_ascii, push_code_point};

/// Makes room in `v` for `n` more items, as `reserve` does but, past 1 MiB, for four times the
/// capacity instead of two: a large list is then copied and faulted into fresh memory fewer
/// times as it grows. Untouched capacity costs address space only. Loading 2M strs or 3M floats
/// took 22% less time, and converting 5M ints peaked at 101 MB instead of 152 MB.
#[inline(always)]
pub(crate) fn grow_big<T>(v: &mut Vec<T>, n: usize) {
    const BIG_BYTES: usize = 1 << 20;
    if v.capacity() - v.len() < n && v.capacity() >= BIG_BYTES / std::mem::size_of::<T>().max(1) {
        grow_fourfold(v, n);
    }
}

/// Appends `items` to `v`, growing it as [`grow_big`] does: how the loaders extend a list.
#[inline(always)]
pub(crate) fn extend_big<T: Copy>(v: &mut Vec<T>, items: &[T]) {
    grow_big(v, items.len());
    v.extend_from_slice(items);
}

/// [`grow_big`]'s reservation, out of line: inlined, it made the unpickler's opcode loop 3%
/// slower on small pickles (callgrind, micro_dict.p5).
/// A new buffer of 4 MiB or more is advised huge pages over all its pages
/// ([`crate::mem_advice::advise_pages`]): page faults and their zeroing were half of loading
/// 5M ints, which now takes 25 ms instead of 62 (3M floats: 16 instead of 36), at the same
/// peak memory.
#[cold]
#[inline(never)]
fn grow_fourfold<T>(v: &mut Vec<T>, n: usize) {
    let len = v.len();
    let old = v.capacity();
    let want = old.saturating_mul(4).max(len.saturating_add(n));
    // Where that much address space is refused, `extend` grows as usual.
    let _ = v.try_reserve_exact(want - len);
    if v.capacity() != old {
        crate::mem_advice::advise_pages(v.as_ptr().cast(), v.capacity() * std::mem::size_of::<T>());
    }
}

/// Index of an [`Object`] in its [`Graph`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjId(pub(crate) u32);

impl ObjId {
    /// The index as a `usize`.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// A value: a scalar, or a reference to an object of a [`Graph`].
///
/// `Copy` and 16 bytes: pushing, memoizing and sharing a value never copies an object.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    /// Python's `None`.
    None,
    /// `True` or `False`.
    Bool(bool),
    /// An int that fits in an `i64`; larger ones are [`Object::Int`].
    Int(i64),
    /// A float.
    Float(f64),
    /// Any other object, by identity.
    Obj(ObjId),
}

impl Value {
    /// The object id, for a reference.
    pub fn obj_id(self) -> Option<ObjId> {
        match self {
            Value::Obj(id) => Some(id),
            _ => None,
        }
    }
}

/// How an instance was constructed in the pickle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Construct {
    /// `REDUCE`: `callable(*args)`.
    Reduce,
    /// `NEWOBJ`: `cls.__new__(cls, *args)`.
    NewObj,
    /// `NEWOBJ_EX`: `cls.__new__(cls, *args, **kwargs)`.
    NewObjEx,
    /// `INST` (protocol 0): `module.name(*args)`.
    Inst,
    /// `OBJ` (protocol 1): `cls(*args)`.
    Obj,
}

/// An object the pickle built by calling something: its construction, kept as data.
#[derive(Clone, Debug, PartialEq)]
pub struct Instance {
    /// The callable or class (usually a [`Object::Global`]).
    pub callable: Value,
    /// How it was called.
    pub construct: Construct,
    /// The positional arguments (a tuple).
    pub args: Value,
    /// Keyword arguments (a dict), for `NEWOBJ_EX`.
    pub kwargs: Option<Value>,
    /// What `BUILD` passed to `__setstate__` (or merged into `__dict__`).
    pub state: Option<Value>,
    /// Items appended with `APPEND` / `APPENDS`.
    pub list_items: Vec<Value>,
    /// Items set with `SETITEM` / `SETITEMS`.
    pub dict_items: Vec<(Value, Value)>,
    /// Items added with `ADDITEMS`.
    pub set_items: Vec<Value>,
    /// The `state_setter` of a 6-item `__reduce__`: the state was applied by calling
    /// `state_setter(obj, state)` instead of BUILD.
    pub state_setter: Option<Value>,
}

impl Instance {
    /// A fresh instance with no state or items.
    pub fn new(callable: Value, construct: Construct, args: Value, kwargs: Option<Value>) -> Self {
        Instance {
            callable,
            construct,
            args,
            kwargs,
            state: None,
            list_items: Vec::new(),
            dict_items: Vec::new(),
            set_items: Vec::new(),
            state_setter: None,
        }
    }
}

/// A module-level name: a class or function the pickle refers to (`GLOBAL`, `STACK_GLOBAL`).
///
/// Made with [`Graph::global`]. Equality and hashing look at the module and name only.
#[derive(Clone, Debug)]
pub struct Global {
    /// The module, e.g. `"collections"`.
    pub module: String,
    /// The qualified name, e.g. `"OrderedDict"`.
    pub name: String,
    /// The str object STACK_GLOBAL took the module name from, when it was loaded from one:
    /// CPython writes a module's name once for globals whose `__module__` is one str object
    /// and again for each other one (`array.array` and `array._array_reconstructor` carry two
    /// `'array'` strs), so the writer keeps the loaded pickle's sharing.
    module_str: Option<Value>,
}

impl Global {
    /// A global with no loaded module str.
    pub(crate) fn new(module: String, name: String) -> Self {
        Global { module, name, module_str: None }
    }

    /// The str object the module name was loaded from, if any.
    pub(crate) fn module_str(&self) -> Option<ObjId> {
        self.module_str.and_then(Value::obj_id)
    }
}

impl PartialEq for Global {
    fn eq(&self, other: &Self) -> bool {
        self.module == other.module && self.name == other.name
    }
}

impl Eq for Global {}

impl std::hash::Hash for Global {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (&self.module, &self.name).hash(state);
    }
}

/// A protocol 5 buffer taken out of band (`NEXT_BUFFER`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PickleBuffer {
    /// The bytes.
    pub data: Vec<u8>,
    /// Set by `READONLY_BUFFER`.
    pub readonly: bool,
}

/// An object of a [`Graph`].
#[derive(Clone, Debug)]
pub enum Object<'a> {
    /// An int beyond the range of `i64`.
    Int(BigInt),
    /// A complex number.
    Complex(f64, f64),
    /// A `str`.
    Str(PyStr<'a>),
    /// A `bytes`.
    Bytes(Cow<'a, [u8]>),
    /// A `bytearray`.
    ByteArray(Vec<u8>),
    /// A `list`.
    List(Items),
    /// A `tuple`.
    Tuple(Items),
    /// A `dict`, in insertion order.
    Dict(Dict),
    /// A `set`, in insertion order.
    Set(Set),
    /// A `frozenset`, in insertion order.
    FrozenSet(Set),
    /// A class or function, by name (boxed: names are rare next to strs and containers, and
    /// inline they would make every object 48 bytes instead of 40).
    Global(Box<Global>),
    /// An object built by a call.
    Instance(Box<Instance>),
    /// What `PERSID` / `BINPERSID` referred to, when no `persistent_load` hook resolved it.
    PersistentId(Value),
    /// An extension code (`EXT1/2/4`) no registry resolved.
    Extension(u32),
    /// An out-of-band buffer.
    Buffer(PickleBuffer),
}

impl Object<'_> {
    /// False when dropping this frees nothing (borrowed or inline strs and bytes, unallocated
    /// lists, numbers).
    #[inline(always)]
    fn holds_memory(&self) -> bool {
        // Strs first, apart: a `match` alone made a jump table, mispredicted as kinds alternate.
        if let Object::Str(s) = self {
            return s.holds_memory();
        }
        match self {
            Object::Bytes(b) => matches!(b, Cow::Owned(_)),
            Object::List(v) | Object::Tuple(v) => !v.is_unallocated(),
            Object::Complex(..) | Object::PersistentId(_) | Object::Extension(_) => false,
            _ => true,
        }
    }

    /// Python's type name for the object (`"list"`, `"dict"`, ...; `"object"` for instances).
    pub fn type_name(&self) -> &'static str {
        match self {
            Object::Int(_) => "int",
            Object::Complex(..) => "complex",
            Object::Str(_) => "str",
            Object::Bytes(_) => "bytes",
            Object::ByteArray(_) => "bytearray",
            Object::List(_) => "list",
            Object::Tuple(_) => "tuple",
            Object::Dict(_) => "dict",
            Object::Set(_) => "set",
            Object::FrozenSet(_) => "frozenset",
            Object::Global(_) => "global",
            Object::Instance(_) => "object",
            Object::PersistentId(_) => "persistent id",
            Object::Extension(_) => "extension",
            Object::Buffer(_) => "PickleBuffer",
        }
    }

    /// A copy that owns all its bytes.
    pub fn into_owned(self) -> Object<'static> {
        match self {
            Object::Str(s) => Object::Str(s.into_owned()),
            Object::Bytes(b) => Object::Bytes(Cow::Owned(b.into_owned())),
            Object::Int(i) => Object::Int(i),
            Object::Complex(a, b) => Object::Complex(a, b),
            Object::ByteArray(b) => Object::ByteArray(b),
            Object::List(v) => Object::List(v),
            Object::Tuple(v) => Object::Tuple(v),
            Object::Dict(d) => Object::Dict(d),
            Object::Set(s) => Object::Set(s),
            Object::FrozenSet(s) => Object::FrozenSet(s),
            Object::Global(g) => Object::Global(g),
            Object::Instance(i) => Object::Instance(i),
            Object::PersistentId(v) => Object::PersistentId(v),
            Object::Extension(c) => Object::Extension(c),
            Object::Buffer(b) => Object::Buffer(b),
        }
    }
}

/// A key that cannot go in a dict or set (Python's "unhashable type").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unhashable(pub &'static str);

impl std::fmt::Display for Unhashable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unhashable type: '{}'", self.0)
    }
}

impl std::error::Error for Unhashable {}

impl From<Unhashable> for crate::Error {
    /// A value that cannot be built is a pickling error.
    fn from(e: Unhashable) -> Self {
        crate::Error::pickling(e.to_string())
    }
}

/// The arena holding every object of one or more pickles.
#[derive(Clone, Debug, Default)]
pub struct Graph<'a> {
    objects: Vec<Object<'a>>,
    /// CPython's one-byte bytes singletons, by byte.
    byte_singletons: Vec<(u8, ObjId)>,
    /// The thread's free buffers, while a load fills this graph (see [`pool`]).
    pool: pool::PoolSlot,
    /// Chunks for the items of small containers once the pool is gone (a big load); boxed
    /// and made when first needed: inline, the graph's 72 more bytes slowed small loads.
    slab: Option<Box<items::Slab>>,
}

/// A graph of more objects than this frees them newest first.
pub(crate) const REVERSE_DROP_MIN: usize = 1 << 12;

impl Drop for Graph<'_> {
    /// A small graph that a load filled hands its small container buffers to the thread's
    /// [`pool`] for the next load. A big graph frees its objects newest first, the
    /// reverse of the order a load allocated them in: with glibc's malloc, freeing oldest first
    /// left the next load of the same shape in `malloc_consolidate` and `unlink_chunk` (8-15%
    /// of it): newest first, 10 loads of records.p5 took 0.59-0.64 s instead of 0.87-0.89 s,
    /// nested.p5 0.62-0.66 s instead of 0.94-0.99 s. (Newest first made list.p5 loads 5-15%
    /// slower.)
    fn drop(&mut self) {
        let mut pool = self.pool.0.take();
        let small = self.objects.len() <= REVERSE_DROP_MIN;
        if let (Some(pool), true) = (&mut pool, small) {
            // Only the containers the load gave buffers to: looking at every object here as
            // well as in the drop cost more than the pool saved on dict.p5.
            let owners = std::mem::take(&mut pool.owners);
            for &id in &owners {
                match self.objects.get_mut(id.index()) {
                    Some(Object::List(v) | Object::Tuple(v)) => {
                        if let Some(buf) = v.take_own_buffer() {
                            pool.put_values(buf);
                        }
                    }
                    Some(Object::Dict(d)) => {
                        if let Some(buf) = d.take_entries() {
                            pool.put_pairs(buf);
                        }
                    }
                    Some(Object::Set(s) | Object::FrozenSet(s)) => {
                        if let Some(buf) = s.take_items() {
                            pool.put_values(buf);
                        }
                    }
                    Some(obj @ Object::Global(_)) => {
                        if let Object::Global(g) = std::mem::replace(obj, Object::Extension(0)) {
                            pool.put_global(g);
                        }
                    }
                    _ => {}
                }
            }
            // The list's allocation is kept for the next graph's notes.
            pool.owners = owners;
        }
        drop_objects(&mut self.objects, !small);
        if let Some(mut pool) = pool {
            pool.owners.clear();
            pool::give(pool);
        }
    }
}

/// The graph's slab, made on first use.
#[inline]
fn slab(slab: &mut Option<Box<items::Slab>>) -> &mut items::Slab {
    slab.get_or_insert_with(Default::default)
}

/// Drops the objects of `objects` in place (newest first if `newest_first`), leaving it empty.
/// Only those holding memory go through `Object`'s drop: a call an object, not inlined, took 3
/// times as long as the rest of dict.p5's drop.
fn drop_objects(objects: &mut Vec<Object<'_>>, newest_first: bool) {
    let len = objects.len();
    // SAFETY: zeroing the length first, a panicking drop leaks the objects not dropped yet
    // rather than dropping any twice.
    unsafe { objects.set_len(0) };
    let base = objects.as_mut_ptr();
    let drop_one = |i: usize| {
        // SAFETY: `i < len`, each index once: an initialized object the vector no longer owns.
        let obj = unsafe { &mut *base.add(i) };
        if obj.holds_memory() {
            // SAFETY: as above; it is not used again.
            unsafe { std::ptr::drop_in_place(obj) };
        }
    };
    if newest_first {
        (0..len).rev().for_each(drop_one);
    } else {
        (0..len).for_each(drop_one);
    }
}

impl<'a> Graph<'a> {
    /// An empty graph.
    pub fn new() -> Self {
        Graph { objects: Vec::new(), byte_singletons: Vec::new(), pool: Default::default(), slab: None }
    }

    /// Takes the thread's free buffers for the load about to fill this graph.
    #[inline]
    pub(crate) fn adopt_pool(&mut self) {
        self.pool.0 = pool::take();
    }

    /// Appends `items` to the list `id` (an unallocated list takes a buffer of the pool's, or
    /// without a pool a run of the slab's); false, and nothing done, when `id` is not a list.
    #[inline]
    pub(crate) fn list_extend(&mut self, id: ObjId, items: &[Value]) -> bool {
        let Object::List(list) = &mut self.objects[id.index()] else { return false };
        let fresh = list.is_unallocated();
        match (fresh, &mut self.pool.0) {
            (true, None) => *list = slab(&mut self.slab).copy(items),
            (true, Some(pool)) => {
                let mut v = Vec::new();
                pool.take_values(items.len(), &mut v);
                extend_big(&mut v, items);
                *list = Items::from(v);
                self.note_owner(id);
            }
            (false, _) => list.with_vec(items.len(), |v| extend_big(v, items)),
        }
        true
    }

    /// Adds the container `build` makes around a buffer of [`Graph::values_from`], noted for
    /// the pool to take back.
    #[inline(always)]
    pub(crate) fn add_container(&mut self, build: impl FnOnce() -> Object<'a>) -> ObjId {
        let id = self.add_built(build);
        self.note_owner(id);
        id
    }

    /// Notes that the container `id` holds a buffer for the pool to take back. A graph with
    /// more containers than a small graph has objects hands the pool back to the thread
    /// there and then: its drop would not take their buffers back.
    #[inline]
    pub(crate) fn note_owner(&mut self, id: ObjId) {
        if let Some(pool) = &mut self.pool.0 {
            if !pool.note_owner(id) {
                self.release_pool();
            }
        }
    }

    /// Hands the pool back to the thread before the graph is dropped.
    #[cold]
    fn release_pool(&mut self) {
        if let Some(mut pool) = self.pool.0.take() {
            pool.owners.clear();
            pool::give(pool);
        }
    }

    /// Gives the dict `dict`, if unallocated, a free buffer of the pool's for `n` entries.
    #[inline]
    pub(crate) fn dict_buffer(&mut self, dict: ObjId, n: usize) {
        if let (Some(pool), Some(Object::Dict(d))) = (&mut self.pool.0, self.objects.get_mut(dict.index())) {
            if d.unallocated() {
                let mut buf = Vec::new();
                pool.take_pairs(n, &mut buf);
                d.set_buffer(buf);
                self.note_owner(dict);
            }
        }
    }

    /// Items `stack[start..]` for a tuple or list about to be added: in a buffer of their own
    /// (one of the pool's if free) during a small load, in a run of the slab's otherwise.
    #[inline]
    pub(crate) fn values_from(&mut self, stack: &[Value]) -> Items {
        let Some(pool) = &mut self.pool.0 else { return slab(&mut self.slab).copy(stack) };
        let mut items = Vec::new();
        pool.take_values(stack.len(), &mut items);
        if items.capacity() == 0 {
            items.reserve_exact(stack.len());
        }
        items.extend_from_slice(stack);
        Items::from(items)
    }

    /// Adds the global `module.name` (with the str object STACK_GLOBAL took the module name
    /// from, if the writer is to keep it: see [`Global`]),
    /// reusing one of an earlier load's with that name if the pool kept it.
    pub(crate) fn add_global(&mut self, module: &str, name: &str, module_str: Option<Value>) -> Value {
        let kept = self.pool.0.as_mut().and_then(|pool| pool.take_global(module, name));
        let g = match kept {
            Some(mut g) => {
                g.module_str = module_str;
                g
            }
            None => Box::new(Global { module: module.to_owned(), name: name.to_owned(), module_str }),
        };
        let v = self.add(Object::Global(g));
        if let Some(id) = v.obj_id() {
            self.note_owner(id);
        }
        v
    }

    /// CPython's shared one-byte bytes object for `b` (as `_codecs.encode` returns it).
    pub fn byte_singleton(&mut self, b: u8) -> Value {
        if let Some(&(_, id)) = self.byte_singletons.iter().find(|(c, _)| *c == b) {
            return Value::Obj(id);
        }
        let v = self.add(Object::Bytes(Cow::Owned(vec![b])));
        self.byte_singletons.push((b, v.obj_id().expect("object")));
        v
    }

    /// True when `id` is the shared one-byte bytes object of [`Graph::byte_singleton`].
    pub fn is_byte_singleton(&self, id: ObjId) -> bool {
        self.byte_singletons.iter().any(|&(_, i)| i == id)
    }

    /// Reserves room for `n` more objects.
    pub fn reserve(&mut self, n: usize) {
        let old = self.objects.capacity();
        if old == 0 {
            // `with_capacity` skips `reserve`'s growth path: this runs once per small load.
            self.objects = Vec::with_capacity(n);
        } else {
            self.objects.reserve(n);
        }
        crate::mem_advice::advise_vec(&self.objects, old);
    }

    /// Number of objects.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// True when the graph holds no object.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Adds an object and returns a reference to it.
    #[inline]
    pub fn add(&mut self, obj: Object<'a>) -> Value {
        Value::Obj(self.add_built(|| obj))
    }

    /// Room for one more object in a full arena: fourfold past 1 MiB, as a big list grows
    /// ([`grow_big`]), and each new buffer advised huge pages. A loader reading a stream of
    /// unknown length (a `BufRead`) otherwise copies the arena at every doubling into fresh
    /// memory that faults 4 KiB at a time (10 loads of strs.p5 through `load`: 1.22 -> 0.95 s;
    /// the huge pages are most of it).
    #[cold]
    #[inline(never)]
    fn grow_objects(&mut self) {
        let old = self.objects.capacity();
        grow_big(&mut self.objects, 1);
        self.objects.reserve(1);
        crate::mem_advice::advise_vec(&self.objects, old);
    }

    /// Adds the object `build` makes, built straight into the graph's storage (a loader's hot
    /// path: an object built first and moved in after was copied through the stack in pieces
    /// and read back whole, a store-forwarding stall per object).
    #[inline(always)]
    pub(crate) fn add_built(&mut self, build: impl FnOnce() -> Object<'a>) -> ObjId {
        let n = self.objects.len();
        let id = ObjId(u32::try_from(n).expect("graph holds at most 2^32 objects"));
        if n == self.objects.capacity() {
            self.grow_objects();
        }
        self.objects.spare_capacity_mut()[0].write(build());
        // SAFETY: the slot at `n`, within the capacity just reserved, was written above.
        unsafe { self.objects.set_len(n + 1) };
        id
    }

    /// The object `id` names. Panics if `id` is not of this graph.
    #[inline]
    pub fn get(&self, id: ObjId) -> &Object<'a> {
        &self.objects[id.index()]
    }

    /// The object `id` names, mutably.
    #[inline]
    pub fn get_mut(&mut self, id: ObjId) -> &mut Object<'a> {
        &mut self.objects[id.index()]
    }

    /// The object a value refers to, if it is a reference.
    #[inline]
    pub fn object(&self, v: Value) -> Option<&Object<'a>> {
        match v {
            Value::Obj(id) => Some(self.get(id)),
            _ => None,
        }
    }

    /// A view of `v` for reading: typed accessors, indexing, Display as Python's repr.
    pub fn view(&self, v: Value) -> ValueRef<'_, 'a> {
        ValueRef::new(self, v)
    }

    /// Iterates over all objects with their ids.
    pub fn iter(&self) -> impl Iterator<Item = (ObjId, &Object<'a>)> {
        self.objects.iter().enumerate().map(|(i, o)| (ObjId(i as u32), o))
    }

    /// A copy that owns all its bytes (no borrow of the input left).
    pub fn into_owned(mut self) -> Graph<'static> {
        Graph {
            objects: std::mem::take(&mut self.objects).into_iter().map(Object::into_owned).collect(),
            byte_singletons: std::mem::take(&mut self.byte_singletons),
            pool: std::mem::take(&mut self.pool),
            slab: self.slab.take(),
        }
    }

    // ---- building ----

    /// Adds a str.
    pub fn str(&mut self, s: impl Into<Cow<'a, str>>) -> Value {
        self.add(Object::Str(PyStr::new(s)))
    }

    /// Adds a bytes.
    pub fn bytes(&mut self, b: impl Into<Cow<'a, [u8]>>) -> Value {
        self.add(Object::Bytes(b.into()))
    }

    /// Adds an int of any size (an `i64` when it fits).
    pub fn int(&mut self, i: BigInt) -> Value {
        match i64::try_from(&i) {
            Ok(small) => Value::Int(small),
            Err(_) => self.add(Object::Int(i)),
        }
    }

    /// Adds a list.
    pub fn list(&mut self, items: Vec<Value>) -> Value {
        self.add(Object::List(items.into()))
    }

    /// Adds a tuple.
    pub fn tuple(&mut self, items: Vec<Value>) -> Value {
        self.add(Object::Tuple(items.into()))
    }

    /// Adds a class or function reference.
    pub fn global(&mut self, module: impl Into<String>, name: impl Into<String>) -> Value {
        self.add(Object::Global(Box::new(Global::new(module.into(), name.into()))))
    }

    /// Adds a dict with `entries` (later duplicates of a key replace earlier values, as in
    /// Python).
    pub fn dict(&mut self, entries: Vec<(Value, Value)>) -> Result<Value, Unhashable> {
        let d = self.add(Object::Dict(Dict::default()));
        let id = d.obj_id().expect("just added");
        for (k, v) in entries {
            self.dict_set(id, k, v)?;
        }
        Ok(d)
    }

    /// Adds a set (duplicates dropped, as in Python).
    pub fn set(&mut self, items: Vec<Value>) -> Result<Value, Unhashable> {
        let s = self.add(Object::Set(Set::default()));
        self.set_add_all(s.obj_id().expect("just added"), items)?;
        Ok(s)
    }

    /// Adds a frozenset (duplicates dropped).
    pub fn frozenset(&mut self, items: Vec<Value>) -> Result<Value, Unhashable> {
        let mut set = Set::default();
        for item in items {
            let h = self.hash(item)?;
            set.insert(self, h, item);
        }
        Ok(self.add(Object::FrozenSet(set)))
    }

    /// Sets `dict[key] = value` on the dict `dict`, as Python does: an equal key keeps its
    /// place and its original key object. Panics if `dict` is not a dict.
    pub fn dict_set(&mut self, dict: ObjId, key: Value, value: Value) -> Result<(), Unhashable> {
        let h = self.hash(key)?;
        let mut d = match self.get_mut(dict) {
            Object::Dict(d) => std::mem::take(d),
            other => panic!("dict_set on a {}", other.type_name()),
        };
        d.insert(self, h, key, value);
        *self.get_mut(dict) = Object::Dict(d);
        Ok(())
    }

    /// Sets the items `pairs` (key, value, key, value, ...) on the dict `dict`: as
    /// [`Graph::dict_set_all`], indexing the slice rather than taking (key, value) tuples from
    /// an iterator, which the compiler copied through the stack byte-wise (a store-forwarding
    /// stall per key: a quarter of a 33-key dict's load).
    pub(crate) fn dict_set_slice(&mut self, dict: ObjId, pairs: &[Value]) -> Result<(), Unhashable> {
        let mut d = match self.get_mut(dict) {
            Object::Dict(d) => std::mem::take(d),
            other => panic!("dict_set_slice on a {}", other.type_name()),
        };
        let mut res = Ok(());
        // A fresh dict of a big load (no pool) fills the graph's scratch buffer, then moves to
        // a run of the slab's.
        let mut to_slab = false;
        if d.unallocated() {
            let mut buf = Vec::new();
            match &mut self.pool.0 {
                Some(pool) => pool.take_pairs(pairs.len() / 2, &mut buf),
                None => (buf, to_slab) = (std::mem::take(&mut slab(&mut self.slab).scratch_pairs), true),
            }
            d.set_buffer(buf);
            if !to_slab {
                self.note_owner(dict);
            }
        }
        d.reserve(pairs.len() / 2);
        let mut i = 0;
        while i + 1 < pairs.len() {
            let (k, v) = (pairs[i], pairs[i + 1]);
            i += 2;
            if !d.is_indexed() && self.is_flat_hashable(k) && d.insert_small(self, k, v) {
                continue;
            }
            match self.hash(k) {
                Ok(h) => d.insert(self, h, k, v),
                Err(e) => {
                    res = Err(e);
                    break;
                }
            }
        }
        if to_slab {
            let slab = slab(&mut self.slab);
            if let Some(scratch) = d.move_to_slab(slab) {
                slab.scratch_pairs = scratch;
            }
        }
        *self.get_mut(dict) = Object::Dict(d);
        res
    }

    /// Sets many items on the dict `dict`.
    pub fn dict_set_all(
        &mut self,
        dict: ObjId,
        items: impl IntoIterator<Item = (Value, Value)>,
    ) -> Result<(), Unhashable> {
        let mut d = match self.get_mut(dict) {
            Object::Dict(d) => std::mem::take(d),
            other => panic!("dict_set_all on a {}", other.type_name()),
        };
        let mut res = Ok(());
        let items = items.into_iter();
        d.reserve(items.size_hint().0);
        for (k, v) in items {
            if !d.is_indexed() && self.is_flat_hashable(k) && d.insert_small(self, k, v) {
                continue;
            }
            match self.hash(k) {
                Ok(h) => d.insert(self, h, k, v),
                Err(e) => {
                    res = Err(e);
                    break;
                }
            }
        }
        *self.get_mut(dict) = Object::Dict(d);
        res
    }

    /// Adds items to the set (or frozenset under construction) `set`.
    pub fn set_add_all(&mut self, set: ObjId, items: impl IntoIterator<Item = Value>) -> Result<(), Unhashable> {
        let (mut s, frozen) = match self.get_mut(set) {
            Object::Set(s) => (std::mem::take(s), false),
            Object::FrozenSet(s) => (std::mem::take(s), true),
            other => panic!("set_add_all on a {}", other.type_name()),
        };
        let mut res = Ok(());
        let items = items.into_iter();
        // As in `dict_set_slice`: a fresh set of a big load fills the scratch buffer first.
        let mut to_slab = false;
        if s.unallocated() {
            let mut buf = Vec::new();
            match &mut self.pool.0 {
                Some(pool) => pool.take_values(items.size_hint().0, &mut buf),
                None => (buf, to_slab) = (std::mem::take(&mut slab(&mut self.slab).scratch_values), true),
            }
            s.set_buffer(buf);
            if !to_slab {
                self.note_owner(set);
            }
        }
        s.reserve(items.size_hint().0);
        for item in items {
            match self.hash(item) {
                Ok(h) => s.insert(self, h, item),
                Err(e) => {
                    res = Err(e);
                    break;
                }
            }
        }
        if to_slab {
            let slab = slab(&mut self.slab);
            if let Some(scratch) = s.move_to_slab(slab) {
                slab.scratch_values = scratch;
            }
        }
        *self.get_mut(set) = if frozen { Object::FrozenSet(s) } else { Object::Set(s) };
        res
    }

    /// True for keys hashable without looking inside (scalars, strs, bytes, big ints).
    #[inline]
    fn is_flat_hashable(&self, v: Value) -> bool {
        match v {
            Value::Obj(id) => {
                matches!(self.get(id), Object::Str(_) | Object::Bytes(_) | Object::Int(_) | Object::Global(_))
            }
            _ => true,
        }
    }

    /// Python's `a == b` for two values of this graph (see [`ValueRef`]'s `PartialEq`).
    pub fn equal(&self, a: Value, b: Value) -> bool {
        eq::equal(self, a, self, b)
    }
}

/// Calls `f` on every value an object holds.
fn for_each_child_mut(obj: &mut Object<'_>, mut f: impl FnMut(&mut Value)) {
    match obj {
        Object::List(items) | Object::Tuple(items) => items.iter_mut().for_each(f),
        Object::Dict(d) => d.values_mut_all().for_each(|(k, v)| {
            f(k);
            f(v);
        }),
        Object::Set(s) | Object::FrozenSet(s) => s.items_mut().iter_mut().for_each(f),
        Object::Instance(inst) => {
            f(&mut inst.callable);
            f(&mut inst.args);
            inst.kwargs.iter_mut().for_each(&mut f);
            inst.state.iter_mut().for_each(&mut f);
            inst.state_setter.iter_mut().for_each(&mut f);
            inst.list_items.iter_mut().for_each(&mut f);
            inst.set_items.iter_mut().for_each(&mut f);
            for (k, v) in &mut inst.dict_items {
                f(k);
                f(v);
            }
        }
        Object::PersistentId(v) => f(v),
        Object::Global(g) => g.module_str.iter_mut().for_each(f),
        Object::Int(_)
        | Object::Complex(..)
        | Object::Str(_)
        | Object::Bytes(_)
        | Object::ByteArray(_)
        | Object::Extension(_)
        | Object::Buffer(_) => {}
    }
}

impl Graph<'_> {
    /// Drops every object not reachable from `roots` and renumbers the rest, keeping their
    /// order. Returns the new id of each old id (`None`: dropped), so holders of ids outside
    /// the graph can follow. Iterative; linear in the graph's size.
    pub fn compact(&mut self, roots: impl IntoIterator<Item = Value>) -> Vec<Option<ObjId>> {
        let n = self.objects.len();
        let mut live = vec![false; n];
        let mut stack: Vec<u32> = roots.into_iter().filter_map(|v| v.obj_id()).map(|id| id.0).collect();
        stack.extend(self.byte_singletons.iter().map(|&(_, id)| id.0));
        while let Some(i) = stack.pop() {
            let i = i as usize;
            if i >= n || live[i] {
                continue;
            }
            live[i] = true;
            for_each_child_mut(&mut self.objects[i], |v| {
                if let Value::Obj(id) = *v {
                    stack.push(id.0);
                }
            });
        }
        let mut map = vec![None; n];
        let mut next = 0u32;
        for (i, &l) in live.iter().enumerate() {
            if l {
                map[i] = Some(ObjId(next));
                next += 1;
            }
        }
        let old = std::mem::take(&mut self.objects);
        self.objects.reserve(next as usize);
        for (i, mut obj) in old.into_iter().enumerate() {
            if !live[i] {
                continue;
            }
            for_each_child_mut(&mut obj, |v| {
                if let Value::Obj(id) = *v {
                    *v = Value::Obj(map[id.index()].expect("children of live objects are live"));
                }
            });
            self.objects.push(obj);
        }
        for (_, id) in &mut self.byte_singletons {
            *id = map[id.index()].expect("singletons are roots");
        }
        map
    }
}

#[cfg(test)]
mod size_tests {
    /// Values are pushed, memoized and stored by the million: they stay two words.
    #[test]
    fn values_stay_small() {
        assert_eq!(std::mem::size_of::<super::Value>(), 16);
        assert!(std::mem::size_of::<super::Object>() <= 48);
    }
}

#[cfg(test)]
mod grow_tests {
    use super::grow_big;

    #[test]
    fn small_vecs_are_left_to_grow_as_usual() {
        let mut v: Vec<u64> = Vec::with_capacity(1000);
        v.extend(0..1000);
        grow_big(&mut v, 10);
        assert_eq!(v.capacity(), 1000, "below 1 MiB nothing is reserved");
    }

    #[test]
    fn big_vecs_grow_fourfold_and_keep_their_items() {
        let n = (1 << 20) / 8;
        let mut v: Vec<u64> = Vec::with_capacity(n);
        v.extend(0..n as u64);
        grow_big(&mut v, 1);
        assert!(v.capacity() >= 4 * n, "capacity {}", v.capacity());
        assert!(v.iter().copied().eq(0..n as u64));
        // Room already there: nothing changes.
        let cap = v.capacity();
        grow_big(&mut v, 100);
        assert_eq!(v.capacity(), cap);
        // A batch larger than four times the capacity gets what it needs.
        let mut w: Vec<u64> = Vec::with_capacity(n);
        grow_big(&mut w, 5 * n);
        assert!(w.capacity() >= 5 * n);
    }
}

#[cfg(test)]
mod slab_tests {
    use super::*;

    /// A graph without a pool (one not filled by a load) puts the items of small lists,
    /// tuples, dicts and sets in chunks: they read back, grow, clone and drop as their own buffers
    /// would (this also runs under Miri).
    #[test]
    fn containers_in_chunks_read_grow_clone_and_drop() {
        let mut g = Graph::new();
        let mut shape = KeyShape::default();
        let (k, j) = (g.str("k"), g.str("j"));
        let mut roots = Vec::new();
        for i in 0..300 {
            let items = g.values_from(&[Value::Int(i), k]);
            let t = g.add_container(|| Object::Tuple(items));
            let l = g.add(Object::List(Items::new())).obj_id().expect("object");
            assert!(g.list_extend(l, &[Value::Obj(t), Value::None]));
            let d = g.add(Object::Dict(Dict::default())).obj_id().expect("object");
            g.dict_set_pairs(d, &[k, Value::Int(i), j, Value::Obj(l)], &mut shape).expect("str keys");
            let s = g.add(Object::Set(Set::default())).obj_id().expect("object");
            g.set_add_all(s, [Value::Int(i), k, Value::Int(i)]).expect("hashable");
            g.dict_set(d, Value::Int(-1), Value::Obj(s)).expect("int key");
            roots.push(Value::Obj(d));
        }
        let Some(&Value::Obj(last)) = roots.last() else { panic!("a dict") };
        let x = g.str("x");
        g.dict_set(last, x, Value::Bool(true)).expect("str key");
        let root = g.list(roots);
        let copy = g.clone();
        let check = |g: &Graph| {
            let v = g.view(root);
            assert_eq!(v.len(), Some(300));
            for i in [0, 150, 299] {
                let d = v.at(i).expect("entry");
                assert_eq!(d.get("k").and_then(|v| v.as_i64()), Some(i as i64));
                let t = d.get("j").and_then(|l| l.at(0)).expect("tuple");
                assert_eq!(t.at(0).and_then(|v| v.as_i64()), Some(i as i64));
                assert_eq!(t.at(1).and_then(|v| v.as_str()), Some("k"));
            }
            assert_eq!(v.at(299).and_then(|d| d.get("x")).and_then(|v| v.as_bool()), Some(true));
            assert_eq!(v.at(298).and_then(|d| d.len()), Some(3));
            let set = v.at(7).and_then(|d| d.get_value(Value::Int(-1))).expect("set");
            match set.object() {
                Some(Object::Set(s)) => assert_eq!(s.items(), [Value::Int(7), k]),
                other => panic!("a set: {other:?}"),
            }
        };
        check(&g);
        drop(g);
        check(&copy);
    }
}
