//! shell-tokio's `conformance_replay` suite, run against `cicada-uring`.

#[path = "../../shell-tokio/tests/conformance_replay.rs"]
mod suite;
