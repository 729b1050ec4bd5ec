//! The client side of every transport: connect to a broker given a URL and get the same
//! [`BoxStream`] the listeners hand the broker, so one MQTT client (`cicada-cli`, the tests) speaks
//! over TCP, TLS, WebSocket, WSS and QUIC alike.
//!
//! - [`Target::parse`] reads `mqtt://`, `mqtts://`, `ws://`, `wss://` and `quic://` URLs.
//! - [`ClientTls`] builds the rustls configuration (ring provider, roots from a CA file, optional
//!   client certificate, or no verification at all for tests).
//! - [`connect`] resolves the host and opens the stream.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::quic::QuicStream;
use crate::tls::{pem_certificates, pem_key, pem_roots, ALPN_HTTP11, ALPN_MQTT};
use crate::{ws, BoxStream, Kind};

/// The WebSocket path when the URL names none.
const DEFAULT_WS_PATH: &str = "/mqtt";
/// How often an idle QUIC connection is pinged, well inside quinn's 30 s idle timeout, so a long
/// MQTT keep alive (or none) does not let the connection expire underneath the session.
const QUIC_KEEP_ALIVE: Duration = Duration::from_secs(10);

/// Why connecting failed; each variant names the step.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The URL cannot be used.
    #[error("invalid URL {url:?}: {why}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong and how to write it.
        why: String,
    },
    /// The host name could not be resolved.
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        /// The host name.
        host: String,
        /// The resolver's error.
        source: io::Error,
    },
    /// The host name resolved to no address.
    #[error("{host} resolves to no address")]
    NoAddress {
        /// The host name.
        host: String,
    },
    /// The TCP connection (or the QUIC endpoint's socket) could not be opened.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address tried last.
        addr: SocketAddr,
        /// The socket error.
        source: io::Error,
    },
    /// A certificate, key or CA file cannot be used.
    #[error("{}: {why}", path.display())]
    Certificate {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// TLS was asked for without a way to check the server's certificate.
    #[error("TLS needs the CA certificate that signed the server's: give --cafile (or --insecure, for testing only)")]
    NoTrustAnchor,
    /// A client certificate was given without its key, or the other way round.
    #[error("a client certificate and its private key go together: give both --cert and --key")]
    CertWithoutKey,
    /// The TLS configuration could not be built (for instance, the key does not match the
    /// certificate).
    #[error("TLS configuration: {0}")]
    TlsConfig(#[source] rustls::Error),
    /// The name to check the server certificate against is not a DNS name or IP address.
    #[error("{name:?} is not a valid TLS server name")]
    ServerName {
        /// The name.
        name: String,
    },
    /// The TLS handshake failed.
    #[error("TLS handshake with {addr}: {source}")]
    Tls {
        /// The server's address.
        addr: SocketAddr,
        /// The handshake error (a certificate the CA did not sign, no common protocol, ...).
        source: io::Error,
    },
    /// The WebSocket upgrade failed.
    #[error("WebSocket upgrade at {url}: {source}")]
    WebSocket {
        /// The URL requested.
        url: String,
        /// tungstenite's error.
        source: Box<tokio_tungstenite::tungstenite::Error>,
    },
    /// The server accepted the WebSocket without selecting the `mqtt` subprotocol.
    #[error("WebSocket at {url}: the server selected subprotocol {selected:?}, not `mqtt`")]
    SubProtocol {
        /// The URL requested.
        url: String,
        /// What the server selected, if anything.
        selected: Option<String>,
    },
    /// The QUIC connection could not be set up.
    #[error("QUIC connection to {addr}: {why}")]
    Quic {
        /// The server's address.
        addr: SocketAddr,
        /// What failed: the handshake, opening the stream, the configuration.
        why: String,
    },
}

/// Where a broker listens and with which transport, read from a URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The transport.
    pub kind: Kind,
    /// The host name or IP address (an IPv6 address without its brackets).
    pub host: String,
    /// The port (UDP for QUIC).
    pub port: u16,
    /// The HTTP path of a WebSocket; empty for other transports.
    pub path: String,
}

