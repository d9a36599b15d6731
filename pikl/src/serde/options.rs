//! Options of the serde writer and reader.

use crate::codec::{DecodeErrors, Encoding};

/// The protocol [`SerOptions::default`] writes: 4, Python's own `pickle.DEFAULT_PROTOCOL`
/// (3.8 to 3.13), readable by Python 3.4 and later. Values written through serde hold no
/// `bytearray` or out-of-band buffer, so protocol 5 would give the same opcodes with a newer
/// header.
pub const DEFAULT_PROTOCOL: u8 = 4;

/// A Rust struct written as an instance of a Python class.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Class {
    /// The struct's serde name (its Rust name, or `#[serde(rename)]`).
    rust: String,
    module: String,
    qualname: String,
}

/// How [`to_vec`](super::to_vec) and [`to_writer`](super::to_writer) write.
///
/// ```
/// use pikl::serde::SerOptions;
/// let opts = SerOptions::new().protocol(2).class("Point", "geometry", "Point");
/// # let _ = opts;
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SerOptions {
    protocol: u8,
    memoize: bool,
    fix_imports: bool,
    classes: Vec<Class>,
    instances_module: Option<String>,
}

impl Default for SerOptions {
    /// Protocol [`DEFAULT_PROTOCOL`], memoized like CPython, structs as dicts.
    fn default() -> Self {
        SerOptions {
            protocol: DEFAULT_PROTOCOL,
            memoize: true,
            fix_imports: true,
            classes: Vec::new(),
            instances_module: None,
        }
    }
}

impl SerOptions {
    /// The defaults: see [`SerOptions::default`].
    pub fn new() -> Self {
        Self::default()
    }

    /// The protocol to write, 0 to 5 (`pikl::HIGHEST_PROTOCOL`); a larger one is refused when
    /// writing.
    pub fn protocol(mut self, protocol: u8) -> Self {
        self.protocol = protocol;
        self
    }

    /// Memoizes every str, list, dict and tuple as CPython's pickler does (the default), so the
    /// output is byte-identical to `pickle.dumps` of the equivalent Python value and struct field
    /// names are written once (then referenced). `false` writes no memo at all: slightly faster
    /// to write, larger output.
    pub fn memoize(mut self, on: bool) -> Self {
        self.memoize = on;
        self
    }

    /// Below protocol 3, writes Python 2 names (`copy_reg`, `__builtin__`) for the few globals
    /// the writer uses, as Python's `fix_imports=True` (the default) does.
    pub fn fix_imports(mut self, on: bool) -> Self {
        self.fix_imports = on;
        self
    }

    /// Writes structs named `rust_name` as instances of the Python class `module.qualname`,
    /// whose state (what `BUILD` sets) is the dict of fields: Python gets a real object, as
    /// `pickle` writes a plain class or dataclass instance.
    pub fn class(
        mut self,
        rust_name: impl Into<String>,
        module: impl Into<String>,
        qualname: impl Into<String>,
    ) -> Self {
        let rust = rust_name.into();
        self.classes.retain(|c| c.rust != rust);
        self.classes.push(Class { rust, module: module.into(), qualname: qualname.into() });
        self
    }

    /// Writes every struct not named by [`SerOptions::class`] as an instance of the class of the
    /// same name in `module`.
    pub fn instances_of(mut self, module: impl Into<String>) -> Self {
        self.instances_module = Some(module.into());
        self
    }

    pub(crate) fn get_protocol(&self) -> u8 {
        self.protocol
    }

    pub(crate) fn get_memoize(&self) -> bool {
        self.memoize
    }

    pub(crate) fn get_fix_imports(&self) -> bool {
        self.fix_imports
    }

    /// The (module, qualname) a struct is written as, or `None` for a dict.
    pub(crate) fn class_of<'a>(&'a self, rust_name: &'a str) -> Option<(&'a str, &'a str)> {
        if let Some(c) = self.classes.iter().find(|c| c.rust == rust_name) {
            return Some((&c.module, &c.qualname));
        }
        self.instances_module.as_deref().map(|m| (m, rust_name))
    }

    pub(crate) fn has_classes(&self) -> bool {
        !self.classes.is_empty() || self.instances_module.is_some()
    }
}

/// How [`from_slice`](super::from_slice) and [`from_reader`](super::from_reader) read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeOptions {
    pub(crate) encoding: Encoding,
    pub(crate) errors: DecodeErrors,
    pub(crate) fix_imports: bool,
    pub(crate) max_depth: usize,
    pub(crate) max_memo_len: usize,
    pub(crate) max_marks: usize,
}

impl Default for DeOptions {
    /// As `pickle.loads`' defaults (`encoding="ASCII"`, `errors="strict"`, `fix_imports=True`);
    /// containers nested at most 256 deep.
    fn default() -> Self {
        DeOptions {
            encoding: Encoding::Ascii,
            errors: DecodeErrors::Strict,
            fix_imports: true,
            max_depth: 256,
            max_memo_len: 1 << 30,
            max_marks: 1 << 20,
        }
    }
}

impl DeOptions {
    /// The defaults: see [`DeOptions::default`].
    pub fn new() -> Self {
        Self::default()
    }

    /// How Python 2 `str` data (`STRING`, `BINSTRING`, `SHORT_BINSTRING`) is decoded, as
    /// `pickle.loads(encoding=...)`; [`Encoding::Bytes`] reads them as bytes.
    pub fn encoding(mut self, encoding: Encoding) -> Self {
        self.encoding = encoding;
        self
    }

    /// What to do with Python 2 `str` bytes the encoding cannot decode (`errors=...`).
    pub fn errors(mut self, errors: DecodeErrors) -> Self {
        self.errors = errors;
        self
    }

    /// Maps Python 2 module names (`__builtin__`, `copy_reg`) to Python 3 ones in pickles of
    /// protocol < 3 (the default), so `set([...])` written by Python 2 reads as a set.
    pub fn fix_imports(mut self, on: bool) -> Self {
        self.fix_imports = on;
        self
    }

    /// Deepest nesting of containers a value may have (256 by default); deeper data, or a
    /// self-referencing one, is an error rather than a stack overflow.
    pub fn max_depth(mut self, depth: usize) -> Self {
        self.max_depth = depth;
        self
    }

    /// Most memo entries a pickle may define.
    pub fn max_memo_len(mut self, n: usize) -> Self {
        self.max_memo_len = n;
        self
    }

    /// Most MARKs open at once.
    pub fn max_marks(mut self, n: usize) -> Self {
        self.max_marks = n;
        self
    }
}
