//! Python `str` values: Unicode code points, including lone surrogates UTF-8 cannot hold.

use std::borrow::Cow;
use std::fmt;

/// True for a short ASCII text: the usual dict key or short value, checked without calling the
/// general validator.
#[inline(always)]
pub(crate) fn is_short_ascii(b: &[u8]) -> bool {
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
/// pickles. Either way the bytes round-trip losslessly. Short owned strs (up to
/// 22 bytes: most dict keys and short values) are held inline, without an
/// allocation of their own.
#[derive(Clone)]
pub struct PyStr<'a> {
    repr: Repr<'a>,
}

/// Longest str held inline.
const INLINE_MAX: usize = 22;

#[derive(Clone)]
enum Repr<'a> {
    Borrowed(&'a [u8]),
    Inline { len: u8, buf: [u8; INLINE_MAX] },
    Owned(Box<[u8]>),
}

impl<'a> Repr<'a> {
    #[inline]
    fn owned(bytes: &[u8]) -> Repr<'static> {
        if bytes.len() <= INLINE_MAX {
            let mut buf = [0; INLINE_MAX];
            buf[..bytes.len()].copy_from_slice(bytes);
            Repr::Inline { len: bytes.len() as u8, buf }
        } else {
            Repr::Owned(crate::mem_advice::copy_populated(bytes).into_boxed_slice())
        }
    }

    #[inline]
    fn from_cow(bytes: Cow<'a, [u8]>) -> Self {
        match bytes {
            Cow::Borrowed(b) => Repr::Borrowed(b),
            Cow::Owned(v) if v.len() <= INLINE_MAX => Repr::owned(&v),
            Cow::Owned(v) => Repr::Owned(v.into_boxed_slice()),
        }
    }

    #[inline]
    fn bytes(&self) -> &[u8] {
        match self {
            Repr::Borrowed(b) => b,
            Repr::Inline { len, buf } => &buf[..*len as usize],
            Repr::Owned(b) => b,
        }
    }
}

impl PartialEq for PyStr<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for PyStr<'_> {}

impl std::hash::Hash for PyStr<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

/// True when `bytes` is valid surrogatepass UTF-8.
#[inline]
pub(crate) fn surrogatepass_ok(bytes: &[u8]) -> bool {
    is_valid_utf8(bytes) || surrogatepass_valid(bytes)
}

impl<'a> PyStr<'a> {
    /// A str from Rust text.
    pub fn new(s: impl Into<Cow<'a, str>>) -> Self {
        let bytes = match s.into() {
            Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
            Cow::Owned(s) => Cow::Owned(s.into_bytes()),
        };
        PyStr { repr: Repr::from_cow(bytes) }
    }

    /// A str from surrogatepass UTF-8, or `None` if `bytes` is not valid even allowing
    /// surrogates.
    #[inline]
    pub fn from_surrogatepass(bytes: impl Into<Cow<'a, [u8]>>) -> Option<Self> {
        let bytes = bytes.into();
        surrogatepass_ok(&bytes).then(|| PyStr { repr: Repr::from_cow(bytes) })
    }

    /// A str borrowing `bytes`, which the caller checked with [`surrogatepass_ok`].
    #[inline(always)]
    pub(crate) fn borrowed_checked(bytes: &'a [u8]) -> Self {
        debug_assert!(surrogatepass_ok(bytes));
        PyStr { repr: Repr::Borrowed(bytes) }
    }

