//! Drives serde visitors from a [`Tape`].
//!
//! Each value is visited where it is referenced, so a shared subtree is read once per
//! reference. Errors carry the byte offset of the value that failed and the path to it, added
//! as the error travels back out through sequences and maps.

use std::cell::Cell;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Unexpected, Visitor};

use crate::opcodes::Opcode;
use crate::value::is_short_ascii;

use super::error::{Error, Result};
use super::tape::{scalar, Buf, Chain, ChainIter, Inst, Item, Obj, Scalar, Tape, OBJ};

/// The name [`super::bigint`] deserializes through: an int handed over as its two's complement
/// bytes.
pub(crate) const BIGINT_TOKEN: &str = "$pikl::private::BigInt";

/// What every node of one read shares: the tape, the input and the nesting depth of the
/// containers being visited.
pub(crate) struct Cx<'t, 'de> {
    tape: &'t Tape,
    /// The bytes the tape's offsets point into.
    input: &'de [u8],
    depth: Cell<usize>,
}

impl<'t, 'de> Cx<'t, 'de> {
    pub(crate) fn new(tape: &'t Tape, input: &'de [u8]) -> Self {
        Cx { tape, input, depth: Cell::new(0) }
    }
}

/// One value of a tape, as a serde `Deserializer`. Two words, so that it travels in registers
/// into the `deserialize` functions serde's impls do not inline.
#[derive(Clone, Copy)]
pub(crate) struct Node<'t, 'de> {
    pub(crate) cx: &'t Cx<'t, 'de>,
    pub(crate) v: Item,
}

/// One level of nesting entered; left when dropped.
struct Deeper<'t>(&'t Cell<usize>);

impl Drop for Deeper<'_> {
    #[inline]
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

