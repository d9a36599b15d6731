//! Decoding Python 2 byte strings (`STRING`, `BINSTRING`, `SHORT_BINSTRING`) as
//! `pickle.load(encoding=..., errors=...)` does.

use std::fmt;

use crate::value::push_code_point;

/// The `encoding` option: how Python 2 `str` bytes become Python 3 values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Encoding {
    /// `"ASCII"`, the default.
    #[default]
    Ascii,
    /// `"latin1"`: every byte is a code point (the right choice for NumPy and datetime).
    Latin1,
    /// `"utf-8"`.
    Utf8,
    /// A single-byte codec such as `"cp1252"`, `"koi8-r"` or `"iso8859-15"`.
    Charmap(&'static Charmap),
    /// `"bytes"`: keep them as `bytes` objects.
    Bytes,
}

impl Encoding {
    /// Looks up a codec name as Python does (case, `-` and `_` insensitive aliases).
    pub fn from_name(name: &str) -> Option<Encoding> {
        // The names as pickles carry them (CPython writes every bytes object below protocol 3
        // as `_codecs.encode(s, 'latin1')`), without normalizing them into new strings first:
        // that was 470 instructions a call, 2% of loading bm_pickle's DICT at protocol 2.
        match name {
            "latin1" => return Some(Encoding::Latin1),
            "ascii" => return Some(Encoding::Ascii),
            "utf-8" | "utf8" => return Some(Encoding::Utf8),
            _ => {}
        }
        let n = name.to_ascii_lowercase().replace('_', "-");
        Some(match n.as_str() {
            "ascii" | "us-ascii" | "646" => Encoding::Ascii,
            "latin1" | "latin-1" | "iso-8859-1" | "iso8859-1" | "8859" | "cp819" | "l1" | "latin" => Encoding::Latin1,
            "utf8" | "utf-8" | "u8" | "utf" => Encoding::Utf8,
            "bytes" => Encoding::Bytes,
            "windows-1252" => Encoding::Charmap(charmap("cp1252")?),
            _ => Encoding::Charmap(charmap(&n)?),
        })
    }

    fn codec_name(self) -> &'static str {
        match self {
            Encoding::Ascii => "ascii",
            Encoding::Latin1 => "latin-1",
            Encoding::Utf8 => "utf-8",
            Encoding::Charmap(_) => "charmap",
            Encoding::Bytes => "bytes",
        }
    }
}

/// A single-byte codec's decoding table.
#[derive(Debug, PartialEq, Eq)]
pub struct Charmap {
    /// Python's canonical name.
    pub name: &'static str,
    /// Names Python accepts for it (normalized: lowercase).
    pub aliases: &'static [&'static str],
    /// Code point of each byte; `0xFFFF` for undefined bytes.
    pub table: [u16; 256],
}

fn charmap(name: &str) -> Option<&'static Charmap> {
    let norm = name.replace('-', "_");
    let compact = name.replace(['-', '_'], "");
    crate::codec_tables::CHARMAPS.iter().find(|c| {
        c.aliases.iter().any(|a| *a == name || *a == norm || *a == compact || a.replace(['-', '_'], "") == compact)
    })
}

/// The `errors` option: what to do with bytes the encoding cannot decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DecodeErrors {
    /// `"strict"`: fail (the default).
    #[default]
    Strict,
    /// `"replace"`: U+FFFD.
    Replace,
    /// `"ignore"`: drop the byte.
    Ignore,
    /// `"backslashreplace"`: `\xNN`.
    BackslashReplace,
    /// `"surrogateescape"`: U+DC80..U+DCFF.
    SurrogateEscape,
}

impl DecodeErrors {
    /// Looks up an error handler name.
    pub fn from_name(name: &str) -> Option<DecodeErrors> {
        Some(match name {
            "strict" => DecodeErrors::Strict,
            "replace" => DecodeErrors::Replace,
            "ignore" => DecodeErrors::Ignore,
            "backslashreplace" => DecodeErrors::BackslashReplace,
            "surrogateescape" => DecodeErrors::SurrogateEscape,
            _ => return None,
        })
    }
}

