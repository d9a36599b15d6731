//! Pre-faulting output memory about to be written in bulk.
//!
//! A large payload copied into fresh memory takes one page fault per 4 KiB page; on a virtual
//! machine each fault is a trap costing more than the copy of its page. `MADV_POPULATE_WRITE`
//! (Linux 5.14+) maps the whole range in one call instead. It maps pages as a write would,
//! without changing any byte already there, so it is safe on any memory the caller owns; where
//! unsupported it fails and is ignored.

/// Below this many bytes a range is left to fault page by page.
const MIN_BYTES: usize = 256 << 10;

/// Maps the whole pages inside the spare capacity of `v`, up to `len` bytes past its end.
#[cfg(target_os = "linux")]
pub(crate) fn populate_spare(v: &mut Vec<u8>, len: usize) {
    const PAGE: usize = 4096;
    const MADV_POPULATE_WRITE: i32 = 23;
    extern "C" {
        fn madvise(addr: *mut std::ffi::c_void, len: usize, advice: i32) -> i32;
    }
    let spare = v.spare_capacity_mut();
    let len = len.min(spare.len());
    if len < MIN_BYTES {
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
pub(crate) fn populate_spare(_v: &mut Vec<u8>, _len: usize) {}
