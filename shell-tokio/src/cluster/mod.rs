//! The links between cluster nodes: the engine's [`cicada_engine::Event::Cluster`] frames go out
//! over TCP (mTLS unless `cluster.plaintext`), and what other nodes send comes back in as
//! [`cicada_engine::Input::Cluster`].
//!
//! Each node dials every other node and only writes on the connection it dialed; it only reads
//! on the connections it accepted. So a pair of nodes holds two connections, one per direction,
//! and there is never a question of which of two crossing dials wins.
//!
//! On the wire, the dialer first sends a hello (magic `CICADA-C`, the engine's cluster format
//! [`cicada_engine::cluster::FORMAT`], its node number and the number it meant to reach) so a
//! misconfigured address, or a node of another release that would misread the frames, is refused
//! with a log line, then frames, each a big-endian `u32` length and that many bytes.
//!
//! Nothing here retransmits: a frame lost with a connection is resent by the engine (raft and
//! the links of `engine/src/cluster/link.rs` resend until acknowledged). A node that cannot keep
//! up or is unreachable has frames dropped at its bounded queue for the same reason.

pub mod config;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use cicada_engine::cluster::FORMAT;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

pub use config::{ClusterSection, ClusterSettings};

/// The ALPN protocol id of the links between nodes.
const ALPN: &[u8] = b"cicada-cluster/1";
/// The hello's first bytes.
const MAGIC: &[u8; 8] = b"CICADA-C";
/// Frames queued for one node before more are dropped.
const QUEUE: usize = 4096;
/// How long a dial, a TLS handshake or a hello may take.
const HANDSHAKE: Duration = Duration::from_secs(5);
/// How long one write may make no progress before the link is redialed.
const WRITE_STALL: Duration = Duration::from_secs(10);
/// The first and the longest wait between dials of an unreachable node.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(2));

/// Why the cluster links cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("config key `cluster.tls`: {0}")]
    Tls(String),
    #[error("cannot listen for cluster nodes on {addr}: {source} (change `cluster.listen`)")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A link's counters, shared with its task.
#[derive(Debug, Default)]
struct LinkState {
    connected: AtomicBool,
    dials: AtomicU64,
    sent: AtomicU64,
    dropped: AtomicU64,
}

/// One other node as the admin API and metrics show it.
#[derive(Debug, Clone)]
pub struct LinkView {
    pub node: u16,
    pub address: String,
    /// Whether the connection this node dialed is up.
    pub connected: bool,
    /// Connections established so far.
    pub dials: u64,
    /// Frames written.
    pub sent: u64,
    /// Frames dropped at a full queue (the engine resends what matters).
    pub dropped: u64,
}

/// The outgoing side of one other node.
struct Link {
    peer: config::Peer,
    queue: mpsc::Sender<Bytes>,
    state: Arc<LinkState>,
    dialer: JoinHandle<()>,
}

/// The nodes whose connections are accepted: the members, or anyone (`None`) while this node
/// joins and knows none yet (mTLS still admits only holders of a cluster certificate).
type Accepted = Arc<std::sync::RwLock<Option<BTreeSet<u16>>>>;

/// The running links: a dialer per other node and the listener for theirs.
pub struct ClusterNet {
    node: u16,
    security: Security,
    /// The founding members' addresses, from `[[cluster.members]]`.
    configured: Vec<config::Peer>,
    links: BTreeMap<u16, Link>,
    accepted: Accepted,
    /// Frames received from other nodes, over every accepted connection.
    pub received: Arc<AtomicU64>,
    tasks: Vec<JoinHandle<()>>,
}

/// A byte stream, plain or TLS.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<S: AsyncRead + AsyncWrite + Unpin + Send> Stream for S {}

/// How connections are secured.
#[derive(Clone)]
enum Security {
    Plain,
    Tls {
        acceptor: tokio_rustls::TlsAcceptor,
        connector: tokio_rustls::TlsConnector,
    },
}

impl Security {
    fn new(settings: &ClusterSettings) -> Result<Security, ClusterError> {
        let Some(tls) = &settings.tls else {
            warn!("cluster: links between nodes are plaintext (cluster.plaintext = true)");
            return Ok(Security::Plain);
        };
        let server = cicada_transports::tls::server_config(
            &cicada_transports::config::TlsConfig {
                cert: tls.cert.clone(),
                key: tls.key.clone(),
                ca: Some(tls.ca.clone()),
                client_auth: cicada_transports::config::ClientAuth::Required,
                identity_as_username: false,
                watch_interval_secs: 0,
            },
            &[ALPN],
            cicada_transports::tls::Versions::Tls13,
        )
        .map_err(|e| ClusterError::Tls(e.to_string()))?;
        let client = cicada_transports::client::ClientTls {
            ca: Some(tls.ca.clone()),
            cert: Some(tls.cert.clone()),
            key: Some(tls.key.clone()),
            insecure: false,
            server_name: None,
        }
        .client_config(&[ALPN])
        .map_err(|e| ClusterError::Tls(e.to_string()))?;
        Ok(Security::Tls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
            connector: tokio_rustls::TlsConnector::from(Arc::new(client)),
        })
    }
}

