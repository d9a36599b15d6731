#!/usr/bin/env python3
"""Generate pikl/src/opcodes.rs from CPython's `pickletools.opcodes`.

Usage (from the repository root):

    python3 scripts/gen_opcodes.py            # writes pikl/src/opcodes.rs
    python3 scripts/gen_opcodes.py --check    # exit 1 if the file is stale

The output is passed through `rustfmt` when it is available so that the
checked-in file is stable under `cargo fmt`.

Everything in the output comes from pickletools; the only hand-written data
here is the Rust spelling of the names (CamelCase variants), and the script
refuses to run if pickletools has an opcode, argument descriptor or stack
object that this table does not know about (or vice versa).
"""

import os
import pickletools
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "pikl", "src", "opcodes.rs")

# pickletools opcode name -> Rust variant name.
OPCODE_VARIANTS = {
    "INT": "Int",
    "BININT": "BinInt",
    "BININT1": "BinInt1",
    "BININT2": "BinInt2",
    "LONG": "Long",
    "LONG1": "Long1",
    "LONG4": "Long4",
    "STRING": "String",
    "BINSTRING": "BinString",
    "SHORT_BINSTRING": "ShortBinString",
    "BINBYTES": "BinBytes",
    "SHORT_BINBYTES": "ShortBinBytes",
    "BINBYTES8": "BinBytes8",
    "BYTEARRAY8": "ByteArray8",
    "NEXT_BUFFER": "NextBuffer",
    "READONLY_BUFFER": "ReadonlyBuffer",
    "NONE": "None",
    "NEWTRUE": "NewTrue",
    "NEWFALSE": "NewFalse",
    "UNICODE": "Unicode",
    "SHORT_BINUNICODE": "ShortBinUnicode",
    "BINUNICODE": "BinUnicode",
    "BINUNICODE8": "BinUnicode8",
    "FLOAT": "Float",
    "BINFLOAT": "BinFloat",
    "EMPTY_LIST": "EmptyList",
    "APPEND": "Append",
    "APPENDS": "Appends",
    "LIST": "List",
    "EMPTY_TUPLE": "EmptyTuple",
    "TUPLE": "Tuple",
    "TUPLE1": "Tuple1",
    "TUPLE2": "Tuple2",
    "TUPLE3": "Tuple3",
    "EMPTY_DICT": "EmptyDict",
    "DICT": "Dict",
    "SETITEM": "SetItem",
    "SETITEMS": "SetItems",
    "EMPTY_SET": "EmptySet",
    "ADDITEMS": "AddItems",
    "FROZENSET": "FrozenSet",
    "POP": "Pop",
    "DUP": "Dup",
    "MARK": "Mark",
    "POP_MARK": "PopMark",
    "GET": "Get",
    "BINGET": "BinGet",
    "LONG_BINGET": "LongBinGet",
    "PUT": "Put",
    "BINPUT": "BinPut",
    "LONG_BINPUT": "LongBinPut",
    "MEMOIZE": "Memoize",
    "EXT1": "Ext1",
    "EXT2": "Ext2",
    "EXT4": "Ext4",
    "GLOBAL": "Global",
    "STACK_GLOBAL": "StackGlobal",
    "REDUCE": "Reduce",
    "BUILD": "Build",
    "INST": "Inst",
    "OBJ": "Obj",
    "NEWOBJ": "NewObj",
    "NEWOBJ_EX": "NewObjEx",
    "PROTO": "Proto",
    "STOP": "Stop",
    "FRAME": "Frame",
    "PERSID": "PersId",
    "BINPERSID": "BinPersId",
}

# pickletools ArgumentDescriptor name -> ArgKind variant.  `None` (no
# argument) is added separately.
ARG_VARIANTS = {
    "uint1": "UInt1",
    "uint2": "UInt2",
    "uint4": "UInt4",
    "uint8": "UInt8",
    "int4": "Int4",
    "long1": "Long1",
    "long4": "Long4",
    "string1": "String1",
    "string4": "String4",
    "bytes1": "Bytes1",
    "bytes4": "Bytes4",
    "bytes8": "Bytes8",
    "bytearray8": "ByteArray8",
    "unicodestring1": "Unicode1",
    "unicodestring4": "Unicode4",
    "unicodestring8": "Unicode8",
    "stringnl": "StringNl",
    "stringnl_noescape": "StringNlNoescape",
    "stringnl_noescape_pair": "StringNlNoescapePair",
    "decimalnl_short": "DecimalNlShort",
    "decimalnl_long": "DecimalNlLong",
    "floatnl": "FloatNl",
    "float8": "Float8",
    "unicodestringnl": "UnicodeStringNl",
}

