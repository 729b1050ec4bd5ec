//! Conformance tooling: the trace format written by the `cicada-record` proxy, the replayer that
//! feeds recorded client traffic to the engine and compares the broker side, and the per-requirement
//! matrix of the specifications' normative statements.

pub mod matrix;
pub mod profile;
pub mod replay;
pub mod trace;
