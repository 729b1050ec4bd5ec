//! MQTT-to-MQTT bridges: each one a task holding two MQTT client connections, one to a remote
//! broker (TCP, TLS, WebSocket or QUIC; 3.1.1 or 5.0) and one into this broker, relaying the
//! mapped topics both ways ([`relay`]).
//!
//! The connection into this broker is an in-memory stream the engine accepts like a socket, so the
//! bridge is an ordinary client to the engine: its messages are routed, ACL-checked (as the
//! bridge's local user) and counted like anyone's, and its persistent session is the durable buffer
//! that holds messages while the remote is down. The shell vouches for it: it skips the
//! authentication providers (see `server::EngineTask`).
//!
//! Bridges come from `[[bridge]]` in the configuration and from the admin API
//! (`/api/v1/bridges`); the [`Bridges`] registry holds the running ones.

pub mod config;
mod link;
mod relay;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use cicada_transports::BoxStream;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{info, warn};

pub use config::{BridgeConfig, BridgeConfigError, BridgeSpec};
use link::LinkError;

/// The buffer of the in-memory stream between a bridge and the engine.
const LOCAL_STREAM_BUFFER: usize = 64 << 10;

/// A bridge's connection into this broker, for the engine task to accept.
pub struct LocalStream {
    pub stream: BoxStream,
    /// The bridge's name.
    pub bridge: Arc<str>,
    /// The user name the bridge has here.
    pub username: String,
}

impl std::fmt::Debug for LocalStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalStream")
            .field("bridge", &self.bridge)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Opens connections into this broker.
#[derive(Clone, Debug)]
pub struct LocalDialer(mpsc::Sender<LocalStream>);

impl LocalDialer {
    pub fn new(accept: mpsc::Sender<LocalStream>) -> LocalDialer {
        LocalDialer(accept)
    }

    async fn dial(&self, spec: &BridgeSpec) -> Result<BoxStream, LinkError> {
        let (ours, theirs) = tokio::io::duplex(LOCAL_STREAM_BUFFER);
        let local = LocalStream {
            stream: Box::new(theirs),
            bridge: spec.name.as_str().into(),
            username: spec.local_username.clone(),
        };
        self.0.send(local).await.map_err(|_| LinkError::LocalGone)?;
        Ok(Box::new(ours))
    }
}

/// A bridge's counters, shared by its task, the admin API and `/metrics`.
#[derive(Debug, Default)]
pub struct Status {
    connected: AtomicBool,
    /// Messages sent to the remote.
    messages_out: AtomicU64,
    /// Messages received from the remote.
    messages_in: AtomicU64,
    /// Messages refused by either side or matching no mapping.
    dropped: AtomicU64,
    /// Successful connections (the first and every reconnection).
    connects: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Status {
    fn set_error(&self, error: String) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(error);
    }
}

/// Where a running bridge came from.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// `[[bridge]]` in the configuration file.
    Config,
    /// `POST /api/v1/bridges`; not kept across a restart.
    Api,
}

/// A bridge as the admin API and `/metrics` show it.
#[derive(Debug, Clone, Serialize)]
pub struct BridgeView {
    pub name: String,
    pub origin: Origin,
    pub connected: bool,
    pub messages_out: u64,
    pub messages_in: u64,
    pub dropped: u64,
    pub connects: u64,
    pub last_error: Option<String>,
    pub config: BridgeConfig,
}

struct Running {
    spec: Arc<BridgeSpec>,
    origin: Origin,
    status: Arc<Status>,
    task: JoinHandle<()>,
}

/// The running bridges.
#[derive(Clone)]
pub struct Bridges {
    running: Arc<Mutex<BTreeMap<String, Running>>>,
    dialer: LocalDialer,
}

impl std::fmt::Debug for Bridges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridges").finish_non_exhaustive()
    }
}

/// A bridge of that name runs already.
#[derive(Debug, thiserror::Error)]
#[error("a bridge named {0:?} exists; delete it first or pick another name")]
pub struct Exists(pub String);

impl Bridges {
    pub fn new(dialer: LocalDialer) -> Bridges {
        Bridges {
            running: Arc::default(),
            dialer,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Running>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a bridge.
    pub fn start(&self, spec: BridgeSpec, origin: Origin) -> Result<(), Exists> {
        let mut running = self.lock();
        if running.contains_key(&spec.name) {
            return Err(Exists(spec.name));
        }
        let spec = Arc::new(spec);
        let status = Arc::new(Status::default());
        info!(bridge = %spec.name, remote = %spec.config.remote, ?origin, "bridge started");
        let task = tokio::spawn(relay::run(
            spec.clone(),
            status.clone(),
            self.dialer.clone(),
        ));
        running.insert(
            spec.name.clone(),
            Running {
                spec,
                origin,
                status,
                task,
            },
        );
        Ok(())
    }

    /// Stops a bridge and deletes its buffer (its local session); false if there is none.
    pub fn remove(&self, name: &str) -> bool {
        let Some(bridge) = self.lock().remove(name) else {
            return false;
        };
        bridge.task.abort();
        let dialer = self.dialer.clone();
        tokio::spawn(async move {
            // The aborted task's local connection closes first; the purge then replaces the
            // session with an empty one that expires at once.
            let _ = bridge.task.await;
            match relay::purge(&bridge.spec, &dialer).await {
                Ok(()) => info!(bridge = %bridge.spec.name, "bridge removed; its buffer deleted"),
                Err(e) => {
                    warn!(bridge = %bridge.spec.name, error = %e, "bridge removed; its buffer could not be deleted and expires on its own")
                }
            }
        });
        true
    }

    /// Stops every bridge, keeping their buffers (broker shutdown).
    pub fn stop_all(&self) {
        for (_, bridge) in std::mem::take(&mut *self.lock()) {
            bridge.task.abort();
        }
    }

    /// Every bridge with its counters, by name.
    pub fn list(&self) -> Vec<BridgeView> {
        self.lock()
            .values()
            .map(|b| {
                let s = &b.status;
                BridgeView {
                    name: b.spec.name.clone(),
                    origin: b.origin,
                    connected: s.connected.load(Ordering::Relaxed),
                    messages_out: s.messages_out.load(Ordering::Relaxed),
                    messages_in: s.messages_in.load(Ordering::Relaxed),
                    dropped: s.dropped.load(Ordering::Relaxed),
                    connects: s.connects.load(Ordering::Relaxed),
                    last_error: s
                        .last_error
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .clone(),
                    config: b.spec.config.clone(),
                }
            })
            .collect()
    }
}
