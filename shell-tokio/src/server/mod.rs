//! The event loop: listeners and connection tasks feed one engine task, which writes back through
//! per-connection writer tasks.
//!
//! - Reader tasks read sockets and send bytes to the engine over a bounded channel (backpressure on
//!   fast publishers).
//! - The engine task handles one input at a time, then drains every output: all transmits of a loop
//!   turn for a connection are sent to its writer as one batch, written with one vectored write.
//! - Writer tasks report `Flushed`, which reopens the engine's per-connection send window.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cicada_engine::{ConnId, ConnMeta, Engine, Event, Input, Instant};
use cicada_transports::{Accepted, BoxStream, Listeners, Slot, TransportMeta};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use crate::bridge::{Bridges, LocalDialer, LocalStream, Origin};
use crate::config::{Backend, Settings};
use crate::http::{metrics::Telemetry, Call, Phase, PhaseFlag};
use crate::storage::{Done, StorageHandle};

mod admin;
mod publish;
mod reload;

/// How long one write (or the closing handshake) may make no progress before the connection is
/// dropped.
const WRITE_STALL: Duration = Duration::from_secs(30);

/// A connection's first read buffer: a CONNECT and then some.
const FIRST_READ: usize = 512;

/// The largest read buffer a busy connection grows to.
const MAX_READ: usize = 64 * 1024;

/// Inputs for the engine task from sockets.
#[derive(Debug)]
enum Happening {
    Accepted {
        conn: ConnId,
        meta: TransportMeta,
        writer: mpsc::UnboundedSender<Outgoing>,
        pause: tokio::sync::watch::Sender<bool>,
        /// A bridge's connection into this broker, vouched for by the shell.
        bridge: bool,
    },
    Received {
        conn: ConnId,
        data: Bytes,
    },
    Flushed {
        conn: ConnId,
        bytes: usize,
    },
    Closed {
        conn: ConnId,
    },
    /// A credential check that ran on the blocking pool finished.
    AuthChecked {
        conn: ConnId,
        decision: cicada_engine::AuthDecision,
        proof: Option<crate::providers::Proof>,
    },
    /// SIGHUP: reload the password, JWT, ACL and ban files.
    Reload,
}

