//! # cicada-engine
//!
//! The protocol core of the Cicada MQTT broker, written **sans-IO**: it owns no socket, file, thread,
//! clock or source of OS randomness. Time and bytes come in as arguments; bytes to send, storage writes and
//! timers come out as values. The same inputs always produce the same outputs, which is what makes trace
//! replay, simulation and fuzzing of the broker meaningful.
//!
//! - [`codec`]: the MQTT 3.1 / 3.1.1 / 5.0 wire format.
//! - [`Engine`]: the broker state machine. Its documentation states the driving contract.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod acl;
pub mod cluster;
#[cfg(feature = "sim")]
pub mod cluster_sim;
pub mod codec;
mod config;
mod engine;
mod io;
pub mod limits;
mod map;
mod message;
mod persist;
mod retained;
mod rng;
pub mod router;
mod session;
mod shard;
#[cfg(feature = "sim")]
pub mod sim;
mod stored;
mod time;
mod timer;

pub use cluster::{ClusterConfig, ClusterStats, MemberAddress};
pub use config::{
    Authentication, Config, ConfigError, OverloadPolicy, Quotas, Rate, RateLimit, Redirect,
    SharedStrategy, Tenant,
};
pub use engine::{
    DropCounts, Engine, Reconfigured, SessionInfo, Stats, SubscriptionInfo, TenantStats,
    TopicStats, Totals, Transmit,
};
pub use io::{
    AuthDecision, AuthStage, CertIdentity, CloseReason, ConnId, ConnMeta, DropReason, Event,
    ExternalPublish, Input, OutboundState, PeerMessage, PersistSeq, Principal, PublishOutcome,
    Refusal, Stamp, StoreOp,
};
pub use message::{Message, MessageProperties};
pub use rng::Rng;
pub use shard::Shard;
pub use stored::{
    StoredMessage, StoredRaft, StoredSession, StoredState, StoredSubscription, TakenSince,
};
pub use time::Instant;