/// What a value is, for visiting.
enum Kind<'t, 'de> {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// Surrogatepass UTF-8, borrowed from the input or from the tape.
    Str(Data<'t, 'de>),
    Bytes(Data<'t, 'de>),
    Long(Data<'t, 'de>),
    List(&'t Chain),
    Tuple(&'t Chain),
    Set(&'t Chain),
    Dict(&'t Chain),
    Global(&'t (String, String)),
    Instance(&'t Inst),
    Unsupported(&'static str),
}

#[derive(Clone, Copy)]
enum Data<'t, 'de> {
    Input(&'de [u8]),
    Tape(&'t [u8]),
}

impl Data<'_, '_> {
    #[inline]
    fn bytes(&self) -> &[u8] {
        match *self {
            Data::Input(b) => b,
            Data::Tape(b) => b,
        }
    }
}

/// `b` as text when it is valid UTF-8 (no surrogates). Not inlined: it keeps the callers small
/// enough for serde's impls (`String`'s) to inline them.
#[inline(never)]
fn valid_text(b: &[u8]) -> Option<&str> {
    if is_short_ascii(b) {
        // SAFETY: ASCII is valid UTF-8.
        return Some(unsafe { std::str::from_utf8_unchecked(b) });
    }
    std::str::from_utf8(b).ok()
}

/// Two's complement little-endian bytes as an `i128`, when they fit.
fn long_i128(b: &[u8]) -> Option<i128> {
    if b.len() > 16 {
        return None;
    }
    let neg = b.last().is_some_and(|&x| x & 0x80 != 0);
    let mut buf = if neg { [0xFF; 16] } else { [0; 16] };
    buf[..b.len()].copy_from_slice(b);
    Some(i128::from_le_bytes(buf))
}

/// As a `u128`, when non-negative and it fits.
fn long_u128(b: &[u8]) -> Option<u128> {
    if b.last().is_some_and(|&x| x & 0x80 != 0) {
        return None;
    }
    let b = match b.len() {
        17 if b[16] == 0 => &b[..16],
        n if n <= 16 => b,
        _ => return None,
    };
    let mut buf = [0; 16];
    buf[..b.len()].copy_from_slice(b);
    Some(u128::from_le_bytes(buf))
}

/// The minimal two's complement bytes of `i`.
pub(crate) fn i64_bytes(i: i64) -> Vec<u8> {
    let b = i.to_le_bytes();
    let mut n = 8;
    while n > 1 && ((b[n - 1] == 0 && b[n - 2] & 0x80 == 0) || (b[n - 1] == 0xFF && b[n - 2] & 0x80 != 0)) {
        n -= 1;
    }
    b[..n].to_vec()
}

/// Where the fast int opcodes keep their value: (offset after the opcode, bytes, signed), by
/// opcode; bytes 0 for LONG1 (its length byte says), offset 0 for any other opcode.
const INT_LAYOUT: [(u8, u32, bool); 256] = {
    let mut t = [(0, 0, false); 256];
    t[Opcode::BinInt1 as usize] = (1, 1, false);
    t[Opcode::BinInt2 as usize] = (1, 2, false);
    t[Opcode::BinInt as usize] = (1, 4, true);
    t[Opcode::Long1 as usize] = (2, 0, true);
    t
};

impl<'t, 'de> Node<'t, 'de> {
    #[inline(always)]
    fn tape(&self) -> &'t Tape {
        self.cx.tape
    }

    #[inline(always)]
    fn input(&self) -> &'de [u8] {
        self.cx.input
    }

    #[inline]
    fn kind(&self) -> Kind<'t, 'de> {
        if self.v & OBJ == 0 {
            return match scalar(self.input(), self.v as usize, self.tape().py2_bytes) {
                Scalar::None => Kind::None,
                Scalar::Bool(b) => Kind::Bool(b),
                Scalar::Int(i) => Kind::Int(i),
                Scalar::Float(f) => Kind::Float(f),
                Scalar::Str(b) => Kind::Str(Data::Input(b)),
                Scalar::Bytes(b) => Kind::Bytes(Data::Input(b)),
                Scalar::Long(b) => Kind::Long(Data::Input(b)),
            };
        }
        match self.tape().obj(self.v) {
            Obj::List(c) => Kind::List(c),
            Obj::Tuple(c) => Kind::Tuple(c),
            Obj::Set(c) | Obj::FrozenSet(c) => Kind::Set(c),
            Obj::Dict(c) => Kind::Dict(c),
            Obj::Str(s, e) => Kind::Str(Data::Tape(self.tape().data(*s, *e))),
            Obj::Bytes(s, e) => Kind::Bytes(Data::Tape(self.tape().data(*s, *e))),
            Obj::ByteArray(b) => Kind::Bytes(match &b.buf {
                Buf::Input(s, e) => Data::Input(&self.input()[*s..*e]),
                Buf::Owned(v) => Data::Tape(v),
            }),
            Obj::Long(s, e) => Kind::Long(Data::Tape(self.tape().data(*s, *e))),
            Obj::Int(i) => Kind::Int(*i),
            Obj::Bool(b) => Kind::Bool(*b),
            Obj::Float(f) => Kind::Float(*f),
            Obj::Global(g) => Kind::Global(g),
            Obj::Instance(inst) => Kind::Instance(inst),
            Obj::Unsupported(what) => Kind::Unsupported(what),
        }
    }

    #[inline]
    fn pos(&self) -> u64 {
        self.tape().pos(self.v)
    }

    /// The value of the int opcodes CPython writes for small ints, read directly.
    #[inline(always)]
    fn fast_int(&self) -> Option<i64> {
        if self.v & OBJ != 0 {
            return None;
        }
        // One bounds check: the opcode and the 9 bytes after it (an int item is never the
        // last thing of a pickle, and `visit_int` reads any other one).
        let off = self.v as usize;
        let w = self.input().get(off..off + 10)?;
        let word = |at: usize| u64::from_le_bytes(w[at..at + 8].try_into().expect("8 bytes"));
        // Branch-free over the opcodes (ints of mixed widths mispredicted a `match` about once
        // an item): where the value starts, how many bytes, and whether it is signed.
        let (start, fixed_len, signed) = INT_LAYOUT[w[0] as usize];
        if start == 0 {
            return None;
        }
        let len = if fixed_len == 0 { w[1] as u32 } else { fixed_len };
        if !(1..=8).contains(&len) {
            return None;
        }
        let shift = 64 - 8 * len;
        let raw = word(start as usize) << shift;
        let (as_signed, as_unsigned) = ((raw as i64) >> shift, (raw >> shift) as i64);
        Some(if signed { as_signed } else { as_unsigned })
    }

    #[inline]
    fn at(&self, v: Item) -> Node<'t, 'de> {
        Node { cx: self.cx, v }
    }

    /// Python's name for the value's type, for messages.
    fn type_desc(&self) -> String {
        match self.kind() {
            Kind::None => "None".into(),
            Kind::Bool(_) => "bool".into(),
            Kind::Int(_) | Kind::Long(_) => "int".into(),
            Kind::Float(_) => "float".into(),
            Kind::Str(_) => "str".into(),
            Kind::Bytes(_) => "bytes".into(),
            Kind::List(_) => "list".into(),
            Kind::Tuple(_) => "tuple".into(),
            Kind::Set(_) => "set".into(),
            Kind::Dict(_) => "dict".into(),
            Kind::Global(g) => format!("class {}.{}", g.0, g.1),
            Kind::Instance(inst) => match self.at(inst.callable).kind() {
                Kind::Global(g) => format!("instance of {}.{}", g.0, g.1),
                _ => "instance".into(),
            },
            Kind::Unsupported(what) => what.into(),
        }
    }

    #[cold]
    fn invalid_type(&self, exp: &dyn de::Expected) -> Error {
        let desc;
        let kind = self.kind();
        let unexp = match &kind {
            Kind::None => Unexpected::Other("None"),
            Kind::Bool(b) => Unexpected::Bool(*b),
            Kind::Int(i) => Unexpected::Signed(*i),
            Kind::Float(f) => Unexpected::Float(*f),
            Kind::Str(d) => match std::str::from_utf8(d.bytes()) {
                Ok(s) => Unexpected::Str(s),
                Err(_) => Unexpected::Other("str"),
            },
            Kind::Bytes(d) => Unexpected::Bytes(d.bytes()),
            _ => {
                desc = self.type_desc();
                Unexpected::Other(&desc)
            }
        };
        <Error as de::Error>::invalid_type(unexp, exp).at(self.pos())
    }

    #[cold]
    fn error(&self, msg: impl Into<String>) -> Error {
        Error::de(msg).at(self.pos())
    }

    /// One level deeper (until the guard is dropped), or an error past the limit.
    #[inline]
    fn deeper(&self) -> Result<Deeper<'t>> {
        let d = self.cx.depth.get();
        if d >= self.tape().max_depth {
            return Err(self.too_deep());
        }
        self.cx.depth.set(d + 1);
        Ok(Deeper(&self.cx.depth))
    }

    #[cold]
    fn too_deep(&self) -> Error {
        self.error(format!(
            "containers nested deeper than {} levels (or a self-referencing value)",
            self.tape().max_depth
        ))
    }

    #[inline]
    fn seq(&self, chain: &Chain) -> Result<SeqAcc<'t, 'de>> {
        let deeper = self.deeper()?;
        Ok(SeqAcc { cx: self.cx, iter: self.tape().iter(chain), total: chain.total as usize, _deeper: deeper })
    }

    /// `visitor.visit_seq` over `chain`, refusing items the visitor leaves (a tuple or struct
    /// read from a longer sequence), as serde_json does.
    #[inline]
    fn visit_all<V2: Visitor<'de>>(&self, chain: &Chain, visitor: V2) -> Result<V2::Value> {
        let mut seq = self.seq(chain)?;
        let v = visitor.visit_seq(&mut seq)?;
        match seq.iter.remaining() {
            0 => Ok(v),
            _ => Err(de::Error::invalid_length(seq.total, &"fewer elements in sequence")),
        }
    }

    fn map(&self, first: &Chain, second: Option<&Chain>) -> Result<MapAcc<'t, 'de>> {
        let deeper = self.deeper()?;
        Ok(MapAcc {
            cx: self.cx,
            iter: self.tape().iter(first),
            then: match second {
                Some(c) => self.tape().iter(c),
                None => ChainIter::empty(),
            },
            key: None,
            value: None,
            _deeper: deeper,
        })
    }

    /// A str as UTF-8 text.
    #[inline(always)]
    fn text<'a>(&self, d: &'a [u8]) -> Result<&'a str> {
        match valid_text(d) {
            Some(s) => Ok(s),
            None => Err(self.surrogates()),
        }
    }

    #[cold]
    fn surrogates(&self) -> Error {
        self.error("str holds lone surrogates, which a Rust string cannot")
    }

    fn visit_str<V2: Visitor<'de>>(&self, d: Data<'t, 'de>, visitor: V2) -> Result<V2::Value> {
        match d {
            Data::Input(b) => visitor.visit_borrowed_str(self.text(b)?),
            Data::Tape(b) => visitor.visit_str(self.text(b)?),
        }
    }

    fn visit_bytes<V2: Visitor<'de>>(&self, d: Data<'t, 'de>, visitor: V2) -> Result<V2::Value> {
        match d {
            Data::Input(b) => visitor.visit_borrowed_bytes(b),
            Data::Tape(b) => visitor.visit_bytes(b),
        }
    }

    /// The map a BUILD state is read as: a dict, or a slots state `(dict or None, slots)`.
    fn state_map(&self, state: Item) -> Option<(&'t Chain, Option<&'t Chain>)> {
        let dict_of = |v: Item| match self.at(v).kind() {
            Kind::Dict(c) => Some(c),
            _ => None,
        };
        match self.at(state).kind() {
            Kind::Dict(c) => Some((c, None)),
            Kind::Tuple(c) if c.total == 2 => {
                let mut it = self.tape().iter(c);
                let (a, b) = (it.next()?, it.next()?);
                let slots = dict_of(b)?;
                match self.at(a).kind() {
                    Kind::None => Some((slots, None)),
                    _ => Some((dict_of(a)?, Some(slots))),
                }
            }
            _ => None,
        }
    }

    /// The map an instance is read as: its dict state (with a slots state's dict after it), or
    /// the items SETITEMS gave it, or nothing for a bare instance.
    fn instance_map(&self, inst: &'t Inst) -> Option<(&'t Chain, Option<&'t Chain>)> {
        match inst.state {
            Some(state) => self.state_map(state),
            None if inst.dict.total > 0 => Some((&inst.dict, None)),
            None if inst.list.total == 0 && self.args(inst).is_none_or(|c| c.total == 0) => Some((&inst.dict, None)),
            None => None,
        }
    }

    fn args(&self, inst: &'t Inst) -> Option<&'t Chain> {
        match self.at(inst.args).kind() {
            Kind::Tuple(c) => Some(c),
            _ => None,
        }
    }

    /// True for an instance made from no arguments, with no state and no items.
    fn is_bare(&self, inst: &'t Inst) -> bool {
        inst.state.is_none()
            && inst.dict.total == 0
            && inst.list.total == 0
            && self.args(inst).is_some_and(|c| c.total == 0)
    }

    /// An instance, read as its state (a dict, a slots pair, or anything else read as itself),
    /// else its dict items, list items or construction arguments (a namedtuple's fields).
    fn visit_instance<V2: Visitor<'de>>(&self, inst: &'t Inst, visitor: V2) -> Result<V2::Value> {
        if let Some((a, b)) = self.instance_map(inst) {
            return visitor.visit_map(self.map(a, b)?).map_err(|e: Error| e.at(self.pos()));
        }
        if let Some(state) = inst.state {
            let _deeper = self.deeper()?;
            return de::Deserializer::deserialize_any(self.at(state), visitor);
        }
        if inst.list.total > 0 {
            return self.visit_all(&inst.list, visitor).map_err(|e: Error| e.at(self.pos()));
        }
        match self.args(inst) {
            Some(c) => visitor.visit_seq(self.seq(c)?).map_err(|e: Error| e.at(self.pos())),
            None => Err(self.invalid_type(&visitor)),
        }
    }

    #[inline(never)]
    fn visit_int<V2: Visitor<'de>>(&self, visitor: V2) -> Result<V2::Value> {
        let r = match self.kind() {
            Kind::Int(i) => visitor.visit_i64(i),
            Kind::Bool(b) => visitor.visit_bool(b),
            Kind::Long(d) => {
                let b = d.bytes();
                if let Some(u) = long_u128(b).and_then(|u| u64::try_from(u).ok()) {
                    visitor.visit_u64(u)
                } else if let Some(i) = long_i128(b) {
                    visitor.visit_i128(i)
                } else if let Some(u) = long_u128(b) {
                    visitor.visit_u128(u)
                } else {
                    return Err(self.error(format!(
                        "int of {} bytes does not fit in 128 bits (read it with pikl::serde::bigint)",
                        b.len()
                    )));
                }
            }
            _ => return Err(self.invalid_type(&visitor)),
        };
        r.map_err(|e: Error| e.at(self.pos()))
    }

