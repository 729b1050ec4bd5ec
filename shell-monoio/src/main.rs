//! `cicada-uring`: the Cicada MQTT broker on monoio (io_uring), one engine per core.
//!
//! Each core runs a thread with its own monoio runtime and its own [`cicada_engine::Engine`], which
//! owns the connections of the client identifiers [`cicada_engine::Shard::owner`] gives it. Every
//! core accepts; a connection whose CONNECT names a client identifier owned elsewhere is handed to the
//! owner (the socket and any bytes already read). Engines exchange subscription interest and
//! publishes as peer messages over channels. Storage is one thread shared by the cores.
//!
//! Configuration, authentication, storage and policy files are those of `cicada`
//! (`cicada_shell_tokio`); the admin HTTP API, metrics, reload and traces are `cicada`'s only.

mod core;
mod net;
mod tls;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use cicada_engine::{PeerMessage, Shard, StoredState};
use cicada_shell_tokio::config::{self, Settings};
use cicada_shell_tokio::storage::StorageHandle;
use cicada_transports::config::Kind;
use clap::Parser;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::core::{Control, CoreSetup, Handoff};

/// The Cicada MQTT broker on io_uring, one engine per core.
#[derive(Debug, Parser)]
#[command(name = "cicada-uring", version, about)]
struct Cli {
    /// The configuration file and its overrides, as `cicada` takes them.
    #[command(flatten)]
    source: config::Source,
    /// Engines (threads); the number of CPUs by default.
    #[arg(long)]
    cores: Option<u16>,
}

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error("{0}")]
    Config(#[from] config::ConfigError),
    #[error("config key `listener.{index}.{key}`: {fix}")]
    Unsupported {
        index: usize,
        key: &'static str,
        fix: String,
    },
    #[error("cannot listen on {addr}: {source} (change the listener's `bind` or `server.listen`)")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Server(#[from] cicada_shell_tokio::server::ServerError),
    #[error("cannot create the data directory {path}: {source} (change `server.data_dir`)")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start a thread: {0}")]
    Thread(std::io::Error),
    #[error("--cores must be between 1 and 1024")]
    Cores,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let source = cli.source.clone();
    let settings = match source.settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cicada-uring: {e}");
            return ExitCode::from(2);
        }
    };
    let _log = cicada_shell_tokio::init_logging(settings.log_format, &settings.log_level, None);
    match run(settings, cli.cores) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            eprintln!("cicada-uring: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Checks what this shell serves: TCP and TLS listeners, without PROXY headers.
fn check_listeners(settings: &Settings) -> Result<(), StartError> {
    for (index, l) in settings.listeners.iter().enumerate() {
        if !matches!(l.kind, Kind::Tcp | Kind::Tls) {
            return Err(StartError::Unsupported {
                index,
                key: "kind",
                fix: format!(
                    "cicada-uring serves `tcp` and `tls` listeners; run `cicada` for `{}`",
                    l.kind
                ),
            });
        }
        if l.proxy_protocol {
            return Err(StartError::Unsupported {
                index,
                key: "proxy_protocol",
                fix: "cicada-uring does not read PROXY headers; run `cicada` behind a proxy".into(),
            });
        }
    }
    if !settings.webhooks.is_empty() {
        return Err(StartError::Config(config::ConfigError::Invalid {
            key: "webhook".into(),
            fix: "cicada-uring does not send webhooks; run `cicada`, or remove the [[webhook]] entries".into(),
        }));
    }
    if settings.cluster.is_some() {
        return Err(StartError::Config(config::ConfigError::Invalid {
            key: "cluster".into(),
            fix: "cicada-uring does not run as a cluster node; run `cicada`, or remove [cluster]"
                .into(),
        }));
    }
    if !settings.bridges.is_empty() {
        return Err(StartError::Config(config::ConfigError::Invalid {
            key: "bridge".into(),
            fix: "cicada-uring does not run MQTT bridges; run `cicada`, or remove the [[bridge]] entries".into(),
        }));
    }
    if settings.http.is_some() {
        warn!("[http] is served by `cicada` only: cicada-uring has no admin API or /metrics");
    }
    if settings.otlp.is_some() {
        warn!("[tracing] is exported by `cicada` only");
    }
    Ok(())
}

fn run(settings: Settings, cores: Option<u16>) -> Result<(), StartError> {
    check_listeners(&settings)?;
    let count = match cores {
        Some(n) if n == 0 || n > 1024 => return Err(StartError::Cores),
        Some(n) => n,
        None => std::thread::available_parallelism()
            .map_or(1, |n| u16::try_from(n.get()).unwrap_or(1024).min(1024)),
    };
    std::fs::create_dir_all(&settings.data_dir).map_err(|source| StartError::DataDir {
        path: settings.data_dir.clone(),
        source,
    })?;
    // Bound once here (port 0 gets one port for all), then accepted on by every core.
    let mut listeners = Vec::new();
    for l in &settings.listeners {
        let socket = bind(l.bind).map_err(|source| StartError::Bind {
            addr: l.bind,
            source,
        })?;
        let addr = socket.local_addr().unwrap_or(l.bind);
        info!(listener = %l.name, %addr, transport = %l.kind, "listening");
        listeners.push((l.clone(), socket, Arc::new(AtomicUsize::new(0))));
    }
    let (store, state) = cicada_shell_tokio::server::open_store(&settings)?;
    let mut states = split_state(state, count, &settings.engine.assigned_client_id_prefix);

    let mut peer_tx = Vec::new();
    let mut peer_rx = Vec::new();
    let mut handoff_tx = Vec::new();
    let mut handoff_rx = Vec::new();
    let mut done_tx = Vec::new();
    let mut done_rx = Vec::new();
    let mut control_tx = Vec::new();
    let mut control_rx = Vec::new();
    for _ in 0..count {
        let (tx, rx) = mpsc::unbounded_channel::<PeerMessage>();
        peer_tx.push(tx);
        peer_rx.push(Some(rx));
        let (tx, rx) = mpsc::unbounded_channel::<Handoff>();
        handoff_tx.push(tx);
        handoff_rx.push(Some(rx));
        let (tx, rx) = mpsc::unbounded_channel();
        done_tx.push(tx);
        done_rx.push(Some(rx));
        let (tx, rx) = mpsc::unbounded_channel::<Control>();
        control_tx.push(tx);
        control_rx.push(Some(rx));
    }
    let storage = match store {
        Some(store) => Some(
            StorageHandle::start(
                store,
                settings.fsync,
                settings.fsync_interval,
                done_tx,
                cicada_shell_tokio::http::metrics::Telemetry::default(),
            )
            .map_err(StartError::Thread)?,
        ),
        None => None,
    };
    let origin = cicada_shell_tokio::server::engine_origin();
    let start = std::time::Instant::now();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let mut threads = Vec::new();
    for index in 0..count {
        let listeners = listeners
            .iter()
            .map(|(l, s, open)| s.try_clone().map(|s| (l.clone(), s, open.clone())))
            .collect::<Result<Vec<_>, _>>()
            .map_err(StartError::Thread)?;
        let setup = CoreSetup {
            shard: Shard { index, count },
            settings: settings.clone(),
            seed: origin.as_nanos() as u64 ^ (u64::from(index) << 48),
            state: std::mem::take(&mut states[usize::from(index)]),
            origin,
            start,
            listeners,
            peers: peer_tx.clone(),
            peer_rx: peer_rx[usize::from(index)].take(),
            handoffs: handoff_tx.clone(),
            handoff_rx: handoff_rx[usize::from(index)].take(),
            done_rx: done_rx[usize::from(index)].take(),
            control_rx: control_rx[usize::from(index)].take(),
            storage: storage.as_ref().and_then(|s| s.writer(index)),
            ready: ready_tx.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("cicada-core-{index}"))
            .spawn(move || core::run(setup))
            .map_err(StartError::Thread)?;
        threads.push(thread);
    }
    drop((peer_tx, handoff_tx, ready_tx, listeners));
    let mut failed = None;
    for _ in 0..count {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failed = Some(e),
            Err(_) => failed = Some("a core stopped while starting".into()),
        }
    }
    if let Some(e) = &failed {
        error!("{e}");
    } else {
        info!(cores = count, "ready");
        wait_for_signal();
        info!("stopping: closing connections");
    }
    for tx in &control_tx {
        let _ = tx.send(Control::Shutdown {
            grace: settings.shutdown_grace,
        });
    }
    for thread in threads {
        if thread.join().is_err() {
            error!("a core thread panicked");
        }
    }
    if let Some(storage) = storage {
        storage.close_blocking();
    }
    info!("stopped");
    match failed {
        Some(e) => Err(StartError::Thread(std::io::Error::other(e))),
        None => Ok(()),
    }
}

