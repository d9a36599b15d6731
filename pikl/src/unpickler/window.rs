//! The unpickler's fast path: the most frequent opcodes decoded straight from the reader's
//! window (the rest of the open frame or of the buffered input), with one length check per
//! opcode and no call into the reader.
//!
//! An opcode the window cuts, one outside this set, and one whose checks fail (a missing memo
//! key, a limit reached, invalid UTF-8) stop the run before it is consumed: `step` then reads it
//! through the reader, which refills or reports the error at the right offset.

use super::{decode_long, Memo, Unpickler};
use crate::read::{Bytes, Read};
use crate::text::{self, ParsedInt};
use crate::value::{pystr, Items, ObjId, Object, PyStr, Value};

/// Opcode bytes run here.
mod op {
    use crate::opcodes::Opcode;

    pub const MARK: u8 = Opcode::Mark as u8;
    pub const BININT: u8 = Opcode::BinInt as u8;
    pub const BININT1: u8 = Opcode::BinInt1 as u8;
    pub const BININT2: u8 = Opcode::BinInt2 as u8;
    pub const LONG1: u8 = Opcode::Long1 as u8;
    pub const NONE: u8 = Opcode::None as u8;
    pub const NEWTRUE: u8 = Opcode::NewTrue as u8;
    pub const NEWFALSE: u8 = Opcode::NewFalse as u8;
    pub const BINFLOAT: u8 = Opcode::BinFloat as u8;
    pub const SHORT_BINUNICODE: u8 = Opcode::ShortBinUnicode as u8;
    pub const BINUNICODE: u8 = Opcode::BinUnicode as u8;
    pub const EMPTY_LIST: u8 = Opcode::EmptyList as u8;
    pub const EMPTY_DICT: u8 = Opcode::EmptyDict as u8;
    pub const BINGET: u8 = Opcode::BinGet as u8;
    pub const LONG_BINGET: u8 = Opcode::LongBinGet as u8;
    pub const BINPUT: u8 = Opcode::BinPut as u8;
    pub const LONG_BINPUT: u8 = Opcode::LongBinPut as u8;
    pub const MEMOIZE: u8 = Opcode::Memoize as u8;
    pub const INT: u8 = Opcode::Int as u8;
    pub const GET: u8 = Opcode::Get as u8;
    pub const PUT: u8 = Opcode::Put as u8;
    pub const APPEND: u8 = Opcode::Append as u8;
    pub const SETITEM: u8 = Opcode::SetItem as u8;
    pub const APPENDS: u8 = Opcode::Appends as u8;
    pub const SETITEMS: u8 = Opcode::SetItems as u8;
    pub const TUPLE1: u8 = Opcode::Tuple1 as u8;
    pub const TUPLE2: u8 = Opcode::Tuple2 as u8;
    pub const TUPLE3: u8 = Opcode::Tuple3 as u8;
    pub const EMPTY_TUPLE: u8 = Opcode::EmptyTuple as u8;
    pub const EMPTY_SET: u8 = Opcode::EmptySet as u8;
    pub const ADDITEMS: u8 = Opcode::AddItems as u8;
}

/// The digits of a protocol 0 `INT`, `GET` or `PUT` line starting after the opcode at `at`, and
/// the opcode's whole length, when the line ends within a few bytes in the window.
#[inline(always)]
fn short_line(data: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let rest = data.get(at + 1..)?;
    let n = rest.iter().take(20).position(|&b| b == b'\n')?;
    Some((&rest[..n], n + 2))
}

/// The `N` bytes after an opcode at `at`, if the window holds them.
#[inline(always)]
fn arg<const N: usize>(data: &[u8], at: usize) -> Option<[u8; N]> {
    data.get(at + 1..at + 1 + N).map(|b| b.try_into().expect("N bytes"))
}

