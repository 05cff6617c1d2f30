//! Map: a pure function from a compiled mapping and a normalised input to the target's
//! document. No I/O, no clock, deterministic. The engine is not built yet; [`input`] holds the
//! typed input every mapping reads.

pub mod input;
