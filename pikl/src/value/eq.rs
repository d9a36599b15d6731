//! Python's `==` over graphs, without recursion: cycles and shared parts compare in time linear
//! in the pairs visited.

use std::collections::HashSet;

use num_bigint::BigInt;
use num_traits::FromPrimitive;

use super::{Graph, Object, Value};

/// A number, for Python's cross-type numeric equality.
enum Num<'g> {
    Int(i64),
    Big(&'g BigInt),
    Float(f64),
    Complex(f64, f64),
}

fn as_num<'g>(g: &'g Graph, v: Value) -> Option<Num<'g>> {
    match v {
        Value::Bool(b) => Some(Num::Int(b as i64)),
        Value::Int(i) => Some(Num::Int(i)),
        Value::Float(f) => Some(Num::Float(f)),
        Value::Obj(id) => match g.get(id) {
            Object::Int(b) => Some(Num::Big(b)),
            Object::Complex(re, im) => Some(Num::Complex(*re, *im)),
            _ => None,
        },
        Value::None => None,
    }
}

fn big_eq_float(b: &BigInt, f: f64) -> bool {
    f.is_finite() && f.fract() == 0.0 && BigInt::from_f64(f).is_some_and(|x| &x == b)
}

fn int_eq_float(i: i64, f: f64) -> bool {
    f.fract() == 0.0 && (-9.3e18..9.3e18).contains(&f) && BigInt::from(i) == BigInt::from_f64(f).unwrap_or_default()
}

fn num_eq(a: &Num, b: &Num) -> bool {
    use Num::*;
    match (a, b) {
        (Int(x), Int(y)) => x == y,
        (Big(x), Big(y)) => x == y,
        (Int(_), Big(_)) | (Big(_), Int(_)) => false,
        (Float(x), Float(y)) => x == y,
        (Int(i), Float(f)) | (Float(f), Int(i)) => int_eq_float(*i, *f),
        (Big(b), Float(f)) | (Float(f), Big(b)) => big_eq_float(b, *f),
        (Complex(r1, i1), Complex(r2, i2)) => r1 == r2 && i1 == i2,
        (Complex(r, i), other) | (other, Complex(r, i)) => *i == 0.0 && num_eq(&Float(*r), other),
    }
}

/// Equality of two hashable keys (numbers, str, bytes, tuples, frozensets, globals; identity
/// for the rest). Iterative over tuples; frozensets nest through bounded recursion.
#[inline]
pub(crate) fn keys_equal(ga: &Graph, a: Value, gb: &Graph, b: Value) -> bool {
    // Fast paths for the keys pickles are made of (small ints, strs): no allocation.
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Obj(x), Value::Obj(y)) => {
            if x == y && std::ptr::eq(ga, gb) {
                return true;
            }
            match (ga.get(x), gb.get(y)) {
                (Object::Str(s), Object::Str(t)) => s.as_bytes() == t.as_bytes(),
                (Object::Str(_), _) | (_, Object::Str(_)) => false,
                (Object::Bytes(s), Object::Bytes(t)) => s == t,
                (Object::Tuple(_), Object::Tuple(_)) | (Object::FrozenSet(_), Object::FrozenSet(_)) => {
                    keys_equal_depth(ga, a, gb, b, 0)
                }
                (Object::Global(g), Object::Global(h)) => g == h,
                (Object::Extension(c), Object::Extension(d)) => c == d,
                _ => scalar_eq(ga, a, gb, b),
            }
        }
        _ => scalar_eq(ga, a, gb, b),
    }
}

const FROZENSET_DEPTH: usize = 64;

fn keys_equal_depth(ga: &Graph, a: Value, gb: &Graph, b: Value, depth: usize) -> bool {
    let mut stack = vec![(a, b)];
    while let Some((a, b)) = stack.pop() {
        let same_graph = std::ptr::eq(ga, gb);
        match (a, b) {
            (Value::Obj(x), Value::Obj(y)) => {
                if same_graph && x == y {
                    continue;
                }
                match (ga.get(x), gb.get(y)) {
                    (Object::Str(s), Object::Str(t)) => {
                        if s.as_bytes() != t.as_bytes() {
                            return false;
                        }
                    }
                    (Object::Bytes(s), Object::Bytes(t)) => {
                        if s != t {
                            return false;
                        }
                    }
                    (Object::Tuple(s), Object::Tuple(t)) => {
                        if s.len() != t.len() {
                            return false;
                        }
                        stack.extend(s.iter().copied().zip(t.iter().copied()));
                    }
                    (Object::FrozenSet(s), Object::FrozenSet(t)) => {
                        if s.len() != t.len() || depth >= FROZENSET_DEPTH {
                            return false;
                        }
                        let all = s.items().iter().all(|&item| {
                            ga.hash(item)
                                .is_ok_and(|_| t.items().iter().any(|&o| keys_equal_depth(ga, item, gb, o, depth + 1)))
                        });
                        if !all {
                            return false;
                        }
                    }
                    (Object::Global(g), Object::Global(h)) => {
                        if g != h {
                            return false;
                        }
                    }
                    (Object::Extension(c), Object::Extension(d)) => {
                        if c != d {
                            return false;
                        }
                    }
                    _ => {
                        if !scalar_eq(ga, a, gb, b) {
                            return false;
                        }
                    }
                }
            }
            _ => {
                if !scalar_eq(ga, a, gb, b) {
                    return false;
                }
            }
        }
    }
    true
}

