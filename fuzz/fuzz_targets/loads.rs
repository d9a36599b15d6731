//! Any input: loading never panics, and every error carries a byte offset inside the input that
//! its message names. What loads is printed (capped) and compared with itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pikl::value::ReprOptions;
use pikl::Unpickler;

fuzz_target!(|data: &[u8]| {
    let mut u = Unpickler::from_slice(data);
    for _ in 0..4 {
        match u.load() {
            Ok(v) => {
                let view = u.view(v);
                let _ = view.repr_with(ReprOptions { max_chars: Some(4096) });
                std::hint::black_box(view == u.view(v));
            }
            Err(e) => {
                let offset = e.offset().unwrap_or_else(|| panic!("error without an offset: {e}"));
                assert!(offset <= data.len() as u64, "offset {offset} beyond {} bytes: {e}", data.len());
                assert!(e.to_string().contains("byte "), "message names no byte: {e}");
                return;
            }
        }
        match u.at_end() {
            Ok(false) => {}
            Ok(true) | Err(_) => return,
        }
    }
});
