//! pikl: Python's pickle format in Rust.
//!
//! Reads every pickle CPython writes (protocols 0 to 5, Python 2 pickles included) into an
//! object graph that keeps shared references and cycles, without running any Python code: a
//! class is data (module, name) and an instance is its construction (callable, arguments,
//! state).
#![deny(missing_docs)]

pub mod compat;
pub mod error;
pub mod opcodes;
pub mod read;
pub mod value;

pub use error::{Category, Error, Result};
pub use value::{Construct, Dict, Global, Graph, Instance, ObjId, Object, PickleBuffer, PyStr, Set, Value, ValueRef};
