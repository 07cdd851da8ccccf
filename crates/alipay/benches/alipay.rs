//! Criterion benchmarks of the RSA hot paths (written in the last step).
fn main() {}
