//! Output buffering with protocol 4 framing, as CPython's C pickler frames.
//!
//! Opcodes accumulate in a buffer; a frame opens at the first write after framing starts and is
//! committed once it holds 64 KiB at an opcode boundary. A frame of fewer than 4 bytes is
//! written without its header. Payloads of 64 KiB or more go between frames. Committed bytes
//! are handed to the writer as they are ready, so memory stays bounded by one frame, unless the
//! writer keeps everything in the buffer (`dumps`), which then becomes the output.

use std::io::Write;
use std::mem::MaybeUninit;

use crate::error::{Error, Result};

/// Frames are committed once they reach this size.
pub(crate) const FRAME_SIZE_TARGET: usize = 64 * 1024;
const FRAME_SIZE_MIN: usize = 4;
const FRAME_HEADER_SIZE: usize = 9;
const FRAME: u8 = 0x95;
/// The bytes [`FrameWriter::write_run`]'s encoder may write for one item.
pub(crate) const RUN_WINDOW: usize = 32;
/// Bytes [`FrameWriter::write_run`] hands its encoder room for at once.
pub(crate) const SCRATCH: usize = 1024;

/// Where [`FrameWriter::write_run`]'s encoder writes: the output buffer's spare capacity, with
/// [`RUN_WINDOW`] bytes of room past the most the encoder may report.
pub(crate) struct Scratch<'a>(&'a mut [MaybeUninit<u8>]);
/// Without framing, the buffer is handed to the writer once it holds this much.
const FLUSH_SIZE: usize = 1 << 20;

pub(crate) struct FrameWriter<W> {
    out: W,
    /// The output not yet handed to `out`.
    buf: Vec<u8>,
    /// Position in `buf` of the open frame's reserved header (when `frame_open`).
    frame_start: usize,
    frame_open: bool,
    framing: bool,
    /// `framing && !frame_open`: the next write opens a frame.
    need_frame: bool,
    /// `boundary` has work to do once `pos` reaches this.
    limit: usize,
    /// Everything stays in `buf` (the output of `dumps`); nothing reaches `out`.
    keep: bool,
}

const INITIAL_SIZE: usize = 1 << 12;

impl<W: Write> FrameWriter<W> {
    pub(crate) fn new(out: W) -> Self {
        Self::new_with_capacity(out, INITIAL_SIZE)
    }

    fn new_with_capacity(out: W, capacity: usize) -> Self {
        FrameWriter {
            out,
            buf: Vec::with_capacity(capacity),
            frame_start: 0,
            frame_open: false,
            framing: false,
            need_frame: false,
            limit: FLUSH_SIZE,
            keep: false,
        }
    }

    /// A writer that keeps the whole pickle in its buffer: see [`FrameWriter::take_buf`].
    /// Its buffer first holds `capacity` bytes.
    pub(crate) fn keeping(out: W, capacity: usize) -> Self {
        let mut w = Self::new_with_capacity(out, capacity);
        w.keep = true;
        w.update();
        w
    }