/// The memo key and length of the MEMOIZE, BINPUT or LONG_BINPUT at `at` (`memo_len` is the
/// key MEMOIZE takes); `None` for another opcode or one cut short.
#[inline(always)]
fn binary_put(data: &[u8], at: usize, memo_len: usize) -> Option<(u64, usize)> {
    match *data.get(at)? {
        op::MEMOIZE => Some((memo_len as u64, 1)),
        op::BINPUT => Some((arg::<1>(data, at)?[0] as u64, 2)),
        op::LONG_BINPUT => Some((u32::from_le_bytes(arg::<4>(data, at)?) as u64, 5)),
        _ => None,
    }
}

/// Runs the MEMOIZE, BINPUT or LONG_BINPUT at `at`, if one is there, of the object `id` an
/// opcode just pushed; returns its length, or 0 to leave it to the loop (none there, or the
/// memo full). Pickles memoize most objects right after making them: run here, the memo
/// opcode skips the dispatch's indirect jump.
#[inline(always)]
fn memoize_next(data: &[u8], at: usize, memo: &mut Memo, id: ObjId, max: usize) -> usize {
    match binary_put(data, at, memo.len) {
        Some((key, len)) if memo.put_obj(key, id, max).is_ok() => len,
        _ => 0,
    }
}

/// Pushes the value of the `code` opcode at `at` (with an `N`-byte argument) and of the run
/// of them that follows, and returns the run's length in bytes; `None` when the first is cut
/// short. A run (a list of small ints, of floats) stays in this loop, off the opcode
/// dispatch's indirect jump: list.p5 loads 24% faster.
#[inline(always)]
fn push_run<const N: usize>(
    data: &[u8],
    at: usize,
    code: u8,
    stack: &mut Vec<Value>,
    value: impl Fn([u8; N]) -> Value,
) -> Option<usize> {
    stack.push(value(arg::<N>(data, at)?));
    let mut end = at + 1 + N;
    while data.get(end) == Some(&code) {
        let Some(x) = arg::<N>(data, end) else { break };
        stack.push(value(x));
        end += 1 + N;
    }
    Some(end - at)
}

