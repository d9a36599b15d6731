//! Ints of any size as [`num_bigint::BigInt`], for `#[serde(with = "pikl::serde::bigint")]`.
//!
//! ```
//! use num_bigint::BigInt;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, PartialEq, Debug)]
//! struct Big {
//!     #[serde(with = "pikl::serde::bigint")]
//!     n: BigInt,
//! }
//!
//! let big = Big { n: BigInt::from(7u8).pow(100) };
//! let bytes = pikl::to_vec(&big, Default::default())?;
//! assert_eq!(pikl::from_slice::<Big>(&bytes, Default::default())?, big);
//! # Ok::<(), pikl::Error>(())
//! ```
//!
//! With pikl the int is written as Python's `int` (`LONG1` / `LONG4`) and read from any
//! Python int. Other serde formats see a newtype struct holding the two's complement
//! little-endian bytes.

use std::fmt;

use num_bigint::BigInt;
use serde::de::{self, Deserializer, Visitor};
use serde::ser::Serializer;

use super::de::BIGINT_TOKEN;

struct Bytes<'a>(&'a [u8]);

impl serde::Serialize for Bytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

/// Writes `v` as an int.
pub fn serialize<S: Serializer>(v: &BigInt, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_newtype_struct(BIGINT_TOKEN, &Bytes(&v.to_signed_bytes_le()))
}

/// Reads an int of any size.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BigInt, D::Error> {
    d.deserialize_newtype_struct(BIGINT_TOKEN, BigVisitor)
}

struct BigVisitor;

impl<'de> Visitor<'de> for BigVisitor {
    type Value = BigInt;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an int")
    }

    fn visit_bytes<E: de::Error>(self, b: &[u8]) -> Result<BigInt, E> {
        Ok(BigInt::from_signed_bytes_le(b))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<BigInt, E> {
        Ok(v.into())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<BigInt, E> {
        Ok(v.into())
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<BigInt, E> {
        Ok(v.into())
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<BigInt, E> {
        Ok(v.into())
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<BigInt, D::Error> {
        d.deserialize_bytes(self)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<BigInt, A::Error> {
        let mut b = Vec::new();
        while let Some(x) = seq.next_element::<u8>()? {
            b.push(x);
        }
        Ok(BigInt::from_signed_bytes_le(&b))
    }
}
