//! Free lists of container buffers, one per thread. When a graph that a load filled is
//! dropped, its small list, tuple, set and dict buffers go to the thread's next load instead of
//! back to the allocator, much as CPython keeps free lists of its list, tuple and dict objects.
//! A service loading many small pickles then skips most of malloc and free. Under glibc,
//! malloc, free and their bins took 45% of a list.p5 load (bm_pickle's LIST, 21 lists).
//!
//! Bounded: only buffers of at most [`MAX_ITEMS`] items, at most [`PER_CLASS`] of each
//! capacity, and at most [`MAX_BYTES`] in all. Only small graphs (at most
//! [`super::REVERSE_DROP_MIN`] objects) give buffers back.

use std::cell::Cell;
use std::ptr::NonNull;

use super::{Global, ObjId, Value};

/// Largest buffer capacity (in items) kept.
const MAX_ITEMS: usize = 32;
/// Most buffers kept of one capacity.
const PER_CLASS: usize = 128;
/// Most bytes of buffers kept in all.
const MAX_BYTES: usize = 256 << 10;

/// Free buffers of `Vec<T>`, by exact capacity: a buffer of capacity `c` is kept in `free[c]`
/// as the pointer alone. (Kept as `Vec`s, taking one read back a 24-byte `Vec` that the
/// last drop had just stored in pieces: a store-forwarding stall per container, which cost
/// more than the allocation saved on tuple.p5.)
struct Classes<T: Copy> {
    free: [Vec<NonNull<T>>; MAX_ITEMS + 1],
    /// Bit `c` set when `free[c]` is not empty.
    nonempty: u64,
}

impl<T: Copy> Default for Classes<T> {
    fn default() -> Self {
        Classes { free: std::array::from_fn(|_| Vec::new()), nonempty: 0 }
    }
}

impl<T: Copy> Drop for Classes<T> {
    fn drop(&mut self) {
        for (c, class) in self.free.iter_mut().enumerate() {
            for ptr in class.drain(..) {
                // SAFETY: `put` kept the allocation of an emptied `Vec<T>` of capacity `c`, and
                // only here or in `take_into` is it taken back, once.
                drop(unsafe { Vec::from_raw_parts(ptr.as_ptr(), 0, c) });
            }
        }
    }
}

impl<T: Copy> Classes<T> {
    /// Moves into `dst` (unallocated) a free buffer with room for `n` items and at most twice
    /// that (so a small list does not hold a big buffer), if there is one; returns its bytes.
    #[inline(always)]
    fn take_into(&mut self, n: usize, dst: &mut Vec<T>) -> usize {
        if n == 0 || n > MAX_ITEMS {
            return 0;
        }
        let above = self.nonempty >> n;
        if above == 0 {
            return 0;
        }
        let c = n + above.trailing_zeros() as usize;
        if c > 2 * n.max(4) {
            return 0;
        }
        let class = &mut self.free[c];
        let Some(ptr) = class.pop() else { return 0 };
        if class.is_empty() {
            self.nonempty &= !(1 << c);
        }
        // SAFETY: as in `drop`: an emptied `Vec<T>`'s allocation of capacity `c`, taken once.
        *dst = unsafe { Vec::from_raw_parts(ptr.as_ptr(), 0, c) };
        c * std::mem::size_of::<T>()
    }

    /// Keeps `buf`'s allocation if there is room (freeing it otherwise); returns the bytes
    /// kept.
    #[inline(always)]
    fn put(&mut self, buf: Vec<T>, room: usize) -> usize {
        let c = buf.capacity();
        let bytes = c * std::mem::size_of::<T>();
        if c == 0 || c > MAX_ITEMS || bytes > room {
            return 0;
        }
        let class = &mut self.free[c];
        if class.len() == class.capacity() && !Self::make_room(class) {
            return 0;
        }
        // The items need no drop (`Value` is `Copy`); the allocation is kept: `Classes`
        // frees it, or `take_into` hands it on.
        let mut buf = std::mem::ManuallyDrop::new(buf);
        // SAFETY: a `Vec`'s pointer is never null.
        class.push(unsafe { NonNull::new_unchecked(buf.as_mut_ptr()) });
        self.nonempty |= 1 << c;
        bytes
    }

    /// Room for one more free buffer in `class`, up to [`PER_CLASS`].
    #[cold]
    fn make_room(class: &mut Vec<NonNull<T>>) -> bool {
        if class.len() >= PER_CLASS {
            return false;
        }
        class.reserve_exact(PER_CLASS - class.len());
        true
    }
}

