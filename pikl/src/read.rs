//! Byte sources for the unpickler: a borrowed slice or any `BufRead`, with protocol 4 framing.
//!
//! Both sources share one contract, modelled on CPython's `_Unframer`: a FRAME opcode opens a
//! window of N bytes; reads inside it must not cross its end ("pickle exhausted before end of
//! frame"); once the window is exhausted, reads continue from the underlying stream.

use std::io::{self, BufRead};
use std::ops::Deref;

use crate::error::{Error, Result};

/// Bytes handed out by a [`Read`]: borrowed from the input for its whole lifetime, or copied
/// into a scratch buffer that lives until the next read.
pub enum Bytes<'de, 's> {
    /// Borrowed from the input slice; may be kept in the object graph without copying.
    Borrowed(&'de [u8]),
    /// Valid until the next read from the source.
    Copied(&'s [u8]),
}

impl<'de> Bytes<'de, '_> {
    /// Keeps borrowed bytes borrowed and copies the rest.
    #[inline]
    pub fn into_cow(self) -> std::borrow::Cow<'de, [u8]> {
        match self {
            Bytes::Borrowed(b) => std::borrow::Cow::Borrowed(b),
            Bytes::Copied(b) => std::borrow::Cow::Owned(crate::mem_advice::copy_populated(b)),
        }
    }
}

impl Deref for Bytes<'_, '_> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Borrowed(b) => b,
            Bytes::Copied(b) => b,
        }
    }
}

mod private {
    pub trait Sealed {}
}

/// A source of pickle bytes. Sealed: use [`SliceRead`] or [`IoRead`].
pub trait Read<'de>: private::Sealed {
    /// Offset of the next byte to be read, from the start of the stream.
    fn position(&self) -> u64;
    /// Reads one byte.
    fn read_byte(&mut self) -> Result<u8>;
    /// Reads exactly `n` bytes. A declared length is never trusted for allocation: a stream that
    /// ends early gives an end-of-input error after reading only what is there.
    fn read_exact<'s>(&'s mut self, n: usize) -> Result<Bytes<'de, 's>>;
    /// Reads up to and including the next `\n` and returns the line without it.
    fn read_line<'s>(&'s mut self) -> Result<Bytes<'de, 's>>;
    /// Opens a frame of `len` bytes (the FRAME opcode's argument).
    fn begin_frame(&mut self, len: u64) -> Result<()>;
    /// True when no byte is left (used between consecutive pickles of one stream).
    fn at_end(&mut self) -> Result<bool>;
    /// The bytes readable now without a refill or a frame check: the rest of the open frame,
    /// or of the buffered input outside frames (possibly empty). Borrowed from a slice source.
    fn window(&self) -> Bytes<'de, '_>;
    /// Moves past the first `n` bytes of [`Read::window`].
    fn advance(&mut self, n: usize);
    /// Leaves the underlying reader just after the last byte handed out (bytes read ahead stay
    /// in it); called at the end of each pickle.
    fn commit(&mut self) {}
}

#[cold]
fn straddle(pos: u64) -> Error {
    Error::unpickling(pos, "pickle exhausted before end of frame")
}

#[cold]
fn frame_not_done(pos: u64) -> Error {
    Error::unpickling(pos, "beginning of a new frame before end of current frame")
}

/// Reads from a byte slice, handing out borrowed sub-slices.
pub struct SliceRead<'de> {
    data: &'de [u8],
    pos: usize,
    /// End of the readable window: the frame's end inside a frame, else `data.len()`.
    limit: usize,
    in_frame: bool,
}

impl<'de> SliceRead<'de> {
    /// A reader over `data`.
    pub fn new(data: &'de [u8]) -> Self {
        SliceRead { data, pos: 0, limit: data.len(), in_frame: false }
    }

    /// Leaves an exhausted frame, or reports why `n` more bytes are not available.
    #[cold]
    fn refill(&mut self, n: usize) -> Result<()> {
        if self.in_frame {
            if self.pos < self.limit {
                return Err(straddle(self.pos as u64));
            }
            self.in_frame = false;
            self.limit = self.data.len();
            if n <= self.limit - self.pos {
                return Ok(());
            }
        }
        Err(Error::eof(self.data.len() as u64))
    }
}

impl private::Sealed for SliceRead<'_> {}

