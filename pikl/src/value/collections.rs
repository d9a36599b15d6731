//! Dicts and sets: insertion-ordered entries with a hash index for Python's key equality.

use super::index::Index;
use super::items::{Items, Slab};
use super::{Graph, Value};

/// Up to this many entries, lookups scan instead of hashing.
const LINEAR_MAX: usize = 16;

fn build_index(hashes: impl ExactSizeIterator<Item = u64>, capacity: usize) -> Box<Index> {
    Box::new(Index::build(hashes, capacity))
}

/// Makes room in the index of a dict or set of `len` entries for `n` more; filling an empty
/// one past the scan size hashes from the start.
fn reserve_index(index: &mut Option<Box<Index>>, len: usize, n: usize) {
    match index {
        Some(index) => index.reserve(n),
        None if len == 0 && n > LINEAR_MAX => *index = Some(Box::new(Index::with_capacity(n))),
        None => {}
    }
}

/// A Python `dict`: entries in insertion order, keys unique under Python's equality.
#[derive(Clone, Debug, Default)]
pub struct Dict {
    entries: Items<(Value, Value)>,
    index: Option<Box<Index>>,
}

impl Dict {
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries, in insertion order.
    pub fn entries(&self) -> &[(Value, Value)] {
        &self.entries
    }

    /// Iterates over (key, value) pairs in insertion order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (Value, Value)> + '_ {
        self.entries.iter().copied()
    }

    /// Position of the entry whose key equals `key` (with hash `h`).
    pub(crate) fn find(&self, graph: &Graph, key_graph: &Graph, h: u64, key: Value) -> Option<usize> {
        match &self.index {
            Some(index) => index.find(h, |i| super::eq::keys_equal(graph, self.entries[i].0, key_graph, key)),
            None => self.entries.iter().position(|&(k, _)| super::eq::keys_equal(graph, k, key_graph, key)),
        }
    }

    /// The value under the str key `key`.
    pub fn get_str(&self, graph: &Graph, key: &str) -> Option<Value> {
        let h = super::hash::hash_str_bytes(key.as_bytes());
        let is_key =
            |k: Value| matches!(graph.object(k), Some(super::Object::Str(s)) if s.as_bytes() == key.as_bytes());
        let pos = match &self.index {
            Some(index) => index.find(h, |i| is_key(self.entries[i].0)),
            None => self.entries.iter().position(|&(k, _)| is_key(k)),
        };
        pos.map(|i| self.entries[i].1)
    }

    /// The value stored under `key` (a value of `graph`).
    pub fn get(&self, graph: &Graph, key: Value) -> Option<Value> {
        let h = graph.hash(key).ok()?;
        self.find(graph, graph, h, key).map(|i| self.entries[i].1)
    }

    /// Every key and value, mutably (for renumbering: keys keep their hash).
    pub(crate) fn values_mut_all(&mut self) -> impl Iterator<Item = (&mut Value, &mut Value)> {
        self.entries.iter_mut().map(|(k, v)| (k, v))
    }

    /// Replaces the key object at position `i` by an equal one (same hash).
    pub(crate) fn replace_key(&mut self, i: usize, key: Value) {
        self.entries[i].0 = key;
    }

    /// The entries' buffer of its own, for the pool, leaving the dict empty; `None` for
    /// entries in a chunk.
    pub(crate) fn take_entries(&mut self) -> Option<Vec<(Value, Value)>> {
        self.index = None;
        self.entries.take_own_buffer()
    }

    /// True while the dict has no entry buffer.
    pub(crate) fn unallocated(&self) -> bool {
        self.entries.is_unallocated()
    }

    /// Moves entries in a buffer of their own into a run of `slab`'s, if they are few enough
    /// to scan; returns the buffer, emptied.
    pub(crate) fn move_to_slab(&mut self, slab: &mut Slab) -> Option<Vec<(Value, Value)>> {
        if self.index.is_some() {
            return None;
        }
        self.entries.move_to(slab)
    }

    /// Gives an unallocated dict `buf` (empty) for its entries.
    pub(crate) fn set_buffer(&mut self, buf: Vec<(Value, Value)>) {
        debug_assert!(self.entries.is_empty() && buf.is_empty());
        self.entries = Items::from(buf);
    }

    pub(crate) fn reserve(&mut self, n: usize) {
        self.entries.reserve(n);
        reserve_index(&mut self.index, self.entries.len(), n);
    }

    /// Fills an empty dict with `pairs` (key, value, key, value, ...) whose keys are known to
    /// be distinct; `hashes` are the keys' hashes (needed above [`LINEAR_MAX`] keys).
    /// Without a buffer, the entries go into a run of `slab`'s if there is one. (Inlined into
    /// its one caller: called, micro_dict.p5 loads took 8% longer.)
    #[inline(always)]
    fn fill_distinct(&mut self, pairs: &[Value], hashes: &[u64], slab: Option<&mut Slab>) {
        debug_assert!(self.entries.is_empty() && self.index.is_none());
        let n = pairs.len() / 2;
        match slab {
            Some(slab) if self.entries.is_unallocated() => self.entries = slab.pairs(pairs),
            _ => self.entries.extend_pairs(pairs),
        }
        if n > LINEAR_MAX {
            self.index = Some(build_index(hashes.iter().copied(), self.entries.capacity()));
        }
    }

    /// Inserts without hashing while the dict is small enough to scan; `key` must be hashable.
    #[inline]
    pub(crate) fn insert_small(&mut self, graph: &Graph, key: Value, value: Value) -> bool {
        if self.index.is_some() || self.entries.len() >= LINEAR_MAX {
            return false;
        }
        match self.entries.iter().position(|&(k, _)| super::eq::keys_equal(graph, k, graph, key)) {
            Some(i) => self.entries[i].1 = value,
            None => self.entries.push((key, value)),
        }
        true
    }

    /// True once the dict is past the scan size and looks keys up by hash.
    #[inline]
    pub(crate) fn is_indexed(&self) -> bool {
        self.index.is_some()
    }

    pub(crate) fn insert(&mut self, graph: &Graph, h: u64, key: Value, value: Value) {
        if let Some(index) = &mut self.index {
            // One probe: the key's slot, or where it goes.
            let entries = &self.entries;
            let same = |i: usize| super::eq::keys_equal(graph, entries[i].0, graph, key);
            match index.find_or_insert(h, entries.len(), same) {
                Some(i) => self.entries[i].1 = value,
                None => self.entries.push((key, value)),
            }
            return;
        }
        if let Some(i) = self.find(graph, graph, h, key) {
            self.entries[i].1 = value;
            return;
        }
        let pos = self.entries.len() as u32;
        self.entries.push((key, value));
        if self.entries.len() > LINEAR_MAX {
            // Past the scan size: index every key.
            let hashes = self.entries[..pos as usize].iter().map(|&(k, _)| graph.hash(k).unwrap_or(0));
            let mut index = build_index(hashes, self.entries.capacity());
            index.insert_unique(h, pos as usize);
            self.index = Some(index);
        }
    }
}

