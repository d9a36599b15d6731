//! [`Items`]: the items of a list or tuple, in a buffer of their own or in a chunk the graph
//! shares among many small containers.
//!
//! A big load makes hundreds of thousands of small lists and tuples. Each in a `malloc`ed
//! buffer of its own, glibc's malloc spent a third of nested.p2's load in `malloc`, `free` and
//! `malloc_consolidate` (the graph's drop frees 560k small buffers, and the next big request
//! merges them all). [`Slab`] instead copies small item runs into 128 KiB chunks: making one is
//! a bump of a cursor and dropping one a decrement of its chunk's count.
//!
//! A chunk is freed when the graph and every [`Items`] in it are gone, so an object taken out
//! of its graph (through [`super::Graph::get_mut`]) keeps its items valid.

use std::alloc::{self, Layout};
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicUsize, Ordering};

use super::Value;

/// A chunk's bytes, header included.
const CHUNK_BYTES: usize = 128 << 10;
/// Runs of more bytes than this get a buffer of their own.
const MAX_RUN_BYTES: usize = 4 << 10;
/// Alignment of every chunk, and of every run in one.
const CHUNK_ALIGN: usize = 16;
/// References a new chunk starts with, handed out one per run without touching the count.
const RESERVED_REFS: usize = usize::MAX >> 2;

/// The start of every chunk: how many [`Items`] (plus the slab's unclaimed reservation) refer to
/// it.
#[repr(C, align(16))]
struct ChunkHeader {
    refs: AtomicUsize,
}

fn chunk_layout() -> Layout {
    // CHUNK_BYTES and CHUNK_ALIGN are constants that make a valid layout.
    Layout::from_size_align(CHUNK_BYTES, CHUNK_ALIGN).expect("chunk layout")
}

/// Drops `n` references to the chunk at `header`, freeing it with the last.
///
/// # Safety
/// The caller holds `n` references to a live chunk and gives them up.
unsafe fn release(header: NonNull<ChunkHeader>, n: usize) {
    // SAFETY: the chunk is live while the caller holds references.
    let refs = unsafe { &header.as_ref().refs };
    if refs.fetch_sub(n, Ordering::Release) == n {
        // Every other holder's accesses happen before the free (as in `Arc`'s drop).
        fence(Ordering::Acquire);
        // SAFETY: the last reference is gone; `Slab::new_chunk` allocated it with this layout.
        unsafe { alloc::dealloc(header.as_ptr().cast(), chunk_layout()) };
    }
}

/// The items of a list or tuple: a `Vec` that may live in a chunk shared with other containers
/// of its graph. It dereferences to a slice; growing one in a chunk first moves it to a buffer
/// of its own.
pub struct Items<T: Copy = Value> {
    ptr: NonNull<T>,
    len: usize,
    /// Even address: a buffer of its own, of capacity `addr >> 1` (none when 0). Odd: in the
    /// chunk one byte below, with room for `len` items. A pointer, so that a chunk's keeps its
    /// provenance.
    tag: *mut u8,
}

// SAFETY: an `Items` owns its items (a chunk's runs never overlap) and its chunk reference,
// whose count is atomic; as `Vec<T>` and `Arc`.
unsafe impl<T: Copy + Send> Send for Items<T> {}
// SAFETY: `&Items` gives shared access to the items only.
unsafe impl<T: Copy + Sync> Sync for Items<T> {}

impl<T: Copy> Items<T> {
    /// No items, unallocated.
    pub const fn new() -> Self {
        Items { ptr: NonNull::dangling(), len: 0, tag: std::ptr::null_mut() }
    }

    /// The chunk this lives in, if any (tests only: the hot paths test the tag inline).
    #[cfg(test)]
    fn chunk(&self) -> Option<NonNull<ChunkHeader>> {
        if self.tag.addr() & 1 == 1 {
            NonNull::new(self.tag.wrapping_sub(1).cast::<ChunkHeader>())
        } else {
            None
        }
    }

    /// True when this holds no buffer (a list that no item was added to yet).
    pub(crate) fn is_unallocated(&self) -> bool {
        self.tag.is_null()
    }

    /// The items as a `Vec`, leaving this empty: a buffer of its own is moved, a chunk's run
    /// copied (into room for `extra` more).
    #[inline]
    fn take_vec(&mut self, extra: usize) -> Vec<T> {
        if self.tag.addr() & 1 == 1 {
            return self.take_run(extra);
        }
        let this = std::mem::ManuallyDrop::new(std::mem::take(self));
        // SAFETY: an even tag holds the parts of a `Vec<T>` that `From<Vec<T>>` took apart;
        // `this` is not dropped, so the buffer has one owner again.
        unsafe { Vec::from_raw_parts(this.ptr.as_ptr(), this.len, this.tag.addr() >> 1) }
    }

