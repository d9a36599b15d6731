//! Typed values to and from the object model ([`Graph`]).
//!
//! Both directions go through the pickle the serde writer would write, so a value converts
//! exactly as it pickles: [`to_object`] is what `pickle.loads(to_vec(value))` gives, and
//! [`from_value`] reads a graph's value as [`from_slice`](super::from_slice) reads its pickle.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::options::{DeOptions, SerOptions};
use crate::error::Result;
use crate::{Loaded, ValueRef};

/// The object-model value of `value`: the graph Python would unpickle from
/// [`to_vec`](super::to_vec)'s output.
///
/// ```
/// let loaded = pikl::serde::to_object(&(1, "a", vec![2.5]), Default::default())?;
/// assert_eq!(loaded.to_string(), "(1, 'a', [2.5])");
/// # Ok::<(), pikl::Error>(())
/// ```
pub fn to_object<T: Serialize + ?Sized>(value: &T, options: SerOptions) -> Result<Loaded<'static>> {
    let bytes = super::to_vec(value, options)?;
    crate::load(&bytes[..])
}

/// Reads a `T` from a value of the object model.
///
/// ```
/// let loaded = pikl::loads(b"\x80\x04\x95\t\x00\x00\x00\x00\x00\x00\x00]\x94(K\x01K\x02e.")?;
/// let v: Vec<u8> = pikl::serde::from_value(loaded.value(), Default::default())?;
/// assert_eq!(v, [1, 2]);
/// # Ok::<(), pikl::Error>(())
/// ```
pub fn from_value<T: DeserializeOwned>(value: ValueRef<'_, '_>, options: DeOptions) -> Result<T> {
    let bytes = crate::dumps(value.graph(), value.value(), Some(crate::HIGHEST_PROTOCOL as i32))?;
    super::from_slice(&bytes, options)
}
