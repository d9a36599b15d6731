//! Python's `pickletools.optimize`, byte for byte: drops the `PUT`s no `GET` uses, renumbers
//! the memo, and re-frames protocol 4+ pickles as `pickle._Pickler`'s framer does.
//!
//! ```
//! // pickle.dumps([1, 2], 2): the list is memoized but never fetched.
//! let data = b"\x80\x02]q\x00(K\x01K\x02e.";
//! assert_eq!(pikl::optimize::optimize(data)?, b"\x80\x02](K\x01K\x02e.");
//! # Ok::<(), pikl::Error>(())
//! ```

use std::collections::HashMap;

use crate::dis::{read_op, Key, Op};
use crate::error::{Error, Result};
use crate::opcodes::Opcode;
use crate::read::{Read, SliceRead};
use crate::HIGHEST_PROTOCOL;

/// `pickle._Framer`'s target frame size.
const FRAME_SIZE_TARGET: usize = 64 * 1024;
/// `pickle._Framer`'s smallest frame worth a `FRAME` opcode.
const FRAME_SIZE_MIN: usize = 4;

/// `pickle._Framer`, writing into a vector.
struct Framer {
    out: Vec<u8>,
    current: Option<Vec<u8>>,
}

impl Framer {
    fn commit_frame(&mut self, force: bool) {
        if let Some(frame) = &mut self.current {
            if frame.len() >= FRAME_SIZE_TARGET || force {
                if frame.len() >= FRAME_SIZE_MIN {
                    self.out.push(Opcode::Frame.code());
                    self.out.extend_from_slice(&(frame.len() as u64).to_le_bytes());
                }
                self.out.extend_from_slice(frame);
                frame.clear();
            }
        }
    }

    fn write(&mut self, data: &[u8]) {
        match &mut self.current {
            Some(frame) => frame.extend_from_slice(data),
            None => self.out.extend_from_slice(data),
        }
    }

    fn end_framing(&mut self) {
        if self.current.as_ref().is_some_and(|f| !f.is_empty()) {
            self.commit_frame(true);
            self.current = None;
        }
    }
}

/// Reads the opcodes of the first pickle of `data`, through `STOP`, with their end offsets.
fn ops(data: &[u8]) -> impl Iterator<Item = Result<(Op, usize)>> + '_ {
    let mut r = SliceRead::new(data);
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let res = read_op(&mut r).map(|op| (op, r.position() as usize));
        done = !matches!(&res, Ok((op, _)) if op.opcode != Opcode::Stop);
        Some(res)
    })
}

fn is_put(op: Opcode) -> bool {
    matches!(op, Opcode::Put | Opcode::BinPut | Opcode::LongBinPut)
}

fn is_get(op: Opcode) -> bool {
    matches!(op, Opcode::Get | Opcode::BinGet | Opcode::LongBinGet)
}

