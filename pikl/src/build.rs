//! Building values from Rust data: [`Py`] trees, `From` impls and the [`value!`](crate::value!)
//! macro. A tree has no sharing; for shared and cyclic graphs use [`Graph`]'s methods.

use std::collections::{BTreeMap, HashMap};

use num_bigint::BigInt;

use crate::value::{Graph, Object, Unhashable, Value};

/// A Python value as a plain Rust tree, ready to be added to a [`Graph`].
#[derive(Clone, Debug, PartialEq)]
pub enum Py {
    /// `None`.
    None,
    /// `True` / `False`.
    Bool(bool),
    /// An int of any size.
    Int(BigInt),
    /// A float.
    Float(f64),
    /// A str.
    Str(String),
    /// A bytes.
    Bytes(Vec<u8>),
    /// A bytearray.
    ByteArray(Vec<u8>),
    /// A list.
    List(Vec<Py>),
    /// A tuple.
    Tuple(Vec<Py>),
    /// A dict, in this order.
    Dict(Vec<(Py, Py)>),
    /// A set.
    Set(Vec<Py>),
    /// A frozenset.
    FrozenSet(Vec<Py>),
    /// A class or function `module.name`.
    Global(String, String),
}

macro_rules! from_int {
    ($($t:ty)*) => {$(
        impl From<$t> for Py {
            fn from(v: $t) -> Py {
                Py::Int(BigInt::from(v))
            }
        }
    )*};
}
from_int!(i8 i16 i32 i64 i128 isize u8 u16 u32 u64 u128 usize);

impl From<BigInt> for Py {
    fn from(v: BigInt) -> Py {
        Py::Int(v)
    }
}

impl From<bool> for Py {
    fn from(v: bool) -> Py {
        Py::Bool(v)
    }
}

impl From<f64> for Py {
    fn from(v: f64) -> Py {
        Py::Float(v)
    }
}

impl From<f32> for Py {
    fn from(v: f32) -> Py {
        Py::Float(v as f64)
    }
}

impl From<&str> for Py {
    fn from(v: &str) -> Py {
        Py::Str(v.to_owned())
    }
}

impl From<String> for Py {
    fn from(v: String) -> Py {
        Py::Str(v)
    }
}

impl From<&[u8]> for Py {
    /// Bytes (`Vec<u8>` converts to a list of ints; use `Py::Bytes` for bytes).
    fn from(v: &[u8]) -> Py {
        Py::Bytes(v.to_vec())
    }
}

impl From<()> for Py {
    fn from(_: ()) -> Py {
        Py::None
    }
}

impl<T: Into<Py>> From<Option<T>> for Py {
    fn from(v: Option<T>) -> Py {
        v.map_or(Py::None, Into::into)
    }
}

impl<T: Into<Py>> From<Vec<T>> for Py {
    fn from(v: Vec<T>) -> Py {
        Py::List(v.into_iter().map(Into::into).collect())
    }
}