    /// [`Items::take_vec`] of a chunk's run: a copy, with room for `extra` more.
    #[cold]
    #[inline(never)]
    fn take_run(&mut self, extra: usize) -> Vec<T> {
        let mut v = Vec::with_capacity(self.len.saturating_add(extra));
        v.extend_from_slice(self.as_slice());
        // Dropping the run gives up its chunk reference.
        *self = Items::new();
        v
    }

    /// Runs `f` on the items as a `Vec` (a chunk's run moved to a buffer of its own first,
    /// with room for `extra` more).
    #[inline]
    pub(crate) fn with_vec<R>(&mut self, extra: usize, f: impl FnOnce(&mut Vec<T>) -> R) -> R {
        let mut v = self.take_vec(extra);
        let r = f(&mut v);
        *self = Items::from(v);
        r
    }

    /// How many items fit without moving (as many as there are, in a chunk).
    #[inline]
    pub fn capacity(&self) -> usize {
        if self.tag.addr() & 1 == 1 {
            self.len
        } else {
            self.tag.addr() >> 1
        }
    }

    /// Appends `item`.
    #[inline(always)]
    pub fn push(&mut self, item: T) {
        let tag = self.tag.addr();
        if tag & 1 == 0 && self.len < tag >> 1 {
            // SAFETY: a buffer of its own with room past `len`.
            unsafe { self.ptr.as_ptr().add(self.len).write(item) };
            self.len += 1;
        } else {
            self.push_moving(item);
        }
    }

    /// [`Items::push`] into a new buffer.
    #[cold]
    #[inline(never)]
    fn push_moving(&mut self, item: T) {
        self.with_vec(1, |v| v.push(item));
    }

    /// Makes room for `n` more items (in a buffer of its own, unless `n` is 0).
    #[inline]
    pub fn reserve(&mut self, n: usize) {
        if self.capacity() - self.len < n {
            self.reserve_moving(n);
        }
    }

    /// [`Items::reserve`] into a new buffer.
    #[cold]
    #[inline(never)]
    fn reserve_moving(&mut self, n: usize) {
        self.with_vec(n, |v| v.reserve(n));
    }

    /// Appends `items`.
    pub fn extend_from_slice(&mut self, items: &[T]) {
        self.with_vec(items.len(), |v| v.extend_from_slice(items));
    }

