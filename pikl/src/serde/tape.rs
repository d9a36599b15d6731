//! The tape: a lightweight pickle machine that builds a compact tree for serde visitors.
//!
//! Pickle is postfix (a dict's items come after the dict), so a pull-based visitor cannot
//! follow the stream directly. The tape runs the machine first, without the object model's
//! costs: strs and bytes stay borrowed from the input slice (copied into one arena when read
//! from a stream), dicts are lists of pairs (no hashing), containers are runs of items in one
//! arena, and the memo holds copies of small [`V`]s, so a shared subtree is visited again
//! wherever it is referenced. Every value keeps the byte offset of the opcode that made it, for
//! errors. No recursion: nesting costs heap, not stack.

use std::collections::HashMap;

use num_bigint::BigInt;

use super::options::DeOptions;
use crate::codec::{self, Encoding};
use crate::compat;
use crate::error::{Error, Result};
use crate::opcodes::Opcode;
use crate::ops::{read_f64, read_i32, read_len, read_opcode, read_u16, read_u32, read_u64};
use crate::read::{Bytes, Read};
use crate::text::{self, FloatError, ParsedInt};

use self::Obj as TObj;

/// "No index".
pub(crate) const NIL: u32 = u32::MAX;

/// A byte offset in 40 bits (offsets past 1 TiB saturate), packed so that a [`V`] stays 24
/// bytes.
#[derive(Clone, Copy, Debug)]
#[repr(C, packed)]
pub(crate) struct Pos {
    lo: u32,
    hi: u8,
}

impl Pos {
    #[inline]
    pub(crate) fn new(p: u64) -> Pos {
        let p = p.min((1 << 40) - 1);
        Pos { lo: p as u32, hi: (p >> 32) as u8 }
    }

    #[inline]
    pub(crate) fn get(self) -> u64 {
        let lo = self.lo;
        let hi = self.hi;
        lo as u64 | (hi as u64) << 32
    }
}

/// A value on the tape: a scalar, borrowed data, or an object of [`Tape::objs`].
#[derive(Clone, Copy, Debug)]
pub(crate) enum V<'de> {
    None(Pos),
    Bool(Pos, bool),
    Int(Pos, i64),
    Float(Pos, f64),
    /// A str's surrogatepass UTF-8, borrowed from the input.
    Str(Pos, &'de [u8]),
    /// A bytes (or bytearray), borrowed from the input.
    Bytes(Pos, &'de [u8]),
    /// An int beyond `i64`: little-endian two's complement, borrowed from the input.
    Long(Pos, &'de [u8]),
    /// An object of the tape.
    Obj(Pos, u32),
}

const _: () = assert!(std::mem::size_of::<V>() == 24);

impl V<'_> {
    #[inline]
    pub(crate) fn pos(&self) -> u64 {
        match *self {
            V::None(p)
            | V::Bool(p, _)
            | V::Int(p, _)
            | V::Float(p, _)
            | V::Str(p, _)
            | V::Bytes(p, _)
            | V::Long(p, _)
            | V::Obj(p, _) => p.get(),
        }
    }
}

/// Items of a container: a first run inline, then runs of [`Tape::segs`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Chain {
    pub(crate) start: u32,
    pub(crate) len: u32,
    pub(crate) next: u32,
    last: u32,
    pub(crate) total: u32,
}

impl Chain {
    pub(crate) const EMPTY: Chain = Chain { start: 0, len: 0, next: NIL, last: NIL, total: 0 };
}

/// A run of items after a chain's first.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Seg {
    pub(crate) start: u32,
    pub(crate) len: u32,
    pub(crate) next: u32,
}

/// An object: containers (dict items are key, value, key, value...), data owned by the tape,
/// classes and instances.
#[derive(Debug)]
pub(crate) enum Obj<'de> {
    List(Chain),
    Tuple(Chain),
    Dict(Chain),
    Set(Chain),
    FrozenSet(Chain),
    /// Surrogatepass UTF-8 in [`Tape::data`].
    Str(usize, usize),
    /// Bytes in [`Tape::data`].
    Bytes(usize, usize),
    /// An int beyond `i64`, two's complement little-endian in [`Tape::data`].
    Long(usize, usize),
    /// A class or function, by (module, qualified name).
    Global(Box<(String, String)>),
    /// An object built by a call, with what BUILD and the item opcodes gave it.
    Instance(Box<Inst<'de>>),
    /// Something serde has no mapping for (a complex, a persistent id, ...), by Python type.
    Unsupported(&'static str),
}

/// An instance: `callable(*args)` or `cls.__new__(cls, *args, **kwargs)`, then BUILD.
#[derive(Debug)]
pub(crate) struct Inst<'de> {
    pub(crate) callable: V<'de>,
    pub(crate) args: V<'de>,
    pub(crate) state: Option<V<'de>>,
    pub(crate) list: Chain,
    pub(crate) dict: Chain,
}