impl Target {
    /// Reads a broker URL: `mqtt://` or `tcp://` (port 1883), `mqtts://`, `tls://` or `ssl://`
    /// (8883), `ws://` (80, path `/mqtt` by default), `wss://` (443) and `quic://` (14567). IPv6
    /// addresses go in brackets: `mqtt://[::1]:1883`.
    pub fn parse(url: &str) -> Result<Target, ClientError> {
        let bad = |why: &str| ClientError::Url {
            url: url.to_string(),
            why: why.to_string(),
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            bad("no scheme; write e.g. mqtt://host, mqtts://host, ws://host/mqtt, wss://host/mqtt or quic://host")
        })?;
        let kind = match scheme.to_ascii_lowercase().as_str() {
            "mqtt" | "tcp" => Kind::Tcp,
            "mqtts" | "tls" | "ssl" => Kind::Tls,
            "ws" => Kind::Ws,
            "wss" => Kind::Wss,
            "quic" => Kind::Quic,
            _ => {
                return Err(bad(&format!(
                    "unknown scheme `{scheme}`; use mqtt, tcp, mqtts, tls, ssl, ws, wss or quic"
                )))
            }
        };
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(bad(
                "user names and passwords do not go in the URL; pass them as options",
            ));
        }
        let (host, port) = split_authority(authority).map_err(|why| bad(&why))?;
        let port = port.unwrap_or(default_port(kind));
        let path = if kind.is_websocket() {
            if path.is_empty() {
                DEFAULT_WS_PATH.to_string()
            } else if path.starts_with('/') {
                path.to_string()
            } else {
                // `ws://host?x=1`: the path is empty, the query stays.
                format!("/{path}")
            }
        } else if path.is_empty() || path == "/" {
            String::new()
        } else {
            return Err(bad(&format!(
                "a path ({path}) only means something for ws:// and wss://"
            )));
        };
        Ok(Target {
            kind,
            host,
            port,
            path,
        })
    }

    /// `host:port`, with an IPv6 address in brackets, as URLs and HTTP `Host` headers write it.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The WebSocket URL to request: `ws://` or `wss://`, authority and path.
    fn ws_url(&self) -> String {
        let scheme = if self.kind == Kind::Wss { "wss" } else { "ws" };
        format!("{scheme}://{}{}", self.authority(), self.path)
    }
}

impl fmt::Display for Target {
    /// The URL in its canonical form (`ws://` and `wss://` with their path).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            Kind::Ws | Kind::Wss => f.write_str(&self.ws_url()),
            Kind::Tcp => write!(f, "mqtt://{}", self.authority()),
            Kind::Tls => write!(f, "mqtts://{}", self.authority()),
            Kind::Quic => write!(f, "quic://{}", self.authority()),
        }
    }
}

/// The port a URL without one means: the IANA ports for MQTT, HTTP and HTTPS, and Cicada's QUIC
/// default.
fn default_port(kind: Kind) -> u16 {
    match kind {
        Kind::Tcp => 1883,
        Kind::Tls => 8883,
        Kind::Ws => 80,
        Kind::Wss => 443,
        Kind::Quic => 14567,
    }
}

/// Splits `host[:port]` or `[v6]:port`.
fn split_authority(authority: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (v6, after) = rest
            .split_once(']')
            .ok_or("an IPv6 address needs its closing bracket: [::1]:1883")?;
        v6.parse::<Ipv6Addr>()
            .map_err(|_| format!("[{v6}] is not an IPv6 address"))?;
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| format!("expected `:port` after [{v6}], found {after:?}"))?,
            ),
        };
        (v6, port)
    } else {
        match authority.split_once(':') {
            Some((_, rest)) if rest.contains(':') => {
                return Err("an IPv6 address goes in brackets: [::1]:1883".into())
            }
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("no host".into());
    }
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(0) | Err(_) => return Err(format!("port {p:?} is not a number from 1 to 65535")),
            Ok(n) => Some(n),
        },
    };
    Ok((host.to_string(), port))
}

/// How a client checks the broker and proves its own identity over TLS, WSS and QUIC.
#[derive(Clone, Debug, Default)]
pub struct ClientTls {
    /// PEM bundle of the CA certificates trusted to sign the server's certificate. There are no
    /// built-in roots: brokers in tests and private deployments use their own CA.
    pub ca: Option<PathBuf>,
    /// PEM file with the client certificate chain, leaf first, for brokers that ask for one.
    pub cert: Option<PathBuf>,
    /// PEM file with the client certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// Accept any server certificate. Dangerous: anyone on the path can impersonate the broker.
    /// For testing only.
    pub insecure: bool,
    /// The name the server certificate must carry, when it differs from the URL's host (e.g.
    /// connecting to an IP address with a certificate for `broker.example`).
    pub server_name: Option<String>,
}