/// Binds `addr`, retrying for a few seconds while it is in use: after a crash the kernel releases
/// the listening socket of the dead process only once its io_uring is torn down, a moment later.
fn bind(addr: std::net::SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match std::net::TcpListener::bind(addr) {
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// Blocks until SIGINT or SIGTERM (a small tokio runtime on this thread owns the signal handlers).
fn wait_for_signal() {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            warn!("cannot watch signals ({e}); stop with SIGKILL");
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
    };
    runtime.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            warn!("cannot watch SIGTERM/SIGINT");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    });
}

/// Gives each engine the sessions of the client identifiers it owns; every engine gets every retained
/// message (each serves its own subscribers).
fn split_state(state: StoredState, count: u16, prefix: &str) -> Vec<StoredState> {
    let mut parts: Vec<StoredState> = (0..count)
        .map(|_| StoredState {
            sessions: Default::default(),
            retained: state.retained.clone(),
            // cicada-uring is not a cluster node (see docs/cluster.md).
            relays: Default::default(),
            handed_over: Default::default(),
            raft: Default::default(),
        })
        .collect();
    let shards = Shard { index: 0, count };
    for (client_id, session) in state.sessions {
        let owner = usize::from(shards.owner(&client_id, prefix));
        parts[owner].sessions.insert(client_id, session);
    }
    parts
}
