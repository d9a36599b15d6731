//! `ValueRef`: a value together with its graph, for pleasant reading.

use std::fmt;

use num_bigint::BigInt;

use super::repr::{write_repr, ReprOptions};
use super::{Dict, Global, Graph, Instance, ObjId, Object, PyStr, Value};

/// A [`Value`] with the [`Graph`] it lives in: typed accessors, lookups, iteration, `Display`
/// as Python's `repr()`, and `==` as Python's.
#[derive(Clone, Copy)]
pub struct ValueRef<'g, 'a> {
    graph: &'g Graph<'a>,
    value: Value,
}

impl<'g, 'a> ValueRef<'g, 'a> {
    pub(crate) fn new(graph: &'g Graph<'a>, value: Value) -> Self {
        ValueRef { graph, value }
    }

    fn wrap(&self, value: Value) -> ValueRef<'g, 'a> {
        ValueRef { graph: self.graph, value }
    }

    /// The plain value.
    pub fn value(&self) -> Value {
        self.value
    }

    /// The graph it lives in.
    pub fn graph(&self) -> &'g Graph<'a> {
        self.graph
    }

    /// The object, when the value is a reference.
    pub fn object(&self) -> Option<&'g Object<'a>> {
        self.graph.object(self.value)
    }

    /// The object id, when the value is a reference.
    pub fn id(&self) -> Option<ObjId> {
        self.value.obj_id()
    }

    /// True when both are the very same object (Python's `is`); scalars compare by value.
    pub fn is(&self, other: &ValueRef) -> bool {
        match (self.value, other.value) {
            (Value::Obj(a), Value::Obj(b)) => a == b && std::ptr::eq(self.graph, other.graph),
            (a, b) => a == b,
        }
    }