/// A decoding failure, worded as Python's `UnicodeDecodeError`.
#[derive(Debug)]
pub(crate) struct DecodeError {
    codec: &'static str,
    byte: u8,
    pos: usize,
    reason: &'static str,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "'{}' codec can't decode byte 0x{:02x} in position {}: {}",
            self.codec, self.byte, self.pos, self.reason
        )
    }
}

fn undecodable(out: &mut Vec<u8>, errors: DecodeErrors, err: DecodeError) -> Result<(), DecodeError> {
    match errors {
        DecodeErrors::Strict => return Err(err),
        DecodeErrors::Replace => push_code_point(out, 0xFFFD),
        DecodeErrors::Ignore => {}
        DecodeErrors::BackslashReplace => out.extend_from_slice(format!("\\x{:02x}", err.byte).as_bytes()),
        DecodeErrors::SurrogateEscape => push_code_point(out, 0xDC00 + err.byte as u32),
    }
    Ok(())
}

/// Decodes `bytes` to surrogatepass UTF-8 (for [`crate::value::PyStr`]); `Encoding::Bytes`
/// must be handled by the caller.
pub(crate) fn decode(bytes: &[u8], encoding: Encoding, errors: DecodeErrors) -> Result<Vec<u8>, DecodeError> {
    let codec = encoding.codec_name();
    let mut out = Vec::with_capacity(bytes.len());
    match encoding {
        Encoding::Utf8 => {
            for chunk in bytes.utf8_chunks() {
                out.extend_from_slice(chunk.valid().as_bytes());
                let invalid = chunk.invalid();
                if !invalid.is_empty() {
                    let pos = chunk.valid().as_ptr() as usize + chunk.valid().len() - bytes.as_ptr() as usize;
                    let reason = "invalid start byte";
                    if errors == DecodeErrors::Replace {
                        push_code_point(&mut out, 0xFFFD);
                        continue;
                    }
                    for (k, &b) in invalid.iter().enumerate() {
                        undecodable(&mut out, errors, DecodeError { codec, byte: b, pos: pos + k, reason })?;
                    }
                }
            }
        }
        _ => {
            for (pos, &b) in bytes.iter().enumerate() {
                let cp = match (encoding, b) {
                    (Encoding::Ascii | Encoding::Latin1, 0..=0x7F) => Some(b as u32),
                    (Encoding::Latin1, _) => Some(b as u32),
                    (Encoding::Charmap(c), _) => Some(c.table[b as usize] as u32).filter(|&c| c != 0xFFFF),
                    _ => None,
                };
                match cp {
                    Some(cp) => push_code_point(&mut out, cp),
                    None => {
                        let reason = if encoding == Encoding::Ascii {
                            "ordinal not in range(128)"
                        } else {
                            "character maps to <undefined>"
                        };
                        undecodable(&mut out, errors, DecodeError { codec, byte: b, pos, reason })?;
                    }
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names taken without normalizing mean what their other spellings mean.
    #[test]
    fn encoding_names_in_any_spelling() {
        for (names, want) in [
            (
                &["latin1", "latin-1", "LATIN_1", "Latin1", "iso-8859-1", "ISO8859_1", "l1", "cp819"][..],
                Encoding::Latin1,
            ),
            (&["ascii", "ASCII", "us-ascii", "US_ASCII", "646"][..], Encoding::Ascii),
            (&["utf-8", "utf8", "UTF-8", "utf_8", "U8"][..], Encoding::Utf8),
        ] {
            for name in names {
                assert_eq!(Encoding::from_name(name), Some(want), "{name}");
            }
        }
        assert!(matches!(Encoding::from_name("cp1252"), Some(Encoding::Charmap(c)) if c.name == "cp1252"));
        assert_eq!(Encoding::from_name("latin2x"), None);
        assert_eq!(Encoding::from_name(""), None);
    }
}