    fn visit_128<V2: Visitor<'de>>(&self, visitor: V2, signed: bool) -> Result<V2::Value> {
        let r = match self.kind() {
            Kind::Int(i) => {
                if signed {
                    visitor.visit_i128(i as i128)
                } else {
                    visitor.visit_i64(i)
                }
            }
            Kind::Long(d) => {
                let b = d.bytes();
                if signed {
                    match long_i128(b) {
                        Some(i) => visitor.visit_i128(i),
                        None => return Err(self.error("int does not fit in an i128")),
                    }
                } else {
                    match long_u128(b) {
                        Some(u) => visitor.visit_u128(u),
                        None if long_i128(b).is_some() => visitor.visit_i128(long_i128(b).expect("checked")),
                        None => return Err(self.error("int does not fit in a u128")),
                    }
                }
            }
            _ => return Err(self.invalid_type(&visitor)),
        };
        r.map_err(|e: Error| e.at(self.pos()))
    }

    /// A str (not a `SHORT_BINUNICODE`) or bytes, as text.
    #[inline(never)]
    fn str_slow<V2: Visitor<'de>>(&self, visitor: V2) -> Result<V2::Value> {
        let r = match self.kind() {
            Kind::Str(d) => self.visit_str(d, visitor),
            Kind::Bytes(d) => self.visit_bytes(d, visitor),
            _ => return Err(self.invalid_type(&visitor)),
        };
        r.map_err(|e: Error| e.at(self.pos()))
    }

    #[inline(never)]
    fn bool_slow<V2: Visitor<'de>>(self, visitor: V2) -> Result<V2::Value> {
        match self.kind() {
            Kind::Bool(b) => visitor.visit_bool(b).map_err(|e: Error| e.at(self.pos())),
            _ => Err(self.invalid_type(&visitor)),
        }
    }

    #[inline(never)]
    fn visit_float<V2: Visitor<'de>>(&self, visitor: V2) -> Result<V2::Value> {
        let r = match self.kind() {
            Kind::Float(f) => visitor.visit_f64(f),
            Kind::Int(i) => visitor.visit_f64(i as f64),
            _ => return Err(self.invalid_type(&visitor)),
        };
        r.map_err(|e: Error| e.at(self.pos()))
    }
}

