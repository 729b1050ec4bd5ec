//! Binding the configured listeners and turning every accepted connection into a byte stream plus
//! metadata.
//!
//! Each listener has an accept loop; each connection's handshakes (PROXY header, TLS, WebSocket
//! upgrade, QUIC stream) run in a task of their own under the listener's handshake timeout, so a slow
//! or silent client holds up no one. A connection that fails a handshake is closed with a log line
//! naming the peer and the reason; only finished connections reach the broker.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::config::{Kind, Listener};
use crate::tls::{ReloadingTls, TlsError, Versions, ALPN_HTTP11, ALPN_MQTT};
use crate::{identity, proxy, quic, ws, BoxStream, CertIdentity, TransportMeta};

/// A connection ready for MQTT.
pub struct Accepted {
    /// Its byte stream.
    pub stream: BoxStream,
    /// What the transport knows about it.
    pub meta: TransportMeta,
    /// Its place in the listener's connection count; drop it when the connection ends.
    pub slot: Slot,
}

/// One of a listener's `max_connections` places, given back when dropped.
#[derive(Debug)]
pub struct Slot(Option<Arc<AtomicUsize>>);

impl Slot {
    /// A place outside any listener's limit, for connections the broker opens to itself (bridges).
    pub fn unlimited() -> Slot {
        Slot(None)
    }

