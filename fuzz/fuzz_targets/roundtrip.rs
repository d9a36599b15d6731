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
        assert_eq!(again, bytes, "protocol {p}: dumps(loads(dumps(x))) != dumps(x)");
    }
});
