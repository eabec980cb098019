//! Temporary: the lead wires `mod cli;` into the real tests/tests.rs.

mod cli;