impl<K: Into<Py>, V: Into<Py>> From<BTreeMap<K, V>> for Py {
    fn from(m: BTreeMap<K, V>) -> Py {
        Py::Dict(m.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }
}

impl<K: Into<Py>, V: Into<Py>, S> From<HashMap<K, V, S>> for Py {
    fn from(m: HashMap<K, V, S>) -> Py {
        Py::Dict(m.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }
}

macro_rules! from_tuple {
    ($($name:ident)+) => {
        impl<$($name: Into<Py>),+> From<($($name,)+)> for Py {
            #[allow(non_snake_case)]
            fn from(($($name,)+): ($($name,)+)) -> Py {
                Py::Tuple(vec![$($name.into()),+])
            }
        }
    };
}
from_tuple!(A);
from_tuple!(A B);
from_tuple!(A B C);
from_tuple!(A B C D);
from_tuple!(A B C D E);
from_tuple!(A B C D E F);

impl<'a> Graph<'a> {
    /// Adds a tree to the graph and returns its root. Iterative: any depth works.
    pub fn insert(&mut self, py: impl Into<Py>) -> Result<Value, Unhashable> {
        enum Step {
            Visit(Py),
            Build(Kind, usize),
        }
        enum Kind {
            List,
            Tuple,
            Dict,
            Set,
            FrozenSet,
        }
        let mut steps = vec![Step::Visit(py.into())];
        let mut done: Vec<Value> = Vec::new();
        while let Some(step) = steps.pop() {
            match step {
                Step::Visit(p) => {
                    let (kind, children) = match p {
                        Py::None => {
                            done.push(Value::None);
                            continue;
                        }
                        Py::Bool(b) => {
                            done.push(Value::Bool(b));
                            continue;
                        }
                        Py::Int(i) => {
                            done.push(self.int(i));
                            continue;
                        }
                        Py::Float(f) => {
                            done.push(Value::Float(f));
                            continue;
                        }
                        Py::Str(s) => {
                            done.push(self.str(s));
                            continue;
                        }
                        Py::Bytes(b) => {
                            done.push(self.bytes(b));
                            continue;
                        }
                        Py::ByteArray(b) => {
                            done.push(self.add(Object::ByteArray(b)));
                            continue;
                        }
                        Py::Global(m, n) => {
                            done.push(self.global(m, n));
                            continue;
                        }
                        Py::List(items) => (Kind::List, items),
                        Py::Tuple(items) => (Kind::Tuple, items),
                        Py::Set(items) => (Kind::Set, items),
                        Py::FrozenSet(items) => (Kind::FrozenSet, items),
                        Py::Dict(entries) => {
                            (Kind::Dict, entries.into_iter().flat_map(|(k, v)| [k, v]).collect::<Vec<_>>())
                        }
                    };
                    steps.push(Step::Build(kind, children.len()));
                    steps.extend(children.into_iter().rev().map(Step::Visit));
                }
                Step::Build(kind, n) => {
                    let items = done.split_off(done.len() - n);
                    let v = match kind {
                        Kind::List => self.list(items),
                        Kind::Tuple => self.tuple(items),
                        Kind::Set => self.set(items)?,
                        Kind::FrozenSet => self.frozenset(items)?,
                        Kind::Dict => {
                            let pairs = items.chunks_exact(2).map(|p| (p[0], p[1])).collect();
                            self.dict(pairs)?
                        }
                    };
                    done.push(v);
                }
            }
        }
        Ok(done.pop().expect("one root"))
    }
}

/// Builds a [`Py`] tree with Python-like syntax: lists `[..]`, dicts `{k: v, ..}`, tuples
/// `(a, b)`, `None`, and any Rust expression that converts `Into<Py>` as a single token tree
/// (wrap longer expressions such as `-1` in parentheses: `(-1)`).
///
/// ```
/// let tree = pikl::value!({"name": "pikl", "tags": ["rust", "python"], "pos": (1, (-2)), "none": None});
/// let mut g = pikl::Graph::new();
/// let v = g.insert(tree).unwrap();
/// assert_eq!(g.view(v).to_string(), "{'name': 'pikl', 'tags': ['rust', 'python'], 'pos': (1, -2), 'none': None}");
/// ```
#[macro_export]
macro_rules! value {
    (None) => { $crate::Py::None };
    ([ $($elem:tt),* $(,)? ]) => { $crate::Py::List(vec![ $( $crate::value!($elem) ),* ]) };
    ({ $($key:tt : $val:tt),* $(,)? }) => { $crate::Py::Dict(vec![ $( ($crate::value!($key), $crate::value!($val)) ),* ]) };
    (( $e:expr )) => { $crate::Py::from($e) };
    (( $($elem:tt),+ $(,)? )) => { $crate::Py::Tuple(vec![ $( $crate::value!($elem) ),+ ]) };
    ($e:expr) => { $crate::Py::from($e) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trees_build_graphs() {
        let mut g = Graph::new();
        let v = g.insert(crate::value!([1, "two", (3.5, None), {"k": [true]}, ((-4))])).unwrap();
        assert_eq!(g.view(v).to_string(), "[1, 'two', (3.5, None), {'k': [True]}, -4]");
        let mut deep = Py::List(vec![]);
        for _ in 0..100_000 {
            deep = Py::List(vec![deep]);
        }
        let d = g.insert(deep).unwrap();
        assert_eq!(g.view(d).repr_with(crate::value::ReprOptions { max_chars: Some(5) }), "[[[[[...");
        assert!(g.insert(Py::Set(vec![Py::List(vec![])])).is_err());
    }
}
