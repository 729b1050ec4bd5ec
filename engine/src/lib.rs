//! # cicada-engine
//!
//! The protocol core of the Cicada MQTT broker, written **sans-IO**: it owns no socket, file, thread,
//! clock or source of OS randomness. Time and bytes come in as arguments; bytes to send, storage writes and
//! timers come out as values. The same inputs always produce the same outputs, which is what makes trace
//! replay, simulation and fuzzing of the broker meaningful.
//!
//! This crate currently provides the wire codec ([`codec`]); the broker state machine builds on it.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod codec;