impl ClusterNet {
    /// Binds `cluster.listen` and starts dialing the other nodes. Frames from them go to
    /// `inbound` as (node, frame); none longer than `max_frame` is accepted.
    pub async fn start(
        settings: &ClusterSettings,
        max_frame: usize,
        inbound: mpsc::Sender<(u16, Bytes)>,
    ) -> Result<ClusterNet, ClusterError> {
        let security = Security::new(settings)?;
        let listener = tokio::net::TcpListener::bind(settings.listen)
            .await
            .map_err(|source| ClusterError::Listen {
                addr: settings.listen,
                source,
            })?;
        info!(node = settings.node, listen = %settings.listen, "cluster: listening for nodes");
        let received = Arc::new(AtomicU64::new(0));
        let accepted: Accepted = Arc::new(std::sync::RwLock::new(
            (!settings.engine.join).then(|| settings.engine.members.iter().copied().collect()),
        ));
        let tasks = vec![tokio::spawn(accept(
            listener,
            security.clone(),
            Accepting {
                node: settings.node,
                members: accepted.clone(),
                max_frame,
                inbound,
                received: received.clone(),
            },
        ))];
        let mut net = ClusterNet {
            node: settings.node,
            security,
            configured: settings.peers.clone(),
            links: BTreeMap::new(),
            accepted,
            received,
            tasks,
        };
        for peer in &settings.peers {
            net.link(peer.clone());
        }
        Ok(net)
    }

    /// Starts dialing `peer`.
    fn link(&mut self, peer: config::Peer) {
        let (queue, rx) = mpsc::channel(QUEUE);
        let state = Arc::new(LinkState::default());
        let dialer = tokio::spawn(dial(
            self.node,
            peer.clone(),
            self.security.clone(),
            rx,
            state.clone(),
        ));
        self.links.insert(
            peer.node,
            Link {
                peer,
                queue,
                state,
                dialer,
            },
        );
    }

    /// The membership changed ([`cicada_engine::Event::ClusterMembers`]): links to new members
    /// start, links to members gone stop, and only members' connections are accepted.
    pub fn set_members(&mut self, members: &[(u16, Option<cicada_engine::MemberAddress>)]) {
        let mut wanted = BTreeMap::new();
        for (node, address) in members {
            let peer = match address {
                Some(address) => config::Peer::from_member(*node, address),
                None => self.configured.iter().find(|p| p.node == *node).cloned(),
            };
            match peer {
                Some(peer) => {
                    wanted.insert(*node, peer);
                }
                None => warn!(
                    node,
                    "cluster: a member with no address (not in cluster.members, nor added with one)"
                ),
            }
        }
        self.links.retain(|node, link| {
            let keep = wanted.get(node) == Some(&link.peer);
            if !keep {
                info!(node, "cluster: no longer a member; link closed");
                link.dialer.abort();
            }
            keep
        });
        for (node, peer) in wanted {
            if !self.links.contains_key(&node) {
                info!(node, address = %peer.address, "cluster: new member; dialing it");
                self.link(peer);
            }
        }
        let nodes: BTreeSet<u16> = members.iter().map(|(n, _)| *n).collect();
        if let Ok(mut accepted) = self.accepted.write() {
            *accepted = Some(nodes);
        }
    }

    /// The other members as this node knows them (address, certificate name, MQTT address).
    pub fn peers(&self) -> Vec<config::Peer> {
        self.links.values().map(|l| l.peer.clone()).collect()
    }

