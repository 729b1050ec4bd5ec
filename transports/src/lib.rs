//! Cicada's transports: every way a client reaches the broker, each turned into the same thing, a
//! byte stream plus metadata (design §5). The engine never learns which transport carried a
//! connection.
//!
//! - TCP, optionally behind a PROXY protocol v1/v2 header ([`proxy`]).
//! - TLS 1.2/1.3 with rustls (ring provider), ALPN `mqtt`, optional or required client
//!   certificates whose identity becomes connection metadata; certificates reload without dropping
//!   anyone ([`tls`]).
//! - WebSocket and WSS (tokio-tungstenite), binary frames as a byte stream ([`ws`]).
//! - QUIC (quinn), one bidirectional stream per MQTT connection ([`quic`]).
//!
//! [`Listeners`] binds the configured listeners and hands every accepted connection over a channel;
//! [`client`] connects to any of them (used by `cicada-cli` and the tests).

pub mod client;
pub mod config;
pub mod identity;
mod listen;
pub mod proxy;
pub mod quic;
pub mod tls;
pub mod ws;

#[cfg(feature = "testing")]
pub mod testing;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};

pub use cicada_engine::CertIdentity;
pub use config::{ClientAuth, Kind, ListenerConfig, TlsConfig};
pub use listen::{Accepted, ListenError, Listeners, Slot};

/// A connected byte stream, whatever carries it.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

/// A connection's stream, boxed so every transport has one type.
pub type BoxStream = Box<dyn Stream>;

/// What a transport knows about a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportMeta {
    /// The client's address: from the PROXY header when the listener expects one, else the socket's.
    pub peer: SocketAddr,
    /// The address of the listener's socket.
    pub local: SocketAddr,
    /// The listener's name (its `name` key, or `kind://bind`).
    pub listener: Arc<str>,
    /// Which transport.
    pub kind: Kind,
    /// The verified client certificate's identity, if the client presented one.
    pub identity: Option<CertIdentity>,
    /// The certificate identity, when the listener takes it as the user name.
    pub username: Option<String>,
}