/// A Python `set` or `frozenset`: items in insertion order, unique under Python's equality.
#[derive(Clone, Debug, Default)]
pub struct Set {
    items: Items,
    index: Option<Box<Index>>,
}

impl Set {
    /// Number of items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The items, in insertion order.
    pub fn items(&self) -> &[Value] {
        &self.items
    }

    /// The items, mutably (for renumbering).
    pub(crate) fn items_mut(&mut self) -> &mut [Value] {
        &mut self.items
    }

    pub(crate) fn find(&self, graph: &Graph, key_graph: &Graph, h: u64, key: Value) -> Option<usize> {
        match &self.index {
            Some(index) => index.find(h, |i| super::eq::keys_equal(graph, self.items[i], key_graph, key)),
            None => self.items.iter().position(|&k| super::eq::keys_equal(graph, k, key_graph, key)),
        }
    }

    /// True when the set holds an item equal to `key` (a value of `graph`).
    pub fn contains(&self, graph: &Graph, key: Value) -> bool {
        graph.hash(key).is_ok_and(|h| self.find(graph, graph, h, key).is_some())
    }

    /// The items' buffer of its own, for the pool, leaving the set empty; `None` for items in
    /// a chunk.
    pub(crate) fn take_items(&mut self) -> Option<Vec<Value>> {
        self.index = None;
        self.items.take_own_buffer()
    }

    /// True while the set has no item buffer.
    pub(crate) fn unallocated(&self) -> bool {
        self.items.is_unallocated()
    }

    /// Gives an unallocated set `buf` (empty) for its items.
    pub(crate) fn set_buffer(&mut self, buf: Vec<Value>) {
        debug_assert!(self.items.is_empty() && buf.is_empty());
        self.items = Items::from(buf);
    }

    /// Moves items in a buffer of their own into a run of `slab`'s, if they are few enough to
    /// scan; returns the buffer, emptied.
    pub(crate) fn move_to_slab(&mut self, slab: &mut Slab) -> Option<Vec<Value>> {
        if self.index.is_some() {
            return None;
        }
        self.items.move_to(slab)
    }

    pub(crate) fn reserve(&mut self, n: usize) {
        self.items.reserve(n);
        reserve_index(&mut self.index, self.items.len(), n);
    }

    pub(crate) fn insert(&mut self, graph: &Graph, h: u64, key: Value) {
        if self.find(graph, graph, h, key).is_some() {
            return;
        }
        let pos = self.items.len() as u32;
        self.items.push(key);
        match &mut self.index {
            Some(index) => index.insert_unique(h, pos as usize),
            None if self.items.len() > LINEAR_MAX => {
                let hashes = self.items[..pos as usize].iter().map(|&k| graph.hash(k).unwrap_or(0));
                let mut index = build_index(hashes, self.items.capacity());
                index.insert_unique(h, pos as usize);
                self.index = Some(index);
            }
            None => {}
        }
    }
}