    /// Queues `frame` for node `to`; drops it if the node's queue is full or unknown.
    pub fn send(&self, to: u16, frame: Bytes) {
        let Some(link) = self.links.get(&to) else {
            warn!(
                node = to,
                "cluster: a frame for a node that is not a member; dropped"
            );
            return;
        };
        if link.queue.try_send(frame).is_err() {
            link.state.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The links as the admin API shows them.
    pub fn views(&self) -> Vec<LinkView> {
        self.links
            .iter()
            .map(|(node, link)| LinkView {
                node: *node,
                address: link.peer.address.clone(),
                connected: link.state.connected.load(Ordering::Relaxed),
                dials: link.state.dials.load(Ordering::Relaxed),
                sent: link.state.sent.load(Ordering::Relaxed),
                dropped: link.state.dropped.load(Ordering::Relaxed),
            })
            .collect()
    }
}

impl Drop for ClusterNet {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        for link in self.links.values() {
            link.dialer.abort();
        }
    }
}

/// The hello a dialer sends: who it is and whom it meant to reach.
fn hello(from: u16, to: u16) -> [u8; 13] {
    let mut hello = [0; 13];
    hello[..8].copy_from_slice(MAGIC);
    hello[8] = FORMAT;
    hello[9..11].copy_from_slice(&from.to_be_bytes());
    hello[11..13].copy_from_slice(&to.to_be_bytes());
    hello
}

/// Keeps a connection to `peer` up and writes its queued frames to it.
async fn dial(
    node: u16,
    peer: config::Peer,
    security: Security,
    mut queue: mpsc::Receiver<Bytes>,
    state: Arc<LinkState>,
) {
    let mut backoff = BACKOFF.0;
    let mut failures = 0u64;
    loop {
        let dialed = tokio::time::timeout(HANDSHAKE, connect(node, &peer, &security)).await;
        let stream = match dialed {
            Ok(Ok(stream)) => stream,
            failed => {
                let why = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("no connection within {HANDSHAKE:?}"),
                };
                failures += 1;
                unreachable(&peer, failures, &why);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF.1);
                continue;
            }
        };
        info!(node = peer.node, address = %peer.address, "cluster: connected to node");
        failures = 0;
        backoff = BACKOFF.0;
        state.dials.fetch_add(1, Ordering::Relaxed);
        state.connected.store(true, Ordering::Relaxed);
        let why = write_frames(stream, &mut queue, &state).await;
        state.connected.store(false, Ordering::Relaxed);
        match why {
            None => return,
            Some(why) => {
                warn!(node = peer.node, address = %peer.address, "cluster: link lost: {why}; redialing")
            }
        }
    }
}

/// Logs a failed dial: the first at warn, repeats at debug (a node that is down stays down for a
/// while and would flood the log).
fn unreachable(peer: &config::Peer, failures: u64, why: &dyn std::fmt::Display) {
    if failures == 1 {
        warn!(node = peer.node, address = %peer.address, "cluster: cannot reach node: {why}; retrying with backoff");
    } else {
        debug!(node = peer.node, address = %peer.address, failures, "cluster: still cannot reach node: {why}");
    }
}

/// Dials `peer`, secures the connection and says hello.
async fn connect(
    node: u16,
    peer: &config::Peer,
    security: &Security,
) -> std::io::Result<Box<dyn Stream>> {
    let tcp = tokio::net::TcpStream::connect(&peer.address).await?;
    tcp.set_nodelay(true)?;
    let mut stream: Box<dyn Stream> = match security {
        Security::Plain => Box::new(tcp),
        Security::Tls { connector, .. } => {
            let name = rustls::pki_types::ServerName::try_from(peer.server_name.clone())
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            Box::new(connector.connect(name, tcp).await?)
        }
    };
    stream.write_all(&hello(node, peer.node)).await?;
    stream.flush().await?;
    Ok(stream)
}

/// Writes queued frames until the connection fails (`Some(why)`) or the queue closes (`None`).
async fn write_frames(
    stream: Box<dyn Stream>,
    queue: &mut mpsc::Receiver<Bytes>,
    state: &LinkState,
) -> Option<String> {
    let mut out = tokio::io::BufWriter::with_capacity(64 * 1024, stream);
    // The dialed connection carries nothing back; a read that ends means the node closed it (or
    // died), which a write alone may not notice for a long time on an idle link.
    let (mut read_half, mut write_half) = tokio::io::split(&mut out);
    let closed = async move {
        let mut byte = [0u8; 1];
        let _ = read_half.read(&mut byte).await;
    };
    tokio::pin!(closed);
    loop {
        let frame = tokio::select! {
            frame = queue.recv() => frame?,
            () = &mut closed => return Some("closed by the node".into()),
        };
        let mut batch = vec![frame];
        while batch.len() < 256 {
            match queue.try_recv() {
                Ok(frame) => batch.push(frame),
                Err(_) => break,
            }
        }
        let write = async {
            for frame in &batch {
                let len = u32::try_from(frame.len()).map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::InvalidInput, "frame over 4 GiB")
                })?;
                write_half.write_all(&len.to_be_bytes()).await?;
                write_half.write_all(frame).await?;
            }
            write_half.flush().await
        };
        match tokio::time::timeout(WRITE_STALL, write).await {
            Ok(Ok(())) => {
                state.sent.fetch_add(batch.len() as u64, Ordering::Relaxed);
            }
            Ok(Err(e)) => return Some(e.to_string()),
            Err(_) => return Some(format!("no write progress for {WRITE_STALL:?}")),
        }
    }
}

/// What an accepted connection needs.
#[derive(Clone)]
struct Accepting {
    node: u16,
    members: Accepted,
    max_frame: usize,
    inbound: mpsc::Sender<(u16, Bytes)>,
    received: Arc<AtomicU64>,
}