/// What a writer task is told.
#[derive(Debug)]
enum Outgoing {
    Data(Vec<Bytes>),
    Close,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0}")]
    Listen(#[from] cicada_transports::ListenError),
    #[error(
        "cannot create data directory {path}: {source} (change `server.data_dir` or --data-dir)"
    )]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("invalid engine configuration: {0}")]
    Engine(#[from] cicada_engine::ConfigError),
    #[error("{0}")]
    Storage(#[from] cicada_storage::StoreError),
    #[error("{0}")]
    Auth(#[from] crate::auth::AuthError),
    #[error("{0}")]
    Policy(#[from] crate::policy::PolicyError),
    #[error("cannot start the storage thread: {0}")]
    StorageThread(std::io::Error),
    #[error("{0}")]
    Webhook(#[from] crate::webhook::WebhookError),
    #[error("{0}")]
    Cluster(#[from] crate::cluster::ClusterError),
    #[error("cannot listen for HTTP on {addr}: {source} (change `http.listen`)")]
    Http {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// Opens the configured store and loads what it holds.
pub fn open_store(
    settings: &Settings,
) -> Result<
    (
        Option<Box<dyn cicada_storage::Store>>,
        cicada_engine::StoredState,
    ),
    ServerError,
> {
    match settings.backend {
        Backend::Memory => {
            info!("storage: memory (nothing survives a restart)");
            Ok((None, cicada_engine::StoredState::default()))
        }
        Backend::Rocksdb => {
            let path = settings.data_dir.join("store");
            let started = std::time::Instant::now();
            let mut store = cicada_storage::RocksStore::open(&path, settings.fsync)?;
            let state = cicada_storage::Store::load(&mut store)?;
            info!(
                path = %path.display(),
                sessions = state.sessions.len(),
                retained = state.retained.len(),
                millis = started.elapsed().as_millis() as u64,
                fsync = ?settings.fsync,
                "storage: rocksdb loaded"
            );
            Ok((Some(Box::new(store)), state))
        }
    }
}

/// The engine's time at start: wall-clock time since the Unix epoch, which the shell then advances
/// by a monotonic clock. Stored instants (when a session went offline, when a message expires) keep
/// their meaning across a restart, and time never goes back while the broker runs.
pub fn engine_origin() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

/// Runs the broker until SIGINT or SIGTERM.
pub async fn run(
    settings: Settings,
    source: crate::config::Source,
    log: crate::LogControl,
) -> Result<(), ServerError> {
    let phase = PhaseFlag::default();
    let telemetry = Telemetry::default();
    let (calls_tx, calls) = mpsc::channel::<Call>(256);
    let (local_tx, local_rx) = mpsc::channel::<LocalStream>(16);
    let bridges = Bridges::new(LocalDialer::new(local_tx));
    let (webhooks, webhook_stats) = crate::webhook::Webhooks::start(&settings.webhooks)?;
    // HTTP first, so `/health` and `/ready` answer (503) while storage loads.
    let http_task = match &settings.http {
        Some(http) => {
            let listener = tokio::net::TcpListener::bind(http.listen)
                .await
                .map_err(|source| ServerError::Http {
                    addr: http.listen,
                    source,
                })?;
            let state = crate::http::HttpState::new(
                calls_tx.clone(),
                phase.clone(),
                http.admin_token.as_deref(),
                telemetry.clone(),
                http.publish_anonymous,
                crate::http::Integrations {
                    bridges: bridges.clone(),
                    webhooks: webhook_stats,
                },
            );
            Some(tokio::spawn(crate::http::serve(listener, state)))
        }
        None => None,
    };
    std::fs::create_dir_all(&settings.data_dir).map_err(|source| ServerError::DataDir {
        path: settings.data_dir.clone(),
        source,
    })?;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let auth = crate::auth::Authenticator::new(&settings.auth)?;
    let mut engine_config = settings.engine.clone();
    if let Some(path) = &settings.acl_file {
        let acl = crate::policy::load_acl(path)?;
        info!(path = %path.display(), rules = acl.len(), "ACL loaded");
        engine_config.acl = Some(acl);
    }
    let bans = match &settings.bans_file {
        Some(path) => {
            let bans = crate::banfile::load(path).map_err(crate::policy::PolicyError::from)?;
            info!(path = %path.display(), bans = bans.len(), "bans loaded");
            bans
        }
        None => Vec::new(),
    };
    let mut engine = Engine::new(engine_config, seed)?;
    let (store, state) = open_store(&settings)?;
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let storage = match store {
        Some(store) => Some(
            StorageHandle::start(
                store,
                settings.fsync,
                settings.fsync_interval,
                vec![done_tx],
                telemetry.clone(),
            )
            .map_err(ServerError::StorageThread)?,
        ),
        None => None,
    };
    let origin = engine_origin();
    let start = tokio::time::Instant::now();
    engine.restore(Instant::from_duration(origin), state);
    engine.handle(
        Instant::from_duration(origin),
        Input::SetBans {
            bans: crate::policy::engine_bans(&bans),
        },
    );
    let (tx, rx) = mpsc::channel::<Happening>(4096);
    let (accepted_tx, accepted_rx) = mpsc::channel::<Accepted>(1024);
    let listeners = Listeners::bind(settings.listeners.clone(), accepted_tx).await?;
    let accept_tasks = [
        tokio::spawn(forward_accepted(accepted_rx, local_rx, tx.clone())),
        tokio::spawn(reload_on_sighup(tx.clone())),
    ];
    let bound = listeners.addresses();
    let (cluster_tx, cluster_rx) = mpsc::channel::<(u16, Bytes)>(4096);
    let cluster = match &settings.cluster {
        Some(cluster) => {
            // A frame carries at most one message of the largest packet size plus raft's
            // framing; raft batches entries up to 1 MiB per message.
            let max_frame = (settings.engine.max_packet_size as usize)
                .saturating_add(1 << 20)
                .max(16 << 20);
            Some(crate::cluster::ClusterNet::start(cluster, max_frame, cluster_tx).await?)
        }
        None => None,
    };
    let mut shell = EngineTask {
        cluster,
        engine,
        start,
        origin,
        storage,
        writers: BTreeMap::new(),
        peers: BTreeMap::new(),
        shutting_down: false,
        auth,
        closing: Vec::new(),
        checks: Arc::new(tokio::sync::Semaphore::new(crate::auth::CHECKS_AT_ONCE)),
        tx,
        pauses: BTreeMap::new(),
        settings: settings.clone(),
        source,
        log,
        listeners: Some(listeners),
        bound,
        bans,
        reconfigured: None,
        telemetry,
        phase: phase.clone(),
        spans: BTreeMap::new(),
        publishing: publish::Pending::default(),
        bridged: Default::default(),
        webhooks,
    };
    // Restoring may have emitted work (expired sessions deleted, wills published).
    let mut batch = BTreeMap::new();
    shell.drain(&mut batch);
    shell.send_batch(&mut batch);
    phase.set(Phase::Ready);
    info!("ready");
    for spec in settings.bridges.iter().cloned() {
        if let Err(e) = bridges.start(spec, Origin::Config) {
            error!("{e}");
        }
    }
    shell
        .run(rx, done_rx, calls, cluster_rx, shutdown_signal())
        .await;
    bridges.stop_all();
    if let Some(storage) = shell.storage.take() {
        storage.close().await;
    }
    for task in accept_tasks.into_iter().chain(http_task) {
        task.abort();
    }
    // Give writers a moment to deliver the last DISCONNECTs.
    let grace = tokio::time::sleep(shell.settings.shutdown_grace);
    tokio::pin!(grace);
    tokio::select! {
        () = shell.writers_done() => {}
        () = &mut grace => warn!("shutdown grace period over; closing remaining connections"),
    }
    info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    warn!("cannot watch SIGTERM: {e}");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Numbers each accepted connection (from a listener or a bridge), tells the engine, and starts
/// its reader and writer.
async fn forward_accepted(
    mut accepted: mpsc::Receiver<Accepted>,
    mut bridged: mpsc::Receiver<LocalStream>,
    tx: mpsc::Sender<Happening>,
) {
    let mut next_conn = 1;
    loop {
        let (Accepted { stream, meta, slot }, bridge) = tokio::select! {
            Some(accepted) = accepted.recv() => (accepted, false),
            Some(local) = bridged.recv() => (bridge_accepted(local), true),
            else => return,
        };
        let conn = ConnId(next_conn);
        next_conn += 1;
        let (writer_tx, writer_rx) = mpsc::unbounded_channel();
        let (pause_tx, pause_rx) = tokio::sync::watch::channel(false);
        let happening = Happening::Accepted {
            conn,
            meta,
            writer: writer_tx,
            pause: pause_tx,
            bridge,
        };
        if tx.send(happening).await.is_err() {
            return;
        }
        tokio::spawn(connection(
            conn,
            stream,
            slot,
            tx.clone(),
            writer_rx,
            pause_rx,
        ));
    }
}

/// A bridge's in-memory connection, dressed as an accepted one: listener `bridge:{name}`, the
/// bridge's local user name vouched for.
fn bridge_accepted(local: LocalStream) -> Accepted {
    let nowhere = std::net::SocketAddr::from(([0, 0, 0, 0], 0));
    Accepted {
        stream: local.stream,
        meta: TransportMeta {
            peer: nowhere,
            local: nowhere,
            listener: format!("bridge:{}", local.bridge).into(),
            kind: cicada_transports::Kind::Tcp,
            identity: None,
            username: Some(local.username),
        },
        slot: Slot::unlimited(),
    }
}

/// Has the engine task reload the configuration and the files it names on SIGHUP.
async fn reload_on_sighup(tx: mpsc::Sender<Happening>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::hangup()) {
            Ok(mut hup) => {
                while hup.recv().await.is_some() {
                    info!("SIGHUP: reloading the configuration, certificates and security files");
                    let _ = tx.send(Happening::Reload).await;
                }
            }
            Err(e) => warn!("cannot watch SIGHUP; reload through the admin API: {e}"),
        }
    }
    std::future::pending::<()>().await;
}

/// Runs one connection's reader and writer until the engine closes it or the peer goes away.
async fn connection(
    conn: ConnId,
    stream: BoxStream,
    slot: Slot,
    tx: mpsc::Sender<Happening>,
    mut outgoing: mpsc::UnboundedReceiver<Outgoing>,
    mut pause: tokio::sync::watch::Receiver<bool>,
) {
    // The listener's place is held until both halves are done.
    let _slot = slot;
    let (mut read, mut write) = tokio::io::split(stream);
    let reader_tx = tx.clone();
    let reader = tokio::spawn(async move {
        // Small at first and grown only while reads fill it: an idle connection keeps
        // `FIRST_READ` bytes, a busy one reads up to `MAX_READ` at a time.
        let mut buf = bytes::BytesMut::new();
        let mut size = FIRST_READ;
        loop {
            // A rate limit holds this client back: read nothing until the engine has handled what
            // it already has, so TCP pushes back on the client.
            if pause.wait_for(|paused| !*paused).await.is_err() {
                break;
            }
            if buf.capacity() == buf.len() {
                buf.reserve(size);
            }
            let room = buf.capacity() - buf.len();
            match read.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if n == room {
                        size = (size * 4).min(MAX_READ);
                    }
                    let data = buf.split().freeze();
                    if reader_tx
                        .send(Happening::Received { conn, data })
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
        let _ = reader_tx.send(Happening::Closed { conn }).await;
    });
    while let Some(msg) = outgoing.recv().await {
        match msg {
            Outgoing::Data(chunks) => {
                let bytes = chunks.iter().map(Bytes::len).sum();
                // A peer that takes no byte for this long is gone or hostile: closing it frees its
                // listener place and its task.
                let written =
                    tokio::time::timeout(WRITE_STALL, write_batch(&mut write, chunks)).await;
                if !matches!(written, Ok(Ok(()))) {
                    reader.abort();
                    let _ = tx.send(Happening::Closed { conn }).await;
                    return;
                }
                if tx.send(Happening::Flushed { conn, bytes }).await.is_err() {
                    break;
                }
            }
            Outgoing::Close => break,
        }
    }
    // TLS close_notify / WebSocket Close / QUIC FIN, bounded like any write.
    let _ = tokio::time::timeout(WRITE_STALL, write.shutdown()).await;
    reader.abort();
}

/// Writes a loop turn's bytes for one connection with one write and a flush: one TCP segment
/// train, one TLS record run, one WebSocket frame.
async fn write_batch(
    write: &mut (impl tokio::io::AsyncWrite + Unpin),
    chunks: Vec<Bytes>,
) -> std::io::Result<()> {
    if let [chunk] = chunks.as_slice() {
        write.write_all(chunk).await?;
    } else {
        let mut joined = bytes::BytesMut::with_capacity(chunks.iter().map(Bytes::len).sum());
        for chunk in &chunks {
            joined.extend_from_slice(chunk);
        }
        write.write_all(&joined).await?;
    }
    write.flush().await
}

struct EngineTask {
    engine: Engine,
    start: tokio::time::Instant,
    /// Wall-clock time (since the Unix epoch) at `start`: the engine's time origin.
    origin: Duration,
    /// The storage thread; `None` with the in-memory backend.
    storage: Option<StorageHandle>,
    writers: BTreeMap<ConnId, mpsc::UnboundedSender<Outgoing>>,
    /// Each connection's peer address and listener, for logs.
    peers: BTreeMap<ConnId, (String, std::sync::Arc<str>)>,
    shutting_down: bool,
    /// Answers authentication steps.
    auth: crate::auth::Authenticator,
    /// Writers told to close at shutdown, awaited so their last bytes go out.
    closing: Vec<mpsc::UnboundedSender<Outgoing>>,
    /// Bounds the credential checks running on the blocking pool.
    checks: Arc<tokio::sync::Semaphore>,
    /// For results of those checks.
    tx: mpsc::Sender<Happening>,
    /// Each connection's reader pause switch.
    pauses: BTreeMap<ConnId, tokio::sync::watch::Sender<bool>>,
    /// The configuration in force, for reloads.
    settings: Settings,
    /// Where it came from, read again on reload.
    source: crate::config::Source,
    /// Changes the log filter.
    log: crate::LogControl,
    /// The listeners, until a drain drops them (which stops accepting).
    listeners: Option<Listeners>,
    /// Each listener's name, transport and bound address.
    bound: Vec<(
        String,
        cicada_transports::config::Kind,
        std::net::SocketAddr,
    )>,
    /// The bans in force as the ban file writes them (wall-clock expiry), for the admin API.
    bans: Vec<crate::banfile::BanEntry>,
    /// The engine's answer to the last `Input::Reconfigure`.
    reconfigured: Option<cicada_engine::Reconfigured>,
    /// Loop turn latency.
    telemetry: Telemetry,
    /// `/ready`'s view of the broker.
    phase: PhaseFlag,
    /// Each connected client's `mqtt.connection` span, while traces are exported.
    spans: BTreeMap<ConnId, tracing::Span>,
    /// HTTP publish requests waiting for the engine.
    publishing: publish::Pending,
    /// Bridges' connections into this broker: authenticated by the shell, not the providers.
    bridged: std::collections::BTreeSet<ConnId>,
    /// Where events are POSTed.
    webhooks: crate::webhook::Webhooks,
    /// The links to the other cluster nodes, if this broker is one.
    cluster: Option<crate::cluster::ClusterNet>,
}

impl EngineTask {
    fn now(&self) -> Instant {
        Instant::from_duration(self.origin + self.start.elapsed())
    }

    async fn run(
        &mut self,
        mut rx: mpsc::Receiver<Happening>,
        mut done: mpsc::UnboundedReceiver<Done>,
        mut calls: mpsc::Receiver<Call>,
        mut cluster: mpsc::Receiver<(u16, Bytes)>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        /// What woke the loop.
        enum Wake {
            Happening(Happening),
            Stored(Done),
            Timer,
            Call(Call),
            Cluster(u16, Bytes),
            Shutdown,
        }
        tokio::pin!(shutdown);
        let mut batch: BTreeMap<ConnId, Vec<Bytes>> = BTreeMap::new();
        loop {
            let deadline = self
                .engine
                .poll_timeout()
                .map(|at| self.start + at.since_origin().saturating_sub(self.origin));
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let wake = tokio::select! {
                msg = rx.recv() => match msg {
                    Some(msg) => Wake::Happening(msg),
                    None => break,
                },
                Some(result) = done.recv() => Wake::Stored(result),
                Some(call) = calls.recv() => Wake::Call(call),
                Some((from, frame)) = cluster.recv() => Wake::Cluster(from, frame),
                () = sleep => Wake::Timer,
                () = &mut shutdown => Wake::Shutdown,
            };
            let turn = std::time::Instant::now();
            match wake {
                Wake::Happening(msg) => {
                    self.happening(msg, &mut batch);
                    // Take whatever else is ready, so one loop turn writes each connection once.
                    for _ in 0..256 {
                        match rx.try_recv() {
                            Ok(msg) => self.happening(msg, &mut batch),
                            Err(_) => break,
                        }
                    }
                }
                Wake::Stored(result) => {
                    let now = self.now();
                    match result {
                        Done::Persisted(upto) => self.engine.handle(now, Input::Persisted { upto }),
                        Done::Failed(seqs) => {
                            for seq in seqs {
                                self.engine.handle(now, Input::PersistFailed { seq });
                            }
                        }
                    }
                    self.drain(&mut batch);
                }
                Wake::Timer => {
                    let now = self.now();
                    self.engine.handle(now, Input::Timeout);
                    self.drain(&mut batch);
                }
                Wake::Call(call) => {
                    let _span = crate::otlp::enabled().then(|| {
                        tracing::info_span!("admin.request", request = call.request.name())
                            .entered()
                    });
                    match call.request {
                        crate::http::Request::Publish {
                            principal,
                            messages,
                        } => self.publish(principal, messages, call.reply, &mut batch),
                        request => {
                            let reply = self.answer(request, &mut batch);
                            let _ = call.reply.send(reply);
                        }
                    }
                }
                Wake::Cluster(from, frame) => {
                    let now = self.now();
                    self.engine.handle(now, Input::Cluster { from, frame });
                    // Raft sends in bursts; take what else has come before draining once.
                    for _ in 0..256 {
                        match cluster.try_recv() {
                            Ok((from, frame)) => {
                                self.engine.handle(now, Input::Cluster { from, frame })
                            }
                            Err(_) => break,
                        }
                    }
                    self.drain(&mut batch);
                }
                Wake::Shutdown => {
                    self.drain_clients(&mut batch);
                    return;
                }
            }
            self.send_batch(&mut batch);
            self.telemetry.turn(turn.elapsed());
        }
    }

    /// SIGTERM/SIGINT: stop accepting, send every client away (v5: 0x8B, or the redirect's
    /// reason and Server Reference), keep every session as it is for the next start.
    fn drain_clients(&mut self, batch: &mut BTreeMap<ConnId, Vec<Bytes>>) {
        info!(
            connections = self.engine.connection_count(),
            "draining: no new connections; sending every client away"
        );
        self.phase.set(Phase::Draining);
        self.listeners = None;
        self.shutting_down = true;
        let now = self.now();
        self.engine.handle(now, Input::Shutdown);
        self.drain(batch);
        self.send_batch(batch);
    }

    fn happening(&mut self, msg: Happening, batch: &mut BTreeMap<ConnId, Vec<Bytes>>) {
        let now = self.now();
        let input = match msg {
            Happening::Accepted {
                conn,
                meta,
                writer,
                pause,
                bridge,
            } => {
                self.writers.insert(conn, writer);
                self.pauses.insert(conn, pause);
                let peer = if bridge {
                    self.bridged.insert(conn);
                    meta.listener.to_string()
                } else {
                    meta.peer.to_string()
                };
                debug!(
                    %conn, %peer, listener = %meta.listener, transport = %meta.kind,
                    identity = ?meta.identity.as_ref().and_then(|i| i.name()), "accepted"
                );
                self.peers
                    .insert(conn, (peer.clone(), meta.listener.clone()));
                Input::Accepted {
                    conn,
                    meta: ConnMeta {
                        peer,
                        listener: meta.listener.to_string(),
                        identity: meta.identity,
                        username: meta.username.map(Into::into),
                    },
                }
            }
            Happening::Received { conn, data } => Input::Received { conn, data },
            Happening::Flushed { conn, bytes } => Input::Flushed { conn, bytes },
            Happening::Closed { conn } => {
                self.forget(conn, batch);
                Input::Closed { conn }
            }
            Happening::AuthChecked {
                conn,
                decision,
                proof,
            } => {
                if !self.writers.contains_key(&conn) {
                    return;
                }
                self.auth.settled(conn, proof);
                Input::AuthDecided { conn, decision }
            }
            Happening::Reload => {
                let _span = crate::otlp::enabled()
                    .then(|| tracing::info_span!("reload", trigger = "SIGHUP").entered());
                let report = self.reload(batch);
                report.log();
                return;
            }
        };
        self.engine.handle(now, input);
        self.drain(batch);
    }

    /// Pulls every output of the last input, and of the inputs those outputs answer at once
    /// (authentication decisions, in-memory persistence), until nothing is left.
    fn drain(&mut self, batch: &mut BTreeMap<ConnId, Vec<Bytes>>) {
        loop {
            let follow_ups = self.drain_once(batch);
            if follow_ups.is_empty() {
                return;
            }
            for input in follow_ups {
                let now = self.now();
                self.engine.handle(now, input);
            }
        }
    }

    fn drain_once(&mut self, batch: &mut BTreeMap<ConnId, Vec<Bytes>>) -> Vec<Input> {
        let mut follow_ups = Vec::new();
        while let Some(t) = self.engine.poll_transmit() {
            batch.entry(t.conn).or_default().push(t.data);
        }
        let time_ms = self.now().since_origin().as_millis() as u64;
        while let Some(event) = self.engine.poll_event() {
            // The peer address and listener name of a connection, for logs and webhooks.
            let peers = &self.peers;
            let peer = |conn| {
                peers.get(&conn).map_or_else(
                    || ("-".into(), "-".into()),
                    |(peer, listener): &(String, std::sync::Arc<str>)| {
                        (peer.clone(), listener.to_string())
                    },
                )
            };
            crate::events::log(&event, peer);
            self.webhooks.offer(&event, time_ms, peer);
            match event {
                Event::Close { conn, .. } => {
                    self.auth.forget(conn);
                    self.bridged.remove(&conn);
                    // Bytes taken before the close go out first.
                    if let Some(chunks) = batch.remove(&conn) {
                        if let Some(w) = self.writers.get(&conn) {
                            let _ = w.send(Outgoing::Data(chunks));
                        }
                    }
                    if let Some(w) = self.writers.remove(&conn) {
                        let _ = w.send(Outgoing::Close);
                        if self.shutting_down {
                            self.closing.push(w);
                        }
                    }
                }
                Event::Persist { seq, ops } => {
                    match self.storage.as_ref().map(|storage| storage.write(seq, ops)) {
                        Some(true) => {}
                        Some(false) => {
                            error!(seq = seq.0, "storage thread gone; batch failed");
                            follow_ups.push(Input::PersistFailed { seq });
                        }
                        // The in-memory backend: the engine runs with `durable = false` and emits no
                        // batches; confirm anyway so nothing could wait forever.
                        None => follow_ups.push(Input::Persisted { upto: seq }),
                    }
                }
                Event::Published { request, outcome } => self.published(request, outcome),
                Event::Cluster { to, frame } => {
                    if let Some(cluster) = &self.cluster {
                        cluster.send(to, frame);
                    }
                }
                Event::ClusterMembers { members } => {
                    if let Some(cluster) = &mut self.cluster {
                        cluster.set_members(&members);
                    }
                }
                Event::Authenticate { conn, username, .. } if self.bridged.contains(&conn) => {
                    let principal = cicada_engine::Principal {
                        username,
                        claims: Vec::new(),
                    };
                    let decision = cicada_engine::AuthDecision::Authenticated {
                        principal,
                        data: None,
                    };
                    follow_ups.push(Input::AuthDecided { conn, decision });
                }
                event @ Event::Authenticate { .. } => match self.auth.decide_event(event) {
                    Some((conn, crate::auth::Answer::Now(decision))) => {
                        follow_ups.push(Input::AuthDecided { conn, decision });
                    }
                    Some((conn, crate::auth::Answer::Later(check))) => {
                        self.check_later(conn, check)
                    }
                    None => {}
                },
                Event::ReadPaused { conn } => {
                    if let Some(pause) = self.pauses.get(&conn) {
                        let _ = pause.send(true);
                    }
                }
                Event::ReadResumed { conn } => {
                    if let Some(pause) = self.pauses.get(&conn) {
                        let _ = pause.send(false);
                    }
                }
                // A span per connection, while traces are exported.
                Event::ClientConnected {
                    conn,
                    client_id,
                    protocol,
                    session_present,
                } if crate::otlp::enabled() => {
                    let (peer, listener) = self.peer(conn);
                    let span = tracing::info_span!(
                        parent: None,
                        "mqtt.connection",
                        client_id = %client_id,
                        peer = %peer,
                        listener = %listener,
                        protocol = %protocol,
                        session_present,
                        close_reason = tracing::field::Empty,
                    );
                    self.spans.insert(conn, span);
                }
                Event::ClientDisconnected { conn, reason, .. } => {
                    self.peers.remove(&conn);
                    if let Some(span) = self.spans.remove(&conn) {
                        span.record("close_reason", tracing::field::debug(&reason));
                    }
                }
                Event::Reconfigured(report) => self.reconfigured = Some(report),
                _ => {}
            }
        }
        follow_ups
    }

    /// The peer address and listener name of a connection, for logs.
    fn peer(&self, conn: ConnId) -> (String, std::sync::Arc<str>) {
        self.peers
            .get(&conn)
            .cloned()
            .unwrap_or_else(|| ("-".into(), "-".into()))
    }

    /// Runs a slow credential check on the blocking pool, a bounded number at a time; its answer
    /// comes back as [`Happening::AuthChecked`].
    fn check_later(&self, conn: ConnId, check: crate::auth::SlowCheck) {
        let (checks, tx) = (self.checks.clone(), self.tx.clone());
        tokio::spawn(async move {
            let Ok(_permit) = checks.acquire_owned().await else {
                return;
            };
            let Ok((decision, proof)) = tokio::task::spawn_blocking(check).await else {
                error!(%conn, "credential check panicked; the client is refused");
                let decision = cicada_engine::AuthDecision::Deny {
                    reason: cicada_engine::codec::ReasonCode::UnspecifiedError,
                };
                let _ = tx
                    .send(Happening::AuthChecked {
                        conn,
                        decision,
                        proof: None,
                    })
                    .await;
                return;
            };
            let _ = tx
                .send(Happening::AuthChecked {
                    conn,
                    decision,
                    proof,
                })
                .await;
        });
    }

    fn forget(&mut self, conn: ConnId, batch: &mut BTreeMap<ConnId, Vec<Bytes>>) {
        batch.remove(&conn);
        self.bridged.remove(&conn);
        self.pauses.remove(&conn);
        self.auth.forget(conn);
        self.writers.remove(&conn);
    }

    fn send_batch(&mut self, batch: &mut BTreeMap<ConnId, Vec<Bytes>>) {
        for (conn, chunks) in std::mem::take(batch) {
            if let Some(w) = self.writers.get(&conn) {
                let _ = w.send(Outgoing::Data(chunks));
            }
        }
    }

    /// Resolves once every writer has finished (their channels closed).
    async fn writers_done(&mut self) {
        for w in std::mem::take(&mut self.closing) {
            w.closed().await;
        }
    }
}
