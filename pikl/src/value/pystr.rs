//! Python `str` values: Unicode code points, including lone surrogates UTF-8 cannot hold.

use std::borrow::Cow;
use std::fmt;

/// True for a short ASCII text: the usual dict key or short value, checked without calling the
/// general validator.
#[inline]
fn is_short_ascii(b: &[u8]) -> bool {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let word = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
    let half = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes")) as u64;
    let n = b.len();
    match n {
        0..=3 => b.iter().all(|&c| c < 0x80),
        // Two overlapping loads cover the whole text.
        4..=7 => (half(0) | half(n - 4)) & HIGH == 0,
        8..=16 => (word(0) | word(n - 8)) & HIGH == 0,
        17..=32 => (word(0) | word(8) | word(n - 16) | word(n - 8)) & HIGH == 0,
        _ => false,
    }
}

/// True for valid UTF-8 (no surrogates).
#[inline]
fn is_valid_utf8(b: &[u8]) -> bool {
    is_short_ascii(b) || simdutf8::basic::from_utf8(b).is_ok()
}

/// A Python `str`.
///
/// Stored as UTF-8 when the text is valid Unicode, and otherwise as "surrogatepass" UTF-8
/// (each surrogate code point encoded on its own in three bytes), the form CPython writes in
/// pickles. Either way the bytes round-trip losslessly.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PyStr<'a> {
    bytes: Cow<'a, [u8]>,
    utf8: bool,
}

impl<'a> PyStr<'a> {
    /// A str from Rust text.
    pub fn new(s: impl Into<Cow<'a, str>>) -> Self {
        let bytes = match s.into() {
            Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
            Cow::Owned(s) => Cow::Owned(s.into_bytes()),
        };
        PyStr { bytes, utf8: true }
    }

    /// A str from surrogatepass UTF-8, or `None` if `bytes` is not valid even allowing
    /// surrogates.
    pub fn from_surrogatepass(bytes: impl Into<Cow<'a, [u8]>>) -> Option<Self> {
        let bytes = bytes.into();
        if is_valid_utf8(&bytes) {
            return Some(PyStr { bytes, utf8: true });
        }
        if surrogatepass_valid(&bytes) {
            Some(PyStr { bytes, utf8: false })
        } else {
            None
        }
    }

    /// A str from code points (any value up to 0x10FFFF, surrogates included).
    pub fn from_code_points(cps: impl IntoIterator<Item = u32>) -> Self {
        let mut out = Vec::new();
        let mut utf8 = true;
        for cp in cps {
            if (0xD800..0xE000).contains(&cp) {
                utf8 = false;
            }
            push_code_point(&mut out, cp);
        }
        PyStr { bytes: Cow::Owned(out), utf8 }
    }

    /// The text, when it holds no lone surrogate.
    pub fn as_str(&self) -> Option<&str> {
        if self.utf8 {
            // Validated at construction; checked again (fast) rather than trusted.
            if is_short_ascii(&self.bytes) {
                // SAFETY: ASCII is valid UTF-8.
                return Some(unsafe { std::str::from_utf8_unchecked(&self.bytes) });
            }
            simdutf8::basic::from_utf8(&self.bytes).ok()
        } else {
            None
        }
    }

    /// The text with any surrogate replaced by U+FFFD.
    pub fn to_string_lossy(&self) -> Cow<'_, str> {
        match self.as_str() {
            Some(s) => Cow::Borrowed(s),
            None => Cow::Owned(self.code_points().map(|c| char::from_u32(c).unwrap_or('\u{FFFD}')).collect()),
        }
    }

    /// The surrogatepass UTF-8 bytes, exactly as a pickle carries them.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// True when the str contains lone surrogates (is not valid UTF-8).
    pub fn has_surrogates(&self) -> bool {
        !self.utf8
    }

    /// Number of code points (Python's `len()`).
    pub fn len(&self) -> usize {
        if self.utf8 {
            self.bytes.iter().filter(|&&b| (b as i8) >= -0x40).count()
        } else {
            self.code_points().count()
        }
    }

    /// True for the empty str.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The code points, in order.
    pub fn code_points(&self) -> CodePoints<'_> {
        CodePoints { bytes: &self.bytes, pos: 0 }
    }

    /// A copy that owns its bytes.
    pub fn into_owned(self) -> PyStr<'static> {
        PyStr { bytes: Cow::Owned(self.bytes.into_owned()), utf8: self.utf8 }
    }
}

