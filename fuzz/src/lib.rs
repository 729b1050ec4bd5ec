//! # cicada-fuzz
//!
//! Property and fuzz testing support for the Cicada engine.
//!
//! - [`gen`]: generators of MQTT packets built on [`arbitrary::Unstructured`], producing only packets a
//!   given protocol version can represent, so round trips must be exact.
//! - [`props`]: helpers shared by the properties (case counting, packets, transcript tails).
//!
//! The properties themselves live in `tests/` and run under plain `cargo test` with bolero's random
//! engine; see the crate README for longer runs and coverage-guided fuzzing.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod gen;
pub mod props;
