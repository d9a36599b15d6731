//! Hashing of dict keys and set items, consistent with Python's equality (`1 == 1.0 == True`).

use foldhash::fast::FixedState;
use std::hash::BuildHasher;

use super::{Graph, Object, Unhashable, Value};

const SEED: FixedState = FixedState::with_seed(0x5049_4b4c);

/// Work bound for one key: beyond it (a hostile DAG of tuples) the key hashes to a constant,
/// which stays consistent with equality because equal keys have equal shapes.
const BUDGET: usize = 1 << 20;

#[inline]
fn mix(a: u64, b: u64) -> u64 {
    let x = (a ^ b.rotate_left(23)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^ (x >> 29)
}

/// Hash of a str from its (surrogatepass) UTF-8 bytes.
#[inline]
pub(crate) fn hash_str_bytes(b: &[u8]) -> u64 {
    SEED.hash_one(b)
}

#[inline]
fn hash_i64(i: i64) -> u64 {
    mix(i as u64, 0x1111)
}

fn hash_f64(f: f64) -> u64 {
    if f.fract() == 0.0 && (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&f) {
        hash_i64(f as i64)
    } else if f.is_nan() {
        0x7FF8
    } else {
        mix(f.to_bits(), 0x2222)
    }
}

fn hash_big(i: &num_bigint::BigInt) -> u64 {
    use num_traits::{FromPrimitive, ToPrimitive};
    // An int equal to a float hashes as that float does.
    if let Some(f) = i.to_f64().filter(|f| f.is_finite()) {
        if num_bigint::BigInt::from_f64(f).as_ref() == Some(i) {
            return hash_f64(f);
        }
    }
    SEED.hash_one(i.to_signed_bytes_le())
}

impl Graph<'_> {
    /// Python-consistent hash of a hashable value; lists, dicts, sets and bytearrays are
    /// unhashable.
    #[inline]
    pub(crate) fn hash(&self, v: Value) -> Result<u64, Unhashable> {
        // Inline fast paths for the common keys: ints and strs.
        match v {
            Value::Int(i) => Ok(hash_i64(i)),
            Value::Obj(id) => match self.get(id) {
                Object::Str(s) => Ok(hash_str_bytes(s.as_bytes())),
                _ => self.hash_other(v),
            },
            _ => self.hash_other(v),
        }
    }

    /// [`Graph::hash`] in full, out of line: what its inline int and str cases leave.
    #[inline(never)]
    fn hash_other(&self, v: Value) -> Result<u64, Unhashable> {
        match v {
            Value::None => return Ok(0x4E4F_4E45),
            Value::Bool(b) => return Ok(hash_i64(b as i64)),
            Value::Int(i) => return Ok(hash_i64(i)),
            Value::Float(f) => return Ok(hash_f64(f)),
            Value::Obj(id) => match self.get(id) {
                Object::Str(s) => return Ok(hash_str_bytes(s.as_bytes())),
                Object::Bytes(b) => return Ok(mix(SEED.hash_one(&**b), 0x3333)),
                Object::Tuple(_) | Object::FrozenSet(_) => {}
                _ => return self.hash_leaf(v).map(|h| h.unwrap_or(0)),
            },
        }
        self.hash_nested(v)
    }

    /// Hash of a value that is not a tuple or frozenset (`Ok(None)` for those).
    fn hash_leaf(&self, v: Value) -> Result<Option<u64>, Unhashable> {
        let Value::Obj(id) = v else {
            return Ok(Some(match v {
                Value::None => 0x4E4F_4E45,
                Value::Bool(b) => hash_i64(b as i64),
                Value::Int(i) => hash_i64(i),
                Value::Float(f) => hash_f64(f),
                Value::Obj(_) => unreachable!(),
            }));
        };
        Ok(Some(match self.get(id) {
            Object::Str(s) => hash_str_bytes(s.as_bytes()),
            Object::Bytes(b) => mix(SEED.hash_one(&**b), 0x3333),
            Object::Int(i) => hash_big(i),
            Object::Complex(re, im) => {
                if *im == 0.0 {
                    hash_f64(*re)
                } else {
                    mix(hash_f64(*re), hash_f64(*im))
                }
            }
            Object::Global(g) => SEED.hash_one((&g.module, &g.name)),
            Object::Extension(code) => mix(*code as u64, 0x4444),
            // Equal only to themselves; a constant keeps the hash valid when the graph is
            // renumbered (`Graph::compact`).
            Object::Instance(_) | Object::PersistentId(_) => 0x5555,
            Object::Tuple(_) | Object::FrozenSet(_) => return Ok(None),
            other => return Err(Unhashable(other.type_name())),
        }))
    }

    /// Hash of a tuple or frozenset, with an explicit stack (no recursion).
    fn hash_nested(&self, root: Value) -> Result<u64, Unhashable> {
        enum Frame<'g> {
            Tuple { items: &'g [Value], next: usize, acc: u64 },
            Frozen { items: &'g [Value], next: usize, acc: u64 },
        }
        let mut budget = BUDGET;
        let mut stack: Vec<Frame> = Vec::new();
        fn open<'g>(v: Value, g: &'g Graph<'_>) -> Option<Frame<'g>> {
            match g.object(v) {
                Some(Object::Tuple(items)) => Some(Frame::Tuple { items, next: 0, acc: 0x7475_706c }),
                Some(Object::FrozenSet(s)) => Some(Frame::Frozen { items: s.items(), next: 0, acc: 0x6673_6574 }),
                _ => None,
            }
        }
        stack.push(open(root, self).expect("tuple or frozenset"));
        let mut done: Option<u64> = None;
        loop {
            let frame = stack.last_mut().expect("non-empty");
            if let Some(h) = done.take() {
                match frame {
                    Frame::Tuple { acc, .. } => *acc = mix(*acc, h),
                    Frame::Frozen { acc, .. } => *acc = acc.wrapping_add(mix(h, 0x6666)),
                }
            }
            budget = budget.saturating_sub(1);
            if budget == 0 {
                return Ok(0x00B0_D6E7);
            }
            let (items, next) = match frame {
                Frame::Tuple { items, next, .. } | Frame::Frozen { items, next, .. } => (items, next),
            };
            if *next < items.len() {
                let item = items[*next];
                *next += 1;
                match self.hash_leaf(item)? {
                    Some(h) => done = Some(h),
                    None => stack.push(open(item, self).expect("tuple or frozenset")),
                }
            } else {
                let h = match stack.pop().expect("non-empty") {
                    Frame::Tuple { acc, items, .. } => mix(acc, items.len() as u64),
                    Frame::Frozen { acc, .. } => acc,
                };
                if stack.is_empty() {
                    return Ok(h);
                }
                done = Some(h);
            }
        }
    }
}