    /// Python's type name: `"int"`, `"str"`, `"list"`, ... (`"object"` for instances).
    pub fn type_name(&self) -> &'static str {
        match self.value {
            Value::None => "NoneType",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Obj(id) => self.graph.get(id).type_name(),
        }
    }

    /// True for `None`.
    pub fn is_none(&self) -> bool {
        self.value == Value::None
    }

    /// The bool, for `True` / `False`.
    pub fn as_bool(&self) -> Option<bool> {
        match self.value {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The int, when it is an int that fits an `i64` (bools excluded).
    pub fn as_i64(&self) -> Option<i64> {
        match self.value {
            Value::Int(i) => Some(i),
            Value::Obj(id) => match self.graph.get(id) {
                Object::Int(b) => i64::try_from(b).ok(),
                _ => None,
            },
            _ => None,
        }
    }

    /// The int of any size.
    pub fn as_bigint(&self) -> Option<BigInt> {
        match self.value {
            Value::Int(i) => Some(BigInt::from(i)),
            Value::Obj(id) => match self.graph.get(id) {
                Object::Int(b) => Some(b.clone()),
                _ => None,
            },
            _ => None,
        }
    }

    /// The float (ints are not converted).
    pub fn as_f64(&self) -> Option<f64> {
        match self.value {
            Value::Float(f) => Some(f),
            _ => None,
        }
    }

    /// The str's text, when it is a str without lone surrogates.
    pub fn as_str(&self) -> Option<&'g str> {
        self.as_pystr().and_then(PyStr::as_str)
    }

    /// The str, lone surrogates included.
    pub fn as_pystr(&self) -> Option<&'g PyStr<'a>> {
        match self.object() {
            Some(Object::Str(s)) => Some(s),
            _ => None,
        }
    }

    /// The bytes of a `bytes`, `bytearray` or out-of-band buffer.
    pub fn as_bytes(&self) -> Option<&'g [u8]> {
        match self.object() {
            Some(Object::Bytes(b)) => Some(b),
            Some(Object::ByteArray(b)) => Some(b),
            Some(Object::Buffer(b)) => Some(&b.data),
            _ => None,
        }
    }

    /// The items of a list or tuple.
    pub fn as_slice(&self) -> Option<&'g [Value]> {
        match self.object() {
            Some(Object::List(v) | Object::Tuple(v)) => Some(v),
            _ => None,
        }
    }

    /// The dict.
    pub fn as_dict(&self) -> Option<&'g Dict> {
        match self.object() {
            Some(Object::Dict(d)) => Some(d),
            _ => None,
        }
    }

    /// The class or function named, as (module, name).
    pub fn as_global(&self) -> Option<&'g Global> {
        match self.object() {
            Some(Object::Global(g)) => Some(g),
            _ => None,
        }
    }

    /// The constructed object.
    pub fn as_instance(&self) -> Option<&'g Instance> {
        match self.object() {
            Some(Object::Instance(i)) => Some(i),
            _ => None,
        }
    }

    /// Number of items of a str (code points), bytes, list, tuple, dict, set or frozenset.
    pub fn len(&self) -> Option<usize> {
        Some(match self.object()? {
            Object::Str(s) => s.len(),
            Object::Bytes(b) => b.len(),
            Object::ByteArray(b) => b.len(),
            Object::List(v) | Object::Tuple(v) => v.len(),
            Object::Dict(d) => d.len(),
            Object::Set(s) | Object::FrozenSet(s) => s.len(),
            _ => return None,
        })
    }

    /// True when [`len`](Self::len) is `Some(0)`.
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }

    /// Item `i` of a list or tuple.
    pub fn at(&self, i: usize) -> Option<ValueRef<'g, 'a>> {
        self.as_slice()?.get(i).map(|&v| self.wrap(v))
    }

    /// The value under str key `key` of a dict, or the attribute `key` of an instance whose
    /// state is a dict (as `__dict__`), or whose state is `(dict, slots_dict)`.
    pub fn get(&self, key: &str) -> Option<ValueRef<'g, 'a>> {
        match self.object()? {
            Object::Dict(d) => d.get_str(self.graph, key).map(|v| self.wrap(v)),
            Object::Instance(inst) => {
                let state = self.wrap(inst.state?);
                if let Some(v) = state.get(key) {
                    return Some(v);
                }
                let parts = state.as_slice().filter(|s| s.len() == 2)?;
                parts.iter().find_map(|&p| self.wrap(p).get(key))
            }
            _ => None,
        }
    }

    /// The value under `key` (any hashable value of the same graph) of a dict.
    pub fn get_value(&self, key: Value) -> Option<ValueRef<'g, 'a>> {
        self.as_dict()?.get(self.graph, key).map(|v| self.wrap(v))
    }

    /// The items of a list, tuple, set or frozenset, in order.
    pub fn iter(&self) -> impl Iterator<Item = ValueRef<'g, 'a>> + 'g {
        let graph = self.graph;
        let items: &'g [Value] = match self.object() {
            Some(Object::List(v) | Object::Tuple(v)) => v,
            Some(Object::Set(s) | Object::FrozenSet(s)) => s.items(),
            _ => &[],
        };
        items.iter().map(move |&v| ValueRef { graph, value: v })
    }

    /// The (key, value) pairs of a dict, in insertion order.
    pub fn items(&self) -> impl Iterator<Item = (ValueRef<'g, 'a>, ValueRef<'g, 'a>)> + 'g {
        let graph = self.graph;
        let entries: &'g [(Value, Value)] = self.as_dict().map_or(&[], |d| d.entries());
        entries.iter().map(move |&(k, v)| (ValueRef { graph, value: k }, ValueRef { graph, value: v }))
    }

    /// Python's repr, cut after about `max_chars` characters (ending with `...`).
    pub fn repr_with(&self, opts: ReprOptions) -> String {
        let mut s = String::new();
        let _ = write_repr(self.graph, self.value, &mut s, opts);
        s
    }

    /// Streams Python's repr to `out`; `Ok(false)` when it was cut at `max_chars`.
    pub fn write_repr(&self, out: &mut dyn fmt::Write, opts: ReprOptions) -> Result<bool, fmt::Error> {
        write_repr(self.graph, self.value, out, opts)
    }
}

impl fmt::Display for ValueRef<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_repr(self.graph, self.value, f, ReprOptions::default()).map(|_| ())
    }
}

impl fmt::Debug for ValueRef<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ValueRef({self})")
    }
}

impl PartialEq for ValueRef<'_, '_> {
    /// Python's `==` (see the module docs for how instances compare).
    fn eq(&self, other: &ValueRef) -> bool {
        super::eq::equal(self.graph, self.value, other.graph, other.value)
    }
}