impl<'de> Read<'de> for SliceRead<'de> {
    #[inline]
    fn position(&self) -> u64 {
        self.pos as u64
    }

    #[inline(always)]
    fn read_byte(&mut self) -> Result<u8> {
        if self.pos >= self.limit {
            self.refill(1)?;
        }
        let b = self.data[self.pos];
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    fn read_exact<'s>(&'s mut self, n: usize) -> Result<Bytes<'de, 's>> {
        if n > self.limit - self.pos {
            self.refill(n)?;
        }
        let start = self.pos;
        self.pos += n;
        Ok(Bytes::Borrowed(&self.data[start..self.pos]))
    }

    fn read_line<'s>(&'s mut self) -> Result<Bytes<'de, 's>> {
        if self.pos >= self.limit {
            self.refill(1)?;
        }
        let window = &self.data[self.pos..self.limit];
        match memchr::memchr(b'\n', window) {
            Some(i) => {
                let start = self.pos;
                self.pos += i + 1;
                Ok(Bytes::Borrowed(&self.data[start..start + i]))
            }
            None if self.in_frame => Err(straddle(self.pos as u64)),
            None => Err(Error::eof(self.data.len() as u64)),
        }
    }

    #[inline]
    fn window(&self) -> Bytes<'de, '_> {
        Bytes::Borrowed(&self.data[self.pos..self.limit])
    }

    #[inline]
    fn advance(&mut self, n: usize) {
        debug_assert!(n <= self.limit - self.pos);
        self.pos += n;
    }

    fn begin_frame(&mut self, len: u64) -> Result<()> {
        if self.in_frame && self.pos < self.limit {
            return Err(frame_not_done(self.pos as u64));
        }
        let remaining = (self.data.len() - self.pos) as u64;
        if len > remaining {
            return Err(Error::eof(self.data.len() as u64));
        }
        self.in_frame = true;
        self.limit = self.pos + len as usize;
        Ok(())
    }

    fn at_end(&mut self) -> Result<bool> {
        Ok(self.pos >= self.data.len())
    }
}

/// Reads from any [`BufRead`], copying. Memory stays bounded by the largest single item (or
/// frame) of the stream, never by the stream's size.
///
/// Outside frames, bytes are served from a copy of the start of `inner`'s buffer (the window),
/// so one opcode costs no call into `inner`; they are consumed from `inner` only as far as they
/// were handed out ([`Read::commit`], at the end of each pickle), so `inner` is never left past
/// the pickle's STOP.
pub struct IoRead<R> {
    inner: R,
    /// Stream offset of the next byte handed out.
    pos: u64,
    /// Inside a frame, the frame's bytes (already consumed from `inner`); outside, a copy of
    /// the start of `inner`'s buffer, not yet consumed from it.
    window: Vec<u8>,
    /// Next byte of `window` to hand out.
    window_pos: usize,
    in_frame: bool,
    /// Bytes of `inner`'s buffer handed out directly by a long read, consumed at the next one.
    pending: usize,
    /// Long reads that `inner`'s buffer does not hold whole.
    scratch: Vec<u8>,
}

/// `fill_buf`, retried on `Interrupted`.
fn fill<R: BufRead>(inner: &mut R, pos: u64) -> Result<&[u8]> {
    loop {
        match inner.fill_buf() {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io(e).at(pos)),
        }
    }
    inner.fill_buf().map_err(|e| Error::io(e).at(pos))
}

/// Largest block read at once when a declared length is not yet backed by data.
const CHUNK: usize = 1 << 20;

/// Most bytes copied into the window at once; longer reads are handed out from `inner`'s
/// buffer directly.
const WINDOW: usize = 1 << 16;

impl<R: BufRead> IoRead<R> {
    /// A reader over `inner`.
    pub fn new(inner: R) -> Self {
        IoRead { inner, pos: 0, window: Vec::new(), window_pos: 0, in_frame: false, pending: 0, scratch: Vec::new() }
    }

    /// The wrapped reader, just after the last byte handed out.
    pub fn into_inner(mut self) -> R {
        self.commit();
        self.inner
    }

    /// Outside a frame: consumes from `inner` what was handed out and empties the window.
    #[inline]
    fn release(&mut self) {
        debug_assert!(!self.in_frame);
        let used = self.window_pos + self.pending;
        if used > 0 {
            self.inner.consume(used);
        }
        self.window.clear();
        self.window_pos = 0;
        self.pending = 0;
    }

    /// Leaves the current frame (which must be exhausted) or releases the window.
    fn leave_window(&mut self) -> Result<()> {
        if self.in_frame {
            if self.window_pos < self.window.len() {
                return Err(straddle(self.pos));
            }
            self.in_frame = false;
            self.window.clear();
            self.window_pos = 0;
        } else {
            self.release();
        }
        Ok(())
    }

    /// Makes the window hold at least `n` bytes from `inner`'s buffer; false when that buffer
    /// holds fewer (the caller reads through `scratch`), or when `n` is too long to copy.
    #[cold]
    fn refill(&mut self, n: usize) -> Result<bool> {
        self.leave_window()?;
        let buf = fill(&mut self.inner, self.pos)?;
        if buf.len() < n || n > WINDOW {
            return Ok(false);
        }
        self.window.extend_from_slice(&buf[..buf.len().min(WINDOW)]);
        Ok(true)
    }

    /// Reads `n` bytes into `out` (cleared first) in bounded chunks, consuming them.
    fn read_into(&mut self, n: usize, out: &mut Vec<u8>) -> Result<()> {
        out.clear();
        while out.len() < n {
            let buf = fill(&mut self.inner, self.pos + out.len() as u64)?;
            if buf.is_empty() {
                return Err(Error::eof(self.pos + out.len() as u64));
            }
            let take = buf.len().min(n - out.len());
            if out.capacity() < out.len() + take {
                out.reserve((n - out.len()).min(CHUNK.max(take)));
            }
            out.extend_from_slice(&buf[..take]);
            self.inner.consume(take);
        }
        Ok(())
    }