    /// The items as a slice.
    pub fn as_slice(&self) -> &[T] {
        // SAFETY: `ptr` points at `len` initialized items this owns (or is dangling with 0).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The items as a mutable slice.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        // SAFETY: as `as_slice`; no other `Items` covers these items.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// The items in a `Vec` (moved when this has a buffer of its own, copied from a chunk).
    pub fn into_vec(mut self) -> Vec<T> {
        self.take_vec(0)
    }

    /// Moves items in a buffer of their own into a run of `slab`'s; returns that buffer,
    /// emptied, for reuse (`None` when there is nothing to move).
    pub(crate) fn move_to(&mut self, slab: &mut Slab) -> Option<Vec<T>> {
        if self.is_empty() {
            return None;
        }
        let mut buf = self.take_own_buffer()?;
        *self = slab.copy(&buf);
        buf.clear();
        Some(buf)
    }

    /// The buffer of its own, taken for reuse (leaving this empty); `None` for a chunk's run
    /// or no buffer.
    #[inline]
    pub(crate) fn take_own_buffer(&mut self) -> Option<Vec<T>> {
        if self.tag.addr() & 1 == 1 || self.tag.is_null() {
            None
        } else {
            Some(self.take_vec(0))
        }
    }
}

impl Items<(Value, Value)> {
    /// Appends the (key, value) pairs of `flat` (key, value, ...; a last odd value is left
    /// out), as [`Slab::pairs`] does.
    #[inline]
    pub(crate) fn extend_pairs(&mut self, flat: &[Value]) {
        let n = flat.len() / 2;
        self.reserve(n);
        if n > 0 {
            // SAFETY: `reserve` left a buffer of its own with room for `n` more pairs.
            unsafe { write_pairs(self.ptr.as_ptr().add(self.len), flat, n) };
            self.len += n;
        }
    }
}

/// Writes the first `n` (key, value) pairs of `flat` at `dst`, a field at a time: a tuple
/// from an iterator was copied through the stack a byte at a time, a store-forwarding stall a
/// pair (35% of records.p5's load).
///
/// # Safety
/// `dst` has room for `n` pairs, and `flat` holds at least `2 * n` values.
#[inline(always)]
unsafe fn write_pairs(dst: *mut (Value, Value), flat: &[Value], n: usize) {
    debug_assert!(flat.len() >= 2 * n);
    for i in 0..n {
        // SAFETY: the caller's.
        unsafe {
            std::ptr::addr_of_mut!((*dst.add(i)).0).write(*flat.get_unchecked(2 * i));
            std::ptr::addr_of_mut!((*dst.add(i)).1).write(*flat.get_unchecked(2 * i + 1));
        }
    }
}

impl<T: Copy> Drop for Items<T> {
    #[inline]
    fn drop(&mut self) {
        if !self.tag.is_null() {
            // SAFETY: a non-null tag is a buffer or chunk reference this gives up, once.
            unsafe { free_items(self.ptr, self.tag) }
        }
    }
}

/// Frees the buffer of an [`Items`] with pointer `ptr` and tag `tag`, or gives up its chunk
/// reference. Out of line, so that the drop of an object stays a test and a call.
///
/// # Safety
/// `ptr` and `tag` are those of an [`Items`] holding a buffer or a chunk reference, which
/// nothing uses after.
#[inline(never)]
unsafe fn free_items<T: Copy>(ptr: NonNull<T>, tag: *mut u8) {
    if tag.addr() & 1 == 1 {
        // SAFETY: an odd tag is one byte past a chunk's start, and the run held one reference
        // to it.
        unsafe { release(NonNull::new_unchecked(tag.wrapping_sub(1).cast::<ChunkHeader>()), 1) }
    } else {
        // SAFETY: an even tag is a `Vec<T>`'s capacity, shifted; the items are `Copy`, so
        // their number does not matter.
        drop(unsafe { Vec::from_raw_parts(ptr.as_ptr(), 0, tag.addr() >> 1) })
    }
}

impl<T: Copy> From<Vec<T>> for Items<T> {
    #[inline]
    fn from(v: Vec<T>) -> Self {
        let mut v = std::mem::ManuallyDrop::new(v);
        let cap = v.capacity();
        if cap == 0 || std::mem::size_of::<T>() == 0 {
            // Nothing to free either way (a zero-sized `T` never allocates).
            let len = v.len();
            return Items { ptr: NonNull::dangling(), len, tag: std::ptr::null_mut() };
        }
        // SAFETY: a `Vec`'s pointer is non-null.
        let ptr = unsafe { NonNull::new_unchecked(v.as_mut_ptr()) };
        // A `Vec`'s capacity is at most `isize::MAX`, so the shift keeps every bit.
        Items { ptr, len: v.len(), tag: std::ptr::without_provenance_mut(cap << 1) }
    }
}

impl<T: Copy> From<Items<T>> for Vec<T> {
    fn from(items: Items<T>) -> Self {
        items.into_vec()
    }
}

impl<T: Copy> Default for Items<T> {
    fn default() -> Self {
        Items::new()
    }
}

impl<T: Copy> Clone for Items<T> {
    /// A copy in a buffer of its own.
    fn clone(&self) -> Self {
        Items::from(self.as_slice().to_vec())
    }
}

impl<T: Copy> std::ops::Deref for Items<T> {
    type Target = [T];
    #[inline]
    fn deref(&self) -> &[T] {
        self.as_slice()
    }
}

impl<T: Copy> std::ops::DerefMut for Items<T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [T] {
        self.as_mut_slice()
    }
}

impl<T: Copy + std::fmt::Debug> std::fmt::Debug for Items<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_slice().fmt(f)
    }
}

impl<T: Copy + PartialEq> PartialEq for Items<T> {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl<T: Copy> FromIterator<T> for Items<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        Items::from(iter.into_iter().collect::<Vec<T>>())
    }
}

impl<'i, T: Copy> IntoIterator for &'i Items<T> {
    type Item = &'i T;
    type IntoIter = std::slice::Iter<'i, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.as_slice().iter()
    }
}