    /// Takes a place if one is free.
    fn take(count: &Option<Arc<AtomicUsize>>, max: Option<usize>) -> Option<Slot> {
        let (Some(count), Some(max)) = (count, max) else {
            return Some(Slot(None));
        };
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(Some(count.clone())))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(count) = &self.0 {
            count.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Why the listeners cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// The address is taken or not ours.
    #[error("listener {name}: cannot listen on {addr}: {source} (is another broker running? change `bind`)")]
    Bind {
        /// The listener.
        name: String,
        /// Its address.
        addr: SocketAddr,
        /// The OS's reason.
        source: std::io::Error,
    },
    /// Its certificate, key or CA bundle cannot be used.
    #[error("listener {name}: {source} (check `tls.cert`, `tls.key` and `tls.ca`)")]
    Tls {
        /// The listener.
        name: String,
        /// What is wrong.
        source: TlsError,
    },
}

/// A bound listener.
struct Bound {
    listener: Listener,
    local: SocketAddr,
    tls: Option<Arc<ReloadingTls>>,
    quic: Option<quinn::Endpoint>,
}

/// The running listeners; dropping this stops accepting (connections already accepted go on).
pub struct Listeners {
    bound: Vec<Arc<Bound>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Listeners {
    /// Binds every listener and starts accepting; accepted connections go to `tx`.
    pub async fn bind(
        listeners: Vec<Listener>,
        tx: mpsc::Sender<Accepted>,
    ) -> Result<Listeners, ListenError> {
        let mut running = Listeners {
            bound: Vec::new(),
            tasks: Vec::new(),
        };
        for listener in listeners {
            let tls = match &listener.tls {
                Some(cfg) => {
                    let (alpn, versions): (&[&[u8]], _) = match listener.kind {
                        Kind::Quic => (&[ALPN_MQTT], Versions::Tls13),
                        Kind::Wss => (&[ALPN_HTTP11], Versions::Tls12And13),
                        _ => (&[ALPN_MQTT], Versions::Tls12And13),
                    };
                    let tls = ReloadingTls::load(cfg, alpn, versions).map_err(|source| {
                        ListenError::Tls {
                            name: listener.name.clone(),
                            source,
                        }
                    })?;
                    Some(Arc::new(tls))
                }
                None => None,
            };
            let bind_error = |source| ListenError::Bind {
                name: listener.name.clone(),
                addr: listener.bind,
                source,
            };
            let count = listener
                .max_connections
                .map(|_| Arc::new(AtomicUsize::new(0)));
            if listener.kind == Kind::Quic {
                let Some(tls) = tls else { continue };
                let config =
                    quic::server_config(tls.current()).map_err(|source| ListenError::Tls {
                        name: listener.name.clone(),
                        source,
                    })?;
                let endpoint =
                    quinn::Endpoint::server(config, listener.bind).map_err(bind_error)?;
                let local = endpoint.local_addr().unwrap_or(listener.bind);
                info!(listener = %listener.name, %local, "listening (quic)");
                let bound = Arc::new(Bound {
                    listener,
                    local,
                    tls: Some(tls),
                    quic: Some(endpoint.clone()),
                });
                running.tasks.push(tokio::spawn(quic_accept_loop(
                    bound.clone(),
                    endpoint,
                    count,
                    tx.clone(),
                )));
                running.bound.push(bound);
            } else {
                let socket = TcpListener::bind(listener.bind).await.map_err(bind_error)?;
                let local = socket.local_addr().unwrap_or(listener.bind);
                info!(listener = %listener.name, %local, kind = %listener.kind, "listening");
                let bound = Arc::new(Bound {
                    listener,
                    local,
                    tls,
                    quic: None,
                });
                running.tasks.push(tokio::spawn(tcp_accept_loop(
                    bound.clone(),
                    socket,
                    count,
                    tx.clone(),
                )));
                running.bound.push(bound);
            }
        }
        for bound in &running.bound {
            if let Some(tls) = &bound.tls {
                let every = tls.settings().watch_interval_secs;
                if every > 0 {
                    running.tasks.push(tokio::spawn(watch(
                        bound.clone(),
                        Duration::from_secs(every),
                    )));
                }
            }
        }
        Ok(running)
    }

    /// Every listener's name, kind and bound address.
    pub fn addresses(&self) -> Vec<(String, Kind, SocketAddr)> {
        self.bound
            .iter()
            .map(|b| (b.listener.name.clone(), b.listener.kind, b.local))
            .collect()
    }

    /// Reloads every listener's certificates (SIGHUP); established connections are untouched.
    /// Returns how many listeners failed (each failure is logged and keeps the old certificates).
    pub fn reload_tls(&self) -> usize {
        self.bound
            .iter()
            .filter(|b| b.tls.is_some())
            .filter(|b| !reload(b))
            .count()
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        // Refuse new QUIC connections but leave established ones alone: their last bytes (a
        // DISCONNECT at shutdown) still go out, and each closes when its stream is done.
        for bound in &self.bound {
            if let Some(endpoint) = &bound.quic {
                endpoint.set_server_config(None);
            }
        }
    }
}

/// Reloads one listener's certificates; `false` (logged) if they cannot be used.
fn reload(bound: &Bound) -> bool {
    let Some(tls) = &bound.tls else { return true };
    let name = &bound.listener.name;
    let config = match tls.reload() {
        Ok(config) => config,
        Err(e) => {
            error!(listener = %name, "certificate reload failed, keeping the previous certificates: {e}");
            return false;
        }
    };
    if let Some(endpoint) = &bound.quic {
        match quic::server_config(config) {
            Ok(quic) => endpoint.set_server_config(Some(quic)),
            Err(e) => {
                error!(listener = %name, "certificate reload failed, keeping the previous certificates: {e}");
                return false;
            }
        }
    }
    info!(listener = %name, "certificates reloaded");
    true
}

/// Reloads a listener's certificates when their files change.
async fn watch(bound: Arc<Bound>, every: Duration) {
    let Some(tls) = bound.tls.clone() else { return };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if tls.changed_on_disk() {
            reload(&bound);
        }
    }
}

async fn tcp_accept_loop(
    bound: Arc<Bound>,
    socket: TcpListener,
    count: Option<Arc<AtomicUsize>>,
    tx: mpsc::Sender<Accepted>,
) {
    loop {
        let (stream, peer) = match socket.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Typically out of file descriptors: back off instead of spinning.
                warn!(listener = %bound.listener.name, "accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(slot) = Slot::take(&count, bound.listener.max_connections) else {
            warn!(listener = %bound.listener.name, %peer, "connection refused: listener at max_connections");
            continue;
        };
        if let Err(e) = stream.set_nodelay(true) {
            debug!(%peer, "cannot set TCP_NODELAY: {e}");
        }
        let (bound, tx) = (bound.clone(), tx.clone());
        tokio::spawn(async move {
            let done = handshake(&bound, stream, peer);
            finish(&bound, peer, slot, tx, done).await;
        });
    }
}

/// Runs a connection's handshakes under the listener's timeout; hands a finished connection to the
/// broker, or logs why it was closed.
async fn finish(
    bound: &Bound,
    peer: SocketAddr,
    slot: Slot,
    tx: mpsc::Sender<Accepted>,
    handshakes: impl std::future::Future<Output = Result<(BoxStream, TransportMeta), HandshakeError>>,
) {
    let timeout = bound.listener.handshake_timeout;
    match tokio::time::timeout(timeout, handshakes).await {
        Ok(Ok((stream, meta))) => {
            let _ = tx.send(Accepted { stream, meta, slot }).await;
        }
        Ok(Err(why)) => warn!(listener = %bound.listener.name, %peer, "closing connection: {why}"),
        Err(_) => warn!(
            listener = %bound.listener.name, %peer,
            "closing connection: handshake not finished within {timeout:?}"
        ),
    }
}

/// Why a connection did not get as far as MQTT.
#[derive(Debug, thiserror::Error)]
enum HandshakeError {
    #[error("PROXY header: {0}")]
    Proxy(#[from] proxy::ProxyError),
    #[error("TLS handshake: {0}")]
    Tls(std::io::Error),
    #[error("{0}")]
    WebSocket(#[from] ws::UpgradeError),
    #[error("QUIC: {0}")]
    Quic(String),
    #[error(
        "TLS client certificate without a usable identity (the listener takes it as user name)"
    )]
    NoIdentity,
}

/// PROXY header, TLS, WebSocket: whichever the listener has, in that order.
async fn handshake(
    bound: &Bound,
    tcp: TcpStream,
    socket_peer: SocketAddr,
) -> Result<(BoxStream, TransportMeta), HandshakeError> {
    let listener = &bound.listener;
    let (mut stream, peer): (BoxStream, SocketAddr) = if listener.proxy_protocol {
        let (stream, source) = proxy::read_header(tcp).await?;
        let peer = source.unwrap_or(socket_peer);
        debug!(listener = %listener.name, proxy = %socket_peer, %peer, "PROXY header read");
        (Box::new(stream), peer)
    } else {
        (Box::new(tcp), socket_peer)
    };
    let mut identity = None;
    if let Some(tls) = &bound.tls {
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.current());
        let tls_stream = acceptor.accept(stream).await.map_err(HandshakeError::Tls)?;
        identity = tls_stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(identity::identity_of);
        stream = Box::new(tls_stream);
    }
    if listener.kind.is_websocket() {
        stream = Box::new(ws::accept(stream, &listener.path).await?);
    }
    let meta = meta(bound, peer, identity)?;
    Ok((stream, meta))
}