/// Equality of numbers and None; false for anything else.
fn scalar_eq(ga: &Graph, a: Value, gb: &Graph, b: Value) -> bool {
    if a == Value::None || b == Value::None {
        return a == b;
    }
    match (as_num(ga, a), as_num(gb, b)) {
        (Some(x), Some(y)) => num_eq(&x, &y),
        _ => false,
    }
}

/// Python's `a == b`, value `a` of graph `ga` against value `b` of graph `gb`.
///
/// Containers compare by contents (dicts and sets regardless of order, `bytes ==
/// bytearray`); instances compare by their construction and state, the closest data-only
/// stand-in for the class's own `__eq__`. A pair met again (a cycle, a shared part) is taken as
/// equal, which is the greatest fixed point and ends on any graph.
pub(crate) fn equal(ga: &Graph, a: Value, gb: &Graph, b: Value) -> bool {
    let same_graph = std::ptr::eq(ga, gb);
    let mut seen: HashSet<(u32, u32)> = HashSet::new();
    let mut stack = vec![(a, b)];
    while let Some((a, b)) = stack.pop() {
        let (x, y) = match (a, b) {
            (Value::Obj(x), Value::Obj(y)) => (x, y),
            _ => {
                if !scalar_eq(ga, a, gb, b) {
                    return false;
                }
                continue;
            }
        };
        if same_graph && x == y {
            continue;
        }
        if !seen.insert((x.0, y.0)) {
            continue;
        }
        let (oa, ob) = (ga.get(x), gb.get(y));
        let ok = match (oa, ob) {
            (Object::Str(s), Object::Str(t)) => s.as_bytes() == t.as_bytes(),
            (Object::Bytes(s), Object::Bytes(t)) => s == t,
            (Object::Bytes(s), Object::ByteArray(t)) => **s == **t,
            (Object::ByteArray(s), Object::Bytes(t)) => **s == **t,
            (Object::ByteArray(s), Object::ByteArray(t)) => s == t,
            (Object::List(s), Object::List(t)) | (Object::Tuple(s), Object::Tuple(t)) => {
                s.len() == t.len() && {
                    stack.extend(s.iter().copied().zip(t.iter().copied()));
                    true
                }
            }
            (Object::Dict(s), Object::Dict(t)) => {
                s.len() == t.len()
                    && s.iter().all(|(k, v)| {
                        let Ok(h) = ga.hash(k) else { return false };
                        match t.find(gb, ga, h, k) {
                            Some(i) => {
                                stack.push((v, t.entries()[i].1));
                                true
                            }
                            None => false,
                        }
                    })
            }
            (Object::Set(s) | Object::FrozenSet(s), Object::Set(t) | Object::FrozenSet(t)) => {
                s.len() == t.len()
                    && s.items().iter().all(|&k| ga.hash(k).is_ok_and(|h| t.find(gb, ga, h, k).is_some()))
            }
            (Object::Global(g), Object::Global(h)) => g == h,
            (Object::Extension(c), Object::Extension(d)) => c == d,
            (Object::PersistentId(p), Object::PersistentId(q)) => {
                stack.push((*p, *q));
                true
            }
            (Object::Buffer(p), Object::Buffer(q)) => p.data == q.data,
            (Object::Buffer(p), Object::Bytes(q)) | (Object::Bytes(q), Object::Buffer(p)) => *p.data == **q,
            (Object::Instance(p), Object::Instance(q)) => {
                p.construct == q.construct
                    && p.kwargs.is_some() == q.kwargs.is_some()
                    && p.state.is_some() == q.state.is_some()
                    && p.list_items.len() == q.list_items.len()
                    && p.state_setter.is_some() == q.state_setter.is_some()
                    && p.dict_items.len() == q.dict_items.len()
                    && p.set_items.len() == q.set_items.len()
                    && {
                        stack.push((p.callable, q.callable));
                        stack.push((p.args, q.args));
                        if let (Some(a), Some(b)) = (p.kwargs, q.kwargs) {
                            stack.push((a, b));
                        }
                        if let (Some(a), Some(b)) = (p.state, q.state) {
                            stack.push((a, b));
                        }
                        if let (Some(a), Some(b)) = (p.state_setter, q.state_setter) {
                            stack.push((a, b));
                        }
                        stack.extend(p.list_items.iter().copied().zip(q.list_items.iter().copied()));
                        stack.extend(p.set_items.iter().copied().zip(q.set_items.iter().copied()));
                        for (&(k1, v1), &(k2, v2)) in p.dict_items.iter().zip(&q.dict_items) {
                            stack.push((k1, k2));
                            stack.push((v1, v2));
                        }
                        true
                    }
            }
            _ => scalar_eq(ga, a, gb, b),
        };
        if !ok {
            return false;
        }
    }
    true
}
