//! shell-tokio's `paho` suite, run against `cicada-uring`.

#[path = "../../shell-tokio/tests/paho.rs"]
mod suite;