macro_rules! int_methods {
    ($($m:ident)*) => {
        $(
            #[inline(always)]
            fn $m<V2: Visitor<'de>>(self, visitor: V2) -> Result<V2::Value> {
                match self.fast_int() {
                    Some(i) => visitor.visit_i64(i).map_err(|e: Error| e.at(self.v)),
                    None => self.visit_int(visitor),
                }
            }
        )*
    };
}

impl<'t, 'de> de::Deserializer<'de> for Node<'t, 'de> {
    type Error = Error;

    fn deserialize_any<V2: Visitor<'de>>(self, visitor: V2) -> Result<V2::Value> {
        let pos = self.pos();
        let r = match self.kind() {
            Kind::None => visitor.visit_unit(),
            Kind::Bool(b) => visitor.visit_bool(b),
            Kind::Int(i) => visitor.visit_i64(i),
            Kind::Float(f) => visitor.visit_f64(f),
            Kind::Long(_) => return self.visit_int(visitor),
            Kind::Str(d) => return self.visit_str(d, visitor).map_err(|e: Error| e.at(pos)),
            Kind::Bytes(d) => return self.visit_bytes(d, visitor).map_err(|e: Error| e.at(pos)),
            Kind::List(c) | Kind::Tuple(c) | Kind::Set(c) => self.visit_all(c, visitor),
            Kind::Dict(c) => visitor.visit_map(self.map(c, None)?),
            Kind::Instance(inst) => return self.visit_instance(inst, visitor),
            Kind::Global(_) | Kind::Unsupported(_) => {
                return Err(self.error(format!("a {} has no serde mapping", self.type_desc())))
            }
        };
        r.map_err(|e: Error| e.at(pos))
    }

    #[inline]
    fn deserialize_bool<V2: Visitor<'de>>(self, visitor: V2) -> Result<V2::Value> {
        if self.v & OBJ == 0 {
            const NEWTRUE: u8 = Opcode::NewTrue as u8;
            const NEWFALSE: u8 = Opcode::NewFalse as u8;
            match self.input()[self.v as usize] {
                NEWTRUE => return visitor.visit_bool(true).map_err(|e: Error| e.at(self.v)),
                NEWFALSE => return visitor.visit_bool(false).map_err(|e: Error| e.at(self.v)),
                _ => {}
            }
        }
        self.bool_slow(visitor)
    }

    int_methods!(deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
                 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64);

    fn deserialize_i128<V2: Visitor<'de>>(self, visitor: V2) -> Result<V2::Value> {
        self.visit_128(visitor, true)
    }

    fn deserialize_u128<V2: Visitor<'de>>(self, visitor: V2) -> Result<V2::Value> {
        self.visit_128(visitor, false)
    }

    #[inline]
    fn deserialize_f32<V2: Visitor<'de>>(self, visitor: V2) -> Result<V2::Value> {
        self.visit_float(visitor)
    }

    #[inline]
    fn deserialize_f64<V2: Visitor<'de>>(self, visitor: V2) -> Result<V2::Value> {
        if self.v & OBJ == 0 && self.input()[self.v as usize] == Opcode::BinFloat as u8 {
            let off = self.v as usize + 1;
            let f = f64::from_be_bytes(self.input()[off..off + 8].try_into().expect("8 bytes"));
            return visitor.visit_f64(f).map_err(|e: Error| e.at(self.v));
        }
        self.visit_float(visitor)
    }

    fn deserialize_char<V2: Visitor<'de>>(self, visitor: V2) -> Result<V2::Value> {
        self.deserialize_str(visitor)
    }

    #[inline]
    fn deserialize_str<V2: Visitor<'de>>(self, visitor: V2) -> Result<V2::Value> {
        if self.v & OBJ == 0 && self.input()[self.v as usize] == Opcode::ShortBinUnicode as u8 {
            let off = self.v as usize;
            let n = self.input()[off + 1] as usize;
            let text = self.text(&self.input()[off + 2..off + 2 + n])?;
            return visitor.visit_borrowed_str(text).map_err(|e: Error| e.at(self.v));
        }
        self.str_slow(visitor)
    }

    #[inline]
    fn deserialize_string<V2: Visitor<'de>>(self, visitor: V2) -> Result<V2::Value> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V2: Visitor<'de>>(self, visitor: V2) -> Result<V2::Value> {
        let r = match self.kind() {
            Kind::Bytes(d) => self.visit_bytes(d, visitor),
            Kind::Str(d) => self.visit_str(d, visitor),
            Kind::List(c) | Kind::Tuple(c) => self.visit_all(c, visitor),
            _ => return Err(self.invalid_type(&visitor)),
        };
        r.map_err(|e: Error| e.at(self.pos()))
    }

    fn deserialize_byte_buf<V2: Visitor<'de>>(self, visitor: V2) -> Result<V2::Value> {
        self.deserialize_bytes(visitor)
    }

    #[inline]
    fn deserialize_option<V2: Visitor<'de>>(self, visitor: V2) -> Result<V2::Value> {
        // Only the NONE opcode makes a None (never an object).
        if self.v & OBJ == 0 && self.input()[self.v as usize] == Opcode::None as u8 {
            visitor.visit_none().map_err(|e: Error| e.at(self.v))
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_unit<V2: Visitor<'de>>(self, visitor: V2) -> Result<V2::Value> {
        match self.kind() {
            Kind::None => visitor.visit_unit().map_err(|e: Error| e.at(self.pos())),
            Kind::Tuple(c) if c.total == 0 => visitor.visit_unit().map_err(|e: Error| e.at(self.pos())),
            _ => Err(self.invalid_type(&visitor)),
        }
    }

    fn deserialize_unit_struct<V2: Visitor<'de>>(self, _name: &'static str, visitor: V2) -> Result<V2::Value> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V2: Visitor<'de>>(self, name: &'static str, visitor: V2) -> Result<V2::Value> {
        if name == BIGINT_TOKEN {
            let r = match self.kind() {
                Kind::Int(i) => visitor.visit_byte_buf(i64_bytes(i)),
                Kind::Bool(b) => visitor.visit_byte_buf(vec![b as u8]),
                Kind::Long(d) => self.visit_bytes(d, visitor),
                _ => return Err(self.invalid_type(&visitor)),
            };
            return r.map_err(|e: Error| e.at(self.pos()));
        }
        visitor.visit_newtype_struct(self)
    }

    #[inline]
    fn deserialize_seq<V2: Visitor<'de>>(self, visitor: V2) -> Result<V2::Value> {
        let r = match self.kind() {
            Kind::List(c) | Kind::Tuple(c) | Kind::Set(c) => self.visit_all(c, visitor),
            Kind::Bytes(d) => visitor.visit_seq(ByteSeq { data: d.bytes(), index: 0 }),
            Kind::Instance(inst) if inst.list.total > 0 => self.visit_all(&inst.list, visitor),
            // An empty list subclass (`L()`: NEWOBJ or `_reconstructor` with no arguments, state
            // or items); a non-empty one reads as its items just above.
            Kind::Instance(inst) if self.is_bare(inst) => self.visit_all(&Chain::EMPTY, visitor),
            _ => return Err(self.invalid_type(&visitor)),
        };
        r.map_err(|e: Error| e.at(self.pos()))
    }

    fn deserialize_tuple<V2: Visitor<'de>>(self, _len: usize, visitor: V2) -> Result<V2::Value> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V2: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V2,
    ) -> Result<V2::Value> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V2: Visitor<'de>>(self, visitor: V2) -> Result<V2::Value> {
        let r = match self.kind() {
            Kind::Dict(c) => visitor.visit_map(self.map(c, None)?),
            Kind::Instance(inst) => match self.instance_map(inst) {
                Some((a, b)) => visitor.visit_map(self.map(a, b)?),
                None => return Err(self.invalid_type(&visitor)),
            },
            _ => return Err(self.invalid_type(&visitor)),
        };
        r.map_err(|e: Error| e.at(self.pos()))
    }

    #[inline]
    fn deserialize_struct<V2: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V2,
    ) -> Result<V2::Value> {
        let r = match self.kind() {
            Kind::Dict(c) => visitor.visit_map(self.map(c, None)?),
            Kind::List(c) | Kind::Tuple(c) => self.visit_all(c, visitor),
            Kind::Instance(inst) => return self.visit_instance(inst, visitor),
            _ => return Err(self.invalid_type(&visitor)),
        };
        r.map_err(|e: Error| e.at(self.pos()))
    }

    fn deserialize_enum<V2: Visitor<'de>>(
        self,
        name: &'static str,
        _variants: &'static [&'static str],
        visitor: V2,
    ) -> Result<V2::Value> {
        let _deeper = self.deeper()?;
        let (variant, payload) = match self.kind() {
            Kind::Str(_) | Kind::Int(_) => (self.v, None),
            Kind::Dict(c) if c.total == 2 => {
                let mut it = self.tape().iter(c);
                (it.next().expect("two items"), it.next())
            }
            Kind::Tuple(c) if c.total == 1 || c.total == 2 => {
                let mut it = self.tape().iter(c);
                (it.next().expect("an item"), it.next())
            }
            _ => {
                return Err(self.error(format!(
                    "expected enum {name}: a str (unit variant) or a one-item dict {{variant: payload}}, found {}",
                    self.type_desc()
                )))
            }
        };
        let acc = EnumAcc { cx: self.cx, variant, payload, pos: self.pos() };
        visitor.visit_enum(acc).map_err(|e: Error| e.at(self.pos()))
    }

    #[inline]
    fn deserialize_identifier<V2: Visitor<'de>>(self, visitor: V2) -> Result<V2::Value> {
        let r = match self.kind() {
            Kind::Str(d) => self.visit_str(d, visitor),
            Kind::Bytes(d) => self.visit_bytes(d, visitor),
            Kind::Int(i) if i >= 0 => visitor.visit_u64(i as u64),
            _ => return Err(self.invalid_type(&visitor)),
        };
        r.map_err(|e: Error| e.at(self.pos()))
    }

    #[inline]
    fn deserialize_ignored_any<V2: Visitor<'de>>(self, visitor: V2) -> Result<V2::Value> {
        visitor.visit_unit()
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

