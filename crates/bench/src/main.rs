//! Benchmarks for jobboard (filled in by the store benchmark).

fn main() {}