# pickletools StackObject name -> StackKind variant.
STACK_VARIANTS = {
    "int": "Int",
    "int_or_bool": "IntOrBool",
    "bool": "Bool",
    "float": "Float",
    "bytes_or_str": "BytesOrStr",
    "bytes": "Bytes",
    "bytearray": "ByteArray",
    "str": "Str",
    "None": "NoneType",
    "tuple": "Tuple",
    "list": "List",
    "dict": "Dict",
    "set": "Set",
    "frozenset": "FrozenSet",
    "buffer": "Buffer",
    "any": "Any",
    "mark": "Mark",
    "stackslice": "StackSlice",
}


def die(msg):
    sys.exit("gen_opcodes.py: " + msg)


def rust_str(s):
    """A Rust string literal for `s` (newlines kept literal for readability)."""
    out = ['"']
    for ch in s:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append("\\u{%x}" % ord(ch))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def byte_lit(code):
    """`b'x'` for printable ASCII codes, else a hex literal."""
    c = chr(code)
    if 0x20 <= code < 0x7F and c not in "'\\":
        return "b'%s'" % c
    return "0x%02x" % code


def collect():
    ops = list(pickletools.opcodes)
    names = [op.name for op in ops]
    if len(set(names)) != len(names):
        die("duplicate opcode names in pickletools")
    if set(names) != set(OPCODE_VARIANTS):
        die(
            "opcode name table out of date: missing %s, extra %s"
            % (
                sorted(set(names) - set(OPCODE_VARIANTS)),
                sorted(set(OPCODE_VARIANTS) - set(names)),
            )
        )
    codes = [op.code for op in ops]
    if len(set(codes)) != len(codes) or any(len(c) != 1 or ord(c) > 0xFF for c in codes):
        die("opcode codes are not distinct single bytes")

    # Distinct argument descriptors and stack objects, in first-use order.
    args, stacks = [], []
    for op in ops:
        if op.arg is not None and all(a is not op.arg for a in args):
            args.append(op.arg)
        for so in op.stack_before + op.stack_after:
            if all(s is not so for s in stacks):
                stacks.append(so)
    # Also pick up descriptors/objects defined in the module but unused.
    for v in vars(pickletools).values():
        if isinstance(v, pickletools.ArgumentDescriptor) and all(a is not v for a in args):
            args.append(v)
        if isinstance(v, pickletools.StackObject) and all(s is not v for s in stacks):
            stacks.append(v)
    arg_names = [a.name for a in args]
    stack_names = [s.name for s in stacks]
    if len(set(arg_names)) != len(arg_names) or set(arg_names) != set(ARG_VARIANTS):
        die("argument descriptor table out of date: %s" % arg_names)
    if len(set(stack_names)) != len(stack_names) or set(stack_names) != set(STACK_VARIANTS):
        die("stack object table out of date: %s" % stack_names)
    return ops, args, stacks