/// A list, tuple or set.
pub(crate) struct SeqAcc<'t, 'de> {
    cx: &'t Cx<'t, 'de>,
    iter: ChainIter<'t>,
    total: usize,
    _deeper: Deeper<'t>,
}

impl SeqAcc<'_, '_> {
    /// The index of the item just taken.
    #[cold]
    fn index(&self) -> usize {
        self.total - self.iter.remaining() - 1
    }
}

impl<'de> de::SeqAccess<'de> for SeqAcc<'_, 'de> {
    type Error = Error;

    #[inline(always)]
    fn next_element<T: de::Deserialize<'de>>(&mut self) -> Result<Option<T>> {
        match self.iter.next() {
            None => Ok(None),
            Some(v) => match T::deserialize(Node { cx: self.cx, v }) {
                Ok(x) => Ok(Some(x)),
                Err(e) => Err(e.index(self.index())),
            },
        }
    }

    #[inline(always)]
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        match self.iter.next() {
            None => Ok(None),
            Some(v) => match seed.deserialize(Node { cx: self.cx, v }) {
                Ok(x) => Ok(Some(x)),
                Err(e) => Err(e.index(self.index())),
            },
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.remaining())
    }
}

/// A bytes read as a sequence of ints (`Vec<u8>` without `serde_bytes`).
struct ByteSeq<'a> {
    data: &'a [u8],
    index: usize,
}