    /// The buffered bytes (everything, for a writer made by [`FrameWriter::keeping`]).
    pub(crate) fn take_buf(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    pub(crate) fn get_ref(&self) -> &W {
        &self.out
    }

    pub(crate) fn into_inner(self) -> W {
        self.out
    }

    /// Recomputes `need_frame` and `limit` from the frame state.
    fn update(&mut self) {
        self.need_frame = self.framing && !self.frame_open;
        self.limit = if self.frame_open {
            self.frame_start + FRAME_HEADER_SIZE + FRAME_SIZE_TARGET
        } else if self.framing || self.keep {
            usize::MAX
        } else {
            FLUSH_SIZE
        };
    }

    pub(crate) fn set_framing(&mut self, on: bool) {
        self.framing = on;
        self.update();
    }

    #[cold]
    #[inline(never)]
    fn open_frame(&mut self) {
        self.frame_start = self.buf.len();
        self.frame_open = true;
        self.buf.extend_from_slice(&[0; FRAME_HEADER_SIZE]);
        self.update();
    }

    #[inline]
    pub(crate) fn write(&mut self, bytes: &[u8]) {
        if self.need_frame {
            self.open_frame();
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Writes the first `n` (at most 16) of `bytes`: one 16-byte copy, then a shorter length.
    #[inline(always)]
    pub(crate) fn write_16(&mut self, bytes: [u8; 16], n: usize) {
        if self.need_frame {
            self.open_frame();
        }
        push_16(&mut self.buf, bytes, n);
    }

    /// Writes `op`, the length of `payload` (at most 255 bytes) in one byte, `payload`, then
    /// `trailer` (a memo opcode).
    #[inline(always)]
    pub(crate) fn write_short(&mut self, op: u8, payload: &[u8], trailer: u8) {
        if self.need_frame {
            self.open_frame();
        }
        self.buf.reserve(payload.len() + 3);
        self.buf.extend_from_slice(&[op, payload.len() as u8]);
        self.buf.extend_from_slice(payload);
        self.buf.push(trailer);
    }

    /// Writes the first `head_len` of `head`, `payload`, then the first `tail_len` of `tail`
    /// (each length at most 8), with one reservation.
    #[inline(always)]
    pub(crate) fn write_around(
        &mut self,
        head: [u8; 8],
        head_len: usize,
        payload: &[u8],
        tail: [u8; 8],
        tail_len: usize,
    ) {
        if self.need_frame {
            self.open_frame();
        }
        self.buf.reserve(payload.len() + 16);
        let len = self.buf.len();
        self.buf.extend_from_slice(&head);
        self.buf.truncate(len + head_len);
        self.buf.extend_from_slice(payload);
        let len = self.buf.len();
        self.buf.extend_from_slice(&tail);
        self.buf.truncate(len + tail_len);
    }

    #[inline(always)]
    pub(crate) fn write_byte(&mut self, b: u8) {
        if self.need_frame {
            self.open_frame();
        }
        self.buf.push(b);
    }

    /// Writes the leading items of `items` that `enc` encodes, each as if saved alone (a
    /// boundary before each), and returns how many it wrote. `enc` encodes a prefix of the
    /// items it is given, each in at most `MAX` bytes, into a [`Scratch`] (with [`put_16`],
    /// each item right after the one before, from the start: every byte below the length it
    /// reports is written; it may scribble up to [`RUN_WINDOW`] bytes past that), and returns
    /// how many items and bytes. Given fewer items than it may, it encodes all of them unless it meets one it
    /// does not take; `write_run` stops there, or early near a frame's end: the caller saves
    /// the next item alone and calls again.
    ///
    /// The scratch is the buffer's spare capacity, as its own `&mut` (nothing else points into
    /// it), so `enc` keeps its position in a register and nothing is copied afterwards. (An
    /// earlier version encoded into a thread-local array and copied: the thread-local access
    /// and the `memmove` call were a fifth of dumping list.p5.)
    ///
    /// `MAX` is a constant so that dividing by it is a multiplication: a `div` instruction
    /// was 19% of dumping list.p5.
    #[inline]
    pub(crate) fn write_run<const MAX: usize, T: Copy>(
        &mut self,
        items: &[T],
        enc: impl Fn(&[T], &mut Scratch) -> (usize, usize),
    ) -> Result<usize> {
        let mut done = 0;
        loop {
            self.boundary()?;
            if self.need_frame {
                self.open_frame();
            }
            // No boundary falls inside the next `k` items: each starts below `limit`.
            let k = (self.limit.saturating_sub(self.buf.len()) / MAX).min(items.len() - done).min(SCRATCH / MAX);
            if k == 0 {
                return Ok(done);
            }
            let room = k * MAX + RUN_WINDOW;
            if self.keep {
                // Output grown by doubling, written once: huge pages (past 4 MiB) fault 512
                // times less often.
                crate::mem_advice::reserve_advised(&mut self.buf, room);
            } else {
                self.buf.reserve(room);
            }
            let (n, len) = enc(&items[done..done + k], &mut Scratch(&mut self.buf.spare_capacity_mut()[..room]));
            debug_assert!(len <= k * MAX);
            // SAFETY: `enc` wrote every one of the `len` bytes it reports (its contract: each
            // item with `put_16` at the end of the ones before, from the start), at most
            // `k * MAX`, within the `room` reserved after the buffer's end.
            unsafe { self.buf.set_len(self.buf.len() + len.min(k * MAX)) };
            done += n;
            if n < k || done == items.len() {
                return Ok(done);
            }
        }
    }

    pub(crate) fn commit_frame(&mut self) {
        if !self.frame_open {
            return;
        }
        self.frame_open = false;
        let start = self.frame_start;
        if self.framing {
            let len = self.buf.len() - start - FRAME_HEADER_SIZE;
            if len >= FRAME_SIZE_MIN {
                self.buf[start] = FRAME;
                self.buf[start + 1..start + FRAME_HEADER_SIZE].copy_from_slice(&(len as u64).to_le_bytes());
            } else {
                self.buf.drain(start..start + FRAME_HEADER_SIZE);
            }
        }
        self.update();
    }

    /// Called before each object is saved: commits a full frame and hands it to the writer.
    #[inline(always)]
    pub(crate) fn boundary(&mut self) -> Result<()> {
        if self.buf.len() >= self.limit {
            return self.boundary_slow();
        }
        Ok(())
    }

    #[cold]
    #[inline(never)]
    fn boundary_slow(&mut self) -> Result<()> {
        if self.frame_open {
            self.commit_frame();
        }
        self.flush_buf()
    }

    /// Writes an opcode header and its payload; a large payload goes between frames, straight
    /// to the writer.
    pub(crate) fn write_payload(&mut self, header: &[u8], payload: &[u8]) -> Result<()> {
        if payload.len() < FRAME_SIZE_TARGET {
            self.write(header);
            self.write(payload);
            return Ok(());
        }
        self.commit_frame();
        let framing = self.framing;
        self.set_framing(false);
        self.write(header);
        if self.keep {
            self.buf.reserve(payload.len());
            crate::mem_advice::populate_spare(&mut self.buf, payload.len());
            self.write(payload);
        } else {
            self.flush_buf()?;
            self.out.write_all(payload).map_err(Error::io)?;
        }
        self.set_framing(framing);
        Ok(())
    }

    /// Hands every committed byte to the writer (not an open frame).
    pub(crate) fn flush_buf(&mut self) -> Result<()> {
        if self.frame_open || self.keep {
            return Ok(());
        }
        self.out.write_all(&self.buf).map_err(Error::io)?;
        self.buf.clear();
        Ok(())
    }

    /// Ends a pickle: commits the last frame and writes everything out.
    pub(crate) fn finish(&mut self) -> Result<()> {
        self.commit_frame();
        self.set_framing(false);
        self.flush_buf()?;
        self.out.flush().map_err(Error::io)
    }

    /// Drops what the failed pickle buffered but did not hand out.
    pub(crate) fn discard(&mut self) {
        self.buf.clear();
        self.frame_open = false;
        self.framing = false;
        self.update();
    }
}

/// Appends the first `n` (at most 16) of `bytes`: one 16-byte copy, then a shorter length.
#[inline(always)]
pub(crate) fn push_16(buf: &mut Vec<u8>, bytes: [u8; 16], n: usize) {
    let len = buf.len();
    buf.extend_from_slice(&bytes);
    buf.truncate(len + n);
}

/// Writes 16 bytes at `pos` of a scratch, where `pos` is at most the bytes reported so far
/// (so at least [`RUN_WINDOW`] bytes of room remain).
#[inline(always)]
pub(crate) fn put_16(out: &mut Scratch, pos: usize, bytes: [u8; 16]) {
    debug_assert!(pos + 16 <= out.0.len());
    // The clamp only lets the compiler drop the bounds check: `write_run` leaves room.
    let pos = pos.min(out.0.len().saturating_sub(16));
    if let Some(dst) = out.0.get_mut(pos..pos + 16) {
        // SAFETY: `dst` is 16 bytes long; `[u8; 16]` has no alignment to keep.
        unsafe { dst.as_mut_ptr().cast::<[u8; 16]>().write_unaligned(bytes) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// BININT of each item, up to an item that is a multiple of 1000 (which it leaves).
    fn enc(items: &[u32], out: &mut Scratch) -> (usize, usize) {
        let mut pos = 0;
        for (i, &v) in items.iter().enumerate() {
            if i > 0 && v % 1000 == 0 {
                return (i, pos);
            }
            let word = 0x4A | (v as u128) << 8;
            put_16(out, pos, word.to_le_bytes());
            pos += 5;
        }
        (items.len(), pos)
    }

    /// Writes the items one at a time, a boundary before each, as the pickler saves them alone.
    fn one_by_one(w: &mut FrameWriter<Vec<u8>>, items: &[u32]) {
        for &v in items {
            w.boundary().unwrap();
            w.write(&[0x4A]);
            w.write(&v.to_le_bytes());
        }
    }

    #[test]
    fn runs_write_what_items_saved_alone_write_across_frames_and_growth() {
        // Past 4 MiB of output, so the buffer moves to huge-page-advised memory at least once
        // (fewer under Miri, which checks the writes into spare capacity).
        let count = if cfg!(miri) { 5_000 } else { 1_100_000 };
        let items: Vec<u32> = (1..count).collect();
        for framing in [false, true] {
            let mut run = FrameWriter::keeping(Vec::new(), 256);
            run.set_framing(framing);
            let mut rest = &items[..];
            let mut calls = 0;
            while !rest.is_empty() {
                let n = run.write_run::<5, _>(rest, enc).unwrap();
                calls += 1;
                if n == 0 {
                    one_by_one(&mut run, &rest[..1]);
                    rest = &rest[1..];
                } else {
                    rest = &rest[n..];
                }
            }
            run.finish().unwrap();
            let mut alone = FrameWriter::keeping(Vec::new(), 256);
            alone.set_framing(framing);
            one_by_one(&mut alone, &items);
            alone.finish().unwrap();
            let (got, want) = (run.take_buf(), alone.take_buf());
            assert!(cfg!(miri) || want.len() > 5_000_000);
            assert!(calls >= count / 1000, "the encoder's stops were not honoured: {calls} calls");
            assert!(got == want, "framing {framing}: {} bytes against {}", got.len(), want.len());
        }
    }
}
