//! pikl: Python's pickle format in Rust.
//!
//! Reads every pickle CPython writes (protocols 0 to 5, Python 2 pickles included) into an
//! object graph that keeps shared references and cycles, without running any Python code: a
//! class is data (module, name) and an instance is its construction (callable, arguments,
//! state). Writes graphs back byte for byte as CPython 3.11 writes the same objects.
//!
//! # Reading
//!
//! ```
//! // pickle.dumps({"a": [1, 2], "b": None}, 2)
//! let data = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x01K\x02eX\x01\x00\x00\x00bq\x03Nu.";
//! let loaded = pikl::loads(data)?;
//! let v = loaded.value();
//! assert_eq!(v.to_string(), "{'a': [1, 2], 'b': None}"); // Python's repr
//! assert_eq!(v.get("a").and_then(|a| a.at(1)).and_then(|x| x.as_i64()), Some(2));
//! assert!(v.get("b").is_some_and(|b| b.is_none()));
//! # Ok::<(), pikl::Error>(())
//! ```
//!
//! [`Unpickler`] reads from a slice ([`Unpickler::from_slice`]: strs and bytes borrow from
//! it) or any `BufRead` ([`Unpickler::from_reader`]: bounded memory), one pickle per
//! [`load`](Unpickler::load) with one memo, so consecutive pickles of a stream share objects
//! as they do in CPython. Its options decode Python 2 strs (`encoding`, `errors`) and bound
//! what hostile input may cost; its hooks resolve persistent ids, globals, extension codes
//! and out-of-band buffers.
//!
//! # Writing
//!
//! ```
//! let mut g = pikl::Graph::new();
//! let shared = g.insert(pikl::value!(["x", 1]))?;
//! let pair = g.tuple(vec![shared, shared]); // one object, twice
//! let bytes = pikl::dumps(&g, pair, Some(2))?;
//! // pickle.dumps((l, l), 2) with l = ['x', 1]
//! assert_eq!(bytes, b"\x80\x02]q\x00(X\x01\x00\x00\x00xq\x01K\x01eh\x00\x86q\x02.");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`Pickler`] writes to any `Write` and keeps its memo across [`dump`](Pickler::dump)
//! calls. Errors ([`Error`]) tell a pickling error from an unpickling one and carry the byte
//! offset and opcode.
#![deny(missing_docs)]

mod build;
mod canonical;
mod codec;
mod codec_tables;
pub mod compat;
pub mod dis;
pub mod error;
mod frame_writer;
mod index_assign;
pub mod json;
mod latin1;
mod mem_advice;
pub mod opcodes;
pub mod ops;
pub mod optimize;
mod pickler;
pub mod read;
#[cfg(feature = "serde")]
pub mod serde;
mod text;
mod unpickler;
pub mod value;

pub use build::Py;
pub use codec::{Charmap, DecodeErrors, Encoding};
pub use pickler::{
    dump, dumps, resolve_protocol, BufferCallback, PersistentId, Pickler, PicklerMemo, DEFAULT_PROTOCOL,
};
pub use unpickler::{FindClass, PersistentLoad, Unpickler, UnpicklerOptions, HIGHEST_PROTOCOL};

pub use error::{Category, Error, Result};
#[cfg(feature = "serde")]
pub use serde::{from_reader, from_slice, to_vec, to_writer};
pub use value::{
    Construct, Dict, Global, Graph, Instance, Items, ObjId, Object, PickleBuffer, PyStr, Set, Value, ValueRef,
};

use std::io::BufRead;

/// One pickle, loaded: its graph and the top-level value.
#[derive(Clone, Debug)]
pub struct Loaded<'a> {
    /// Every object the pickle built.
    pub graph: Graph<'a>,
    /// The pickled value.
    pub root: Value,
}

impl<'a> Loaded<'a> {
    /// The pickled value, readable.
    pub fn value(&self) -> ValueRef<'_, 'a> {
        self.graph.view(self.root)
    }
}

impl std::fmt::Display for Loaded<'_> {
    /// Python's `repr()` of the value.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.value(), f)
    }
}

/// Loads one pickle from bytes (Python's `pickle.loads`); strs and bytes borrow from `data`.
///
/// ```
/// let data = b"\x80\x04\x95\t\x00\x00\x00\x00\x00\x00\x00]\x94(K\x01K\x02e.";
/// let loaded = pikl::loads(data)?;
/// assert_eq!(loaded.to_string(), "[1, 2]");
/// assert_eq!(loaded.value().at(1).and_then(|v| v.as_i64()), Some(2));
/// # Ok::<(), pikl::Error>(())
/// ```
pub fn loads(data: &[u8]) -> Result<Loaded<'_>> {
    let mut u = Unpickler::from_slice(data);
    let root = u.load()?;
    Ok(Loaded { graph: u.take_graph(), root })
}

/// Loads one pickle from a reader (Python's `pickle.load`).
pub fn load<R: BufRead>(reader: R) -> Result<Loaded<'static>> {
    let mut u = Unpickler::from_reader(reader);
    let root = u.load()?;
    Ok(Loaded { graph: u.into_graph(), root })
}
