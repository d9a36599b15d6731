//! Protocol 0's text arguments, parsed as CPython's C unpickler parses them.

use num_bigint::BigInt;
use num_traits::Num;

use crate::value::push_code_point;

/// An int parsed from text: small, or big.
pub(crate) enum ParsedInt {
    Small(i64),
    Big(BigInt),
}

/// Parses like C's `strtol(s, &end, 0)` and requires the whole text to be consumed.
fn strtol(s: &[u8]) -> Option<i64> {
    let mut i = 0;
    while i < s.len() && s[i].is_ascii_whitespace() {
        i += 1;
    }
    let neg = match s.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let (radix, start) = if s[i..].len() >= 2 && s[i] == b'0' && (s[i + 1] | 0x20) == b'x' {
        (16, i + 2)
    } else if s.get(i) == Some(&b'0') {
        (8, i)
    } else {
        (10, i)
    };
    let digits = &s[start..];
    if digits.is_empty() || !digits.iter().all(|&b| (b as char).is_digit(radix)) {
        return None;
    }
    let text = std::str::from_utf8(digits).ok()?;
    let mag = i128::from_str_radix(text, radix).ok()?;
    let v = if neg { -mag } else { mag };
    i64::try_from(v).ok()
}

/// Parses like Python's `int(s, 0)`: whitespace around, sign, `0x`/`0o`/`0b` prefixes,
/// underscores between digits, no leading zeros on a nonzero decimal.
pub(crate) fn python_int(s: &[u8]) -> Option<BigInt> {
    let s = std::str::from_utf8(s).ok()?.trim_matches(|c: char| c.is_ascii_whitespace());
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, mut digits) = if lower.starts_with("0x") {
        (16, &body[2..])
    } else if lower.starts_with("0o") {
        (8, &body[2..])
    } else if lower.starts_with("0b") {
        (2, &body[2..])
    } else {
        (10, body)
    };
    if radix != 10 {
        digits = digits.strip_prefix('_').unwrap_or(digits);
    }
    if digits.is_empty() || digits.starts_with('_') || digits.ends_with('_') || digits.contains("__") {
        return None;
    }
    let clean: String = digits.chars().filter(|&c| c != '_').collect();
    if !clean.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    if radix == 10 && clean.len() > 1 && clean.starts_with('0') && clean.bytes().any(|b| b != b'0') {
        return None;
    }
    let mag = BigInt::from_str_radix(&clean, radix).ok()?;
    Some(if neg { -mag } else { mag })
}

/// The `INT` opcode's argument (`I01`/`I00` are handled by the caller).
/// A run of 1 to 18 ASCII digits (no sign, no space) as a number: the common case of the
/// protocol 0 `INT`, `PUT` and `GET` lines, parsed without the general path.
#[inline]
pub(crate) fn plain_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 18 {
        return None;
    }
    let mut v = 0u64;
    for &b in s {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v * 10 + d as u64;
    }
    Some(v)
}

/// CPython's `INT` (`load_int`): a two-character argument that strtol reads whole as 0 or 1
/// is a bool (`00`, `01`, and also `-0`, `+1`, ` 1`).
pub(crate) fn int_bool(line: &[u8]) -> Option<bool> {
    // Only a two-character line ending in 0 or 1 can read as 0 or 1: no strtol for the rest.
    if line.len() != 2 || !matches!(line[1], b'0' | b'1') {
        return None;
    }
    match strtol(line) {
        Some(0) => Some(false),
        Some(1) => Some(true),
        _ => None,
    }
}

pub(crate) fn parse_int(line: &[u8]) -> Option<ParsedInt> {
    // strtol reads a leading 0 as octal: only "0" itself takes the shortcut.
    let (neg, digits) = match line.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, line),
    };
    if digits.len() == 1 || digits.first() != Some(&b'0') {
        if let Some(v) = plain_decimal(digits) {
            return Some(ParsedInt::Small(if neg { -(v as i64) } else { v as i64 }));
        }
    }
    if let Some(v) = strtol(line) {
        return Some(ParsedInt::Small(v));
    }
    python_int(line).map(small_or_big)
}