/// A loaded pickle.
pub(crate) struct Tape<'de> {
    pub(crate) items: Vec<V<'de>>,
    pub(crate) segs: Vec<Seg>,
    pub(crate) objs: Vec<Obj<'de>>,
    pub(crate) data: Vec<u8>,
    pub(crate) max_depth: usize,
}

impl<'de> Tape<'de> {
    pub(crate) fn new(max_depth: usize) -> Self {
        Tape { items: Vec::new(), segs: Vec::new(), objs: Vec::new(), data: Vec::new(), max_depth }
    }

    #[inline]
    pub(crate) fn obj(&self, i: u32) -> &Obj<'de> {
        &self.objs[i as usize]
    }

    #[inline]
    pub(crate) fn data(&self, start: usize, end: usize) -> &[u8] {
        &self.data[start..end]
    }

    /// Appends `vals` to the items arena and to `chain`.
    fn link(&mut self, chain: &mut Chain, vals: &[V<'de>]) -> Result<()> {
        let n = vals.len();
        if n == 0 {
            return Ok(());
        }
        let s = self.items.len();
        let (Ok(s32), Ok(n32)) = (u32::try_from(s + n), u32::try_from(n)) else {
            return Err(bad("pickle has too many items for the serde reader"));
        };
        let s32 = s32 - n32;
        self.items.extend_from_slice(vals);
        let c = chain;
        let total = c.total.checked_add(n32).ok_or_else(|| bad("container too large"))?;
        if c.total == 0 {
            c.start = s32;
            c.len = n32;
        } else if c.last == NIL && c.start + c.len == s32 {
            c.len += n32;
        } else if c.last != NIL && {
            let l = &self.segs[c.last as usize];
            l.start + l.len == s32
        } {
            self.segs[c.last as usize].len += n32;
        } else {
            let idx = u32::try_from(self.segs.len()).map_err(|_| bad("too many runs"))?;
            self.segs.push(Seg { start: s32, len: n32, next: NIL });
            if c.last == NIL {
                c.next = idx;
            } else {
                self.segs[c.last as usize].next = idx;
            }
            c.last = idx;
        }
        c.total = total;
        Ok(())
    }

    fn add(&mut self, pos: Pos, obj: Obj<'de>) -> Result<V<'de>> {
        let i = u32::try_from(self.objs.len()).map_err(|_| bad("too many objects for the serde reader"))?;
        if i == NIL {
            return Err(bad("too many objects for the serde reader"));
        }
        self.objs.push(obj);
        Ok(V::Obj(pos, i))
    }

    fn owned(&mut self, b: &[u8]) -> (usize, usize) {
        let s = self.data.len();
        self.data.extend_from_slice(b);
        (s, self.data.len())
    }

    /// Items of `chain`, in order.
    #[inline]
    pub(crate) fn iter(&self, chain: &Chain) -> ChainIter<'_, 'de> {
        ChainIter {
            items: &self.items,
            segs: &self.segs,
            cur: chain.start,
            end: chain.start + chain.len,
            next: chain.next,
            remaining: chain.total,
        }
    }
}

/// Walks a [`Chain`].
#[derive(Clone)]
pub(crate) struct ChainIter<'t, 'de> {
    items: &'t [V<'de>],
    segs: &'t [Seg],
    cur: u32,
    end: u32,
    next: u32,
    remaining: u32,
}

impl<'de> ChainIter<'_, 'de> {
    pub(crate) fn empty() -> Self {
        ChainIter { items: &[], segs: &[], cur: 0, end: 0, next: NIL, remaining: 0 }
    }

    #[inline]
    pub(crate) fn remaining(&self) -> usize {
        self.remaining as usize
    }
}

impl<'de> Iterator for ChainIter<'_, 'de> {
    type Item = V<'de>;

    #[inline]
    fn next(&mut self) -> Option<V<'de>> {
        if self.remaining == 0 {
            return None;
        }
        if self.cur == self.end {
            let s = self.segs[self.next as usize];
            self.cur = s.start;
            self.end = s.start + s.len;
            self.next = s.next;
        }
        self.remaining -= 1;
        let v = self.items[self.cur as usize];
        self.cur += 1;
        Some(v)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining as usize, Some(self.remaining as usize))
    }
}

#[cold]
fn bad(msg: impl Into<String>) -> Error {
    Error::unpickling_msg(msg)
}

#[cold]
fn underflow() -> Error {
    bad("unpickling stack underflow")
}

/// The memo: dense for the keys picklers write, sparse beyond.
#[derive(Default)]
struct Memo<'de> {
    dense: Vec<Option<V<'de>>>,
    sparse: HashMap<u64, V<'de>>,
    len: usize,
}