impl<'de> de::SeqAccess<'de> for ByteSeq<'_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        let Some(&b) = self.data.get(self.index) else { return Ok(None) };
        let i = self.index;
        self.index += 1;
        seed.deserialize(b.into_deserializer()).map(Some).map_err(|e: Error| e.index(i))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.data.len() - self.index)
    }
}

/// A dict's items (key, value, key, value...), then a second run (a slots state's).
pub(crate) struct MapAcc<'t, 'de> {
    cx: &'t Cx<'t, 'de>,
    iter: ChainIter<'t>,
    then: ChainIter<'t>,
    key: Option<Item>,
    value: Option<Item>,
    _deeper: Deeper<'t>,
}

impl<'t, 'de> MapAcc<'t, 'de> {
    /// The path segment naming the entry of `key`.
    #[cold]
    fn segment(&self, key: Option<Item>) -> String {
        let Some(key) = key else { return String::new() };
        let node = Node { cx: self.cx, v: key };
        match node.kind() {
            Kind::Str(d) => {
                let s = String::from_utf8_lossy(d.bytes());
                let ident = s.chars().next().is_some_and(|c| c == '_' || c.is_alphabetic())
                    && s.chars().all(|c| c == '_' || c.is_alphanumeric());
                if ident {
                    format!(".{s}")
                } else {
                    format!("['{}']", s.replace('\\', "\\\\").replace('\'', "\\'"))
                }
            }
            Kind::Int(i) => format!("[{i}]"),
            Kind::Bool(b) => format!("[{}]", if b { "True" } else { "False" }),
            Kind::None => "[None]".into(),
            Kind::Float(f) => format!("[{f}]"),
            _ => format!("[<{} key>]", node.type_desc()),
        }
    }
}

