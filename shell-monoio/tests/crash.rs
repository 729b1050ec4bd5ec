//! shell-tokio's `crash` suite, run against `cicada-uring`.

#[path = "../../shell-tokio/tests/crash.rs"]
mod suite;
