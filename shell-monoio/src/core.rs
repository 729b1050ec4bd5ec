//! One core: a monoio runtime driving one engine and the connections it owns.
//!
//! Everything on a core is single-threaded: connection tasks push inputs into [`Core::inputs`] and
//! wake the engine task, which handles every waiting input in one turn, then hands each connection's
//! bytes to its writer (one write per connection per turn, whatever the number of messages).

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

use bytes::BytesMut;
use cicada_engine::{
    ConnId, ConnMeta, Engine, Event, Input, Instant, PeerMessage, Shard, StoredState,
};
use cicada_shell_tokio::auth::{Answer, Authenticator, SlowCheck};
use cicada_shell_tokio::config::Settings;
use cicada_shell_tokio::providers::Proof;
use cicada_shell_tokio::storage::{Done, StorageWriter};
use tokio::sync::mpsc;
use tracing::{error, warn};

use crate::net::{self, ConnIo, ListenerInfo};

/// What the main thread tells a core.
#[derive(Debug)]
pub(crate) enum Control {
    /// Close every connection (v5: 0x8B), give writers `grace`, and stop.
    Shutdown { grace: Duration },
}

/// A connection accepted on another core, whose client identifier this core owns.
#[derive(Debug)]
pub(crate) struct Handoff {
    pub(crate) stream: net::Moved,
    pub(crate) meta: ConnMeta,
    /// What was read already (at least the CONNECT).
    pub(crate) initial: BytesMut,
    pub(crate) slot: net::Slot,
}

/// Everything a core starts with.
pub(crate) struct CoreSetup {
    pub(crate) shard: Shard,
    pub(crate) settings: Settings,
    pub(crate) seed: u64,
    pub(crate) state: StoredState,
    /// Wall-clock time since the Unix epoch at `start`: the engine's time origin (as in `cicada`).
    pub(crate) origin: Duration,
    pub(crate) start: std::time::Instant,
    /// Each listener with its socket and its count of open connections (shared by the cores).
    pub(crate) listeners: Vec<(
        cicada_transports::config::Listener,
        std::net::TcpListener,
        std::sync::Arc<std::sync::atomic::AtomicUsize>,
    )>,
    pub(crate) peers: Vec<mpsc::UnboundedSender<PeerMessage>>,
    pub(crate) peer_rx: Option<mpsc::UnboundedReceiver<PeerMessage>>,
    pub(crate) handoffs: Vec<mpsc::UnboundedSender<Handoff>>,
    pub(crate) handoff_rx: Option<mpsc::UnboundedReceiver<Handoff>>,
    pub(crate) done_rx: Option<mpsc::UnboundedReceiver<Done>>,
    pub(crate) control_rx: Option<mpsc::UnboundedReceiver<Control>>,
    pub(crate) storage: Option<StorageWriter>,
    pub(crate) ready: std::sync::mpsc::Sender<Result<(), String>>,
}

/// The state the engine task and the connection tasks of a core share.
pub(crate) struct Core {
    pub(crate) engine: Engine,
    pub(crate) shard: Shard,
    origin: Duration,
    start: std::time::Instant,
    /// Inputs from connection tasks, handled at the next turn.
    inputs: VecDeque<Input>,
    /// The engine task, when it waits.
    waker: Option<Waker>,
    pub(crate) conns: BTreeMap<ConnId, Rc<ConnIo>>,
    next_conn: u64,
    /// Each connection's peer address and listener, for logs.
    peers: BTreeMap<ConnId, (String, String)>,
    pub(crate) handoffs: Vec<mpsc::UnboundedSender<Handoff>>,
    pub(crate) max_packet_size: usize,
    pub(crate) assigned_prefix: String,
}

pub(crate) type Shared = Rc<RefCell<Core>>;

impl Core {
    pub(crate) fn now(&self) -> Instant {
        Instant::from_duration(self.origin + self.start.elapsed())
    }