impl<'de> de::MapAccess<'de> for MapAcc<'_, 'de> {
    type Error = Error;

    #[inline]
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        let k = match self.iter.next() {
            Some(k) => k,
            None => {
                std::mem::swap(&mut self.iter, &mut self.then);
                match self.iter.next() {
                    Some(k) => k,
                    None => return Ok(None),
                }
            }
        };
        self.value = self.iter.next();
        self.key = Some(k);
        let node = Node { cx: self.cx, v: k };
        match seed.deserialize(node) {
            Ok(k) => Ok(Some(k)),
            Err(e) => Err(e.segment(self.segment(Some(k)))),
        }
    }

    #[inline]
    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value> {
        let Some(v) = self.value.take() else {
            return Err(Error::de("a dict value was requested before its key"));
        };
        let node = Node { cx: self.cx, v };
        seed.deserialize(node).map_err(|e| e.segment(self.segment(self.key)))
    }

    fn size_hint(&self) -> Option<usize> {
        Some((self.iter.remaining() + self.then.remaining()) / 2)
    }
}

/// An enum: a variant name, with or without a payload.
struct EnumAcc<'t, 'de> {
    cx: &'t Cx<'t, 'de>,
    variant: Item,
    payload: Option<Item>,
    pos: u64,
}

impl<'t, 'de> de::EnumAccess<'de> for EnumAcc<'t, 'de> {
    type Error = Error;
    type Variant = VariantAcc<'t, 'de>;

    fn variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<(T::Value, Self::Variant)> {
        let node = Node { cx: self.cx, v: self.variant };
        let name = seed.deserialize(node)?;
        let payload = self.payload.map(|v| Node { cx: self.cx, v });
        Ok((name, VariantAcc { payload, pos: self.pos, variant: node }))
    }
}

