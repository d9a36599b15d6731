//! The slice source and the streaming reader source (with a tiny buffer, so reads straddle
//! refills) load the same pickles and fail at the same places.
#![no_main]

use std::io::BufReader;

use libfuzzer_sys::fuzz_target;
use pikl::value::ReprOptions;
use pikl::Unpickler;

const REPR: ReprOptions = ReprOptions { max_chars: Some(4096) };

fuzz_target!(|data: &[u8]| {
    let mut a = Unpickler::from_slice(data);
    let mut b = Unpickler::from_reader(BufReader::with_capacity(5, data));
    for i in 0..4 {
        match (a.load(), b.load()) {
            (Ok(x), Ok(y)) => assert_eq!(a.view(x).repr_with(REPR), b.view(y).repr_with(REPR), "pickle {i}"),
            (Err(_), Err(_)) => return,
            (x, y) => panic!("pickle {i}: from_slice {:?} but from_reader {:?}", x.map(|_| ()), y.map(|_| ())),
        }
        match (a.at_end(), b.at_end()) {
            (Ok(false), Ok(false)) => {}
            (Ok(x), Ok(y)) if x == y => return,
            (Err(_), Err(_)) => return,
            (x, y) => panic!("after pickle {i}: at_end from_slice {x:?}, from_reader {y:?}"),
        }
    }
});
