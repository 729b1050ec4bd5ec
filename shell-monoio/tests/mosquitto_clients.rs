//! shell-tokio's `mosquitto_clients` suite, run against `cicada-uring`.

#[path = "../../shell-tokio/tests/mosquitto_clients.rs"]
mod suite;