    /// A str copied from `bytes` (inline when short), which the caller checked with
    /// [`surrogatepass_ok`].
    #[inline(always)]
    pub(crate) fn copied_checked(bytes: &[u8]) -> PyStr<'static> {
        debug_assert!(surrogatepass_ok(bytes));
        PyStr { repr: Repr::owned(bytes) }
    }

    /// A str copied from surrogatepass UTF-8 bytes (inline when short), or `None` if they are
    /// not valid even allowing surrogates.
    #[inline]
    pub fn copied_from_surrogatepass(bytes: &[u8]) -> Option<PyStr<'static>> {
        surrogatepass_ok(bytes).then(|| PyStr { repr: Repr::owned(bytes) })
    }

    /// A str from code points (any value up to 0x10FFFF, surrogates included).
    pub fn from_code_points(cps: impl IntoIterator<Item = u32>) -> Self {
        let mut out = Vec::new();
        for cp in cps {
            push_code_point(&mut out, cp);
        }
        PyStr { repr: Repr::from_cow(Cow::Owned(out)) }
    }

    /// The text, when it holds no lone surrogate.
    #[inline]
    pub fn as_str(&self) -> Option<&str> {
        let bytes = self.as_bytes();
        if is_short_ascii(bytes) {
            // SAFETY: ASCII is valid UTF-8.
            return Some(unsafe { std::str::from_utf8_unchecked(bytes) });
        }
        simdutf8::basic::from_utf8(bytes).ok()
    }

    /// The text with any surrogate replaced by U+FFFD.
    pub fn to_string_lossy(&self) -> Cow<'_, str> {
        match self.as_str() {
            Some(s) => Cow::Borrowed(s),
            None => Cow::Owned(self.code_points().map(|c| char::from_u32(c).unwrap_or('\u{FFFD}')).collect()),
        }
    }

    /// The surrogatepass UTF-8 bytes, exactly as a pickle carries them.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        self.repr.bytes()
    }

    /// True when the str contains lone surrogates (is not valid UTF-8).
    pub fn has_surrogates(&self) -> bool {
        self.as_str().is_none()
    }

    /// Number of code points (Python's `len()`).
    pub fn len(&self) -> usize {
        // Surrogatepass UTF-8 has UTF-8's layout: one leading byte per code point.
        self.as_bytes().iter().filter(|&&b| (b as i8) >= -0x40).count()
    }

    /// True for the empty str.
    pub fn is_empty(&self) -> bool {
        self.as_bytes().is_empty()
    }

    /// True when dropping this frees a buffer.
    #[inline(always)]
    pub(crate) fn holds_memory(&self) -> bool {
        matches!(self.repr, Repr::Owned(_))
    }

    /// The code points, in order.
    pub fn code_points(&self) -> CodePoints<'_> {
        CodePoints { bytes: self.as_bytes(), pos: 0 }
    }

    /// A copy that owns its bytes.
    pub fn into_owned(self) -> PyStr<'static> {
        let repr = match self.repr {
            Repr::Borrowed(b) => Repr::owned(b),
            Repr::Inline { len, buf } => Repr::Inline { len, buf },
            Repr::Owned(b) => Repr::Owned(b),
        };
        PyStr { repr }
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
    fn borrowed_inline_and_boxed_strs_agree() {
        use std::hash::{BuildHasher, RandomState};
        let hasher = RandomState::new();
        for text in [
            "",
            "k",
            "name",
            "exactly twenty-two b!",
            "twenty-three bytes long",
            "caf\u{e9} \u{20ac} longer than the inline size",
        ] {
            let borrowed = PyStr::from_surrogatepass(text.as_bytes()).unwrap();
            let copied = PyStr::copied_from_surrogatepass(text.as_bytes()).unwrap();
            let owned = borrowed.clone().into_owned();
            for s in [&copied, &owned] {
                assert_eq!(s, &borrowed);
                assert_eq!(s.as_str(), Some(text));
                assert_eq!(s.len(), text.chars().count());
                assert_eq!(hasher.hash_one(s), hasher.hash_one(&borrowed));
            }
        }
        // A lone surrogate (ED A0 80 is U+D800) survives every form.
        let sur = b"a\xed\xa0\x80b";
        let copied = PyStr::copied_from_surrogatepass(sur).unwrap();
        assert!(copied.has_surrogates());
        assert_eq!(copied.as_bytes(), sur);
        assert_eq!(copied.code_points().collect::<Vec<_>>(), [0x61, 0xD800, 0x62]);
        assert!(PyStr::copied_from_surrogatepass(b"\xff").is_none());
    }

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
