//! shell-tokio's `rumqttc_clients` suite, run against `cicada-uring`.

#[path = "../../shell-tokio/tests/rumqttc_clients.rs"]
mod suite;