/// The `LONG` opcode's argument: Python's `int(s, 0)` after dropping a trailing `L`.
pub(crate) fn parse_long(line: &[u8]) -> Option<ParsedInt> {
    let line = match line.split_last() {
        Some((b'L', rest)) if !line.is_empty() => rest,
        _ => line,
    };
    python_int(line).map(small_or_big)
}

pub(crate) fn small_or_big(b: BigInt) -> ParsedInt {
    match i64::try_from(&b) {
        Ok(v) => ParsedInt::Small(v),
        Err(_) => ParsedInt::Big(b),
    }
}

/// Why a `FLOAT` argument was refused.
pub(crate) enum FloatError {
    Invalid,
    Overflow,
}

/// The `FLOAT` opcode's argument, as `PyOS_string_to_double`.
pub(crate) fn parse_float(line: &[u8]) -> Result<f64, FloatError> {
    let s = std::str::from_utf8(line).map_err(|_| FloatError::Invalid)?;
    let ok_chars = s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'+' | b'-'));
    if s.is_empty() || !ok_chars {
        return Err(FloatError::Invalid);
    }
    let f: f64 = s.parse().map_err(|_| FloatError::Invalid)?;
    if f.is_infinite() && !s.to_ascii_lowercase().contains("inf") {
        return Err(FloatError::Overflow);
    }
    Ok(f)
}

/// Python's `codecs.escape_decode` (bytes literal escapes), used by the `STRING` opcode.
pub(crate) fn escape_decode(s: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        i += 1;
        if c != b'\\' {
            out.push(c);
            continue;
        }
        let Some(&e) = s.get(i) else {
            return Err("Trailing \\ in string".into());
        };
        i += 1;
        match e {
            b'\n' => {}
            b'\\' | b'\'' | b'"' => out.push(e),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b't' => out.push(9),
            b'n' => out.push(10),
            b'r' => out.push(13),
            b'v' => out.push(11),
            b'a' => out.push(7),
            b'0'..=b'7' => {
                let mut v = (e - b'0') as u32;
                for _ in 0..2 {
                    match s.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = (v << 3) + (d - b'0') as u32;
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(v as u8);
            }
            b'x' => {
                let hex = s.get(i..i + 2).filter(|h| h.iter().all(u8::is_ascii_hexdigit));
                let Some(h) = hex else {
                    return Err(format!("invalid \\x escape at position {}", i - 2));
                };
                let v = u8::from_str_radix(std::str::from_utf8(h).expect("hex digits"), 16).expect("hex digits");
                out.push(v);
                i += 2;
            }
            _ => {
                out.push(b'\\');
                out.push(e);
            }
        }
    }
    Ok(out)
}

/// True for a `UNICODE` line `raw-unicode-escape` leaves as it is: ASCII without a backslash
/// (most protocol 0 strs), which can be used (and borrowed) without decoding.
#[inline]
pub(crate) fn is_plain_ascii(s: &[u8]) -> bool {
    // One pass the compiler vectorizes: two library scans cost about 100 instructions on a
    // short line.
    !s.iter().fold(false, |odd, &c| odd | (c >= 0x80) | (c == b'\\'))
}

/// Appends the UTF-8 of Latin-1 bytes.
#[inline]
fn push_latin1(out: &mut Vec<u8>, run: &[u8]) {
    if run.is_ascii() {
        out.extend_from_slice(run);
    } else {
        for &c in run {
            push_code_point(out, c as u32);
        }
    }
}

