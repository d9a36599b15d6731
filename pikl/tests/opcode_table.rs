//! Checks the generated opcode table in `pikl::opcodes` against the live
//! `pickletools.opcodes` of the `python3` on PATH.  The test fails (it does
//! not skip) when python3 is unavailable.

use std::collections::HashSet;
use std::process::Command;

use pikl::opcodes::{ArgKind, Opcode, StackKind, OPCODES};

const DUMP: &str = r#"
import pickletools as p
def hx(s):
    return s.encode("utf-8").hex()
args, stacks = [], []
for op in p.opcodes:
    if op.arg is not None and all(a is not op.arg for a in args):
        args.append(op.arg)
    for so in op.stack_before + op.stack_after:
        if all(s is not so for s in stacks):
            stacks.append(so)
for v in vars(p).values():
    if isinstance(v, p.ArgumentDescriptor) and all(a is not v for a in args):
        args.append(v)
    if isinstance(v, p.StackObject) and all(s is not v for s in stacks):
        stacks.append(v)
for a in args:
    print("ARG", a.name, a.n, sep="\t")
for s in stacks:
    print("STACK", s.name, sep="\t")
for op in p.opcodes:
    print(
        "OP",
        ord(op.code),
        op.name,
        op.arg.name if op.arg is not None else None,
        ",".join(s.name for s in op.stack_before),
        ",".join(s.name for s in op.stack_after),
        op.proto,
        hx(op.doc.split("\n", 1)[0]),
        hx(op.doc),
        sep="\t",
    )
"#;

fn python_dump() -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(DUMP)
        .output()
        .expect("python3 is required for this test (could not run `python3`)");
    assert!(out.status.success(), "python3 failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("python3 output is UTF-8")
}

fn unhex(s: &str) -> String {
    assert!(s.len() % 2 == 0, "odd hex length");
    let bytes: Vec<u8> =
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit")).collect();
    String::from_utf8(bytes).expect("UTF-8 doc")
}

fn split_names(s: &str) -> Vec<&str> {
    if s.is_empty() {
        Vec::new()
    } else {
        s.split(',').collect()
    }
}

fn names(kinds: &[StackKind]) -> Vec<&'static str> {
    kinds.iter().map(|k| k.name()).collect()
}

#[test]
fn table_matches_pickletools() {
    let dump = python_dump();
    let mut py_args = Vec::new();
    let mut py_stacks = Vec::new();
    let mut py_ops = Vec::new();
    for line in dump.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        match fields[0] {
            "ARG" => py_args.push((fields[1], fields[2].parse::<i64>().unwrap())),
            "STACK" => py_stacks.push(fields[1]),
            "OP" => py_ops.push(fields),
            other => panic!("unexpected dump line kind {other:?}"),
        }
    }

    // Argument descriptors: each pickletools descriptor is exactly one ArgKind
    // (plus ArgKind::None for "no argument").
    assert_eq!(ArgKind::ALL.len(), py_args.len() + 1);
    assert_eq!(ArgKind::ALL[0], ArgKind::None);
    assert_eq!(ArgKind::None.name(), "None");
    assert_eq!(ArgKind::None.fixed_len(), Some(0));
    for (name, n) in &py_args {
        let kinds: Vec<ArgKind> = ArgKind::ALL.iter().copied().filter(|k| k.name() == *name).collect();
        assert_eq!(kinds.len(), 1, "ArgKind for {name}");
        let expected = usize::try_from(*n).ok();
        assert_eq!(kinds[0].fixed_len(), expected, "fixed_len of {name}");
    }
    let distinct: HashSet<ArgKind> = ArgKind::ALL.iter().copied().collect();
    assert_eq!(distinct.len(), ArgKind::ALL.len());

    // Stack objects: one StackKind per distinct pickletools StackObject.
    assert_eq!(StackKind::ALL.len(), py_stacks.len());
    for name in &py_stacks {
        let count = StackKind::ALL.iter().filter(|k| k.name() == *name).count();
        assert_eq!(count, 1, "StackKind for {name}");
    }

    // Opcodes, entry for entry in pickletools' order.
    assert_eq!(OPCODES.len(), py_ops.len());
    assert_eq!(OPCODES.len(), 68);
    for (info, f) in OPCODES.iter().zip(&py_ops) {
        let code: u8 = f[1].parse().unwrap();
        let ctx = f[2];
        assert_eq!(info.code, code, "{ctx}: code");
        assert_eq!(info.opcode as u8, code, "{ctx}: discriminant");
        assert_eq!(info.opcode.code(), code, "{ctx}: code()");
        assert_eq!(info.name, f[2], "{ctx}: name");
        assert_eq!(info.arg.name(), f[3], "{ctx}: arg");
        assert_eq!(names(info.stack_before), split_names(f[4]), "{ctx}: before");
        assert_eq!(names(info.stack_after), split_names(f[5]), "{ctx}: after");
        assert_eq!(info.proto.to_string(), f[6], "{ctx}: proto");
        assert_eq!(info.doc, unhex(f[7]), "{ctx}: doc");
        assert_eq!(info.doc_full, unhex(f[8]), "{ctx}: doc_full");
        assert_eq!(info.doc, info.doc_full.split('\n').next().unwrap());

        let op = info.opcode;
        assert!(std::ptr::eq(op.info(), info), "{ctx}: info()");
        assert_eq!(op.name(), info.name);
        assert_eq!(op.arg(), info.arg);
        assert_eq!(op.proto(), info.proto);
        assert_eq!(Opcode::from_name(info.name), Some(op), "{ctx}: from_name");
        assert_eq!(Opcode::from_u8(code), Some(op), "{ctx}: from_u8");
    }
}

#[test]
fn from_u8_round_trip() {
    let mut some = 0;
    for byte in 0..=255u8 {
        if let Some(op) = Opcode::from_u8(byte) {
            some += 1;
            assert_eq!(op as u8, byte);
            assert_eq!(op.info().code, byte);
            assert_eq!(op.info().opcode, op);
        } else {
            assert!(OPCODES.iter().all(|i| i.code != byte), "{byte:#04x}");
        }
    }
    assert_eq!(some, 68);
}

#[test]
fn from_name_rejects_unknown() {
    assert_eq!(Opcode::from_name("BININT1"), Some(Opcode::BinInt1));
    assert_eq!(Opcode::from_name("binint1"), None);
    assert_eq!(Opcode::from_name(""), None);
    assert_eq!(Opcode::from_name("NOT_AN_OPCODE"), None);
}

#[test]
fn spot_checks() {
    assert_eq!(Opcode::Mark as u8, b'(');
    assert_eq!(Opcode::ReadonlyBuffer as u8, 0x98);
    assert_eq!(Opcode::Proto.arg(), ArgKind::UInt1);
    assert_eq!(Opcode::Global.arg(), ArgKind::StringNlNoescapePair);
    assert_eq!(ArgKind::StringNlNoescapePair.name(), "stringnl_noescape_pair");
    assert_eq!(ArgKind::Unicode1.name(), "unicodestring1");
    assert_eq!(ArgKind::Float8.fixed_len(), Some(8));
    assert_eq!(ArgKind::Bytes8.fixed_len(), None);
    assert_eq!(StackKind::IntOrBool.name(), "int_or_bool");
    assert_eq!(Opcode::Stop.info().doc, "Stop the unpickling machine.");
    assert_eq!(Opcode::FrozenSet.proto(), 4);
}