    /// Queues an input for the next turn and wakes the engine task.
    pub(crate) fn push(&mut self, input: Input) {
        self.inputs.push_back(input);
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    /// Registers a connection this core owns; its tasks are started by the caller.
    pub(crate) fn add_conn(&mut self, meta: ConnMeta, initial: BytesMut) -> (ConnId, Rc<ConnIo>) {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        let io = Rc::new(ConnIo::default());
        self.conns.insert(conn, io.clone());
        self.peers
            .insert(conn, (meta.peer.clone(), meta.listener.clone()));
        self.push(Input::Accepted { conn, meta });
        if !initial.is_empty() {
            self.push(Input::Received {
                conn,
                data: initial.freeze(),
            });
        }
        (conn, io)
    }
}

/// Runs a core until told to stop; reports to `setup.ready` once it accepts.
pub(crate) fn run(setup: CoreSetup) {
    let ready = setup.ready.clone();
    let runtime = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build();
    let mut runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(format!("cannot start the io_uring runtime: {e}")));
            return;
        }
    };
    runtime.block_on(async move {
        if let Err(e) = serve(setup).await {
            let _ = ready.send(Err(e));
        }
    });
}

/// The receiving ends a core polls.
struct Channels {
    peer_rx: mpsc::UnboundedReceiver<PeerMessage>,
    handoff_rx: mpsc::UnboundedReceiver<Handoff>,
    done_rx: Option<mpsc::UnboundedReceiver<Done>>,
    control_rx: mpsc::UnboundedReceiver<Control>,
    checked_rx: mpsc::UnboundedReceiver<(ConnId, cicada_engine::AuthDecision, Option<Proof>)>,
}

/// What woke the engine task.
enum Wake {
    Inputs,
    Peer(PeerMessage),
    Handoff(Handoff),
    Stored(Done),
    Checked(ConnId, cicada_engine::AuthDecision, Option<Proof>),
    Control(Control),
    Timer,
}

async fn serve(setup: CoreSetup) -> Result<(), String> {
    let CoreSetup {
        shard,
        settings,
        seed,
        state,
        origin,
        start,
        listeners,
        peers,
        peer_rx,
        handoffs,
        handoff_rx,
        done_rx,
        control_rx,
        storage,
        ready,
    } = setup;
    let mut config = settings.engine.clone();
    config.shard = shard;
    if let Some(path) = &settings.acl_file {
        let acl = cicada_shell_tokio::policy::load_acl(path).map_err(|e| e.to_string())?;
        config.acl = Some(acl);
    }
    let bans = match &settings.bans_file {
        Some(path) => cicada_shell_tokio::banfile::load(path).map_err(|e| e.to_string())?,
        None => Vec::new(),
    };
    let auth = Authenticator::new(&settings.auth).map_err(|e| e.to_string())?;
    let max_packet_size = config.max_packet_size as usize;
    let assigned_prefix = config.assigned_client_id_prefix.clone();
    let mut engine = Engine::new(config, seed).map_err(|e| e.to_string())?;
    let now = Instant::from_duration(origin + start.elapsed());
    engine.restore(now, state);
    engine.handle(
        now,
        Input::SetBans {
            bans: cicada_shell_tokio::policy::engine_bans(&bans),
        },
    );
    let core: Shared = Rc::new(RefCell::new(Core {
        engine,
        shard,
        origin,
        start,
        inputs: VecDeque::new(),
        waker: None,
        conns: BTreeMap::new(),
        next_conn: 1,
        peers: BTreeMap::new(),
        handoffs,
        max_packet_size,
        assigned_prefix,
    }));
    for (config, socket, open) in listeners {
        let info = ListenerInfo::new(config, open).map_err(|e| e.to_string())?;
        let listener = monoio::net::TcpListener::from_std(socket).map_err(|e| e.to_string())?;
        monoio::spawn(net::accept_loop(core.clone(), listener, Rc::new(info)));
    }
    let (checked_tx, checked_rx) = mpsc::unbounded_channel();
    let channels = Channels {
        peer_rx: peer_rx.ok_or("peer channel missing")?,
        handoff_rx: handoff_rx.ok_or("handoff channel missing")?,
        done_rx,
        control_rx: control_rx.ok_or("control channel missing")?,
        checked_rx,
    };
    let mut task = EngineTask {
        core: core.clone(),
        peers,
        storage,
        auth,
        checked_tx,
        closing: Vec::new(),
    };
    let _ = ready.send(Ok(()));
    task.run(channels).await;
    Ok(())
}

