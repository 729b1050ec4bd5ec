//! shell-tokio's `paho_v5` suite, run against `cicada-uring`.

#[path = "../../shell-tokio/tests/paho_v5.rs"]
mod suite;