impl ClientTls {
    /// Builds a rustls client configuration with the ring provider offering the given ALPN
    /// protocols (`mqtt` for TLS and QUIC, `http/1.1` for WSS).
    pub fn client_config(&self, alpn: &[&[u8]]) -> Result<rustls::ClientConfig, ClientError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(ClientError::TlsConfig)?;
        let builder = if self.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert {
                    algorithms: provider.signature_verification_algorithms,
                }))
        } else {
            let ca = self.ca.as_deref().ok_or(ClientError::NoTrustAnchor)?;
            builder.with_root_certificates(pem_roots(ca).map_err(|e| cert_error(ca, e))?)
        };
        let mut config = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => builder
                .with_client_auth_cert(
                    pem_certificates(cert).map_err(|e| cert_error(cert, e))?,
                    pem_key(key).map_err(|e| cert_error(key, e))?,
                )
                .map_err(ClientError::TlsConfig)?,
            (None, None) => builder.with_no_client_auth(),
            _ => return Err(ClientError::CertWithoutKey),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }

    /// The name to check the server certificate against: `server_name` if given, else the host.
    fn name_for<'a>(&'a self, target: &'a Target) -> &'a str {
        self.server_name.as_deref().unwrap_or(&target.host)
    }
}

fn cert_error(path: &Path, why: impl fmt::Display) -> ClientError {
    ClientError::Certificate {
        path: path.to_path_buf(),
        why: why.to_string(),
    }
}

/// A verifier that takes any server certificate, for `--insecure`. Handshake signatures are
/// still checked against the certificate's key, so the server proves it holds that key; nothing
/// proves the key is the broker's.
#[derive(Debug)]
struct AcceptAnyServerCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Connects to `target` and returns the byte stream MQTT runs over: TCP, TLS, a WebSocket
/// (`mqtt` subprotocol) over TCP or TLS, or one bidirectional QUIC stream.
///
/// Every resolved address is tried in turn; the error of the last one is returned.
pub async fn connect(target: &Target, tls: &ClientTls) -> Result<BoxStream, ClientError> {
    let addrs = resolve(target).await?;
    match target.kind {
        Kind::Tcp => Ok(Box::new(tcp(&addrs).await?.1)),
        Kind::Tls => Ok(Box::new(
            tls_over_tcp(target, tls, &addrs, ALPN_MQTT).await?,
        )),
        Kind::Ws => websocket(target, tcp(&addrs).await?.1).await,
        Kind::Wss => {
            websocket(
                target,
                tls_over_tcp(target, tls, &addrs, ALPN_HTTP11).await?,
            )
            .await
        }
        Kind::Quic => quic(target, tls, &addrs).await,
    }
}

async fn resolve(target: &Target) -> Result<Vec<SocketAddr>, ClientError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await
        .map_err(|source| ClientError::Resolve {
            host: target.host.clone(),
            source,
        })?
        .collect();
    if addrs.is_empty() {
        return Err(ClientError::NoAddress {
            host: target.host.clone(),
        });
    }
    Ok(addrs)
}

/// Tries each address until one accepts; `addrs` is never empty (see [`resolve`]).
async fn tcp(addrs: &[SocketAddr]) -> Result<(SocketAddr, TcpStream), ClientError> {
    let mut last = None;
    for &addr in addrs {
        let attempt = async {
            let stream = TcpStream::connect(addr).await?;
            // MQTT packets are small and latency matters more than batching.
            stream.set_nodelay(true)?;
            Ok::<_, io::Error>(stream)
        };
        match attempt.await {
            Ok(stream) => return Ok((addr, stream)),
            Err(source) => last = Some(ClientError::Connect { addr, source }),
        }
    }
    Err(last.unwrap_or(ClientError::NoAddress {
        host: String::new(),
    }))
}

async fn tls_over_tcp(
    target: &Target,
    tls: &ClientTls,
    addrs: &[SocketAddr],
    alpn: &[u8],
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ClientError> {
    let config = tls.client_config(&[alpn])?;
    let name = tls.name_for(target);
    let server_name = ServerName::try_from(name.to_string())
        .map_err(|_| ClientError::ServerName { name: name.into() })?;
    let (addr, stream) = tcp(addrs).await?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(server_name, stream)
        .await
        .map_err(|source| ClientError::Tls { addr, source })
}

async fn websocket<S: crate::Stream>(target: &Target, stream: S) -> Result<BoxStream, ClientError> {
    let url = target.ws_url();
    let ws_error = |source| ClientError::WebSocket {
        url: url.clone(),
        source: Box::new(source),
    };
    let mut request = url.as_str().into_client_request().map_err(ws_error)?;
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static(ws::SUBPROTOCOL),
    );
    let (socket, response) =
        tokio_tungstenite::client_async_with_config(request, stream, Some(ws::config()))
            .await
            .map_err(ws_error)?;
    let selected = response
        .headers()
        .get("sec-websocket-protocol")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    if !selected
        .as_deref()
        .is_some_and(|p| p.trim().eq_ignore_ascii_case(ws::SUBPROTOCOL))
    {
        return Err(ClientError::SubProtocol { url, selected });
    }
    Ok(Box::new(ws::WsStream::new(socket)))
}