/// One thread's free buffers.
#[derive(Default)]
pub(crate) struct Pool {
    values: Classes<Value>,
    pairs: Classes<(Value, Value)>,
    bytes: usize,
    /// The containers of the graph holding this pool that took buffers from it, or new ones
    /// (the first [`OWNERS_MAX`]), and its globals.
    pub(super) owners: Vec<ObjId>,
    /// Globals of dropped graphs, for the next load's: most small pickles name the same
    /// classes (a `datetime.date`, ...) in every load. Boxed as `Object::Global` holds them:
    /// reusing the box saves its allocation too.
    #[allow(clippy::vec_box)]
    globals: Vec<Box<Global>>,
}

/// Most globals kept.
const GLOBALS_MAX: usize = 16;

// SAFETY: a pool owns its free buffers outright (nothing else points into them) and touches
// them only through `&mut self`, so it may move to, and be dropped on, another thread, as the
// graph holding it may.
unsafe impl Send for Pool {}
// SAFETY: as for `Send`; a shared `&Pool` reaches none of the buffers.
unsafe impl Sync for Pool {}

/// Most containers a graph notes for the pool: a graph of more objects than that frees them
/// newest first instead, and packs small lists and tuples into chunks. Under the fuzzer, 16:
/// its inputs of a few KiB then reach the chunks too.
const OWNERS_MAX: usize = if cfg!(fuzzing) { 16 } else { super::REVERSE_DROP_MIN };

impl Pool {
    /// Notes that the container `id` holds a buffer to take back when its graph is dropped;
    /// false once a graph has more containers than a small one has objects.
    #[inline]
    pub(crate) fn note_owner(&mut self, id: ObjId) -> bool {
        if self.owners.len() >= OWNERS_MAX {
            return false;
        }
        self.owners.push(id);
        true
    }

    /// Gives `dst`, an unallocated list, tuple or set buffer, a free one for `n` items if
    /// there is one.
    #[inline(always)]
    pub(crate) fn take_values(&mut self, n: usize, dst: &mut Vec<Value>) {
        self.bytes -= self.values.take_into(n, dst);
    }

    /// Gives `dst`, an unallocated dict buffer, a free one for `n` entries if there is one.
    #[inline(always)]
    pub(crate) fn take_pairs(&mut self, n: usize, dst: &mut Vec<(Value, Value)>) {
        self.bytes -= self.pairs.take_into(n, dst);
    }

    /// A kept global named `module.name`, if there is one.
    #[inline]
    pub(crate) fn take_global(&mut self, module: &str, name: &str) -> Option<Box<Global>> {
        let i = self.globals.iter().rposition(|g| g.module == module && g.name == name)?;
        Some(self.globals.swap_remove(i))
    }

    /// Keeps `g` for a later [`Pool::take_global`], if there is room.
    #[inline]
    pub(crate) fn put_global(&mut self, g: Box<Global>) {
        if self.globals.len() < GLOBALS_MAX {
            self.globals.push(g);
        }
    }

    #[inline]
    pub(crate) fn put_values(&mut self, buf: Vec<Value>) {
        self.bytes += self.values.put(buf, MAX_BYTES - self.bytes);
    }

    #[inline]
    pub(crate) fn put_pairs(&mut self, buf: Vec<(Value, Value)>) {
        self.bytes += self.pairs.put(buf, MAX_BYTES - self.bytes);
    }
}

/// Where the thread's pool is.
enum Slot {
    /// Not made yet: the thread's first load makes it.
    Unmade,
    /// Here, for the next load.
    Here(Box<Pool>),
    /// With a graph: a load meanwhile goes without (and a graph forgotten with it leaves the
    /// thread without one).
    Lent,
}

thread_local! {
    static POOL: Cell<Slot> = const { Cell::new(Slot::Unmade) };
}

/// The thread's pool, for a graph about to be filled; `None` while another graph has it.
#[inline]
pub(crate) fn take() -> Option<Box<Pool>> {
    let slot = POOL.try_with(|c| c.replace(Slot::Lent)).ok()?;
    match slot {
        Slot::Here(pool) => Some(pool),
        Slot::Unmade => Some(Box::default()),
        Slot::Lent => None,
    }
}

/// Hands `pool` back to the thread.
#[inline]
pub(crate) fn give(pool: Box<Pool>) {
    // `try_with`: a graph dropped while the thread's locals are torn down just frees.
    let _ = POOL.try_with(|c| c.set(Slot::Here(pool)));
}

/// A graph's handle on a pool: none for a graph that did not come from a load, and none for
/// a clone.
#[derive(Default)]
pub(crate) struct PoolSlot(pub(crate) Option<Box<Pool>>);