impl fmt::Debug for PyStr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.to_string_lossy(), f)
    }
}

/// Iterator over the code points of a [`PyStr`].
pub struct CodePoints<'s> {
    bytes: &'s [u8],
    pos: usize,
}

impl Iterator for CodePoints<'_> {
    type Item = u32;
    fn next(&mut self) -> Option<u32> {
        let b = self.bytes;
        let i = self.pos;
        let b0 = *b.get(i)? as u32;
        let (cp, n) = if b0 < 0x80 {
            (b0, 1)
        } else if b0 < 0xE0 {
            (((b0 & 0x1F) << 6) | (b[i + 1] as u32 & 0x3F), 2)
        } else if b0 < 0xF0 {
            (((b0 & 0x0F) << 12) | ((b[i + 1] as u32 & 0x3F) << 6) | (b[i + 2] as u32 & 0x3F), 3)
        } else {
            (
                ((b0 & 0x07) << 18)
                    | ((b[i + 1] as u32 & 0x3F) << 12)
                    | ((b[i + 2] as u32 & 0x3F) << 6)
                    | (b[i + 3] as u32 & 0x3F),
                4,
            )
        };
        self.pos += n;
        Some(cp)
    }
}

/// Appends `cp` in (surrogatepass) UTF-8.
pub(crate) fn push_code_point(out: &mut Vec<u8>, cp: u32) {
    if cp < 0x80 {
        out.push(cp as u8);
    } else if cp < 0x800 {
        out.extend_from_slice(&[0xC0 | (cp >> 6) as u8, 0x80 | (cp & 0x3F) as u8]);
    } else if cp < 0x10000 {
        out.extend_from_slice(&[0xE0 | (cp >> 12) as u8, 0x80 | ((cp >> 6) & 0x3F) as u8, 0x80 | (cp & 0x3F) as u8]);
    } else {
        out.extend_from_slice(&[
            0xF0 | (cp >> 18) as u8,
            0x80 | ((cp >> 12) & 0x3F) as u8,
            0x80 | ((cp >> 6) & 0x3F) as u8,
            0x80 | (cp & 0x3F) as u8,
        ]);
    }
}

/// Validates UTF-8 that may also encode surrogates (ED A0..BF xx), as Python's
/// `'surrogatepass'` error handler accepts.
fn surrogatepass_valid(b: &[u8]) -> bool {
    let mut i = 0;
    while i < b.len() {
        let rest = &b[i..];
        // Validate the longest valid prefix with the standard library, then one surrogate.
        match std::str::from_utf8(rest) {
            Ok(_) => return true,
            Err(e) => {
                i += e.valid_up_to();
                let r = &b[i..];
                if r.len() >= 3 && r[0] == 0xED && (0xA0..=0xBF).contains(&r[1]) && (0x80..=0xBF).contains(&r[2]) {
                    i += 3;
                } else {
                    return false;
                }
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ascii_check_sees_every_byte() {
        for n in 0..40 {
            let ascii = vec![b'a'; n];
            assert_eq!(is_short_ascii(&ascii), n <= 32, "length {n}");
            for i in 0..n {
                let mut b = ascii.clone();
                b[i] = 0xC3;
                assert!(!is_short_ascii(&b), "length {n}, high byte at {i}");
            }
        }
    }

    #[test]
    fn surrogates_round_trip() {
        let s = PyStr::from_code_points([0x61, 0xD800, 0x62, 0xD83D, 0xDE00]);
        assert!(s.has_surrogates());
        assert_eq!(s.code_points().collect::<Vec<_>>(), vec![0x61, 0xD800, 0x62, 0xD83D, 0xDE00]);
        let back = PyStr::from_surrogatepass(s.as_bytes().to_vec()).unwrap();
        assert_eq!(back, s);
        assert_eq!(s.len(), 5);
        assert!(PyStr::from_surrogatepass(&b"\xff"[..]).is_none());
        assert_eq!(PyStr::new("h\u{e9}\u{1F600}").len(), 3);
    }
}
