//! The error serde's traits see while a value is written or read: a message, the byte offset
//! where it happened and the path of fields and indices leading to it. It becomes a
//! [`crate::Error`] when it leaves the public API, with the path in front of the message.

use std::fmt;

use crate::error::Category;

/// One step of a path, formatted: `.name`, `[3]` or `['a key']`.
type Seg = String;

pub(crate) struct Error(Box<Inner>);

struct Inner {
    category: Category,
    message: String,
    offset: Option<u64>,
    /// Innermost step first: segments are pushed as the error bubbles up.
    path: Vec<Seg>,
    /// An error of the crate passed through whole (I/O, malformed pickle).
    base: Option<crate::Error>,
}

impl Error {
    #[cold]
    pub(crate) fn new(category: Category, message: impl Into<String>) -> Self {
        Error(Box::new(Inner { category, message: message.into(), offset: None, path: Vec::new(), base: None }))
    }

    /// A value that cannot be read into the requested type.
    #[cold]
    pub(crate) fn de(message: impl Into<String>) -> Self {
        Self::new(Category::Unpickling, message)
    }

    /// A value that cannot be written.
    #[cold]
    pub(crate) fn ser(message: impl Into<String>) -> Self {
        Self::new(Category::Pickling, message)
    }

    /// Attaches the byte offset where the failure happened (the innermost one is kept).
    #[cold]
    pub(crate) fn at(mut self, offset: u64) -> Self {
        self.0.offset.get_or_insert(offset);
        self
    }

    /// Prefixes the path with a sequence index.
    #[cold]
    pub(crate) fn index(mut self, i: usize) -> Self {
        self.0.path.push(format!("[{i}]"));
        self
    }

    /// Prefixes the path with a field name or dict key.
    #[cold]
    pub(crate) fn key(mut self, name: &str) -> Self {
        self.0.path.push(key_segment(name));
        self
    }

    /// Prefixes the path with a formatted segment.
    #[cold]
    pub(crate) fn segment(mut self, seg: String) -> Self {
        self.0.path.push(seg);
        self
    }

    /// The path, outermost first: `records[3].name`.
    pub(crate) fn path(&self) -> String {
        let mut s = String::new();
        for seg in self.0.path.iter().rev() {
            s.push_str(seg);
        }
        match s.strip_prefix('.') {
            Some(rest) => rest.to_owned(),
            None => s,
        }
    }

    /// The crate's error, with the path in front of the message.
    #[cold]
    pub(crate) fn into_pikl(self) -> crate::Error {
        let path = self.path();
        let inner = *self.0;
        let err = match inner.base {
            Some(base) => {
                if path.is_empty() {
                    return base;
                }
                let msg = format!("{path}: {}", base.message());
                base.with_message(msg)
            }
            None => {
                let msg = if path.is_empty() { inner.message } else { format!("{path}: {}", inner.message) };
                match inner.category {
                    Category::Pickling => crate::Error::pickling(msg),
                    _ => crate::Error::unpickling_msg(msg),
                }
            }
        };
        match inner.offset {
            Some(o) => err.at(o),
            None => err,
        }
    }
}

/// `.name` for identifiers, else `['key']`.
fn key_segment(name: &str) -> String {
    let ident = name.chars().next().is_some_and(|c| c == '_' || c.is_alphabetic())
        && name.chars().all(|c| c == '_' || c.is_alphanumeric());
    if ident {
        format!(".{name}")
    } else {
        format!("['{}']", name.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

impl From<crate::Error> for Error {
    #[cold]
    fn from(e: crate::Error) -> Self {
        let mut err = Error::new(e.category(), String::new());
        err.0.base = Some(e);
        err
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path();
        if !path.is_empty() {
            write!(f, "{path}: ")?;
        }
        match &self.0.base {
            Some(b) => f.write_str(b.message())?,
            None => f.write_str(&self.0.message)?,
        }
        if let Some(o) = self.0.offset {
            write!(f, " (at byte {o})")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error({self})")
    }
}

impl std::error::Error for Error {}

impl serde::ser::Error for Error {
    #[cold]
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error::ser(msg.to_string())
    }
}

impl serde::de::Error for Error {
    #[cold]
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error::de(msg.to_string())
    }
}

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;
