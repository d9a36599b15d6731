//! SETITEM onto a list or bytearray: CPython's `PyObject_SetItem` assigns by index. Shared by
//! the unpickler and the serde reader.

/// A sequence SETITEM assigns into by index.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum IndexedSeq {
    List,
    ByteArray,
}

impl IndexedSeq {
    /// Python's type name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            IndexedSeq::List => "list",
            IndexedSeq::ByteArray => "bytearray",
        }
    }

    /// Position of `index` (negative from the end) among `len` items, or CPython's IndexError.
    pub(crate) fn position(self, index: i64, len: usize) -> Result<usize, &'static str> {
        let at = if index < 0 { index.checked_add(len as i64) } else { Some(index) };
        at.and_then(|i| usize::try_from(i).ok()).filter(|&i| i < len).ok_or(match self {
            IndexedSeq::List => "list assignment index out of range",
            IndexedSeq::ByteArray => "bytearray index out of range",
        })
    }

    /// CPython's TypeError for an index that is not an int.
    pub(crate) fn bad_index(self, type_name: &str) -> String {
        format!("{} indices must be integers or slices, not {type_name}", self.name())
    }
}

/// CPython's IndexError for an int index beyond `isize`.
pub(crate) const INDEX_TOO_BIG: &str = "cannot fit 'int' into an index-sized integer";

#[cfg(test)]
mod tests {
    use super::IndexedSeq;

    #[test]
    fn positions_count_from_either_end() {
        let list = IndexedSeq::List;
        assert_eq!(list.position(0, 3), Ok(0));
        assert_eq!(list.position(-1, 3), Ok(2));
        assert_eq!(list.position(-3, 3), Ok(0));
        assert!(list.position(3, 3).is_err());
        assert!(list.position(-4, 3).is_err());
        assert!(list.position(i64::MIN, 3).is_err());
        assert_eq!(IndexedSeq::ByteArray.position(5, 2), Err("bytearray index out of range"));
    }
}