/// Python's `raw-unicode-escape` decoding, used by the `UNICODE` opcode: bytes are Latin-1
/// except `\uXXXX` and `\UXXXXXXXX` escapes. Returns surrogatepass UTF-8.
pub(crate) fn raw_unicode_escape_decode(s: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        // The run up to the next backslash: Latin-1, ASCII copied as it is.
        let run = memchr::memchr(b'\\', &s[i..]).map_or(s.len(), |at| i + at);
        push_latin1(&mut out, &s[i..run]);
        i = run;
        if i >= s.len() {
            break;
        }
        i += 1;
        if i >= s.len() {
            out.push(b'\\');
            break;
        }
        let e = s[i];
        i += 1;
        let count = match e {
            b'u' => 4,
            b'U' => 8,
            _ => {
                out.push(b'\\');
                push_code_point(&mut out, e as u32);
                continue;
            }
        };
        let hex = s.get(i..i + count).filter(|h| h.iter().all(u8::is_ascii_hexdigit));
        let Some(h) = hex else {
            let what = if count == 4 { "\\uXXXX" } else { "\\UXXXXXXXX" };
            return Err(format!(
                "'rawunicodeescape' codec can't decode bytes in position {}-{}: truncated {what} escape",
                i - 2,
                s[i..].iter().take(count).take_while(|b| b.is_ascii_hexdigit()).count() + i - 1
            ));
        };
        let cp = u32::from_str_radix(std::str::from_utf8(h).expect("hex digits"), 16).expect("hex digits");
        if cp > 0x10FFFF {
            return Err(format!(
                "'rawunicodeescape' codec can't decode bytes in position {}-{}: \\Uxxxxxxxx out of range",
                i - 2,
                i + count - 1
            ));
        }
        push_code_point(&mut out, cp);
        i += count;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(p: Option<ParsedInt>) -> Option<i64> {
        match p {
            Some(ParsedInt::Small(v)) => Some(v),
            _ => None,
        }
    }

    #[test]
    fn ints_parse_as_cpython() {
        assert_eq!(small(parse_int(b"42")), Some(42));
        assert_eq!(small(parse_int(b"-7")), Some(-7));
        assert_eq!(small(parse_int(b"0x10")), Some(16));
        assert_eq!(small(parse_int(b"010")), Some(8));
        assert_eq!(small(parse_int(b"-010")), Some(-8));
        assert_eq!(small(parse_int(b"0")), Some(0));
        assert_eq!(small(parse_int(b"-0")), Some(0));
        assert_eq!(small(parse_int(b" 12")), Some(12));
        assert_eq!(small(parse_int(b"999999999999999999")), Some(999_999_999_999_999_999));
        assert_eq!(small(parse_int(b"-9223372036854775808")), Some(i64::MIN));
        assert!(parse_int(b"-").is_none());
        assert_eq!(small(parse_int(b"1_000")), Some(1000));
        assert!(parse_int(b"abc").is_none());
        assert!(matches!(parse_int(b"99999999999999999999"), Some(ParsedInt::Big(_))));
        assert_eq!(small(parse_long(b"123L")), Some(123));
        assert!(parse_long(b"12 3").is_none());
    }

    #[test]
    fn escapes_decode_as_python() {
        assert_eq!(escape_decode(br"a\nb\x41\101\q").unwrap(), b"a\nbAA\\q");
        assert!(escape_decode(br"\x4").is_err());
        assert!(escape_decode(b"abc\\").is_err());
        assert_eq!(raw_unicode_escape_decode(br"\u20ac\x").unwrap(), "\u{20ac}\\x".as_bytes());
        // Against `codecs.raw_unicode_escape_decode` (CPython 3.11), as surrogatepass UTF-8.
        let cases: &[(&[u8], &[u8])] = &[
            (b"", b""),
            (b"abc", b"abc"),
            (b"caf\xe9", b"caf\xc3\xa9"),
            (b"\xff\x80 x", b"\xc3\xbf\xc2\x80 x"),
            (b"a\\u20acb", b"a\xe2\x82\xacb"),
            (b"\\U0001f600!", b"\xf0\x9f\x98\x80!"),
            (b"x\\\\u0041", b"x\\\\u0041"),
            (b"x\\\\\\u0041", b"x\\\\A"),
            (b"end\\", b"end\\"),
            (b"\\", b"\\"),
            (b"\\x\xe9\\n", b"\\x\xc3\xa9\\n"),
            (b"mid\\u00e9\xe9\\u20ac", b"mid\xc3\xa9\xc3\xa9\xe2\x82\xac"),
            (b"\\\\", b"\\\\"),
        ];
        for &(raw, want) in cases {
            assert_eq!(raw_unicode_escape_decode(raw).unwrap(), want, "{raw:?}");
            assert_eq!(is_plain_ascii(raw), raw.is_ascii() && !raw.contains(&b'\\'), "{raw:?}");
        }
        assert!(raw_unicode_escape_decode(br"\u20").is_err());
    }
}