/// A graph's bump allocator for small item runs, with the buffers dicts and sets fill before
/// their items move to a run.
#[derive(Default)]
pub(crate) struct Slab {
    /// The chunk being filled.
    chunk: Option<NonNull<ChunkHeader>>,
    /// Offset of its first free byte.
    cursor: usize,
    /// References of its count not yet handed to an [`Items`].
    unclaimed: usize,
    /// A buffer a dict fills before its entries move to a run.
    pub(crate) scratch_pairs: Vec<(Value, Value)>,
    /// The same for sets.
    pub(crate) scratch_values: Vec<Value>,
}

// SAFETY: the slab alone writes past the cursor of its chunk, and gives up its references
// through the atomic count.
unsafe impl Send for Slab {}
// SAFETY: `&Slab` gives access to nothing.
unsafe impl Sync for Slab {}

impl Clone for Slab {
    /// A fresh slab: cloned items are copies in buffers of their own.
    fn clone(&self) -> Self {
        Slab::default()
    }
}

impl std::fmt::Debug for Slab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slab").field("cursor", &self.cursor).finish_non_exhaustive()
    }
}

impl Drop for Slab {
    fn drop(&mut self) {
        self.retire();
    }
}

impl Slab {
    /// Gives up the chunk being filled.
    fn retire(&mut self) {
        if let Some(header) = self.chunk.take() {
            // SAFETY: the unclaimed references are the slab's.
            unsafe { release(header, self.unclaimed) };
        }
    }

    /// Starts a new chunk; false when the allocator refuses one.
    #[cold]
    #[inline(never)]
    fn new_chunk(&mut self) -> bool {
        self.retire();
        // SAFETY: the layout has a non-zero size.
        let Some(header) = NonNull::new(unsafe { alloc::alloc(chunk_layout()) }.cast::<ChunkHeader>()) else {
            return false;
        };
        // SAFETY: fresh memory, aligned and big enough for the header.
        unsafe { header.as_ptr().write(ChunkHeader { refs: AtomicUsize::new(RESERVED_REFS) }) };
        self.chunk = Some(header);
        self.cursor = std::mem::size_of::<ChunkHeader>();
        self.unclaimed = RESERVED_REFS;
        true
    }

    /// The (key, value) pairs of `flat` (key, value, key, value, ...; a last odd value is
    /// left out), in the chunk being filled, or in a buffer of their own when they are many.
    #[inline]
    pub(crate) fn pairs(&mut self, flat: &[Value]) -> Items<(Value, Value)> {
        let n = flat.len() / 2;
        let Some(ptr) = self.run::<(Value, Value)>(n) else {
            let mut items = Items::new();
            items.extend_pairs(flat);
            return items;
        };
        // SAFETY: the run has room for `n` pairs.
        unsafe { write_pairs(ptr.as_ptr(), flat, n) };
        self.claim(ptr, n)
    }

    /// Room for `n` items in the chunk being filled (a new one when it is full); `None` for
    /// none or too many items (or no memory).
    #[inline]
    fn run<T: Copy>(&mut self, n: usize) -> Option<NonNull<T>> {
        const { assert!(std::mem::align_of::<T>() <= CHUNK_ALIGN) };
        let bytes = n.checked_mul(std::mem::size_of::<T>())?;
        if n == 0 || bytes > MAX_RUN_BYTES || std::mem::size_of::<T>() == 0 {
            return None;
        }
        let run = (bytes + CHUNK_ALIGN - 1) & !(CHUNK_ALIGN - 1);
        if (self.chunk.is_none() || self.cursor + run > CHUNK_BYTES || self.unclaimed <= 1) && !self.new_chunk() {
            return None;
        }
        let header = self.chunk?;
        // SAFETY: `cursor + run` is within the chunk, past every run handed out before; the
        // cursor stays a multiple of CHUNK_ALIGN, which is at least T's alignment.
        let ptr = unsafe { header.as_ptr().cast::<u8>().add(self.cursor).cast::<T>() };
        self.cursor += run;
        // SAFETY: inside a live allocation.
        Some(unsafe { NonNull::new_unchecked(ptr) })
    }

    /// The [`Items`] of the `len` items written at `ptr`, a run of the chunk being filled.
    #[inline]
    fn claim<T: Copy>(&mut self, ptr: NonNull<T>, len: usize) -> Items<T> {
        let header = self.chunk.expect("a run is in the chunk being filled");
        self.unclaimed -= 1;
        Items { ptr, len, tag: header.as_ptr().cast::<u8>().wrapping_add(1) }
    }

