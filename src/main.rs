//! vigil: keeps worker processes alive, and tells you why they died.
mod workers;
fn main() {}
