//! Map: a pure function from a compiled mapping and a normalised approval instance to the
//! target's document. No I/O, no clock, deterministic. Not built yet.
