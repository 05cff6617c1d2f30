//! Embedded broker benchmark (being written).
fn main() {}
