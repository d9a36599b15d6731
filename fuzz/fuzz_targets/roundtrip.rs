//! Whatever pikl loads, it re-pickles at every protocol (or refuses with a pickling error), and
//! loads its own output back to an equal value that re-pickles to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pikl::Unpickler;

fuzz_target!(|data: &[u8]| {
    let mut u = Unpickler::from_slice(data);
    let Ok(v) = u.load() else { return };
    let g = u.graph();
    for p in 0..=5 {
        let bytes = match pikl::dumps(g, v, Some(p)) {
            Ok(b) => b,
            Err(e) if e.is_pickling() => continue,
            Err(e) => panic!("dumps at protocol {p}: not a pickling error: {e}"),
        };
        let back = pikl::loads(&bytes).unwrap_or_else(|e| panic!("protocol {p}: pikl cannot load its own output: {e}"));
        let again = pikl::dumps(&back.graph, back.root, Some(p))
            .unwrap_or_else(|e| panic!("protocol {p}: cannot re-pickle what it loaded: {e}"));
        if p < 3 && again != bytes {
            // Below protocol 3 a bytes object is written as `_codecs.encode(str, 'latin1')`, which
            // gives CPython's shared object for one byte: two distinct one-byte bytes load back
            // as one (CPython's own pickles do the same). One round may merge them; the next
            // must change nothing.
            let back2 = pikl::loads(&again).unwrap_or_else(|e| panic!("protocol {p}: second load: {e}"));
            let again2 = pikl::dumps(&back2.graph, back2.root, Some(p))
                .unwrap_or_else(|e| panic!("protocol {p}: second re-pickle: {e}"));
            assert_eq!(again2, again, "protocol {p}: not a fixed point after one round");
            continue;
        }
        assert_eq!(again, bytes, "protocol {p}: dumps(loads(dumps(x))) != dumps(x)");
    }
});