impl<'de, R: Read<'de>> Unpickler<'de, R> {
    /// Runs opcodes from the window until one it cannot run whole (see the module's doc).
    #[inline]
    pub(super) fn run_window(&mut self) {
        let Unpickler { reader, graph, stack, marks, fence, memo, opts, interned, key_shape, .. } = self;
        let used = {
            let (data, borrowed) = match reader.window() {
                Bytes::Borrowed(d) => (d, Some(d)),
                Bytes::Copied(d) => (d, None),
            };
            let max_objects = opts.max_objects;
            let mut i = 0;
            // Each arm pushes its effect and gives the opcode's length, or leaves the loop
            // before changing anything.
            while let Some(&b) = data.get(i) {
                i += match b {
                    // A run of BININT1 (or BININT, or BINFLOAT) is taken whole. (Taking NONE
                    // into the BININT1 run too made micro_dict.p5 faster but list.p5 slower.)
                    op::BININT1 => {
                        let Some(len) = push_run::<1>(data, i, b, stack, |[x]| Value::Int(x as i64)) else { break };
                        len
                    }
                    op::BININT2 => {
                        let Some(x) = arg::<2>(data, i) else { break };
                        stack.push(Value::Int(u16::from_le_bytes(x) as i64));
                        3
                    }
                    op::BININT => {
                        let Some(len) = push_run::<4>(data, i, b, stack, |x| Value::Int(i32::from_le_bytes(x) as i64))
                        else {
                            break;
                        };
                        len
                    }
                    op::BINFLOAT => {
                        let Some(len) = push_run::<8>(data, i, b, stack, |x| Value::Float(f64::from_be_bytes(x)))
                        else {
                            break;
                        };
                        len
                    }
                    op::NONE => {
                        stack.push(Value::None);
                        1
                    }
                    op::NEWTRUE | op::NEWFALSE => {
                        stack.push(Value::Bool(b == op::NEWTRUE));
                        1
                    }
                    op::MARK => {
                        if marks.len() >= opts.max_depth {
                            break;
                        }
                        marks.push(stack.len());
                        *fence = stack.len();
                        1
                    }
                    op::BINGET | op::LONG_BINGET => {
                        let (key, len) = if b == op::BINGET {
                            let Some([k]) = arg::<1>(data, i) else { break };
                            (k as u64, 2)
                        } else {
                            let Some(k) = arg::<4>(data, i) else { break };
                            (u32::from_le_bytes(k) as u64, 5)
                        };
                        let Some(v) = memo.get_ref(key) else { break };
                        stack.push(*v);
                        len
                    }
                    op::INT => {
                        let Some((digits, len)) = short_line(data, i) else { break };
                        let v = match digits {
                            b"00" => Value::Bool(false),
                            b"01" => Value::Bool(true),
                            // A leading 0 reads as octal in CPython: the general path decides.
                            [b'0', _, ..] => break,
                            _ => match text::plain_decimal(digits) {
                                Some(v) if v <= i64::MAX as u64 => Value::Int(v as i64),
                                _ => break,
                            },
                        };
                        stack.push(v);
                        len
                    }
                    op::GET => {
                        let Some((digits, len)) = short_line(data, i) else { break };
                        let Some(v) = text::plain_decimal(digits).and_then(|k| memo.get(k)) else { break };
                        stack.push(v);
                        len
                    }
                    op::MEMOIZE | op::BINPUT | op::LONG_BINPUT | op::PUT => {
                        let (key, len) = match b {
                            op::PUT => {
                                let Some((digits, len)) = short_line(data, i) else { break };
                                let Some(k) = text::plain_decimal(digits) else { break };
                                (k, len)
                            }
                            _ => {
                                let Some(put) = binary_put(data, i, memo.len) else { break };
                                put
                            }
                        };
                        if stack.len() <= *fence {
                            break;
                        }
                        // An object is read and memoized by its id: the opcode just before
                        // most likely pushed it as a tag and an id stored apart, which a
                        // 16-byte load cannot take from the store buffer (a stall).
                        let put = match stack.last() {
                            Some(&Value::Obj(id)) => memo.put_obj(key, id, opts.max_memo_len),
                            Some(&v) => memo.put(key, v, opts.max_memo_len),
                            None => break,
                        };
                        if put.is_err() {
                            break;
                        }
                        len
                    }
                    op::EMPTY_LIST | op::EMPTY_DICT | op::EMPTY_TUPLE | op::EMPTY_SET => {
                        if graph.len() >= max_objects {
                            break;
                        }
                        let id = graph.add_built(|| match b {
                            op::EMPTY_LIST => Object::List(Items::new()),
                            op::EMPTY_DICT => Object::Dict(Default::default()),
                            op::EMPTY_TUPLE => Object::Tuple(Items::new()),
                            _ => Object::Set(Default::default()),
                        });
                        stack.push(Value::Obj(id));
                        1 + memoize_next(data, i + 1, memo, id, opts.max_memo_len)
                    }
                    op::SHORT_BINUNICODE | op::BINUNICODE => {
                        let (n, head) = if b == op::SHORT_BINUNICODE {
                            let Some([n]) = arg::<1>(data, i) else { break };
                            (n as usize, 2)
                        } else {
                            let Some(n) = arg::<4>(data, i) else { break };
                            (u32::from_le_bytes(n) as usize, 5)
                        };
                        let start = i + head;
                        if n > data.len() - start || graph.len() >= max_objects {
                            break;
                        }
                        if !pystr::surrogatepass_ok(&data[start..start + n]) {
                            break;
                        }
                        // Each branch builds its str in place and pushes its own value: a str
                        // or value built first and moved after was copied through the stack in
                        // pieces, and read back whole (a store-forwarding stall per str).
                        let s = || match borrowed {
                            Some(d) => PyStr::borrowed_checked(&d[start..start + n]),
                            None => PyStr::copied_checked(&data[start..start + n]),
                        };
                        let id = if n > 2 {
                            graph.add_built(|| Object::Str(s()))
                        } else {
                            // Only strs of up to 2 bytes can be CPython's shared ones.
                            interned.short_str(graph, super::shared_str_key(&data[start..start + n]), s)
                        };
                        stack.push(Value::Obj(id));
                        head + n + memoize_next(data, start + n, memo, id, opts.max_memo_len)
                    }
                    op::LONG1 => {
                        let Some([n]) = arg::<1>(data, i) else { break };
                        let (start, n) = (i + 2, n as usize);
                        if n > data.len() - start || graph.len() >= max_objects {
                            break;
                        }
                        let v = match data.get(start..start + 8) {
                            // 1 to 8 bytes, with 8 readable: one load, sign-extended.
                            Some(word) if (1..=8).contains(&n) => {
                                let shift = 64 - 8 * n as u32;
                                let raw = u64::from_le_bytes(word.try_into().expect("8 bytes"));
                                Value::Int(((raw << shift) as i64) >> shift)
                            }
                            _ => match decode_long(&data[start..start + n]) {
                                ParsedInt::Small(v) => Value::Int(v),
                                ParsedInt::Big(big) => graph.add(Object::Int(big)),
                            },
                        };
                        stack.push(v);
                        2 + n
                    }
                    op::TUPLE1 | op::TUPLE2 | op::TUPLE3 => {
                        let n = (b - op::TUPLE1 + 1) as usize;
                        if stack.len() < *fence + n || graph.len() >= max_objects {
                            break;
                        }
                        let items = graph.values_from(&stack[stack.len() - n..]);
                        stack.truncate(stack.len() - n);
                        let id = graph.add_container(|| Object::Tuple(items));
                        stack.push(Value::Obj(id));
                        1
                    }
                    // The items above the innermost mark, onto the list, dict or set below it.
                    op::APPENDS | op::SETITEMS | op::ADDITEMS => {
                        let Some(&start) = marks.last() else { break };
                        let outer = if marks.len() >= 2 { marks[marks.len() - 2] } else { 0 };
                        if start <= outer {
                            break;
                        }
                        let Value::Obj(id) = stack[start - 1] else { break };
                        let items = &stack[start..];
                        let done = match b {
                            op::APPENDS => graph.list_extend(id, items),
                            // An unhashable key stops the fill; `step` repeats it (setting the
                            // same items again) and reports the error.
                            op::SETITEMS => {
                                items.len() % 2 == 0
                                    && matches!(graph.get(id), Object::Dict(_))
                                    && graph.dict_set_pairs(id, items, key_shape).is_ok()
                            }
                            // As for SETITEMS: adding the same items again is harmless.
                            _ => {
                                matches!(graph.get(id), Object::Set(_))
                                    && graph.set_add_all(id, items.iter().copied()).is_ok()
                            }
                        };
                        if !done {
                            break;
                        }
                        stack.truncate(start);
                        marks.pop();
                        *fence = outer;
                        1
                    }
                    // Protocols 0 and 1 add items one at a time: onto a list or a dict here.
                    op::APPEND => {
                        let n = stack.len();
                        if n < *fence + 2 {
                            break;
                        }
                        let (Value::Obj(id), item) = (stack[n - 2], stack[n - 1]) else { break };
                        let Object::List(list) = graph.get_mut(id) else { break };
                        list.push(item);
                        stack.pop();
                        1
                    }
                    op::SETITEM => {
                        let n = stack.len();
                        if n < *fence + 3 {
                            break;
                        }
                        let Value::Obj(id) = stack[n - 3] else { break };
                        if !matches!(graph.get(id), Object::Dict(_)) {
                            break;
                        }
                        // An unhashable key fails before the dict changes.
                        if graph.dict_set_pairs(id, &stack[n - 2..], key_shape).is_err() {
                            break;
                        }
                        stack.truncate(n - 2);
                        1
                    }
                    _ => break,
                };
            }
            i
        };
        reader.advance(used);
    }
}