async fn quic(
    target: &Target,
    tls: &ClientTls,
    addrs: &[SocketAddr],
) -> Result<BoxStream, ClientError> {
    let crypto = tls.client_config(&[ALPN_MQTT])?;
    let name = tls.name_for(target);
    let mut last = None;
    for &addr in addrs {
        match quic_one(addr, name, &crypto).await {
            Ok(stream) => return Ok(Box::new(stream)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or(ClientError::NoAddress {
        host: target.host.clone(),
    }))
}

async fn quic_one(
    addr: SocketAddr,
    name: &str,
    crypto: &rustls::ClientConfig,
) -> Result<QuicStream, ClientError> {
    let quic_error = |why: String| ClientError::Quic { addr, why };
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(crypto.clone())
        .map_err(|e| quic_error(format!("TLS configuration: {e}")))?;
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(QUIC_KEEP_ALIVE));
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(transport));
    let local: SocketAddr = if addr.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let mut endpoint =
        quinn::Endpoint::client(local).map_err(|source| ClientError::Connect { addr, source })?;
    endpoint.set_default_client_config(config);
    let connection = endpoint
        .connect(addr, name)
        .map_err(|e| match e {
            quinn::ConnectError::InvalidServerName(name) => ClientError::ServerName { name },
            other => quic_error(other.to_string()),
        })?
        .await
        .map_err(|e| quic_error(format!("handshake: {e}")))?;
    let (send, recv) = connection
        .open_bi()
        .await
        .map_err(|e| quic_error(format!("opening a stream: {e}")))?;
    Ok(QuicStream::new(connection, send, recv, Some(endpoint)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(kind: Kind, host: &str, port: u16, path: &str) -> Target {
        Target {
            kind,
            host: host.into(),
            port,
            path: path.into(),
        }
    }

    #[test]
    fn schemes_and_default_ports() {
        let cases = [
            ("mqtt://broker", target(Kind::Tcp, "broker", 1883, "")),
            ("tcp://broker:1884", target(Kind::Tcp, "broker", 1884, "")),
            ("mqtts://broker", target(Kind::Tls, "broker", 8883, "")),
            ("tls://broker", target(Kind::Tls, "broker", 8883, "")),
            ("SSL://broker:9000/", target(Kind::Tls, "broker", 9000, "")),
            ("ws://broker", target(Kind::Ws, "broker", 80, "/mqtt")),
            ("ws://broker:8080/", target(Kind::Ws, "broker", 8080, "/")),
            (
                "wss://broker/a/b?x=1",
                target(Kind::Wss, "broker", 443, "/a/b?x=1"),
            ),
            ("ws://broker?x=1", target(Kind::Ws, "broker", 80, "/?x=1")),
            ("quic://broker", target(Kind::Quic, "broker", 14567, "")),
            (
                "quic://127.0.0.1:4433",
                target(Kind::Quic, "127.0.0.1", 4433, ""),
            ),
        ];
        for (url, want) in cases {
            assert_eq!(Target::parse(url).expect(url), want, "{url}");
        }
    }

    #[test]
    fn ipv6_literals_in_brackets() {
        assert_eq!(
            Target::parse("mqtt://[::1]:1884").expect("parse"),
            target(Kind::Tcp, "::1", 1884, "")
        );
        assert_eq!(
            Target::parse("wss://[2001:db8::1]/mqtt").expect("parse"),
            target(Kind::Wss, "2001:db8::1", 443, "/mqtt")
        );
        let t = Target::parse("quic://[::1]").expect("parse");
        assert_eq!(t.authority(), "[::1]:14567");
        assert_eq!(t.to_string(), "quic://[::1]:14567");
    }

    #[test]
    fn errors_name_what_is_wrong() {
        let why = |url: &str| match Target::parse(url) {
            Err(ClientError::Url { why, .. }) => why,
            other => panic!("{url}: expected a URL error, got {other:?}"),
        };
        assert!(why("broker:1883").contains("no scheme"));
        assert!(why("http://broker").contains("unknown scheme `http`"));
        assert!(why("mqtt://").contains("no host"));
        assert!(why("mqtt://:1883").contains("no host"));
        assert!(why("mqtt://broker:0").contains("port"));
        assert!(why("mqtt://broker:99999").contains("port"));
        assert!(why("mqtt://broker:x").contains("port"));
        assert!(why("mqtt://::1").contains("brackets"));
        assert!(why("mqtt://[::1").contains("closing bracket"));
        assert!(why("mqtt://[nope]:1").contains("not an IPv6 address"));
        assert!(why("mqtt://[::1]1883").contains("`:port`"));
        assert!(why("mqtt://broker/topic").contains("only means something for ws"));
        assert!(why("mqtt://user:pw@broker").contains("do not go in the URL"));
    }

    #[test]
    fn display_is_canonical() {
        let t = Target::parse("tls://broker").expect("parse");
        assert_eq!(t.to_string(), "mqtts://broker:8883");
        let t = Target::parse("ws://broker").expect("parse");
        assert_eq!(t.to_string(), "ws://broker:80/mqtt");
    }

    #[test]
    fn tls_without_trust_anchor_or_with_half_a_client_certificate_is_refused() {
        let no_ca = ClientTls::default().client_config(&[ALPN_MQTT]);
        assert!(matches!(no_ca, Err(ClientError::NoTrustAnchor)));
        let half = ClientTls {
            insecure: true,
            cert: Some("client.pem".into()),
            ..ClientTls::default()
        };
        assert!(matches!(
            half.client_config(&[ALPN_MQTT]),
            Err(ClientError::CertWithoutKey)
        ));
        let insecure = ClientTls {
            insecure: true,
            ..ClientTls::default()
        };
        let config = insecure.client_config(&[ALPN_MQTT]).expect("config");
        assert_eq!(config.alpn_protocols, vec![b"mqtt".to_vec()]);
        let missing = ClientTls {
            ca: Some("/nonexistent/ca.pem".into()),
            ..ClientTls::default()
        };
        assert!(matches!(
            missing.client_config(&[ALPN_MQTT]),
            Err(ClientError::Certificate { .. })
        ));
    }

    #[tokio::test]
    async fn websocket_client_meets_the_listener_side() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.expect("accept");
            let mut ws = ws::accept(socket, "/mqtt").await.expect("upgrade");
            let mut got = [0u8; 2];
            ws.read_exact(&mut got).await.expect("read");
            ws.write_all(&[0x20, 0x00]).await.expect("write");
            ws.flush().await.expect("flush");
            got
        });
        let target = Target::parse(&format!("ws://127.0.0.1:{port}")).expect("parse");
        let mut stream = connect(&target, &ClientTls::default())
            .await
            .expect("connect");
        stream.write_all(&[0xC0, 0x00]).await.expect("write");
        stream.flush().await.expect("flush");
        let mut got = [0u8; 2];
        stream.read_exact(&mut got).await.expect("read");
        assert_eq!(got, [0x20, 0x00]);
        assert_eq!(server.await.expect("join"), [0xC0, 0x00]);
    }

    #[tokio::test]
    async fn websocket_without_the_mqtt_subprotocol_is_refused_by_name() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            let (socket, _) = listener.accept().await.expect("accept");
            let _ = ws::accept(socket, "/other").await;
        });
        let target = Target::parse(&format!("ws://127.0.0.1:{port}/mqtt")).expect("parse");
        let err = connect(&target, &ClientTls::default())
            .await
            .err()
            .expect("refused");
        assert!(matches!(err, ClientError::WebSocket { .. }), "{err}");
    }
}

