//! Output buffering with protocol 4 framing, as CPython's C pickler frames.
//!
//! Opcodes accumulate in a buffer; a frame opens at the first write after framing starts and is
//! committed once it holds 64 KiB at an opcode boundary. A frame of fewer than 4 bytes is
//! written without its header. Payloads of 64 KiB or more go between frames. Committed bytes
//! are handed to the writer as they are ready, so memory stays bounded by one frame.

use std::io::Write;

use crate::error::{Error, Result};

/// Frames are committed once they reach this size.
pub(crate) const FRAME_SIZE_TARGET: usize = 64 * 1024;
const FRAME_SIZE_MIN: usize = 4;
const FRAME_HEADER_SIZE: usize = 9;
const FRAME: u8 = 0x95;

pub(crate) struct FrameWriter<W> {
    out: W,
    buf: Vec<u8>,
    /// Position in `buf` of the open frame's reserved header.
    frame_start: Option<usize>,
    framing: bool,
}

impl<W: Write> FrameWriter<W> {
    pub(crate) fn new(out: W) -> Self {
        FrameWriter { out, buf: Vec::with_capacity(1 << 12), frame_start: None, framing: false }
    }

    pub(crate) fn get_ref(&self) -> &W {
        &self.out
    }

    pub(crate) fn into_inner(self) -> W {
        self.out
    }

    pub(crate) fn set_framing(&mut self, on: bool) {
        self.framing = on;
    }

    #[inline]
    pub(crate) fn write(&mut self, bytes: &[u8]) {
        if self.framing && self.frame_start.is_none() {
            self.frame_start = Some(self.buf.len());
            self.buf.extend_from_slice(&[0; FRAME_HEADER_SIZE]);
        }
        self.buf.extend_from_slice(bytes);
    }

    #[inline]
    pub(crate) fn write_byte(&mut self, b: u8) {
        self.write(&[b]);
    }

    pub(crate) fn commit_frame(&mut self) {
        let Some(start) = self.frame_start.take() else { return };
        if !self.framing {
            return;
        }
        let len = self.buf.len() - start - FRAME_HEADER_SIZE;
        if len >= FRAME_SIZE_MIN {
            self.buf[start] = FRAME;
            self.buf[start + 1..start + FRAME_HEADER_SIZE].copy_from_slice(&(len as u64).to_le_bytes());
        } else {
            self.buf.drain(start..start + FRAME_HEADER_SIZE);
        }
    }

    /// Called before each object is saved: commits a full frame and hands it to the writer.
    #[inline]
    pub(crate) fn boundary(&mut self) -> Result<()> {
        if let Some(start) = self.frame_start {
            if self.buf.len() - start - FRAME_HEADER_SIZE >= FRAME_SIZE_TARGET {
                self.commit_frame();
                self.flush_buf()?;
            }
        } else if !self.framing && self.buf.len() >= 1 << 20 {
            self.flush_buf()?;
        }
        Ok(())
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
        self.framing = false;
        self.write(header);
        self.flush_buf()?;
        self.out.write_all(payload).map_err(Error::io)?;
        self.framing = framing;
        Ok(())
    }

    /// Hands every committed byte to the writer (not an open frame).
    pub(crate) fn flush_buf(&mut self) -> Result<()> {
        if self.frame_start.is_some() {
            return Ok(());
        }
        self.out.write_all(&self.buf).map_err(Error::io)?;
        self.buf.clear();
        Ok(())
    }

    /// Ends a pickle: commits the last frame and writes everything out.
    pub(crate) fn finish(&mut self) -> Result<()> {
        self.commit_frame();
        self.framing = false;
        self.flush_buf()?;
        self.out.flush().map_err(Error::io)
    }

    /// Drops what the failed pickle buffered but did not hand out.
    pub(crate) fn discard(&mut self) {
        self.buf.clear();
        self.frame_start = None;
        self.framing = false;
    }
}
