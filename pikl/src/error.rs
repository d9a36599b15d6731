//! The error type shared by the pickler and the unpickler.

use std::fmt;
use std::io;

use crate::opcodes::Opcode;

/// A specialized `Result` for pikl operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of failure an [`Error`] is, as Python's `pickle` module tells them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Category {
    /// A value could not be pickled (Python's `PicklingError`).
    Pickling,
    /// The stream is not a valid pickle (Python's `UnpicklingError`).
    Unpickling,
    /// The stream ended in the middle of a pickle (Python's `EOFError`).
    Eof,
    /// The underlying reader or writer failed.
    Io,
}

/// An error while pickling or unpickling.
///
/// Boxed so that `Result<T, Error>` stays one pointer wide.
pub struct Error(Box<ErrorImpl>);

struct ErrorImpl {
    category: Category,
    message: String,
    offset: Option<u64>,
    opcode: Option<Opcode>,
    io: Option<io::Error>,
}

impl Error {
    #[cold]
    fn new(category: Category, message: String) -> Self {
        Error(Box::new(ErrorImpl { category, message, offset: None, opcode: None, io: None }))
    }

    /// A pickling error: `value` cannot be written.
    #[cold]
    pub fn pickling(message: impl Into<String>) -> Self {
        Self::new(Category::Pickling, message.into())
    }

    /// An unpickling error whose offset is attached later.
    #[cold]
    pub(crate) fn unpickling_msg(message: impl Into<String>) -> Self {
        Self::new(Category::Unpickling, message.into())
    }

    /// Replaces the message.
    #[cold]
    pub(crate) fn with_message(mut self, message: impl Into<String>) -> Self {
        self.0.message = message.into();
        self
    }

    /// An unpickling error at byte `offset` of the stream.
    #[cold]
    pub fn unpickling(offset: u64, message: impl Into<String>) -> Self {
        Self::new(Category::Unpickling, message.into()).at(offset)
    }

    /// The error a `find_class` hook returns to refuse a global (Python's "global 'os.system'
    /// is forbidden").
    #[cold]
    pub fn unpickling_forbidden(module: &str, name: &str) -> Self {
        Self::new(Category::Unpickling, format!("global '{module}.{name}' is forbidden"))
    }

    /// The stream ended early, at byte `offset`.
    #[cold]
    pub fn eof(offset: u64) -> Self {
        Self::new(Category::Eof, "pickle data was truncated".into()).at(offset)
    }

    /// An I/O error from the underlying reader or writer.
    #[cold]
    pub fn io(err: io::Error) -> Self {
        let mut e = Self::new(Category::Io, err.to_string());
        e.0.io = Some(err);
        e
    }

    /// Attaches the byte offset where the failure happened (kept if already set).
    #[cold]
    pub(crate) fn at(mut self, offset: u64) -> Self {
        self.0.offset.get_or_insert(offset);
        self
    }

    /// Attaches the opcode being executed (kept if already set).
    #[cold]
    pub(crate) fn in_opcode(mut self, opcode: Opcode) -> Self {
        self.0.opcode.get_or_insert(opcode);
        self
    }

    /// The kind of failure.
    pub fn category(&self) -> Category {
        self.0.category
    }

    /// True for a value that cannot be pickled.
    pub fn is_pickling(&self) -> bool {
        self.0.category == Category::Pickling
    }

    /// True for a corrupt or truncated stream.
    pub fn is_unpickling(&self) -> bool {
        matches!(self.0.category, Category::Unpickling | Category::Eof)
    }

    /// True when the stream ended early.
    pub fn is_eof(&self) -> bool {
        self.0.category == Category::Eof
    }

    /// Byte offset in the stream where the failure was found, when known.
    pub fn offset(&self) -> Option<u64> {
        self.0.offset
    }

    /// The opcode being executed when the failure was found, when known.
    pub fn opcode(&self) -> Option<Opcode> {
        self.0.opcode
    }

    /// The message alone, without offset or opcode.
    pub fn message(&self) -> &str {
        &self.0.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.0.category {
            Category::Pickling => "pickling error",
            Category::Unpickling => "unpickling error",
            Category::Eof => "unexpected end of pickle",
            Category::Io => "I/O error",
        };
        f.write_str(what)?;
        if let Some(offset) = self.0.offset {
            write!(f, " at byte {offset}")?;
        }
        if let Some(op) = self.0.opcode {
            write!(f, " (opcode {})", op.name())?;
        }
        if self.0.category != Category::Eof || self.0.message != "pickle data was truncated" {
            write!(f, ": {}", self.0.message)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error({self})")
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.io.as_ref().map(|e| e as _)
    }
}

impl From<io::Error> for Error {
    fn from(err: io::Error) -> Self {
        Error::io(err)
    }
}