fn meta(
    bound: &Bound,
    peer: SocketAddr,
    identity: Option<CertIdentity>,
) -> Result<TransportMeta, HandshakeError> {
    let as_username = bound
        .listener
        .tls
        .as_ref()
        .is_some_and(|t| t.identity_as_username);
    // A listener that takes the certificate as the user name lets no one in without a name from
    // it (no certificate under `optional`, or one whose identity cannot be read): the user name in
    // CONNECT would otherwise stand, and anyone could claim anyone.
    let username = match as_username {
        true => Some(
            identity
                .as_ref()
                .and_then(CertIdentity::name)
                .ok_or(HandshakeError::NoIdentity)?
                .to_string(),
        ),
        false => None,
    };
    Ok(TransportMeta {
        peer,
        local: bound.local,
        listener: bound.listener.name.as_str().into(),
        kind: bound.listener.kind,
        identity,
        username,
    })
}

async fn quic_accept_loop(
    bound: Arc<Bound>,
    endpoint: quinn::Endpoint,
    count: Option<Arc<AtomicUsize>>,
    tx: mpsc::Sender<Accepted>,
) {
    while let Some(incoming) = endpoint.accept().await {
        let peer = incoming.remote_address();
        let Some(slot) = Slot::take(&count, bound.listener.max_connections) else {
            warn!(listener = %bound.listener.name, %peer, "connection refused: listener at max_connections");
            incoming.refuse();
            continue;
        };
        let (bound, tx) = (bound.clone(), tx.clone());
        tokio::spawn(async move {
            let done = quic_handshake(&bound, incoming);
            finish(&bound, peer, slot, tx, done).await;
        });
    }
}

