//! Unit tests of the mapping engine.
use super::*;

