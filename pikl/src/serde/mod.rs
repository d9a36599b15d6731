//! Rust values to and from pickles through [serde](https://serde.rs) (feature `serde`, on by
//! default).
//!
//! ```
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, PartialEq, Debug)]
//! struct Record<'a> {
//!     id: i64,
//!     name: &'a str,
//!     tags: Vec<String>,
//! }
//!
//! let rec = Record { id: 7, name: "seven", tags: vec!["odd".into()] };
//! let bytes = pikl::to_vec(&rec, Default::default())?;
//! // Python: pickle.loads(bytes) == {'id': 7, 'name': 'seven', 'tags': ['odd']}
//! let back: Record = pikl::from_slice(&bytes, Default::default())?;
//! assert_eq!(back, rec); // `name` borrows from `bytes`
//! # Ok::<(), pikl::Error>(())
//! ```
//!
//! The writer emits opcodes directly, as CPython's pickler writes the equivalent Python value:
//! with the default options the bytes are those of `pickle.dumps(value, 4)` (same opcodes,
//! memo, batches of 1000 and 64 KiB frames; struct field names are interned strs, written once
//! and then fetched from the memo). The reader runs a lightweight pickle machine into a compact
//! tape (strs and bytes borrowed from the input, dicts as lists of pairs, no hashing), then
//! drives serde's visitors from it. Neither goes through the object model ([`crate::Graph`]);
//! [`to_object`] and [`from_value`] convert to and from it.
//!
//! # Mapping
//!
//! | Rust (serde data model)                    | written as (Python)              | also read from |
//! |--------------------------------------------|----------------------------------|----------------|
//! | `bool`                                     | `bool`                           | |
//! | `i8`..`i64`, `u8`..`u64`, `i128`, `u128`   | `int` (`LONG1` beyond 32 bits)   | `bool` where the visitor takes it |
//! | [`bigint`] (`num_bigint::BigInt`)          | `int` of any size (`LONG1`/`LONG4`) | |
//! | `f32`, `f64`                               | `float`                          | `int` |
//! | `char`, `str`, `String`                    | `str`                            | Python 2 `str` (per [`DeOptions::encoding`]), `bytes` if UTF-8 |
//! | bytes (`serde_bytes`)                      | `bytes`                          | `bytearray`, `str`, a list of ints |
//! | `Option<T>`                                | `None` or the value              | |
//! | `()`, unit struct                          | `None`                           | `()` |
//! | newtype struct `S(T)`                      | the inner value                  | |
//! | sequences (`Vec`, `HashSet`, ...)          | `list`                           | `tuple`, `set`, `frozenset`; a list subclass's items (none for an instance built from no arguments, state or items); `Vec<u8>` also from `bytes` |
//! | tuples, tuple structs                      | `tuple`                          | `list` |
//! | maps                                       | `dict`                           | an instance's state |
//! | structs                                    | `dict` of field names, or an instance of a class (below) | an instance's state (a dataclass or plain class: what BUILD set, slots state `(None, {...})` too), a namedtuple or other tuple/list (fields in order) |
//! | unit variant `E::A`                        | `'A'`                            | `{'A': None}`, `('A',)` |
//! | newtype variant `E::B(x)`                  | `{'B': x}`                       | `('B', x)` |
//! | tuple variant `E::C(x, y)`                 | `{'C': (x, y)}`                  | `('C', [x, y])` |
//! | struct variant `E::D { x }`                | `{'D': {'x': x}}`                | `('D', {'x': x})` |
//!
//! Dict keys must be hashable in Python: a sequence key is written as a tuple, and a map or
//! struct key is refused. Sets come from serde as sequences, so they are written as lists.
//!
//! ## Structs as instances
//!
//! With [`SerOptions::class`] (or [`SerOptions::instances_of`]) a struct is written as an
//! instance of a Python class, the way `pickle` writes a plain class or dataclass instance:
//! `NEWOBJ(cls, ())` and `BUILD` with the dict of fields (`copyreg._reconstructor(cls, object,
//! None)` below protocol 2). Python unpickling it needs the class importable and gets a real
//! object; reading it back (or reading what Python wrote for such a class) gives the struct.
//!
//! ## Reading
//!
//! The reader runs every opcode. Builtins Python writes through REDUCE are understood
//! (`set`, `frozenset`, `bytearray`, `bytes`, `_codecs.encode` as CPython writes bytes below
//! protocol 3, `copyreg._reconstructor`); any other call is an instance whose state, list
//! items or dict items a struct, map or sequence can read. Memo references (`GET`) are read
//! again wherever they occur. A construct with no mapping (a `complex`, a class object, a
//! persistent id, an out-of-band buffer) is a clear error when it is read, and deserialized
//! containers nest at most [`DeOptions::max_depth`] deep (a self-referencing list is an error,
//! not a stack overflow). Duplicate dict keys and set items (which CPython never writes: a
//! hand-made `set([1, 1])` or ADDITEMS of one item twice) reach the visitor as they are. Bytes after the pickle's STOP are ignored, as `pickle.loads` ignores them.
//!
//! `&str` and `&[u8]` (`serde_bytes`) fields borrow from the slice given to [`from_slice`]
//! (Python 2 strs too, when their bytes are already the text); [`from_reader`] keeps the
//! pickle's bytes while it reads them, so it can only give owned values. The reader's working
//! buffers (up to 1 MiB each, 5 MiB in all) are kept per thread for the next read.
//!
//! ## Errors
//!
//! Errors are [`crate::Error`]s whose message starts with the path to the failing value and
//! whose [`offset`](crate::Error::offset) is the byte offset of the opcode that made it:
//! `unpickling error at byte 57: [1].tags[0]: invalid type: integer `3`, expected a string`.

