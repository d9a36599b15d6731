//! Random Python values (`tests/corpus/gen_random_values.py`, fixed seeds) pickled by CPython
//! at every protocol: nests of every builtin type with shared references and cycles, and in
//! `objects` mode instances, classes and library types. pikl must load each pickle (with
//! CPython's repr where the value has no sets, cycles or instances), write it back at the same
//! protocol byte for byte as CPython wrote it or re-pickles what it loads, write it at the
//! other protocol of its pair (0-1, 2-3, 4-5) as CPython re-pickles it there (values without
//! sets), and the serde reader must read it.

mod common;

use common::{hex_decode, short_hex_diff};

/// Values per seed (each pickled at the six protocols).
const COUNT: usize = 3000;

#[test]
fn random_values_round_trip_byte_for_byte() {
    let mut problems = Vec::new();
    let (mut checked, mut with_repr) = (0usize, 0usize);
    for (seed, mode) in [(1, None), (2, None), (3, None), (4, Some("objects")), (5, Some("objects"))] {
        // With PYTHONHASHSEED=0: sets of strs iterate in hash order, so CPython's bytes are stable.
        let args: Vec<String> =
            [seed.to_string(), COUNT.to_string()].into_iter().chain(mode.map(String::from)).collect();
        let text = common::run_script("gen_random_values.py", &args);
        for line in text.lines() {
            let mut parts = line.split(' ');
            let mut next = || parts.next().unwrap_or("");
            let (proto, hex, again, repr, other, conv) = (next(), next(), next(), next(), next(), next());
            let proto: i32 = proto.parse().expect("protocol");
            let data = hex_decode(hex);
            let repickle = hex_decode(again);
            let hex = &hex[..hex.len().min(48)];
            checked += 1;
            let loaded = match pikl::loads(&data) {
                Ok(v) => v,
                Err(e) => {
                    problems.push(format!("{hex}: pikl cannot load it: {e}"));
                    continue;
                }
            };
            if repr != "-" {
                with_repr += 1;
                let want = String::from_utf8(hex_decode(repr)).expect("repr is UTF-8");
                if loaded.to_string() != want {
                    problems.push(format!("{hex}: CPython {want}, pikl {loaded}"));
                }
            }
            match pikl::dumps(&loaded.graph, loaded.root, Some(proto)) {
                // Either is what CPython writes for this value: the pickle as written (the
                // repickle may order a set's items differently: it rebuilt the set), or the
                // repickle (loading made equal one-character strs one object, as pikl does).
                Ok(out) if out == data || out == repickle => {}
                Ok(out) => {
                    problems.push(format!("{hex}: protocol {proto} rewritten {}", short_hex_diff(&out, &repickle)))
                }
                Err(e) => problems.push(format!("{hex}: pikl cannot write it back: {e}")),
            }
            if conv != "-" {
                let other: i32 = other.parse().expect("protocol");
                match pikl::dumps(&loaded.graph, loaded.root, Some(other)) {
                    Ok(out) if out == hex_decode(conv) => {}
                    Ok(out) => problems.push(format!(
                        "{hex}: converted to protocol {other} {}",
                        short_hex_diff(&out, &hex_decode(conv))
                    )),
                    Err(e) => problems.push(format!("{hex}: pikl cannot write it at protocol {other}: {e}")),
                }
            }
            if let Err(e) = pikl::from_slice::<serde::de::IgnoredAny>(&data, Default::default()) {
                problems.push(format!("{hex}: the serde reader: {e}"));
            }
        }
    }
    // Slotted instances cannot be pickled below protocol 2: those lines are left out.
    assert!(checked > 4 * COUNT * 6 && with_repr > checked / 5, "checked {checked}, with a repr {with_repr}");
    assert!(
        problems.is_empty(),
        "{} differences from CPython:\n{}",
        problems.len(),
        problems.iter().take(20).cloned().collect::<Vec<_>>().join("\n")
    );
}