/// Completes a QUIC handshake and takes the client's first bidirectional stream.
async fn quic_handshake(
    bound: &Bound,
    incoming: quinn::Incoming,
) -> Result<(BoxStream, TransportMeta), HandshakeError> {
    let conn = incoming
        .await
        .map_err(|e| HandshakeError::Quic(e.to_string()))?;
    let identity = conn
        .peer_identity()
        .and_then(|any| {
            any.downcast::<Vec<rustls_pki_types::CertificateDer<'static>>>()
                .ok()
        })
        .and_then(|chain| chain.first().and_then(identity::identity_of));
    let (send, recv) = conn
        .accept_bi()
        .await
        .map_err(|e| HandshakeError::Quic(e.to_string()))?;
    let meta = meta(bound, conn.remote_address(), identity)?;
    Ok((
        Box::new(quic::QuicStream::new(conn, send, recv, None)),
        meta,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ClientAuth, TlsConfig};

    fn bound(client_auth: ClientAuth, identity_as_username: bool) -> Bound {
        let tls = TlsConfig {
            cert: "c.pem".into(),
            key: "k.pem".into(),
            ca: Some("ca.pem".into()),
            client_auth,
            identity_as_username,
            watch_interval_secs: 0,
        };
        Bound {
            listener: Listener {
                name: "mtls".into(),
                kind: Kind::Tls,
                bind: ([127, 0, 0, 1], 8883).into(),
                proxy_protocol: false,
                max_connections: None,
                handshake_timeout: Duration::from_secs(10),
                path: String::new(),
                tls: Some(tls),
                allow_anonymous: true,
            },
            local: ([127, 0, 0, 1], 8883).into(),
            tls: None,
            quic: None,
        }
    }

    fn identity(cn: Option<&str>, alt: &[&str]) -> CertIdentity {
        CertIdentity {
            common_name: cn.map(Into::into),
            alt_names: alt.iter().map(|a| a.to_string()).collect(),
        }
    }

    #[test]
    fn identity_as_username_names_the_user_or_refuses_the_connection() {
        let peer: SocketAddr = ([192, 0, 2, 7], 5000).into();
        let b = bound(ClientAuth::Optional, true);
        let m = meta(
            &b,
            peer,
            Some(identity(Some("device-7"), &["d7@example.test"])),
        )
        .expect("named");
        assert_eq!(m.username.as_deref(), Some("device-7"));
        let m = meta(&b, peer, Some(identity(None, &["d7@example.test"]))).expect("named by SAN");
        assert_eq!(m.username.as_deref(), Some("d7@example.test"));
        // Without a certificate (optional) or without a name in it, CONNECT's user name would
        // stand: refused instead.
        assert!(matches!(
            meta(&b, peer, None),
            Err(HandshakeError::NoIdentity)
        ));
        assert!(matches!(
            meta(&b, peer, Some(identity(None, &[]))),
            Err(HandshakeError::NoIdentity)
        ));
        // Without the option the identity is carried, and the user name is CONNECT's.
        let b = bound(ClientAuth::Optional, false);
        let m = meta(&b, peer, None).expect("anonymous allowed");
        assert_eq!((m.username, m.identity), (None, None));
        let m = meta(&b, peer, Some(identity(Some("x"), &[]))).expect("identity");
        assert_eq!(m.username, None);
        assert_eq!(m.identity.and_then(|i| i.common_name).as_deref(), Some("x"));
    }

    #[test]
    fn slots_are_counted_and_given_back() {
        let count = Some(Arc::new(AtomicUsize::new(0)));
        let a = Slot::take(&count, Some(2)).expect("first");
        let b = Slot::take(&count, Some(2)).expect("second");
        assert!(Slot::take(&count, Some(2)).is_none());
        drop(a);
        let c = Slot::take(&count, Some(2)).expect("freed");
        drop((b, c));
        assert_eq!(count.as_ref().map(|c| c.load(Ordering::Acquire)), Some(0));
        assert!(Slot::take(&None, None).is_some());
    }
}