/// Most keys a [`KeyShape`] remembers.
const SHAPE_MAX: usize = 64;

/// The keys of the last dict filled from empty with distinct int and str keys. Pickled records
/// share their key objects through the memo, so the next dict filled with the same key values
/// skips the duplicate check and the hashing.
///
/// Valid while the str objects it names are unchanged: whoever hands out mutable access to the
/// graph must [`KeyShape::clear`] it.
#[derive(Debug, Default)]
pub(crate) struct KeyShape {
    keys: Vec<Value>,
    hashes: Vec<u64>,
    /// The last dict filled from empty, not yet copied to `keys`: its keys are copied when the
    /// next dict filled from empty has them too. (Copying them at once cost a pickle of one
    /// dict, bm_pickle's DICT, 4% of its load.)
    source: Option<super::ObjId>,
}

/// Same int, or same object.
#[inline]
fn same_key(a: Value, b: Value) -> bool {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Obj(x), Value::Obj(y)) => x == y,
        _ => false,
    }
}

impl KeyShape {
    /// Forgets the shape.
    pub(crate) fn clear(&mut self) {
        self.keys.clear();
        self.hashes.clear();
        self.source = None;
    }

    /// True when the keys of `pairs` are the shape's; the first time, the source dict's keys
    /// (if they qualify) become the shape.
    #[inline]
    fn matches(&mut self, graph: &Graph, pairs: &[Value]) -> bool {
        if self.keys.is_empty() {
            return self.adopt_source(graph, pairs);
        }
        self.keys.len() * 2 == pairs.len()
            && self.keys.iter().zip(pairs.chunks_exact(2)).all(|(&a, p)| same_key(a, p[0]))
    }

    /// The keys of the source dict (distinct, as a dict's are) become the shape if they are
    /// those of `pairs`, in order, and all ints or strs.
    #[cold]
    fn adopt_source(&mut self, graph: &Graph, pairs: &[Value]) -> bool {
        let Some(super::Object::Dict(d)) = self.source.map(|id| graph.get(id)) else { return false };
        let entries = d.entries();
        let qualifies = |k: Value| match k {
            Value::Int(_) => true,
            Value::Obj(id) => matches!(graph.get(id), super::Object::Str(_)),
            _ => false,
        };
        if entries.is_empty()
            || entries.len() > SHAPE_MAX
            || entries.len() * 2 != pairs.len()
            || !entries.iter().zip(pairs.chunks_exact(2)).all(|(&(k, _), p)| same_key(k, p[0]))
            || !entries.iter().all(|&(k, _)| qualifies(k))
        {
            return false;
        }
        self.keys.extend(entries.iter().map(|&(k, _)| k));
        true
    }

    /// Makes `dict`, just filled from empty with `pairs`, the source of the next shape.
    fn learn(&mut self, dict: super::ObjId, pairs: &[Value]) {
        let n = pairs.len() / 2;
        if n == 0 || n > SHAPE_MAX {
            return;
        }
        self.clear();
        self.source = Some(dict);
    }
}

impl Graph<'_> {
    /// Sets the items `pairs` (key, value, key, value, ...) on the dict `dict`, as SETITEMS
    /// does, using and updating `shape`.
    pub(crate) fn dict_set_pairs(
        &mut self,
        dict: super::ObjId,
        pairs: &[Value],
        shape: &mut KeyShape,
    ) -> Result<(), super::Unhashable> {
        if pairs.len() == 2 {
            // SETITEM: a dict grown one item at a time has no shape worth remembering, and
            // starts with room for 8 entries (as CPython's does) rather than regrowing at 4.
            self.dict_buffer(dict, 8);
            return self.dict_set_slice(dict, &pairs[..2]);
        }
        let was_empty = match self.get(dict) {
            super::Object::Dict(d) => d.is_empty(),
            other => panic!("dict_set_pairs on a {}", other.type_name()),
        };
        if was_empty && shape.matches(self, pairs) {
            if shape.keys.len() > LINEAR_MAX && shape.hashes.is_empty() {
                // Hashed once, when the shape first repeats.
                shape.hashes.extend(shape.keys.iter().map(|&k| self.hash(k).unwrap_or(0)));
            }
            self.dict_buffer(dict, pairs.len() / 2);
            // Without a pool (a big load), into a run of the slab's.
            let slab = if self.pool.0.is_none() { Some(super::slab(&mut self.slab)) } else { None };
            if let Some(super::Object::Dict(d)) = self.objects.get_mut(dict.index()) {
                d.fill_distinct(pairs, &shape.hashes, slab);
            }
            return Ok(());
        }
        self.dict_set_slice(dict, pairs)?;
        if was_empty {
            shape.learn(dict, pairs);
        }
        Ok(())
    }
}