    /// `items` copied into the chunk being filled (a new one when it is full), or into a
    /// buffer of their own when they are many.
    #[inline]
    pub(crate) fn copy<T: Copy>(&mut self, items: &[T]) -> Items<T> {
        let Some(ptr) = self.run::<T>(items.len()) else { return Items::from(items.to_vec()) };
        // SAFETY: the run has room for `items`, and fresh chunk memory cannot overlap them.
        unsafe { std::ptr::copy_nonoverlapping(items.as_ptr(), ptr.as_ptr(), items.len()) };
        self.claim(ptr, items.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ints(range: std::ops::Range<i64>) -> Vec<Value> {
        range.map(Value::Int).collect()
    }

    #[test]
    fn runs_in_chunks_read_back_and_outlive_the_slab() {
        let mut slab = Slab::default();
        // Enough runs to fill several chunks; one big run takes a buffer of its own.
        let mut all: Vec<Items> = (0..3000).map(|i| slab.copy(&ints(i..i + 1 + i % 7))).collect();
        all.push(slab.copy(&ints(0..1000)));
        drop(slab);
        for (i, items) in all.iter().enumerate().take(3000) {
            let i = i as i64;
            assert_eq!(items.as_slice(), ints(i..i + 1 + i % 7).as_slice());
        }
        assert_eq!(all[3000].len(), 1000);
        assert!(all[3000].chunk().is_none());
        assert!(all[0].chunk().is_some());
        // Freed in an order unlike the one they were made in.
        let odd: Vec<Items> = all.iter().skip(1).step_by(2).cloned().collect();
        drop(all);
        assert_eq!(odd[0].as_slice(), ints(1..3).as_slice());
    }

    #[test]
    fn growing_a_run_moves_it_to_its_own_buffer() {
        let mut slab = Slab::default();
        let mut a = slab.copy(&ints(0..3));
        let b = slab.copy(&ints(10..12));
        a.push(Value::Int(3));
        a.extend_from_slice(&ints(4..6));
        a[0] = Value::Int(-1);
        assert!(a.chunk().is_none());
        assert_eq!(
            a.as_slice(),
            [Value::Int(-1), Value::Int(1), Value::Int(2)]
                .iter()
                .copied()
                .chain(ints(3..6))
                .collect::<Vec<_>>()
                .as_slice()
        );
        assert_eq!(b.as_slice(), ints(10..12).as_slice());
        assert!(b.clone().take_own_buffer().is_some());
        let mut b = b;
        assert!(b.take_own_buffer().is_none());
        assert_eq!(Vec::from(a).len(), 6);
    }

    #[test]
    fn pairs_are_read_in_order_from_a_chunk_or_their_own_buffer() {
        let flat = ints(0..9);
        let want: Vec<(Value, Value)> = (0..4).map(|i| (Value::Int(2 * i), Value::Int(2 * i + 1))).collect();
        let mut slab = Slab::default();
        let mut in_chunk = slab.pairs(&flat);
        assert!(in_chunk.chunk().is_some());
        assert_eq!(in_chunk.as_slice(), want.as_slice());
        // Growing moves the run to a buffer of its own.
        in_chunk.extend_pairs(&flat[..4]);
        assert!(in_chunk.chunk().is_none());
        assert_eq!(&in_chunk[4..], &want[..2]);
        let many = ints(0..600);
        let own = slab.pairs(&many);
        assert!(own.chunk().is_none(), "300 pairs are more than a run holds");
        assert_eq!(own.len(), 300);
        assert_eq!(own[299], (Value::Int(598), Value::Int(599)));
        assert!(slab.pairs(&[]).is_empty());
    }

    #[test]
    fn runs_of_one_chunk_drop_on_two_threads() {
        let mut slab = Slab::default();
        let mut here: Vec<Items> = (0..64).map(|i| slab.copy(&ints(i..i + 3))).collect();
        let there = here.split_off(32);
        let handle = std::thread::spawn(move || {
            let sum: i64 = there.iter().map(|r| r.len() as i64).sum();
            drop(there);
            sum
        });
        drop(slab);
        drop(here);
        assert_eq!(handle.join().expect("thread"), 32 * 3);
    }

    #[test]
    fn owned_items_round_trip_through_vec() {
        let mut items = Items::from(ints(0..5));
        assert!(!items.is_unallocated());
        items.push(Value::None);
        let v = items.into_vec();
        assert_eq!(v.len(), 6);
        assert!(Items::<Value>::new().is_unallocated());
        let pairs = Slab::default().copy(&[(Value::Int(1), Value::Int(2))]);
        assert_eq!(pairs[0], (Value::Int(1), Value::Int(2)));
    }
}