/// Accepts other nodes' connections.
async fn accept(listener: tokio::net::TcpListener, security: Security, accepting: Accepting) {
    loop {
        let (tcp, addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                warn!("cluster: accept failed: {e}");
                tokio::time::sleep(BACKOFF.0).await;
                continue;
            }
        };
        let (security, accepting) = (security.clone(), accepting.clone());
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let greeted = tokio::time::timeout(HANDSHAKE, greet(tcp, &security, &accepting)).await;
            let (from, stream) = match greeted {
                Ok(Ok(greeted)) => greeted,
                Ok(Err(why)) => {
                    warn!(peer = %addr, "cluster: connection refused: {why}");
                    return;
                }
                Err(_) => {
                    warn!(peer = %addr, "cluster: connection refused: no hello within {HANDSHAKE:?}");
                    return;
                }
            };
            debug!(node = from, peer = %addr, "cluster: node connected");
            if let Err(why) = read_frames(from, stream, &accepting).await {
                warn!(node = from, peer = %addr, "cluster: link from node closed: {why}");
            }
        });
    }
}

/// Secures an accepted connection and checks its hello: the number of the node on the other end.
async fn greet(
    tcp: tokio::net::TcpStream,
    security: &Security,
    accepting: &Accepting,
) -> Result<(u16, Box<dyn Stream>), String> {
    let mut stream: Box<dyn Stream> = match security {
        Security::Plain => Box::new(tcp),
        Security::Tls { acceptor, .. } => Box::new(
            acceptor
                .accept(tcp)
                .await
                .map_err(|e| format!("TLS handshake: {e}"))?,
        ),
    };
    let mut hello = [0u8; 13];
    stream
        .read_exact(&mut hello)
        .await
        .map_err(|e| format!("no hello: {e}"))?;
    let from = read_hello(&hello, accepting.node)?;
    let member = accepting
        .members
        .read()
        .map(|m| m.as_ref().is_none_or(|m| m.contains(&from)))
        .unwrap_or(false);
    if from == accepting.node || !member {
        return Err(format!(
            "node {from} is not another member of this cluster (cluster.members)"
        ));
    }
    Ok((from, stream))
}

/// Reads the hello of a connection to node `me`: the number of the node that sent it, or why the
/// connection is refused.
fn read_hello(hello: &[u8; 13], me: u16) -> Result<u16, String> {
    if &hello[..8] != MAGIC {
        return Err("not a Cicada cluster node (bad hello)".into());
    }
    let from = u16::from_be_bytes([hello[9], hello[10]]);
    let to = u16::from_be_bytes([hello[11], hello[12]]);
    if hello[8] != FORMAT {
        return Err(format!(
            "node {from} speaks cluster format {}, this node {FORMAT}: every node of a cluster must \
             run the same cicada release (see docs/cluster.md, \"Upgrades\")",
            hello[8]
        ));
    }
    if to != me {
        return Err(format!(
            "node {from} meant to reach node {to}, but this is node {me}: check cluster.members on node {from}"
        ));
    }
    Ok(from)
}

/// Hands the frames of an accepted connection to the engine until it closes.
async fn read_frames(
    from: u16,
    stream: Box<dyn Stream>,
    accepting: &Accepting,
) -> Result<(), String> {
    let mut stream = tokio::io::BufReader::with_capacity(64 * 1024, stream);
    loop {
        let mut len = [0u8; 4];
        match stream.read_exact(&mut len).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.to_string()),
        }
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 || len > accepting.max_frame {
            return Err(format!(
                "a frame of {len} bytes (at most {} are accepted)",
                accepting.max_frame
            ));
        }
        let mut frame = BytesMut::zeroed(len);
        stream
            .read_exact(&mut frame)
            .await
            .map_err(|e| e.to_string())?;
        accepting.received.fetch_add(1, Ordering::Relaxed);
        if accepting
            .inbound
            .send((from, frame.freeze()))
            .await
            .is_err()
        {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hello_names_its_sender_and_is_refused_from_another_format_or_for_another_node() {
        assert_eq!(read_hello(&hello(2, 1), 1), Ok(2));
        let mut other = hello(2, 1);
        other[8] = FORMAT + 1;
        let why = read_hello(&other, 1).expect_err("another format");
        assert!(
            why.contains(&format!("node 2 speaks cluster format {}", FORMAT + 1))
                && why.contains(&format!("this node {FORMAT}")),
            "{why}"
        );
        let why = read_hello(&hello(2, 3), 1).expect_err("meant for node 3");
        assert!(why.contains("meant to reach node 3"), "{why}");
        let mut http = hello(2, 1);
        http[..8].copy_from_slice(b"GET / HT");
        let why = read_hello(&http, 1).expect_err("not a node");
        assert!(why.contains("bad hello"), "{why}");
    }
}