/// Every transport end to end: this client against the real listeners, with a test PKI.
#[cfg(all(test, feature = "testing"))]
mod listener_tests {
    use super::*;
    use crate::config::ListenerConfig;
    use crate::testing::TestPki;
    use crate::{Accepted, Listeners};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::mpsc;

    /// Binds one listener of `kind` on a free loopback port; returns it and its port.
    async fn listen(
        kind: &str,
        pki: &TestPki,
        client_auth: &str,
    ) -> (Listeners, mpsc::Receiver<Accepted>, u16) {
        let mut text = format!("kind = \"{kind}\"\nbind = \"127.0.0.1:0\"\n");
        if kind != "tcp" && kind != "ws" {
            // A bare entry: its TLS table is `[tls]`, not `[listener.tls]`.
            text.push_str(
                &pki.tls_section(client_auth)
                    .replace("[listener.tls]", "[tls]"),
            );
        }
        let config: ListenerConfig = toml::from_str(&text).expect("listener config");
        let (tx, rx) = mpsc::channel(4);
        let listeners = Listeners::bind(vec![config.check(0).expect("valid")], tx)
            .await
            .expect("bind");
        let port = listeners.addresses()[0].2.port();
        (listeners, rx, port)
    }

    /// Sends two bytes each way between the client and the accepted connection.
    async fn round_trip(mut client: BoxStream, rx: &mut mpsc::Receiver<Accepted>) -> Accepted {
        client.write_all(&[0xC0, 0x00]).await.expect("write");
        client.flush().await.expect("flush");
        let mut accepted = rx.recv().await.expect("accepted");
        let mut got = [0u8; 2];
        accepted
            .stream
            .read_exact(&mut got)
            .await
            .expect("server read");
        assert_eq!(got, [0xC0, 0x00]);
        accepted
            .stream
            .write_all(&[0xD0, 0x00])
            .await
            .expect("server write");
        accepted.stream.flush().await.expect("server flush");
        client.read_exact(&mut got).await.expect("client read");
        assert_eq!(got, [0xD0, 0x00]);
        client.shutdown().await.expect("shutdown");
        let mut rest = Vec::new();
        accepted
            .stream
            .read_to_end(&mut rest)
            .await
            .expect("end of stream");
        assert!(rest.is_empty());
        accepted
    }