impl<'de> Memo<'de> {
    #[inline]
    fn get(&self, key: u64) -> Result<V<'de>> {
        let v = match self.dense.get(key as usize) {
            Some(slot) => *slot,
            None => self.sparse.get(&key).copied(),
        };
        v.ok_or_else(|| bad(format!("Memo value not found at index {key}")))
    }

    #[inline]
    fn put(&mut self, key: u64, v: V<'de>, max: usize) -> Result<()> {
        let k = key as usize;
        if k < self.dense.len() {
            if self.dense[k].replace(v).is_none() {
                self.len += 1;
            }
            return Ok(());
        }
        if self.len >= max {
            return Err(bad(format!("memo exceeds the limit of {max} entries")));
        }
        if k == self.dense.len() && self.sparse.is_empty() {
            self.dense.push(Some(v));
            self.len += 1;
        } else if key <= (self.dense.len() as u64) * 2 + 1024 && !self.sparse.contains_key(&key) {
            self.dense.resize(k + 1, None);
            self.dense[k] = Some(v);
            self.len += 1;
        } else if self.sparse.insert(key, v).is_none() {
            self.len += 1;
        }
        Ok(())
    }
}

/// Runs the pickle machine over `r` and returns the tape and the pickled value.
pub(crate) fn build<'de, R: Read<'de>>(r: &mut R, opts: &DeOptions) -> Result<(Tape<'de>, V<'de>)> {
    let mut m = Machine {
        tape: Tape::new(opts.max_depth),
        stack: Vec::new(),
        marks: Vec::new(),
        fence: 0,
        memo: Memo::default(),
        proto: 0,
        opts,
    };
    if r.at_end()? {
        return Err(Error::eof(r.position()).with_message("ran out of input"));
    }
    loop {
        let (pos, op) = read_opcode(r)?;
        match m.step(r, op, Pos::new(pos)) {
            Ok(true) => {}
            Ok(false) => {
                let root = m.pop().map_err(|e| e.at(pos).in_opcode(op))?;
                return Ok((m.tape, root));
            }
            Err(e) => return Err(e.at(pos).in_opcode(op)),
        }
    }
}

struct Machine<'de, 'o> {
    tape: Tape<'de>,
    stack: Vec<V<'de>>,
    marks: Vec<usize>,
    fence: usize,
    memo: Memo<'de>,
    proto: u8,
    opts: &'o DeOptions,
}

/// Which builtin a REDUCE calls, when serde reads the result natively.
enum Builtin {
    Set,
    FrozenSet,
    ByteArray,
    Bytes,
    Encode,
    Reconstructor,
    Complex,
}

