//! The CPU reference backend. Plain, threaded where it matters, and the oracle every GPU
//! kernel is tested against.

pub mod merge;
