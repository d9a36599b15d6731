#!/usr/bin/env python3
"""Writes pikl/src/value/printable.rs: the code points Python's repr() treats as non-printable."""
import os

ranges, start = [], None
for cp in range(0x110000):
    np = not chr(cp).isprintable()
    if np and start is None:
        start = cp
    if not np and start is not None:
        ranges.append((start, cp - 1))
        start = None
if start is not None:
    ranges.append((start, 0x10FFFF))

out = os.path.join(os.path.dirname(__file__), "..", "pikl", "src", "value", "printable.rs")
with open(out, "w") as f:
    f.write("//! Generated from Python 3.11's `str.isprintable` by scripts/gen_printable.py: do not edit.\n\n")
    f.write("/// Inclusive ranges of code points Python's repr() escapes as non-printable.\n")
    f.write("pub(crate) static NON_PRINTABLE: &[(u32, u32)] = &[\n")
    for a, b in ranges:
        f.write(f"    (0x{a:X}, 0x{b:X}),\n")
    f.write(
        "];\n\n/// Python's `str.isprintable()` for one code point.\n"
        "pub(crate) fn is_printable(cp: u32) -> bool {\n    NON_PRINTABLE\n"
        "        .binary_search_by(|&(lo, hi)| {\n            if hi < cp {\n"
        "                std::cmp::Ordering::Less\n            } else if lo > cp {\n"
        "                std::cmp::Ordering::Greater\n            } else {\n"
        "                std::cmp::Ordering::Equal\n            }\n        })\n        .is_err()\n}\n"
    )