impl<'de> Machine<'de, '_> {
    #[inline]
    fn push(&mut self, v: V<'de>) {
        self.stack.push(v);
    }

    #[inline]
    fn pop(&mut self) -> Result<V<'de>> {
        if self.stack.len() > self.fence {
            Ok(self.stack.pop().expect("above fence"))
        } else {
            Err(underflow())
        }
    }

    #[inline]
    fn top(&self) -> Result<V<'de>> {
        if self.stack.len() > self.fence {
            Ok(*self.stack.last().expect("above fence"))
        } else {
            Err(underflow())
        }
    }

    /// The value just below the items from `start` (the container they go into).
    #[inline]
    fn below(&self, start: usize) -> Result<V<'de>> {
        if start > self.fence {
            Ok(self.stack[start - 1])
        } else {
            Err(underflow())
        }
    }

    #[inline]
    fn pop_mark(&mut self) -> Result<usize> {
        let Some(start) = self.marks.pop() else {
            return Err(bad("could not find MARK"));
        };
        self.fence = self.marks.last().copied().unwrap_or(0);
        Ok(start)
    }

    /// A str from data `b` read for it.
    #[inline]
    fn str_from(&mut self, pos: Pos, b: Bytes<'de, '_>) -> Result<V<'de>> {
        match b {
            Bytes::Borrowed(b) => Ok(V::Str(pos, b)),
            Bytes::Copied(b) => {
                let (s, e) = self.tape.owned(b);
                self.tape.add(pos, Obj::Str(s, e))
            }
        }
    }

    #[inline]
    fn bytes_from(&mut self, pos: Pos, b: Bytes<'de, '_>) -> Result<V<'de>> {
        match b {
            Bytes::Borrowed(b) => Ok(V::Bytes(pos, b)),
            Bytes::Copied(b) => {
                let (s, e) = self.tape.owned(b);
                self.tape.add(pos, Obj::Bytes(s, e))
            }
        }
    }

    fn owned_str(&mut self, pos: Pos, b: &[u8]) -> Result<V<'de>> {
        let (s, e) = self.tape.owned(b);
        self.tape.add(pos, Obj::Str(s, e))
    }

    fn owned_bytes(&mut self, pos: Pos, b: &[u8]) -> Result<V<'de>> {
        let (s, e) = self.tape.owned(b);
        self.tape.add(pos, Obj::Bytes(s, e))
    }

    fn int(&mut self, pos: Pos, p: ParsedInt) -> Result<V<'de>> {
        match p {
            ParsedInt::Small(i) => Ok(V::Int(pos, i)),
            ParsedInt::Big(b) => self.big(pos, &b),
        }
    }

    fn big(&mut self, pos: Pos, b: &BigInt) -> Result<V<'de>> {
        let bytes = b.to_signed_bytes_le();
        let (s, e) = self.tape.owned(&bytes);
        self.tape.add(pos, Obj::Long(s, e))
    }

    /// A Python 2 `str`, per the `encoding` option. Text that decodes to itself stays borrowed.
    fn py2_str(&mut self, pos: Pos, b: Bytes<'de, '_>) -> Result<V<'de>> {
        let enc = self.opts.encoding;
        if enc == Encoding::Bytes {
            return self.bytes_from(pos, b);
        }
        let same = match enc {
            Encoding::Ascii | Encoding::Latin1 => b.is_ascii(),
            Encoding::Utf8 => std::str::from_utf8(&b).is_ok(),
            _ => false,
        };
        if same {
            return self.str_from(pos, b);
        }
        let decoded = codec::decode(&b, enc, self.opts.errors).map_err(|e| bad(e.to_string()))?;
        self.owned_str(pos, &decoded)
    }

    fn global(&mut self, pos: Pos, module: &str, name: &str) -> Result<V<'de>> {
        let (module, name) =
            if self.proto < 3 && self.opts.fix_imports { compat::map_py2_global(module, name) } else { (module, name) };
        self.tape.add(pos, Obj::Global(Box::new((module.to_owned(), name.to_owned()))))
    }

    fn chain_of(&self, v: V<'de>) -> Option<Chain> {
        match v {
            V::Obj(_, i) => match self.tape.obj(i) {
                Obj::List(c) | Obj::Tuple(c) | Obj::Set(c) | Obj::FrozenSet(c) => Some(*c),
                _ => None,
            },
            _ => None,
        }
    }

    fn tuple_of(&self, v: V<'de>) -> Option<Chain> {
        match v {
            V::Obj(_, i) => match self.tape.obj(i) {
                Obj::Tuple(c) => Some(*c),
                _ => None,
            },
            _ => None,
        }
    }

    fn text_of(&self, v: V<'de>) -> Option<&[u8]> {
        match v {
            V::Str(_, b) => Some(b),
            V::Obj(_, i) => match self.tape.obj(i) {
                Obj::Str(s, e) => Some(self.tape.data(*s, *e)),
                _ => None,
            },
            _ => None,
        }
    }

    fn is_callable(&self, v: V<'de>) -> bool {
        matches!(v, V::Obj(_, i) if matches!(self.tape.obj(i), Obj::Global(_) | Obj::Instance(_) | Obj::Unsupported(_)))
    }

    fn builtin(&self, callable: V<'de>) -> Option<Builtin> {
        let V::Obj(_, i) = callable else { return None };
        let Obj::Global(g) = self.tape.obj(i) else { return None };
        Some(match (g.0.as_str(), g.1.as_str()) {
            ("builtins", "set") => Builtin::Set,
            ("builtins", "frozenset") => Builtin::FrozenSet,
            ("builtins", "bytearray") => Builtin::ByteArray,
            ("builtins", "bytes") => Builtin::Bytes,
            ("builtins", "complex") => Builtin::Complex,
            ("_codecs", "encode") => Builtin::Encode,
            ("copyreg", "_reconstructor") => Builtin::Reconstructor,
            _ => return None,
        })
    }

    fn instance(&mut self, pos: Pos, callable: V<'de>, args: V<'de>) -> Result<V<'de>> {
        let inst = Inst { callable, args, state: None, list: Chain::EMPTY, dict: Chain::EMPTY };
        self.tape.add(pos, Obj::Instance(Box::new(inst)))
    }

    /// A str encoded as Latin-1 (`_codecs.encode(s, 'latin1')`, `bytearray(s, 'latin-1')`).
    fn latin1(&self, s: V<'de>, enc: V<'de>) -> Option<Vec<u8>> {
        let enc = std::str::from_utf8(self.text_of(enc)?).ok()?;
        if Encoding::from_name(enc) != Some(Encoding::Latin1) {
            return None;
        }
        let s = std::str::from_utf8(self.text_of(s)?).ok()?;
        s.chars().map(|c| u8::try_from(c as u32).ok()).collect()
    }

    /// `callable(*args)`: the builtins serde reads natively, else an instance.
    fn reduce(&mut self, pos: Pos, callable: V<'de>, args: V<'de>) -> Result<V<'de>> {
        if !self.is_callable(callable) {
            return Err(bad("REDUCE needs a callable (a class or function)"));
        }
        let Some(arg_chain) = self.tuple_of(args) else {
            return Err(bad("argument list must be a tuple"));
        };
        let argv: Vec<V<'de>> = self.tape.iter(&arg_chain).collect();
        let native = match (self.builtin(callable), argv.as_slice()) {
            (Some(Builtin::Set), []) => Some(Obj::Set(Chain::EMPTY)),
            (Some(Builtin::FrozenSet), []) => Some(Obj::FrozenSet(Chain::EMPTY)),
            (Some(Builtin::Set), [items]) => self.chain_of(*items).map(Obj::Set),
            (Some(Builtin::FrozenSet), [items]) => self.chain_of(*items).map(Obj::FrozenSet),
            (Some(Builtin::ByteArray | Builtin::Bytes), []) => return Ok(V::Bytes(pos, &[])),
            (Some(Builtin::ByteArray), [b @ (V::Bytes(..) | V::Obj(..))]) => match *b {
                V::Bytes(_, data) => return Ok(V::Bytes(pos, data)),
                V::Obj(_, i) if matches!(self.tape.obj(i), Obj::Bytes(..)) => return Ok(*b),
                _ => None,
            },
            (Some(Builtin::ByteArray | Builtin::Encode), [s, enc]) => match self.latin1(*s, *enc) {
                Some(data) => return self.owned_bytes(pos, &data),
                None => None,
            },
            (Some(Builtin::Complex), _) => Some(Obj::Unsupported("complex")),
            (Some(Builtin::Reconstructor), [cls, base, state]) => {
                // copyreg._reconstructor(cls, base, state): a plain instance below protocol 2.
                let base_name = match base {
                    V::Obj(_, i) => match self.tape.obj(*i) {
                        Obj::Global(g) if g.0 == "builtins" => Some(g.1.clone()),
                        _ => None,
                    },
                    _ => None,
                };
                let mut inst =
                    Inst { callable: *cls, args: V::None(pos), state: None, list: Chain::EMPTY, dict: Chain::EMPTY };
                match (base_name.as_deref(), *state) {
                    (Some("object"), V::None(_)) => inst.args = self.tape.add(pos, Obj::Tuple(Chain::EMPTY))?,
                    (Some("tuple"), st) if self.tuple_of(st).is_some() => inst.args = st,
                    (Some("list"), st) if self.chain_of(st).is_some() => {
                        inst.list = self.chain_of(st).expect("checked")
                    }
                    (Some("dict"), V::Obj(_, i)) if matches!(self.tape.obj(i), Obj::Dict(_)) => {
                        let Obj::Dict(c) = self.tape.obj(i) else { unreachable!() };
                        inst.dict = *c;
                    }
                    _ => {
                        let mut c = Chain::EMPTY;
                        self.tape.link(&mut c, &[*state])?;
                        inst.args = self.tape.add(pos, Obj::Tuple(c))?;
                    }
                }
                return self.tape.add(pos, Obj::Instance(Box::new(inst)));
            }
            _ => None,
        };
        match native {
            Some(obj) => self.tape.add(pos, obj),
            None => self.instance(pos, callable, args),
        }
    }

    fn append(&mut self, target: V<'de>, items: &[V<'de>]) -> Result<()> {
        let V::Obj(_, i) = target else {
            return Err(bad("APPEND needs a list"));
        };
        let mut chain = match &self.tape.objs[i as usize] {
            Obj::List(c) => *c,
            Obj::Instance(inst) => inst.list,
            _ => return Err(bad("APPEND needs a list")),
        };
        self.tape.link(&mut chain, items)?;
        match &mut self.tape.objs[i as usize] {
            Obj::List(c) => *c = chain,
            Obj::Instance(inst) => inst.list = chain,
            _ => unreachable!(),
        }
        Ok(())
    }

    fn set_items(&mut self, target: V<'de>, items: &[V<'de>]) -> Result<()> {
        let V::Obj(_, i) = target else {
            return Err(bad("SETITEM needs a dict"));
        };
        let mut chain = match &self.tape.objs[i as usize] {
            Obj::Dict(c) => *c,
            Obj::Instance(inst) => inst.dict,
            _ => return Err(bad("SETITEM needs a dict")),
        };
        self.tape.link(&mut chain, items)?;
        match &mut self.tape.objs[i as usize] {
            Obj::Dict(c) => *c = chain,
            Obj::Instance(inst) => inst.dict = chain,
            _ => unreachable!(),
        }
        Ok(())
    }

    fn add_items(&mut self, target: V<'de>, items: &[V<'de>]) -> Result<()> {
        let V::Obj(_, i) = target else {
            return Err(bad("ADDITEMS needs a set"));
        };
        let mut chain = match &self.tape.objs[i as usize] {
            Obj::Set(c) => *c,
            _ => return Err(bad("ADDITEMS needs a set")),
        };
        self.tape.link(&mut chain, items)?;
        self.tape.objs[i as usize] = Obj::Set(chain);
        Ok(())
    }

    fn build(&mut self, target: V<'de>, state: V<'de>) -> Result<()> {
        let trivial = match state {
            V::None(_) => true,
            V::Obj(_, i) => matches!(self.tape.obj(i), Obj::Dict(c) if c.total == 0),
            _ => false,
        };
        let V::Obj(_, i) = target else {
            return if trivial { Ok(()) } else { Err(bad("BUILD needs an instance")) };
        };
        let prev = match &mut self.tape.objs[i as usize] {
            Obj::Instance(inst) => inst.state.replace(state),
            _ if trivial => return Ok(()),
            _ => return Err(bad("BUILD needs an instance")),
        };
        // A second BUILD with dict states updates the first, as `__dict__.update` would.
        let dict = |m: &Self, v: V<'de>| match v {
            V::Obj(_, i) => match m.tape.obj(i) {
                Obj::Dict(c) => Some(*c),
                _ => None,
            },
            _ => None,
        };
        if let Some(prev) = prev {
            if let (Some(old), Some(new)) = (dict(self, prev), dict(self, state)) {
                let mut merged = Chain::EMPTY;
                let items: Vec<V<'de>> = self.tape.iter(&old).chain(self.tape.iter(&new)).collect();
                self.tape.link(&mut merged, &items)?;
                let d = self.tape.add(Pos::new(prev.pos()), Obj::Dict(merged))?;
                if let Obj::Instance(inst) = &mut self.tape.objs[i as usize] {
                    inst.state = Some(d);
                }
            }
        }
        Ok(())
    }

    fn memo_put(&mut self, key: u64) -> Result<()> {
        let v = self.top()?;
        self.memo.put(key, v, self.opts.max_memo_len)
    }

    fn text_memo_key(line: &[u8], what: &str) -> Result<u64> {
        let s = std::str::from_utf8(line).map_err(|_| bad(format!("invalid {what} argument")))?;
        let s = s.trim_matches(|c: char| c.is_ascii_whitespace());
        if s.starts_with('-') {
            return Err(bad(format!("negative {what} argument")));
        }
        s.parse::<u64>().map_err(|_| bad(format!("invalid {what} argument: {s:?}")))
    }

    /// Items above the innermost mark, moved off the stack.
    #[inline]
    fn marked(&mut self) -> Result<usize> {
        self.pop_mark()
    }

    /// Builds a tuple of the stack's items from `start`.
    #[inline]
    fn tuple_from(&mut self, pos: Pos, start: usize) -> Result<V<'de>> {
        let mut c = Chain::EMPTY;
        let tape = &mut self.tape;
        tape.link(&mut c, &self.stack[start..])?;
        self.stack.truncate(start);
        self.tape.add(pos, Obj::Tuple(c))
    }

    /// Executes one opcode; `Ok(false)` at STOP.
    #[inline]
    fn step<R: Read<'de>>(&mut self, r: &mut R, op: Opcode, pos: Pos) -> Result<bool> {
        use Opcode::*;
        match op {
            BinInt1 => {
                let v = r.read_byte()?;
                self.push(V::Int(pos, v as i64));
            }
            BinInt2 => {
                let v = read_u16(r)?;
                self.push(V::Int(pos, v as i64));
            }
            BinInt => {
                let v = read_i32(r)?;
                self.push(V::Int(pos, v as i64));
            }
            ShortBinUnicode | BinUnicode | BinUnicode8 => {
                let n = read_len(r, op)?;
                let b = r.read_exact(n)?;
                let v = self.str_from(pos, b)?;
                self.push(v);
            }
            Memoize => {
                let v = self.top()?;
                let key = self.memo.len as u64;
                self.memo.put(key, v, self.opts.max_memo_len)?;
            }
            BinPut => {
                let key = r.read_byte()? as u64;
                self.memo_put(key)?;
            }
            LongBinPut => {
                let key = read_u32(r)? as u64;
                self.memo_put(key)?;
            }
            BinGet => {
                let key = r.read_byte()? as u64;
                let v = self.memo.get(key)?;
                self.push(v);
            }
            LongBinGet => {
                let key = read_u32(r)? as u64;
                let v = self.memo.get(key)?;
                self.push(v);
            }
            Mark => {
                if self.marks.len() >= self.opts.max_marks {
                    return Err(bad(format!("more than {} MARKs open", self.opts.max_marks)));
                }
                self.marks.push(self.stack.len());
                self.fence = self.stack.len();
            }
            BinFloat => {
                let f = read_f64(r)?;
                self.push(V::Float(pos, f));
            }
            NewTrue => self.push(V::Bool(pos, true)),
            NewFalse => self.push(V::Bool(pos, false)),
            None => self.push(V::None(pos)),
            EmptyList => {
                let v = self.tape.add(pos, TObj::List(Chain::EMPTY))?;
                self.push(v);
            }
            EmptyDict => {
                let v = self.tape.add(pos, TObj::Dict(Chain::EMPTY))?;
                self.push(v);
            }
            EmptyTuple => {
                let v = self.tape.add(pos, TObj::Tuple(Chain::EMPTY))?;
                self.push(v);
            }
            EmptySet => {
                let v = self.tape.add(pos, TObj::Set(Chain::EMPTY))?;
                self.push(v);
            }
            Appends => {
                let start = self.marked()?;
                let target = self.below(start)?;
                let items = std::mem::take(&mut self.stack);
                let res = self.append(target, &items[start..]);
                self.stack = items;
                self.stack.truncate(start);
                res?;
            }
            Append => {
                let item = self.pop()?;
                let target = self.top()?;
                self.append(target, &[item])?;
            }
            SetItems => {
                let start = self.marked()?;
                if (self.stack.len() - start) % 2 != 0 {
                    return Err(bad("odd number of items for SETITEMS"));
                }
                let target = self.below(start)?;
                let items = std::mem::take(&mut self.stack);
                let res = self.set_items(target, &items[start..]);
                self.stack = items;
                self.stack.truncate(start);
                res?;
            }
            SetItem => {
                let value = self.pop()?;
                let key = self.pop()?;
                let target = self.top()?;
                self.set_items(target, &[key, value])?;
            }
            AddItems => {
                let start = self.marked()?;
                let target = self.below(start)?;
                let items = std::mem::take(&mut self.stack);
                let res = self.add_items(target, &items[start..]);
                self.stack = items;
                self.stack.truncate(start);
                res?;
            }
            Tuple1 | Tuple2 | Tuple3 => {
                let n = (op as u8 - Tuple1 as u8 + 1) as usize;
                if self.stack.len() < self.fence + n {
                    return Err(underflow());
                }
                let start = self.stack.len() - n;
                let v = self.tuple_from(pos, start)?;
                self.push(v);
            }
            Tuple => {
                let start = self.marked()?;
                let v = self.tuple_from(pos, start)?;
                self.push(v);
            }
            List => {
                let start = self.marked()?;
                let mut c = Chain::EMPTY;
                self.tape.link(&mut c, &self.stack[start..])?;
                self.stack.truncate(start);
                let v = self.tape.add(pos, TObj::List(c))?;
                self.push(v);
            }
            Dict => {
                let start = self.marked()?;
                if (self.stack.len() - start) % 2 != 0 {
                    return Err(bad("odd number of items for DICT"));
                }
                let mut c = Chain::EMPTY;
                self.tape.link(&mut c, &self.stack[start..])?;
                self.stack.truncate(start);
                let v = self.tape.add(pos, TObj::Dict(c))?;
                self.push(v);
            }
            FrozenSet => {
                let start = self.marked()?;
                let mut c = Chain::EMPTY;
                self.tape.link(&mut c, &self.stack[start..])?;
                self.stack.truncate(start);
                let v = self.tape.add(pos, TObj::FrozenSet(c))?;
                self.push(v);
            }
            Stop => return Ok(false),
            Pop => {
                if self.marks.last() == Some(&self.stack.len()) {
                    self.pop_mark()?;
                } else {
                    self.pop()?;
                }
            }
            PopMark => {
                let start = self.pop_mark()?;
                self.stack.truncate(start);
            }
            Dup => {
                let v = self.top()?;
                self.push(v);
            }
            Float => {
                let line = r.read_line()?;
                let f = text::parse_float(&line).map_err(|e| match e {
                    FloatError::Invalid => bad("could not convert string to float"),
                    FloatError::Overflow => bad("float overflow"),
                })?;
                self.push(V::Float(pos, f));
            }
            Int => {
                let line = r.read_line()?;
                let v = match &*line {
                    b"00" => V::Bool(pos, false),
                    b"01" => V::Bool(pos, true),
                    l => {
                        let p = text::parse_int(l).ok_or_else(|| bad("invalid literal for int() with base 0"))?;
                        self.int(pos, p)?
                    }
                };
                self.push(v);
            }
            Long => {
                let line = r.read_line()?;
                let p = text::parse_long(&line).ok_or_else(|| bad("invalid literal for int() with base 0"))?;
                let v = self.int(pos, p)?;
                self.push(v);
            }
            Long1 | Long4 => {
                let n = read_len(r, op)?;
                let b = r.read_exact(n)?;
                let v = if b.len() <= 8 {
                    let mut buf = if b.last().is_some_and(|&x| x & 0x80 != 0) { [0xFF; 8] } else { [0; 8] };
                    buf[..b.len()].copy_from_slice(&b);
                    V::Int(pos, i64::from_le_bytes(buf))
                } else {
                    match b {
                        Bytes::Borrowed(b) => V::Long(pos, b),
                        Bytes::Copied(b) => {
                            let (s, e) = self.tape.owned(b);
                            self.tape.add(pos, TObj::Long(s, e))?
                        }
                    }
                };
                self.push(v);
            }
            String => {
                let line = r.read_line()?;
                let quoted = line.len() >= 2 && line[0] == line[line.len() - 1] && matches!(line[0], b'"' | b'\'');
                if !quoted {
                    return Err(bad("the STRING opcode argument must be quoted"));
                }
                let raw = text::escape_decode(&line[1..line.len() - 1]).map_err(bad)?;
                let v = self.py2_str(pos, Bytes::Copied(&raw))?;
                self.push(v);
            }
            BinString | ShortBinString => {
                let n = read_len(r, op)?;
                let b = r.read_exact(n)?;
                let v = self.py2_str(pos, b)?;
                self.push(v);
            }
            Unicode => {
                let line = r.read_line()?;
                let decoded = text::raw_unicode_escape_decode(&line).map_err(bad)?;
                let v = self.owned_str(pos, &decoded)?;
                self.push(v);
            }
            BinBytes | ShortBinBytes | BinBytes8 | ByteArray8 => {
                let n = read_len(r, op)?;
                let b = r.read_exact(n)?;
                let v = self.bytes_from(pos, b)?;
                self.push(v);
            }
            NextBuffer => {
                return Err(bad("out-of-band buffers (NEXT_BUFFER) are not supported by the serde reader"));
            }
            ReadonlyBuffer => {
                self.top()?;
            }
            Get => {
                let line = r.read_line()?;
                let key = Self::text_memo_key(&line, "GET")?;
                let v = self.memo.get(key)?;
                self.push(v);
            }
            Put => {
                let line = r.read_line()?;
                let key = Self::text_memo_key(&line, "PUT")?;
                self.memo_put(key)?;
            }
            Global | Inst => {
                let module = std::string::String::from_utf8(r.read_line()?.to_vec())
                    .map_err(|_| bad("GLOBAL module is not UTF-8"))?;
                let name = std::string::String::from_utf8(r.read_line()?.to_vec())
                    .map_err(|_| bad("GLOBAL name is not UTF-8"))?;
                let class = self.global(pos, &module, &name)?;
                let v = if op == Inst {
                    let start = self.marked()?;
                    let args = self.tuple_from(pos, start)?;
                    self.instance(pos, class, args)?
                } else {
                    class
                };
                self.push(v);
            }
            StackGlobal => {
                let name = self.pop()?;
                let module = self.pop()?;
                let (Some(m), Some(n)) = (self.text_of(module), self.text_of(name)) else {
                    return Err(bad("STACK_GLOBAL requires str"));
                };
                let m = std::string::String::from_utf8_lossy(m).into_owned();
                let n = std::string::String::from_utf8_lossy(n).into_owned();
                let v = self.global(pos, &m, &n)?;
                self.push(v);
            }
            Reduce => {
                let args = self.pop()?;
                let callable = self.pop()?;
                let v = self.reduce(pos, callable, args)?;
                self.push(v);
            }
            Obj => {
                let start = self.marked()?;
                if self.stack.len() == start {
                    return Err(underflow());
                }
                let class = self.stack[start];
                let args = self.tuple_from(pos, start + 1)?;
                self.stack.truncate(start);
                let v = self.instance(pos, class, args)?;
                self.push(v);
            }
            NewObj => {
                let args = self.pop()?;
                let class = self.pop()?;
                if !self.is_callable(class) {
                    return Err(bad("NEWOBJ class argument isn't a type object"));
                }
                if self.tuple_of(args).is_none() {
                    return Err(bad("NEWOBJ expected an arg tuple."));
                }
                let v = self.instance(pos, class, args)?;
                self.push(v);
            }
            NewObjEx => {
                let _kwargs = self.pop()?;
                let args = self.pop()?;
                let class = self.pop()?;
                if !self.is_callable(class) {
                    return Err(bad("NEWOBJ_EX class argument must be a type"));
                }
                if self.tuple_of(args).is_none() {
                    return Err(bad("NEWOBJ_EX args argument must be a tuple"));
                }
                let v = self.instance(pos, class, args)?;
                self.push(v);
            }
            Build => {
                let state = self.pop()?;
                let target = self.top()?;
                self.build(target, state)?;
            }
            PersId => {
                r.read_line()?;
                let v = self.tape.add(pos, TObj::Unsupported("persistent id"))?;
                self.push(v);
            }
            BinPersId => {
                self.pop()?;
                let v = self.tape.add(pos, TObj::Unsupported("persistent id"))?;
                self.push(v);
            }
            Ext1 | Ext2 | Ext4 => {
                let code = match op {
                    Ext1 => r.read_byte()? as i64,
                    Ext2 => read_u16(r)? as i64,
                    _ => read_i32(r)? as i64,
                };
                if code <= 0 {
                    return Err(bad("EXT specifies code <= 0"));
                }
                let v = self.tape.add(pos, TObj::Unsupported("extension"))?;
                self.push(v);
            }
            Proto => {
                let p = r.read_byte()?;
                if p > crate::HIGHEST_PROTOCOL {
                    return Err(bad(format!("unsupported pickle protocol: {p}")));
                }
                self.proto = p;
            }
            Frame => {
                let n = read_u64(r)?;
                r.begin_frame(n)?;
            }
        }
        Ok(true)
    }
}