    #[tokio::test]
    async fn every_transport_reaches_its_listener() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pki = TestPki::generate(dir.path());
        let tls = ClientTls {
            ca: Some(pki.ca_cert.clone()),
            ..ClientTls::default()
        };
        for (kind, scheme) in [
            ("tcp", "mqtt"),
            ("tls", "mqtts"),
            ("ws", "ws"),
            ("wss", "wss"),
            ("quic", "quic"),
        ] {
            let (_listeners, mut rx, port) = listen(kind, &pki, "none").await;
            let target = Target::parse(&format!("{scheme}://localhost:{port}")).expect("url");
            let client = connect(&target, &tls)
                .await
                .unwrap_or_else(|e| panic!("{kind}: {e}"));
            let accepted = round_trip(client, &mut rx).await;
            assert_eq!(accepted.meta.kind.as_str(), kind);
        }
    }

    #[tokio::test]
    async fn client_certificates_are_presented_and_checked() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pki = TestPki::generate(dir.path());
        let alice = pki.client("alice");
        for (kind, scheme) in [("tls", "mqtts"), ("quic", "quic")] {
            let (_listeners, mut rx, port) = listen(kind, &pki, "required").await;
            let target = Target::parse(&format!("{scheme}://127.0.0.1:{port}")).expect("url");
            let tls = ClientTls {
                ca: Some(pki.ca_cert.clone()),
                cert: Some(alice.cert.clone()),
                key: Some(alice.key.clone()),
                ..ClientTls::default()
            };
            let client = connect(&target, &tls)
                .await
                .unwrap_or_else(|e| panic!("{kind}: {e}"));
            let accepted = round_trip(client, &mut rx).await;
            assert!(accepted.meta.identity.is_some(), "{kind}: no identity");
        }
    }

    #[tokio::test]
    async fn an_untrusted_server_is_refused_unless_insecure() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pki = TestPki::generate(dir.path());
        let other = TestPki::generate(&dir.path().join("other"));
        for (kind, scheme) in [("tls", "mqtts"), ("wss", "wss"), ("quic", "quic")] {
            let (_listeners, mut rx, port) = listen(kind, &pki, "none").await;
            let target = Target::parse(&format!("{scheme}://localhost:{port}")).expect("url");
            let wrong_ca = ClientTls {
                ca: Some(other.ca_cert.clone()),
                ..ClientTls::default()
            };
            let err = connect(&target, &wrong_ca).await.err().expect("refused");
            assert!(
                matches!(err, ClientError::Tls { .. } | ClientError::Quic { .. }),
                "{kind}: {err}"
            );
            let insecure = ClientTls {
                insecure: true,
                ..ClientTls::default()
            };
            let client = connect(&target, &insecure)
                .await
                .unwrap_or_else(|e| panic!("{kind}: {e}"));
            round_trip(client, &mut rx).await;
        }
    }
}
