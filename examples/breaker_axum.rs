//! Run with: cargo run --example breaker_axum
fn main() {}
