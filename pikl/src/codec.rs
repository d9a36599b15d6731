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
    /// `"cp1252"` (Windows Western).
    Cp1252,
    /// `"bytes"`: keep them as `bytes` objects.
    Bytes,
}

impl Encoding {
    /// Looks up a codec name as Python does (case, `-` and `_` insensitive aliases).
    pub fn from_name(name: &str) -> Option<Encoding> {
        let n = name.to_ascii_lowercase().replace('_', "-");
        Some(match n.as_str() {
            "ascii" | "us-ascii" | "646" => Encoding::Ascii,
            "latin1" | "latin-1" | "iso-8859-1" | "iso8859-1" | "8859" | "cp819" | "l1" | "latin" => Encoding::Latin1,
            "utf8" | "utf-8" | "u8" | "utf" => Encoding::Utf8,
            "cp1252" | "windows-1252" => Encoding::Cp1252,
            "bytes" => Encoding::Bytes,
            _ => return None,
        })
    }

    fn codec_name(self) -> &'static str {
        match self {
            Encoding::Ascii => "ascii",
            Encoding::Latin1 => "latin-1",
            Encoding::Utf8 => "utf-8",
            Encoding::Cp1252 => "charmap",
            Encoding::Bytes => "bytes",
        }
    }
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

/// CP1252's 0x80..0x9F; 0 marks the five undefined bytes.
const CP1252_HIGH: [u16; 32] = [
    0x20AC, 0, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0, 0x017D, 0, 0,
    0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0, 0x017E, 0x0178,
];

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
                    (_, 0..=0x7F) => Some(b as u32),
                    (Encoding::Latin1, _) => Some(b as u32),
                    (Encoding::Cp1252, 0x80..=0x9F) => {
                        Some(CP1252_HIGH[(b - 0x80) as usize] as u32).filter(|&c| c != 0)
                    }
                    (Encoding::Cp1252, _) => Some(b as u32),
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