struct VariantAcc<'t, 'de> {
    payload: Option<Node<'t, 'de>>,
    variant: Node<'t, 'de>,
    pos: u64,
}

impl<'t, 'de> VariantAcc<'t, 'de> {
    fn segment(&self) -> String {
        match self.variant.kind() {
            Kind::Str(d) => format!(".{}", String::from_utf8_lossy(d.bytes())),
            _ => String::new(),
        }
    }

    fn payload(&self, what: &str) -> Result<Node<'t, 'de>> {
        self.payload
            .ok_or_else(|| Error::de(format!("{what} variant needs a payload: {{variant: payload}}")).at(self.pos))
    }
}

impl<'de> de::VariantAccess<'de> for VariantAcc<'_, 'de> {
    type Error = Error;

    fn unit_variant(self) -> Result<()> {
        match self.payload {
            None => Ok(()),
            Some(p) => match p.kind() {
                Kind::None => Ok(()),
                Kind::Tuple(c) if c.total == 0 => Ok(()),
                _ => Err(p.error(format!("a unit variant takes no payload, found {}", p.type_desc()))),
            },
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value> {
        let p = self.payload("a newtype")?;
        seed.deserialize(p).map_err(|e| e.segment(self.segment()))
    }

    fn tuple_variant<V2: Visitor<'de>>(self, len: usize, visitor: V2) -> Result<V2::Value> {
        let p = self.payload("a tuple")?;
        de::Deserializer::deserialize_tuple(p, len, visitor).map_err(|e| e.segment(self.segment()))
    }

    fn struct_variant<V2: Visitor<'de>>(self, fields: &'static [&'static str], visitor: V2) -> Result<V2::Value> {
        let p = self.payload("a struct")?;
        de::Deserializer::deserialize_struct(p, "", fields, visitor).map_err(|e| e.segment(self.segment()))
    }
}
