//! Run with: cargo run --example retry_axum
fn main() {}