struct EngineTask {
    core: Shared,
    peers: Vec<mpsc::UnboundedSender<PeerMessage>>,
    storage: Option<StorageWriter>,
    auth: Authenticator,
    checked_tx: mpsc::UnboundedSender<(ConnId, cicada_engine::AuthDecision, Option<Proof>)>,
    /// Writers told to close at shutdown.
    closing: Vec<Rc<ConnIo>>,
}

/// Most inputs handled in one turn before the bytes they produced are written.
const TURN_INPUTS: usize = 4096;

impl EngineTask {
    async fn run(&mut self, mut ch: Channels) {
        let mut timer: Option<(Instant, Pin<Box<monoio::time::Sleep>>)> = None;
        // Restoring may have produced work (wills, expiries).
        self.outputs();
        loop {
            let deadline = self.core.borrow().engine.poll_timeout();
            if deadline != timer.as_ref().map(|(at, _)| *at) {
                timer = deadline.map(|at| {
                    let now = self.core.borrow().now();
                    let wait = at.saturating_duration_since(now);
                    (at, Box::pin(monoio::time::sleep(wait)))
                });
            }
            let wake = poll_fn(|cx| {
                {
                    let mut core = self.core.borrow_mut();
                    if !core.inputs.is_empty() {
                        return Poll::Ready(Wake::Inputs);
                    }
                    core.waker = Some(cx.waker().clone());
                }
                if let Poll::Ready(Some(c)) = ch.control_rx.poll_recv(cx) {
                    return Poll::Ready(Wake::Control(c));
                }
                if let Poll::Ready(Some(m)) = ch.peer_rx.poll_recv(cx) {
                    return Poll::Ready(Wake::Peer(m));
                }
                if let Poll::Ready(Some(h)) = ch.handoff_rx.poll_recv(cx) {
                    return Poll::Ready(Wake::Handoff(h));
                }
                if let Some(rx) = ch.done_rx.as_mut() {
                    if let Poll::Ready(Some(d)) = rx.poll_recv(cx) {
                        return Poll::Ready(Wake::Stored(d));
                    }
                }
                if let Poll::Ready(Some((conn, decision, proof))) = ch.checked_rx.poll_recv(cx) {
                    return Poll::Ready(Wake::Checked(conn, decision, proof));
                }
                if let Some((_, sleep)) = timer.as_mut() {
                    if sleep.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Wake::Timer);
                    }
                }
                Poll::Pending
            })
            .await;
            match wake {
                Wake::Control(Control::Shutdown { grace }) => {
                    self.handle(Input::Shutdown);
                    self.outputs();
                    self.finish(grace).await;
                    return;
                }
                other => self.woken(other),
            }
            // Everything else already waiting joins this turn.
            let mut handled = 0;
            while handled < TURN_INPUTS {
                let next = if let Ok(m) = ch.peer_rx.try_recv() {
                    Wake::Peer(m)
                } else if let Some(Ok(d)) = ch.done_rx.as_mut().map(|rx| rx.try_recv()) {
                    Wake::Stored(d)
                } else if !self.core.borrow().inputs.is_empty() {
                    Wake::Inputs
                } else {
                    break;
                };
                self.woken(next);
                handled += 1;
            }
            self.outputs();
        }
    }

    fn woken(&mut self, wake: Wake) {
        match wake {
            Wake::Inputs => {
                let inputs = std::mem::take(&mut self.core.borrow_mut().inputs);
                for input in inputs {
                    self.handle(input);
                }
            }
            Wake::Peer(message) => self.handle(Input::Peer { message }),
            Wake::Handoff(h) => net::adopt(&self.core, h),
            Wake::Stored(Done::Persisted(upto)) => self.handle(Input::Persisted { upto }),
            Wake::Stored(Done::Failed(seqs)) => {
                for seq in seqs {
                    self.handle(Input::PersistFailed { seq });
                }
            }
            Wake::Checked(conn, decision, proof) => {
                if self.core.borrow().conns.contains_key(&conn) {
                    self.auth.settled(conn, proof);
                    self.handle(Input::AuthDecided { conn, decision });
                }
            }
            Wake::Timer => self.handle(Input::Timeout),
            Wake::Control(_) => {}
        }
    }

    fn handle(&mut self, input: Input) {
        let mut core = self.core.borrow_mut();
        let now = core.now();
        core.engine.handle(now, input);
    }

    /// Hands out everything the engine produced, until it produces nothing more.
    fn outputs(&mut self) {
        loop {
            let follow_ups = self.drain_once();
            if follow_ups.is_empty() {
                return;
            }
            for input in follow_ups {
                self.handle(input);
            }
        }
    }

    fn drain_once(&mut self) -> Vec<Input> {
        let mut follow_ups = Vec::new();
        let mut core = self.core.borrow_mut();
        while let Some(t) = core.engine.poll_transmit() {
            if let Some(io) = core.conns.get(&t.conn) {
                io.send(t.data);
            }
        }
        while let Some(event) = core.engine.poll_event() {
            cicada_shell_tokio::events::log(&event, |conn| {
                core.peers.get(&conn).cloned().unwrap_or_default()
            });
            match event {
                Event::Peer { to, message } => {
                    if let Some(tx) = self.peers.get(usize::from(to)) {
                        let _ = tx.send(message);
                    }
                }
                Event::Close { conn, .. } => {
                    self.auth.forget(conn);
                    if let Some(io) = core.conns.remove(&conn) {
                        io.close();
                        self.closing.push(io);
                    }
                    self.closing.retain(|io| !io.is_finished());
                }
                Event::Persist { seq, ops } => match &self.storage {
                    Some(storage) if storage.write(seq, ops) => {}
                    Some(_) => {
                        error!(seq = seq.0, "storage thread gone; batch failed");
                        follow_ups.push(Input::PersistFailed { seq });
                    }
                    None => follow_ups.push(Input::Persisted { upto: seq }),
                },
                event @ Event::Authenticate { .. } => match self.auth.decide_event(event) {
                    Some((conn, Answer::Now(decision))) => {
                        follow_ups.push(Input::AuthDecided { conn, decision });
                    }
                    Some((conn, Answer::Later(check))) => {
                        check_later(conn, check, self.checked_tx.clone());
                    }
                    None => {}
                },
                Event::ReadPaused { conn } => {
                    if let Some(io) = core.conns.get(&conn) {
                        io.pause(true);
                    }
                }
                Event::ReadResumed { conn } => {
                    if let Some(io) = core.conns.get(&conn) {
                        io.pause(false);
                    }
                }
                Event::ClientDisconnected { conn, .. } => {
                    core.peers.remove(&conn);
                }
                _ => {}
            }
        }
        follow_ups
    }

    /// After Shutdown: waits (at most `grace`) for the writers to send their last bytes.
    async fn finish(&mut self, grace: Duration) {
        let closing = std::mem::take(&mut self.closing);
        let all = async {
            for io in closing {
                poll_fn(|cx| io.poll_finished(cx)).await;
            }
        };
        if monoio::time::timeout(grace, all).await.is_err() {
            warn!(
                core = self.core.borrow().shard.index,
                "shutdown grace period over; closing remaining connections"
            );
        }
    }
}

/// Runs a slow credential check (a password hash, a JWT provider) on a thread of its own, so the core
/// never blocks; the answer comes back on `tx`.
fn check_later(
    conn: ConnId,
    check: SlowCheck,
    tx: mpsc::UnboundedSender<(ConnId, cicada_engine::AuthDecision, Option<Proof>)>,
) {
    let answer = tx.clone();
    let spawned = std::thread::Builder::new()
        .name("cicada-auth".into())
        .spawn(move || {
            let (decision, proof) = check();
            let _ = answer.send((conn, decision, proof));
        });
    if let Err(e) = spawned {
        error!(%conn, "cannot start a credential check ({e}); the client is refused");
        let decision = cicada_engine::AuthDecision::Deny {
            reason: cicada_engine::codec::ReasonCode::ServerUnavailable,
        };
        let _ = tx.send((conn, decision, None));
    }
}
