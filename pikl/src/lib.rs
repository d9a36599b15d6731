//! pikl: Python's pickle format in Rust.
pub mod opcodes;
pub mod compat;
