//! shell-tokio's `broker_behaviour` suite, run against `cicada-uring`.

#[path = "../../shell-tokio/tests/broker_behaviour.rs"]
mod suite;
