//! Placeholder: the scheduler benchmark lands with the FIFO scheduler on main (Cargo.toml names it).
fn main() {}
