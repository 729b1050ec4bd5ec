//! shell-tokio's `mosquitto_tls` suite, run against `cicada-uring`.

#[path = "../../shell-tokio/tests/mosquitto_tls.rs"]
mod suite;
