//! The serde reader on any input: no panic; the slice and the reader sources agree; a typed
//! read that succeeds agrees with the object model's load of the same bytes.
#![no_main]

use std::collections::BTreeMap;
use std::io::BufReader;

use libfuzzer_sys::fuzz_target;
use pikl::serde::DeOptions;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::Deserialize;

#[derive(Deserialize, Debug, PartialEq)]
struct Record {
    id: i64,
    name: String,
    tags: Vec<String>,
    score: Option<f64>,
    extra: BTreeMap<String, i64>,
}

/// Reads a `T` from the slice and from a reader with a tiny buffer; both must agree.
fn both<T: DeserializeOwned + PartialEq + std::fmt::Debug>(data: &[u8]) -> Option<T> {
    let a = pikl::from_slice::<T>(data, DeOptions::new());
    let b = pikl::from_reader::<_, T>(BufReader::with_capacity(5, data), DeOptions::new());
    match (a, b) {
        (Ok(x), Ok(y)) => {
            // NaN floats compare unequal to themselves: compare their debug forms.
            assert_eq!(format!("{x:?}"), format!("{y:?}"), "from_slice and from_reader read different values");
            Some(x)
        }
        (Err(_), Err(_)) => None,
        (x, y) => panic!("from_slice {:?} but from_reader {:?}", x.map(|_| ()), y.map(|_| ())),
    }
}

fuzz_target!(|data: &[u8]| {
    both::<IgnoredAny>(data);
    both::<Record>(data);
    both::<Vec<Vec<u8>>>(data);
    both::<(String, Option<bool>, f64)>(data);
    if let Some(ints) = both::<Vec<i64>>(data) {
        // What serde read from a list or tuple of ints, the object model reads as the same
        // ints. (Serde also reads a bytes as its byte values, and a set's items as they came.)
        if let Ok(loaded) = pikl::loads(data) {
            let v = loaded.value();
            if let Some(items) = v.as_slice() {
                let model: Vec<Option<i64>> = (0..items.len()).map(|i| v.at(i).and_then(|x| x.as_i64())).collect();
                let serde: Vec<Option<i64>> = ints.iter().map(|&i| Some(i)).collect();
                assert_eq!(model, serde, "serde and the object model read different ints");
            }
        }
    }
});
