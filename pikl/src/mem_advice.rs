//! Advice to the kernel about big buffers (`madvise`): huge pages for the loader's big arrays
//! and the pickler's output, and pre-faulting for a large payload about to be copied in.
//!
//! Loading a large pickle fills a few big arrays (the object arena and the memo, both sized up
//! front) from fresh memory. With 4 KiB pages every page is a fault the kernel zeroes and maps one at a
//! time: on a virtual machine that is most of a strs- or records-heavy load. Where the kernel
//! makes huge pages on request only (`/sys/kernel/mm/transparent_hugepage/enabled` is
//! `madvise`, the common default), asking for them turns 512 faults into one. A large payload
//! copied into fresh output memory takes one fault per page too: `MADV_POPULATE_WRITE` (Linux
//! 5.14+) maps the whole range in one call instead. Neither changes any byte already there, so
//! both are safe on any memory the caller owns; where unsupported they fail and are ignored.
//!
//! Measured on a 2-core VM: strs p5 loads 179 -> 125 ms, records p5 92 -> 74 ms (huge pages);
//! bytes p5 dumps 129 -> 96 ms (pre-faulting). Not applied to lists grown by doubling: advising
//! each new buffer made ints p5 slower (72 -> 100 ms), as every regrowth faults and zeroes fresh
//! huge pages. The object arena, which grows fourfold past 1 MiB when the input's length is
//! unknown, is advised at each growth: strs p5 through `load` 122 -> 95 ms.

#[cfg(target_os = "linux")]
extern "C" {
    fn madvise(addr: *mut std::ffi::c_void, len: usize, advice: i32) -> i32;
}

/// Below this many bytes an array is not worth advising huge pages for.
const HUGE_MIN_BYTES: usize = 4 << 20;

/// Asks the kernel to back the whole 2 MiB-aligned pages inside `len` bytes at `ptr` (memory
/// the caller owns) with huge pages.
#[cfg(target_os = "linux")]
pub(crate) fn advise(ptr: *const u8, len: usize) {
    const HUGE: usize = 2 << 20;
    const MADV_HUGEPAGE: i32 = 14;
    if len < HUGE_MIN_BYTES {
        return;
    }
    let start = (ptr as usize).next_multiple_of(HUGE);
    let end = (ptr as usize + len) & !(HUGE - 1);
    if end > start {
        // SAFETY: the range lies inside an allocation the caller owns; MADV_HUGEPAGE only sets
        // a flag on the mapping and never changes memory contents. A failure (no THP support)
        // is harmless and ignored.
        unsafe {
            madvise(start as *mut std::ffi::c_void, end - start, MADV_HUGEPAGE);
        }
    }
}

/// No huge-page advice on this platform.
#[cfg(not(target_os = "linux"))]
pub(crate) fn advise(_ptr: *const u8, _len: usize) {}

/// As [`advise`], over every 4 KiB page the `len` bytes at `ptr` touch rather than the whole
/// 2 MiB pages inside them. For a buffer glibc mapped on its own, that is the whole mapping,
/// so the advice does not split it, and a later `realloc` can still move it with `mremap`
/// instead of copying it (which also held both buffers at once).
#[cfg(target_os = "linux")]
pub(crate) fn advise_pages(ptr: *const u8, len: usize) {
    const PAGE: usize = 4096;
    const MADV_HUGEPAGE: i32 = 14;
    if len < HUGE_MIN_BYTES {
        return;
    }
    let start = (ptr as usize) & !(PAGE - 1);
    let end = (ptr as usize + len).next_multiple_of(PAGE);
    // SAFETY: as in `advise`: MADV_HUGEPAGE only sets a flag on the pages' mappings (pages a
    // neighbouring allocation shares included) and never changes memory contents.
    unsafe {
        madvise(start as *mut std::ffi::c_void, end - start, MADV_HUGEPAGE);
    }
}

/// No huge-page advice on this platform.
#[cfg(not(target_os = "linux"))]
pub(crate) fn advise_pages(_ptr: *const u8, _len: usize) {}

/// Advises the buffer of `v` when its capacity has just grown past [`HUGE_MIN_BYTES`].
#[inline]
pub(crate) fn advise_vec<T>(v: &Vec<T>, old_capacity: usize) {
    if v.capacity() != old_capacity {
        advise(v.as_ptr() as *const u8, v.capacity() * std::mem::size_of::<T>());
    }
}

/// Makes room for `additional` more bytes in `v`, doubling as `Vec::reserve` does. A buffer
/// that grows past [`HUGE_MIN_BYTES`] moves to a new allocation advised for huge pages before
/// anything is copied into it. (`realloc` would copy into 4 KiB pages first, or fail to move a
/// mapping that earlier advice split in two, and copy anyway.)
#[inline]
pub(crate) fn reserve_advised(v: &mut Vec<u8>, additional: usize) {
    if v.capacity() - v.len() < additional {
        grow_advised(v, additional);
    }
}

#[cold]
#[inline(never)]
fn grow_advised(v: &mut Vec<u8>, additional: usize) {
    let needed = v.len().saturating_add(additional);
    let capacity = needed.max(v.capacity().saturating_mul(2));
    if capacity < HUGE_MIN_BYTES {
        v.reserve(additional);
        return;
    }
    let mut fresh = Vec::with_capacity(capacity);
    advise(fresh.as_ptr(), fresh.capacity());
    fresh.extend_from_slice(v);
    *v = fresh;
}

/// Below this many bytes a range is left to fault page by page.
const POPULATE_MIN_BYTES: usize = 256 << 10;

/// Maps the whole pages inside the spare capacity of `v`, up to `len` bytes past its end
/// (nothing below [`POPULATE_MIN_BYTES`]).
#[cfg(target_os = "linux")]
#[inline]
pub(crate) fn populate_spare(v: &mut Vec<u8>, len: usize) {
    const PAGE: usize = 4096;
    const MADV_POPULATE_WRITE: i32 = 23;
    let spare = v.spare_capacity_mut();
    let len = len.min(spare.len());
    if len < POPULATE_MIN_BYTES {
        return;
    }
    let ptr = spare.as_mut_ptr() as usize;
    let start = ptr.next_multiple_of(PAGE);
    let end = (ptr + len) & !(PAGE - 1);
    if end > start {
        // SAFETY: [start, end) lies inside the Vec's allocation (its spare capacity, which we
        // hold by `&mut`); MADV_POPULATE_WRITE only maps pages, never changing the contents of
        // one already mapped, so no byte the Vec holds changes. A failure is harmless.
        unsafe {
            madvise(start as *mut std::ffi::c_void, end - start, MADV_POPULATE_WRITE);
        }
    }
}

/// Nothing to do on this platform.
#[cfg(not(target_os = "linux"))]
#[inline]
pub(crate) fn populate_spare(_v: &mut Vec<u8>, _len: usize) {}

/// A copy of `bytes` in a fresh buffer whose pages, when there are many, are mapped in one
/// call first rather than faulted in one at a time by the copy. A big str or bytes read
/// through `load` is copied out of the reader's buffer this way: bytes.p5 (200 bytes objects
/// of 1 MiB) loads through a `BufRead` 25% faster.
#[inline]
pub(crate) fn copy_populated(bytes: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(bytes.len());
    populate_spare(&mut v, bytes.len());
    v.extend_from_slice(bytes);
    v
}