impl Clone for PoolSlot {
    fn clone(&self) -> Self {
        PoolSlot(None)
    }
}

impl std::fmt::Debug for PoolSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PoolSlot")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_back_a_fitting_buffer_and_only_that() {
        let mut pool = Pool::default();
        pool.put_values(Vec::with_capacity(10));
        pool.put_values(Vec::with_capacity(40)); // too big to keep
        assert_eq!(pool.bytes, 10 * 16);
        let mut buf = Vec::new();
        pool.take_values(11, &mut buf);
        assert_eq!(buf.capacity(), 0, "cap 10 cannot hold 11");
        pool.take_values(4, &mut buf);
        assert_eq!(buf.capacity(), 0, "cap 10 is more than twice what 4 items need");
        pool.take_values(10, &mut buf);
        assert!(buf.is_empty() && buf.capacity() == 10);
        assert_eq!(pool.bytes, 0);
        let mut again = Vec::new();
        pool.take_values(10, &mut again);
        assert_eq!(again.capacity(), 0, "taken once");
    }

    /// The buffers of every list in `loaded`.
    fn list_buffers(loaded: &crate::Loaded<'_>) -> Vec<*const Value> {
        let mut bufs: Vec<_> = loaded
            .graph
            .iter()
            .filter_map(|(_, o)| match o {
                super::super::Object::List(items) => Some(items.as_ptr()),
                _ => None,
            })
            .collect();
        bufs.sort();
        bufs
    }

    #[test]
    fn a_dropped_graphs_buffers_serve_the_next_load() {
        let nested =
            b"\x80\x05\x95\x19\x00\x00\x00\x00\x00\x00\x00]\x94(]\x94(K\x01K\x02K\x03e]\x94(K\x04K\x05K\x06ee.";
        let first = crate::loads(nested).expect("loads");
        assert_eq!(first.to_string(), "[[1, 2, 3], [4, 5, 6]]");
        let before = list_buffers(&first);
        assert_eq!(before.len(), 3);
        drop(first);
        // Blocks of the lists' size, kept alive: buffers freed to the allocator would go to
        // them, so the check below tells the pool from a malloc that reuses blocks.
        let hog: Vec<Vec<Value>> = (0..16).map(|_| Vec::with_capacity(4)).collect();
        let second = crate::loads(nested).expect("loads");
        assert_eq!(second.to_string(), "[[1, 2, 3], [4, 5, 6]]");
        assert_eq!(list_buffers(&second), before, "the lists reuse the dropped graph's buffers");
        drop(hog);
        drop(second);
        // Other shapes on the same thread read right out of reused buffers.
        let mixed =
            b"\x80\x05\x95\x19\x00\x00\x00\x00\x00\x00\x00]\x94(]\x94(K\x07K\x08e}\x94\x8c\x01x\x94]\x94K\tase.";
        let dict = b"\x80\x05\x95\x1c\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x01a\x94K\x01K\x02\x86\x94\x8c\x01b\x94}\x94\x8c\x01c\x94K\x03su.";
        for _ in 0..3 {
            assert_eq!(crate::loads(mixed).expect("loads").to_string(), "[[7, 8], {'x': [9]}]");
            assert_eq!(crate::loads(dict).expect("loads").to_string(), "{'a': (1, 2), 'b': {'c': 3}}");
        }
    }

    #[test]
    fn a_graph_kept_alive_leaves_the_next_load_its_own_buffers() {
        let nested =
            b"\x80\x05\x95\x19\x00\x00\x00\x00\x00\x00\x00]\x94(]\x94(K\x01K\x02K\x03e]\x94(K\x04K\x05K\x06ee.";
        drop(crate::loads(nested).expect("loads"));
        let kept = crate::loads(nested).expect("loads");
        let other = crate::loads(nested).expect("loads");
        let (a, b) = (list_buffers(&kept), list_buffers(&other));
        assert!(a.iter().all(|p| !b.contains(p)), "no buffer is shared between live graphs");
        assert_eq!(other.to_string(), kept.to_string());
    }

    #[test]
    fn graphs_stay_send_and_sync() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<crate::Graph<'static>>();
    }

    #[test]
    fn stops_at_the_byte_limit() {
        let mut pool = Pool::default();
        for _ in 0..10_000 {
            pool.put_pairs(Vec::with_capacity(32));
        }
        assert!(pool.bytes <= MAX_BYTES);
        assert_eq!(pool.pairs.free[32].len(), PER_CLASS.min(MAX_BYTES / (32 * 32)));
    }
}