def generate():
    ops, args, stacks = collect()
    # Keep a stable, readable order: the order of the hand-written tables.
    args = sorted(args, key=lambda a: list(ARG_VARIANTS).index(a.name))
    stacks = sorted(stacks, key=lambda s: list(STACK_VARIANTS).index(s.name))

    w = []
    p = w.append
    p("// @generated by scripts/gen_opcodes.py from Python %s's `pickletools.opcodes`." % sys.version.split()[0])
    p("// Do not edit by hand: change the generator and re-run it.")
    p("")
    p("//! The pickle machine's opcodes, as data.")
    p("//!")
    p("//! Every table here is generated from the standard library's `pickletools`")
    p("//! module, so the names, argument encodings, stack effects, protocol numbers and")
    p("//! documentation match what `pickletools.dis` knows about each opcode.")
    p("")

    # ---- ArgKind --------------------------------------------------------
    p("/// How an opcode's argument is encoded in the stream (pickletools' `ArgumentDescriptor`).")
    p("#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]")
    p("pub enum ArgKind {")
    p("    /// The opcode takes no argument (pickletools' `arg is None`).")
    p("    None,")
    for a in args:
        p("    /// pickletools' `%s`." % a.name)
        p("    %s," % ARG_VARIANTS[a.name])
    p("}")
    p("")
    p("impl ArgKind {")
    p("    /// Every argument kind, `None` first, then pickletools' descriptors.")
    p("    pub const ALL: [ArgKind; %d] = [" % (len(args) + 1))
    p("        ArgKind::None,")
    for a in args:
        p("        ArgKind::%s," % ARG_VARIANTS[a.name])
    p("    ];")
    p("")
    p("    /// The pickletools name of this descriptor, e.g. `\"uint1\"` or")
    p("    /// `\"stringnl_noescape_pair\"`; `\"None\"` for [`ArgKind::None`].")
    p("    #[must_use]")
    p("    pub const fn name(self) -> &'static str {")
    p("        match self {")
    p('            ArgKind::None => "None",')
    for a in args:
        p("            ArgKind::%s => %s," % (ARG_VARIANTS[a.name], rust_str(a.name)))
    p("        }")
    p("    }")
    p("")
    p("    /// The argument's size in bytes if it is fixed (0 for [`ArgKind::None`]),")
    p("    /// or `None` for variable-length arguments.")
    p("    #[must_use]")
    p("    pub const fn fixed_len(self) -> Option<usize> {")
    p("        match self {")
    groups = {0: ["None"]}
    for a in args:
        groups.setdefault(a.n if a.n >= 0 else None, []).append(ARG_VARIANTS[a.name])
    for n in sorted(k for k in groups if k is not None) + [None]:
        v = "None" if n is None else "Some(%d)" % n
        p("            %s => %s," % (" | ".join("ArgKind::" + x for x in groups[n]), v))
    p("        }")
    p("    }")
    p("}")
    p("")

    # ---- StackKind ------------------------------------------------------
    p("/// Kinds of objects on the pickle machine's stack (pickletools' `StackObject`).")
    p("#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]")
    p("pub enum StackKind {")
    for s in stacks:
        p("    /// pickletools' `%s` stack object." % s.name)
        p("    %s," % STACK_VARIANTS[s.name])
    p("}")
    p("")
    p("impl StackKind {")
    p("    /// Every stack kind, each of pickletools' distinct `StackObject`s once.")
    p("    pub const ALL: [StackKind; %d] = [" % len(stacks))
    for s in stacks:
        p("        StackKind::%s," % STACK_VARIANTS[s.name])
    p("    ];")
    p("")
    p("    /// pickletools' `StackObject.name`, e.g. `\"int_or_bool\"`, `\"any\"`, `\"mark\"`.")
    p("    #[must_use]")
    p("    pub const fn name(self) -> &'static str {")
    p("        match self {")
    for s in stacks:
        p("            StackKind::%s => %s," % (STACK_VARIANTS[s.name], rust_str(s.name)))
    p("        }")
    p("    }")
    p("}")
    p("")

    # ---- OpcodeInfo -----------------------------------------------------
    p("/// Everything pickletools knows about one opcode.")
    p("#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]")
    p("pub struct OpcodeInfo {")
    p("    /// The opcode byte.")
    p("    pub code: u8,")
    p("    /// The opcode as an enum value.")
    p("    pub opcode: Opcode,")
    p("    /// The pickletools name, e.g. `\"BININT1\"`.")
    p("    pub name: &'static str,")
    p("    /// How the argument that follows the opcode byte is encoded.")
    p("    pub arg: ArgKind,")
    p("    /// What the opcode expects on top of the stack (topmost last).")
    p("    pub stack_before: &'static [StackKind],")
    p("    /// What the opcode leaves on top of the stack (topmost last).")
    p("    pub stack_after: &'static [StackKind],")
    p("    /// The first protocol that has this opcode.")
    p("    pub proto: u8,")
    p("    /// The first line of pickletools' doc, exactly `opcode.doc.split('\\n', 1)[0]`,")
    p("    /// which is what `pickletools.dis(annotate=...)` prints.")
    p("    pub doc: &'static str,")
    p("    /// pickletools' full `opcode.doc`.")
    p("    pub doc_full: &'static str,")
    p("}")
    p("")

    # ---- Opcode ---------------------------------------------------------
    p("/// A pickle opcode; the discriminant is the opcode byte.")
    p("#[repr(u8)]")
    p("#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]")
    p("pub enum Opcode {")
    for op in ops:
        first = op.doc.split("\n", 1)[0].strip()
        p("    /// `%s` (protocol %d): %s" % (op.name, op.proto, first))
        p("    %s = %s," % (OPCODE_VARIANTS[op.name], byte_lit(ord(op.code))))
    p("}")
    p("")

    # ---- OPCODES --------------------------------------------------------
    def kinds(lst):
        return "&[%s]" % ", ".join("StackKind::" + STACK_VARIANTS[s.name] for s in lst)

    p("/// All opcodes in pickletools' order.")
    p("pub static OPCODES: [OpcodeInfo; %d] = [" % len(ops))
    for op in ops:
        arg = "ArgKind::None" if op.arg is None else "ArgKind::" + ARG_VARIANTS[op.arg.name]
        p("    OpcodeInfo {")
        p("        code: %s," % byte_lit(ord(op.code)))
        p("        opcode: Opcode::%s," % OPCODE_VARIANTS[op.name])
        p("        name: %s," % rust_str(op.name))
        p("        arg: %s," % arg)
        p("        stack_before: %s," % kinds(op.stack_before))
        p("        stack_after: %s," % kinds(op.stack_after))
        p("        proto: %d," % op.proto)
        p("        doc: %s," % rust_str(op.doc.split("\n", 1)[0]))
        p("        doc_full: %s," % rust_str(op.doc))
        p("    },")
    p("];")
    p("")

    # ---- index table ----------------------------------------------------
    index = [0xFF] * 256
    for i, op in enumerate(ops):
        index[ord(op.code)] = i
    if len(ops) >= 0xFF:
        die("too many opcodes for a u8 index")
    p("/// Opcode byte -> index into [`OPCODES`]; `0xff` for bytes that are not opcodes.")
    p("#[rustfmt::skip]")
    p("static INDEX: [u8; 256] = [")
    for row in range(0, 256, 16):
        p("    /* 0x%02x */ " % row + " ".join("%3d," % v for v in index[row : row + 16]))
    p("];")
    p("")

    # ---- impl Opcode ----------------------------------------------------
    by_code = sorted(ops, key=lambda op: ord(op.code))
    p("impl Opcode {")
    p("    /// The opcode with byte `byte`, or `None` if `byte` is not an opcode.")
    p("    #[must_use]")
    p("    pub const fn from_u8(byte: u8) -> Option<Opcode> {")
    p("        match byte {")
    for op in by_code:
        p("            %s => Some(Opcode::%s)," % (byte_lit(ord(op.code)), OPCODE_VARIANTS[op.name]))
    p("            _ => None,")
    p("        }")
    p("    }")
    p("")
    p("    /// The opcode byte.")
    p("    #[must_use]")
    p("    pub const fn code(self) -> u8 {")
    p("        self as u8")
    p("    }")
    p("")
    p("    /// This opcode's entry in [`OPCODES`].")
    p("    #[must_use]")
    p("    pub fn info(self) -> &'static OpcodeInfo {")
    p("        &OPCODES[INDEX[self as usize] as usize]")
    p("    }")
    p("")
    p("    /// The pickletools name, e.g. `\"SHORT_BINUNICODE\"`.")
    p("    #[must_use]")
    p("    pub fn name(self) -> &'static str {")
    p("        self.info().name")
    p("    }")
    p("")
    p("    /// How this opcode's argument is encoded.")
    p("    #[must_use]")
    p("    pub fn arg(self) -> ArgKind {")
    p("        self.info().arg")
    p("    }")
    p("")
    p("    /// The first protocol that has this opcode.")
    p("    #[must_use]")
    p("    pub fn proto(self) -> u8 {")
    p("        self.info().proto")
    p("    }")
    p("")
    p("    /// The opcode with pickletools name `name` (case-sensitive, e.g. `\"BININT1\"`).")
    p("    #[must_use]")
    p("    pub fn from_name(name: &str) -> Option<Opcode> {")
    p("        match name {")
    for op in ops:
        p("            %s => Some(Opcode::%s)," % (rust_str(op.name), OPCODE_VARIANTS[op.name]))
    p("            _ => None,")
    p("        }")
    p("    }")
    p("}")
    return "\n".join(w) + "\n"


def rustfmt(src):
    exe = shutil.which("rustfmt")
    if exe is None:
        print("gen_opcodes.py: rustfmt not found, writing unformatted output", file=sys.stderr)
        return src
    res = subprocess.run(
        [exe, "--edition", "2021", "--emit", "stdout"],
        input=src.encode(),
        capture_output=True,
        check=True,
    )
    return res.stdout.decode()


def main():
    src = rustfmt(generate())
    if "--check" in sys.argv[1:]:
        with open(OUT, encoding="utf-8") as f:
            if f.read() != src:
                sys.exit("gen_opcodes.py: %s is out of date" % OUT)
        return
    with open(OUT, "w", encoding="utf-8") as f:
        f.write(src)


if __name__ == "__main__":
    main()