mod de;
mod error;
mod options;
mod ser;
mod tape;
mod value;

pub mod bigint;

use std::io::{BufRead, Write};

use ::serde::{de::DeserializeOwned, Deserialize, Serialize};

pub use options::{DeOptions, SerOptions, DEFAULT_PROTOCOL};
pub use value::{from_value, to_object};

use crate::error::Result;
use std::cell::RefCell;
use std::rc::Rc;

use crate::read::{IoRead, SliceRead};

/// Writes `value` as a pickle into a new buffer.
///
/// ```
/// let bytes = pikl::to_vec(&vec![1, 2], pikl::serde::SerOptions::new().protocol(2))?;
/// assert_eq!(bytes, b"\x80\x02]q\x00(K\x01K\x02e.");
/// # Ok::<(), pikl::Error>(())
/// ```
pub fn to_vec<T: Serialize + ?Sized>(value: &T, options: SerOptions) -> Result<Vec<u8>> {
    ser::dump(ser::NoSink, value, &options).map_err(error::Error::into_pikl)
}

/// Writes `value` as a pickle to `writer`, frame by frame (bounded memory at protocol 4+).
pub fn to_writer<W: Write, T: Serialize + ?Sized>(writer: W, value: &T, options: SerOptions) -> Result<()> {
    ser::dump(ser::IoSink(writer), value, &options).map(drop).map_err(error::Error::into_pikl)
}

/// Reads a `T` from a pickle; `&str` and `&[u8]` fields borrow from `bytes`.
pub fn from_slice<'de, T: Deserialize<'de>>(bytes: &'de [u8], options: DeOptions) -> Result<T> {
    let mut r = SliceRead::new(bytes);
    let (tape, root) = tape::build(&mut r, tape::Input::Slice(bytes), &options)?;
    let cx = de::Cx::new(&tape, bytes);
    let node = de::Node { cx: &cx, v: root };
    T::deserialize(node).map_err(error::Error::into_pikl)
}

/// Reads a `T` from a pickle in a reader, which is left just after the pickle's STOP (so
/// consecutive pickles of one stream can be read in turn). The pickle's bytes are kept in
/// memory while it is read.
pub fn from_reader<R: BufRead, T: DeserializeOwned>(reader: R, options: DeOptions) -> Result<T> {
    let record = Rc::new(RefCell::new(Vec::new()));
    let mut r = IoRead::new(tape::Tee::new(reader, Rc::clone(&record)));
    let res = tape::build(&mut r, tape::Input::Record(Rc::clone(&record)), &options);
    drop(r.into_inner());
    let (tape, root) = res?;
    let input = std::mem::take(&mut *record.borrow_mut());
    let cx = de::Cx::new(&tape, &input);
    let node = de::Node { cx: &cx, v: root };
    T::deserialize(node).map_err(error::Error::into_pikl)
}
