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
            Bytes::Copied(b) => std::borrow::Cow::Owned(b.to_vec()),
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
pub struct IoRead<R> {
    inner: R,
    pos: u64,
    /// Bytes of `inner`'s buffer handed out by the last read, consumed at the next one.
    pending: usize,
    scratch: Vec<u8>,
    /// The open frame's bytes and the read position inside them.
    frame: Vec<u8>,
    frame_pos: usize,
    in_frame: bool,
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

impl<R: BufRead> IoRead<R> {
    /// A reader over `inner`.
    pub fn new(inner: R) -> Self {
        IoRead { inner, pos: 0, pending: 0, scratch: Vec::new(), frame: Vec::new(), frame_pos: 0, in_frame: false }
    }

    /// The wrapped reader.
    pub fn into_inner(mut self) -> R {
        self.flush_pending();
        self.inner
    }

    #[inline]
    fn flush_pending(&mut self) {
        if self.pending > 0 {
            self.inner.consume(self.pending);
            self.pending = 0;
        }
    }

    fn fill(&mut self) -> Result<&[u8]> {
        fill(&mut self.inner, self.pos)
    }

    /// Reads `n` bytes into `out` (cleared first) in bounded chunks.
    fn read_into(&mut self, n: usize, out: &mut Vec<u8>) -> Result<()> {
        out.clear();
        while out.len() < n {
            let buf = self.fill()?;
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

    /// Inside a frame, true when it is exhausted (and leaves it); else an error if `n` bytes
    /// straddle its end.
    #[inline]
    fn frame_has(&mut self, n: usize) -> Result<bool> {
        if !self.in_frame {
            return Ok(false);
        }
        let left = self.frame.len() - self.frame_pos;
        if n <= left {
            return Ok(true);
        }
        if left == 0 {
            self.in_frame = false;
            return Ok(false);
        }
        Err(straddle(self.pos))
    }
}

impl<R> private::Sealed for IoRead<R> {}

impl<'de, R: BufRead> Read<'de> for IoRead<R> {
    fn position(&self) -> u64 {
        self.pos
    }

    #[inline]
    fn read_byte(&mut self) -> Result<u8> {
        if self.frame_has(1)? {
            let b = self.frame[self.frame_pos];
            self.frame_pos += 1;
            self.pos += 1;
            return Ok(b);
        }
        self.flush_pending();
        let pos = self.pos;
        let buf = self.fill()?;
        let Some(&b) = buf.first() else {
            return Err(Error::eof(pos));
        };
        self.inner.consume(1);
        self.pos += 1;
        Ok(b)
    }

    fn read_exact<'s>(&'s mut self, n: usize) -> Result<Bytes<'de, 's>> {
        if self.frame_has(n)? {
            let start = self.frame_pos;
            self.frame_pos += n;
            self.pos += n as u64;
            return Ok(Bytes::Copied(&self.frame[start..start + n]));
        }
        self.flush_pending();
        if self.fill()?.len() >= n {
            self.pending = n;
            self.pos += n as u64;
            let buf = self.inner.fill_buf().map_err(Error::io)?;
            return Ok(Bytes::Copied(&buf[..n]));
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        let res = self.read_into(n, &mut scratch);
        self.scratch = scratch;
        res?;
        self.pos += n as u64;
        Ok(Bytes::Copied(&self.scratch))
    }

    fn read_line<'s>(&'s mut self) -> Result<Bytes<'de, 's>> {
        if self.frame_has(1)? {
            let window = &self.frame[self.frame_pos..];
            let Some(i) = memchr::memchr(b'\n', window) else {
                return Err(straddle(self.pos));
            };
            let start = self.frame_pos;
            self.frame_pos += i + 1;
            self.pos += i as u64 + 1;
            return Ok(Bytes::Copied(&self.frame[start..start + i]));
        }
        self.flush_pending();
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

    fn begin_frame(&mut self, len: u64) -> Result<()> {
        if self.in_frame && self.frame_pos < self.frame.len() {
            return Err(frame_not_done(self.pos));
        }
        self.flush_pending();
        let n = usize::try_from(len).map_err(|_| Error::eof(self.pos))?;
        let mut frame = std::mem::take(&mut self.frame);
        let res = self.read_into(n, &mut frame);
        self.frame = frame;
        res?;
        // The frame's bytes are counted as they are handed out, not as they are buffered.
        self.frame_pos = 0;
        self.in_frame = true;
        Ok(())
    }

    fn at_end(&mut self) -> Result<bool> {
        if self.in_frame && self.frame_pos < self.frame.len() {
            return Ok(false);
        }
        self.flush_pending();
        Ok(self.fill()?.is_empty())
    }
}