/// Optimizes the first pickle of `data` as `pickletools.optimize(data)` does: the same
/// bytes, or the same error (pickletools' `ValueError` message) for a malformed pickle.
pub fn optimize(data: &[u8]) -> Result<Vec<u8>> {
    // First pass: which memo keys are fetched, and the protocol to write with.
    let mut oldids: std::collections::HashSet<Key> = std::collections::HashSet::new();
    let mut newids: HashMap<Key, Option<u32>> = HashMap::new();
    let mut proto: i128 = 0;
    let mut protoheader: &[u8] = &[];
    for res in ops(data) {
        let (op, end) = res?;
        if is_put(op.opcode) {
            oldids.insert(op.arg.key().expect("PUT has an int argument"));
        } else if op.opcode == Opcode::Memoize {
            oldids.insert(Key::Int(oldids.len() as i128));
        } else if is_get(op.opcode) {
            proto = proto.max(op.opcode.proto() as i128);
            newids.insert(op.arg.key().expect("GET has an int argument"), None);
        } else if op.opcode == Opcode::Proto {
            proto = proto.max(op.arg.as_int().expect("PROTO has an int argument"));
            if op.pos == 0 {
                protoheader = &data[..end];
            }
        }
    }
    drop(oldids);
    if proto > HIGHEST_PROTOCOL as i128 {
        return Err(Error::unpickling(0, format!("pickle protocol must be <= {HIGHEST_PROTOCOL}")));
    }
    let bin = proto >= 1;

    // Second pass: copy the opcodes except for PUTs without a corresponding GET.
    let mut framer = Framer { out: Vec::with_capacity(data.len()), current: None };
    framer.out.extend_from_slice(protoheader);
    if proto >= 4 {
        framer.current = Some(Vec::new());
    }
    let mut idx: u32 = 0;
    let mut buf = Vec::new();
    // The keys stored so far, to number MEMOIZE as the first pass did.
    let mut seen = std::collections::HashSet::new();
    for res in ops(data) {
        let (op, end) = res?;
        let start = op.pos as usize;
        let mut frameless = false;
        buf.clear();
        if is_put(op.opcode) || op.opcode == Opcode::Memoize {
            let key = if op.opcode == Opcode::Memoize {
                Key::Int(seen.len() as i128)
            } else {
                op.arg.key().expect("PUT has an int argument")
            };
            seen.insert(key.clone());
            let Some(slot) = newids.get_mut(&key) else {
                continue;
            };
            *slot = Some(idx);
            put(&mut buf, proto, idx);
            idx += 1;
        } else if is_get(op.opcode) {
            let key = op.arg.key().expect("GET has an int argument");
            match newids[&key] {
                Some(i) => get(&mut buf, bin, i),
                None if bin => {
                    return Err(Error::unpickling(
                        start as u64,
                        "'<' not supported between instances of 'NoneType' and 'int'",
                    )
                    .in_opcode(op.opcode))
                }
                None => buf.extend_from_slice(b"gNone\n"),
            }
        } else if op.opcode == Opcode::Frame || (op.opcode == Opcode::Proto && op.pos == 0) {
            continue;
        } else {
            buf.extend_from_slice(&data[start..end]);
            frameless = buf.len() > FRAME_SIZE_TARGET;
        }
        framer.commit_frame(frameless);
        if frameless {
            framer.out.extend_from_slice(&buf);
        } else {
            framer.write(&buf);
        }
    }
    framer.end_framing();
    Ok(framer.out)
}

/// `pickle._Pickler.put(idx)`.
fn put(out: &mut Vec<u8>, proto: i128, idx: u32) {
    if proto >= 4 {
        out.push(Opcode::Memoize.code());
    } else if proto >= 1 {
        if idx < 256 {
            out.extend_from_slice(&[Opcode::BinPut.code(), idx as u8]);
        } else {
            out.push(Opcode::LongBinPut.code());
            out.extend_from_slice(&idx.to_le_bytes());
        }
    } else {
        out.push(Opcode::Put.code());
        out.extend_from_slice(idx.to_string().as_bytes());
        out.push(b'\n');
    }
}

/// `pickle._Pickler.get(i)`.
fn get(out: &mut Vec<u8>, bin: bool, i: u32) {
    if bin {
        if i < 256 {
            out.extend_from_slice(&[Opcode::BinGet.code(), i as u8]);
        } else {
            out.push(Opcode::LongBinGet.code());
            out.extend_from_slice(&i.to_le_bytes());
        }
    } else {
        out.push(Opcode::Get.code());
        out.extend_from_slice(i.to_string().as_bytes());
        out.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_unused_puts() {
        // pickle.dumps([[1], [1]] with shared inner list, 2)
        let data = b"\x80\x02]q\x00(]q\x01K\x01ah\x01e.";
        assert_eq!(optimize(data).unwrap(), b"\x80\x02](]q\x00K\x01ah\x00e.");
    }

    #[test]
    fn protocol_0() {
        assert_eq!(optimize(b"(lp0\nI1\nag0\na.").unwrap(), b"(lp0\nI1\nag0\na.");
        assert_eq!(optimize(b"(lp5\nI1\na.").unwrap(), b"(lI1\na.");
    }
}
