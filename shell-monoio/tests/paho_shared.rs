//! shell-tokio's `paho_shared` suite, run against `cicada-uring`.

#[path = "../../shell-tokio/tests/paho_shared.rs"]
mod suite;