    /// The window's next `n` bytes.
    #[inline]
    fn take(&mut self, n: usize) -> &[u8] {
        let start = self.window_pos;
        self.window_pos += n;
        self.pos += n as u64;
        &self.window[start..start + n]
    }

    /// A read the window could not serve: after [`IoRead::refill`], from `inner`'s buffer
    /// directly, or through `scratch`.
    #[cold]
    fn read_exact_slow<'de>(&mut self, n: usize) -> Result<Bytes<'de, '_>> {
        if self.refill(n)? {
            return Ok(Bytes::Copied(self.take(n)));
        }
        let at = self.pos;
        if fill(&mut self.inner, at)?.len() >= n {
            self.pending = n;
            self.pos += n as u64;
            let buf = fill(&mut self.inner, at)?;
            return Ok(Bytes::Copied(&buf[..n]));
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        let res = self.read_into(n, &mut scratch);
        self.scratch = scratch;
        res?;
        self.pos += n as u64;
        Ok(Bytes::Copied(&self.scratch))
    }

    /// A line the window could not serve whole.
    #[cold]
    fn read_line_slow<'de>(&mut self) -> Result<Bytes<'de, '_>> {
        if self.in_frame && self.window_pos < self.window.len() {
            return Err(straddle(self.pos));
        }
        if self.refill(0)? {
            if let Some(i) = memchr::memchr(b'\n', &self.window) {
                let line = self.take(i + 1);
                return Ok(Bytes::Copied(&line[..i]));
            }
        }
        self.leave_window()?;
        self.scratch.clear();
        loop {
            let pos = self.pos + self.scratch.len() as u64;
            let buf = fill(&mut self.inner, pos)?;
            if buf.is_empty() {
                return Err(Error::eof(pos));
            }
            match memchr::memchr(b'\n', buf) {
                Some(i) => {
                    self.scratch.extend_from_slice(&buf[..i]);
                    self.inner.consume(i + 1);
                    self.pos += self.scratch.len() as u64 + 1;
                    return Ok(Bytes::Copied(&self.scratch));
                }
                None => {
                    let len = buf.len();
                    self.scratch.extend_from_slice(buf);
                    self.inner.consume(len);
                }
            }
        }
    }
}

impl<R> private::Sealed for IoRead<R> {}

impl<'de, R: BufRead> Read<'de> for IoRead<R> {
    fn position(&self) -> u64 {
        self.pos
    }

    #[inline]
    fn read_byte(&mut self) -> Result<u8> {
        if let Some(&b) = self.window.get(self.window_pos) {
            self.window_pos += 1;
            self.pos += 1;
            return Ok(b);
        }
        if !self.refill(1)? {
            return Err(Error::eof(self.pos));
        }
        Ok(self.take(1)[0])
    }

    #[inline]
    fn read_exact<'s>(&'s mut self, n: usize) -> Result<Bytes<'de, 's>> {
        if n <= self.window.len() - self.window_pos {
            return Ok(Bytes::Copied(self.take(n)));
        }
        self.read_exact_slow(n)
    }

    #[inline]
    fn read_line<'s>(&'s mut self) -> Result<Bytes<'de, 's>> {
        if let Some(i) = memchr::memchr(b'\n', &self.window[self.window_pos..]) {
            let line = self.take(i + 1);
            return Ok(Bytes::Copied(&line[..i]));
        }
        self.read_line_slow()
    }

    #[inline]
    fn window(&self) -> Bytes<'de, '_> {
        Bytes::Copied(&self.window[self.window_pos..])
    }

    #[inline]
    fn advance(&mut self, n: usize) {
        debug_assert!(n <= self.window.len() - self.window_pos);
        self.window_pos += n;
        self.pos += n as u64;
    }

    fn begin_frame(&mut self, len: u64) -> Result<()> {
        if self.in_frame && self.window_pos < self.window.len() {
            return Err(frame_not_done(self.pos));
        }
        self.leave_window()?;
        let n = usize::try_from(len).map_err(|_| Error::eof(self.pos))?;
        let mut frame = std::mem::take(&mut self.window);
        let res = self.read_into(n, &mut frame);
        self.window = frame;
        if let Err(e) = res {
            self.window.clear();
            return Err(e);
        }
        // The frame's bytes are counted as they are handed out, not as they are buffered.
        self.in_frame = true;
        Ok(())
    }

    fn at_end(&mut self) -> Result<bool> {
        if self.window_pos < self.window.len() {
            return Ok(false);
        }
        self.leave_window()?;
        Ok(fill(&mut self.inner, self.pos)?.is_empty())
    }

    fn commit(&mut self) {
        if !self.in_frame {
            self.release();
        }
    }
}
