//! Checks `pikl::compat` against the live `_compat_pickle` of the `python3` on
//! PATH, table entry for table entry, and checks the two mapping functions
//! against `pickle.py`'s `find_class` / `save_global` logic on every key (and on
//! every value and a probe name per module).  Fails if python3 is unavailable.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use pikl::compat::{
    map_py2_global, map_py3_global, Global, IMPORT_MAPPING, NAME_MAPPING, REVERSE_IMPORT_MAPPING, REVERSE_NAME_MAPPING,
};

const DUMP: &str = r#"
import _compat_pickle as c
for (m, n), (m2, n2) in c.NAME_MAPPING.items():
    print("NAME", m, n, m2, n2, sep="\t")
for m, m2 in c.IMPORT_MAPPING.items():
    print("IMPORT", m, m2, sep="\t")
for (m, n), (m2, n2) in c.REVERSE_NAME_MAPPING.items():
    print("RNAME", m, n, m2, n2, sep="\t")
for m, m2 in c.REVERSE_IMPORT_MAPPING.items():
    print("RIMPORT", m, m2, sep="\t")

# Every (module, name) pair and every module mentioned anywhere in the tables.
pairs = set()
modules = {"pikl_no_such_module", "builtins", "__builtin__"}
for t in (c.NAME_MAPPING, c.REVERSE_NAME_MAPPING):
    for k, v in t.items():
        pairs.update((k, v))
for t in (c.IMPORT_MAPPING, c.REVERSE_IMPORT_MAPPING):
    modules.update(t.keys())
    modules.update(t.values())
modules.update(m for m, _ in pairs)
pairs.update((m, "pikl_probe_name") for m in modules)

def py2_to_3(module, name):  # pickle.py, Unpickler.find_class (proto < 3, fix_imports)
    if (module, name) in c.NAME_MAPPING:
        module, name = c.NAME_MAPPING[(module, name)]
    elif module in c.IMPORT_MAPPING:
        module = c.IMPORT_MAPPING[module]
    return module, name

def py3_to_2(module_name, name):  # pickle.py, Pickler.save_global (proto < 3, fix_imports)
    if (module_name, name) in c.REVERSE_NAME_MAPPING:
        module_name, name = c.REVERSE_NAME_MAPPING[(module_name, name)]
    elif module_name in c.REVERSE_IMPORT_MAPPING:
        module_name = c.REVERSE_IMPORT_MAPPING[module_name]
    return module_name, name

for m, n in sorted(pairs):
    print("CASE", m, n, *py2_to_3(m, n), *py3_to_2(m, n), sep="\t")
"#;

type PairMap = BTreeMap<(String, String), (String, String)>;
type StrMap = BTreeMap<String, String>;

fn python_dump() -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(DUMP)
        .output()
        .expect("python3 is required for this test (could not run `python3`)");
    assert!(out.status.success(), "python3 failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("python3 output is UTF-8")
}

fn s(x: &str) -> String {
    x.to_owned()
}

fn pair_table(t: &[(Global, Global)]) -> PairMap {
    t.iter().map(|&((m, n), (m2, n2))| ((s(m), s(n)), (s(m2), s(n2)))).collect()
}

fn str_table(t: &[(&str, &str)]) -> StrMap {
    t.iter().map(|&(m, m2)| (s(m), s(m2))).collect()
}

fn assert_sorted_unique<K: Ord + std::fmt::Debug, V>(what: &str, t: &[(K, V)]) {
    for w in t.windows(2) {
        assert!(w[0].0 < w[1].0, "{what} not strictly sorted at {:?}", w[1].0);
    }
}

#[test]
fn tables_and_mappings_match_python() {
    let dump = python_dump();
    let (mut name, mut import, mut rname, mut rimport) = (PairMap::new(), StrMap::new(), PairMap::new(), StrMap::new());
    let mut cases = Vec::new();
    for line in dump.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        match f[0] {
            "NAME" => assert!(name.insert((s(f[1]), s(f[2])), (s(f[3]), s(f[4]))).is_none()),
            "RNAME" => assert!(rname.insert((s(f[1]), s(f[2])), (s(f[3]), s(f[4]))).is_none()),
            "IMPORT" => assert!(import.insert(s(f[1]), s(f[2])).is_none()),
            "RIMPORT" => assert!(rimport.insert(s(f[1]), s(f[2])).is_none()),
            "CASE" => cases.push(f),
            other => panic!("unexpected dump line kind {other:?}"),
        }
    }

    // Tables: sorted (binary search depends on it) and equal to Python's.
    assert_sorted_unique("NAME_MAPPING", &NAME_MAPPING);
    assert_sorted_unique("IMPORT_MAPPING", &IMPORT_MAPPING);
    assert_sorted_unique("REVERSE_NAME_MAPPING", &REVERSE_NAME_MAPPING);
    assert_sorted_unique("REVERSE_IMPORT_MAPPING", &REVERSE_IMPORT_MAPPING);
    assert_eq!(NAME_MAPPING.len(), name.len());
    assert_eq!(IMPORT_MAPPING.len(), import.len());
    assert_eq!(REVERSE_NAME_MAPPING.len(), rname.len());
    assert_eq!(REVERSE_IMPORT_MAPPING.len(), rimport.len());
    assert_eq!(pair_table(&NAME_MAPPING), name);
    assert_eq!(str_table(&IMPORT_MAPPING), import);
    assert_eq!(pair_table(&REVERSE_NAME_MAPPING), rname);
    assert_eq!(str_table(&REVERSE_IMPORT_MAPPING), rimport);

    // The mapping functions, on every key of every table (and more).
    let mut seen = BTreeSet::new();
    for f in &cases {
        let (m, n) = (f[1], f[2]);
        seen.insert((s(m), s(n)));
        assert_eq!(map_py2_global(m, n), (f[3], f[4]), "py2->3 of {m}.{n}");
        assert_eq!(map_py3_global(m, n), (f[5], f[6]), "py3->2 of {m}.{n}");
    }
    for (m, n) in name.keys().chain(rname.keys()) {
        assert!(seen.contains(&(m.clone(), n.clone())), "no case for {m}.{n}");
    }
    for m in import.keys().chain(rimport.keys()) {
        assert!(seen.contains(&(m.clone(), s("pikl_probe_name"))), "no case for module {m}");
    }
}

#[test]
fn spot_checks() {
    assert_eq!(map_py2_global("__builtin__", "xrange"), ("builtins", "range"));
    assert_eq!(map_py2_global("__builtin__", "object"), ("builtins", "object"));
    assert_eq!(map_py2_global("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor"));
    assert_eq!(map_py2_global("mymod", "Thing"), ("mymod", "Thing"));
    assert_eq!(map_py3_global("builtins", "range"), ("__builtin__", "xrange"));
    assert_eq!(map_py3_global("builtins", "object"), ("__builtin__", "object"));
    assert_eq!(map_py3_global("mymod", "Thing"), ("mymod", "Thing"));
}
