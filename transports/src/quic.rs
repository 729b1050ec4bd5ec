//! MQTT over QUIC (quinn): one bidirectional stream per MQTT connection, ALPN `mqtt`.
//!
//! The client opens the stream and sends CONNECT on it; the broker accepts that first stream and
//! allows no other. Connection migration is quinn's business. MQTT keep alive governs idleness, so
//! the server sets no QUIC idle timeout of its own (the client's applies, if it sets one).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use quinn::{Connection, RecvStream, SendStream, VarInt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::tls::TlsError;

/// How long a closed stream waits for the peer to acknowledge its last bytes before the QUIC
/// connection is closed.
const LINGER: Duration = Duration::from_secs(3);

/// Builds quinn's server config from a rustls config (TLS 1.3, ALPN `mqtt`).
pub(crate) fn server_config(
    tls: Arc<rustls::ServerConfig>,
) -> Result<quinn::ServerConfig, TlsError> {
    let crypto =
        quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(|e| TlsError::Rustls {
            context: "QUIC needs TLS 1.3 with an initial cipher suite",
            source: rustls::Error::General(e.to_string()),
        })?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(VarInt::from_u32(1))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .max_idle_timeout(None);
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// The write half's progress towards a clean end.
enum Shutdown {
    /// Still writable.
    Open,
    /// FIN sent; waiting (bounded) for the peer to acknowledge every byte.
    Finishing(Pin<Box<dyn Future<Output = ()> + Send>>),
    /// Every byte was acknowledged, or waiting gave up.
    Done,
}

/// One bidirectional QUIC stream as a byte stream, on either side. It owns its connection (and a
/// client's endpoint), which would otherwise close, and stop driving the socket, when their last
/// handle is dropped.
pub struct QuicStream {
    send: SendStream,
    recv: RecvStream,
    connection: Connection,
    /// A client's endpoint, kept alive as long as its stream (None on the server).
    endpoint: Option<quinn::Endpoint>,
    shutdown: Shutdown,
}

impl QuicStream {
    /// Wraps a stream of `connection`; `endpoint` is the client endpoint to keep alive, if any.
    pub fn new(
        connection: Connection,
        send: SendStream,
        recv: RecvStream,
        endpoint: Option<quinn::Endpoint>,
    ) -> QuicStream {
        QuicStream {
            send,
            recv,
            connection,
            endpoint,
            shutdown: Shutdown::Open,
        }
    }
}

impl AsyncRead for QuicStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.recv).poll_read(cx, buf)
    }
}

impl AsyncWrite for QuicStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        AsyncWrite::poll_write(Pin::new(&mut self.send), cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.send).poll_flush(cx)
    }

    /// Finishes the send stream and waits (at most [`LINGER`]) until the peer has acknowledged
    /// everything written, so a DISCONNECT just before the end is not lost when the connection
    /// closes.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match &mut self.shutdown {
                Shutdown::Open => {
                    // Already finished or reset by the peer: nothing more to deliver.
                    let _ = self.send.finish();
                    let stopped = self.send.stopped();
                    self.shutdown = Shutdown::Finishing(Box::pin(async move {
                        let _ = tokio::time::timeout(LINGER, stopped).await;
                    }));
                }
                Shutdown::Finishing(wait) => {
                    ready!(wait.as_mut().poll(cx));
                    self.shutdown = Shutdown::Done;
                }
                Shutdown::Done => return Poll::Ready(Ok(())),
            }
        }
    }
}

impl Drop for QuicStream {
    /// Closes the connection with code 0: at once if the stream was shut down (the peer has every
    /// byte), else from a background task (when a runtime is there to run it) once the peer has
    /// acknowledged the last bytes, as closing at once may discard data it has not read yet.
    fn drop(&mut self) {
        let connection = self.connection.clone();
        let close = move || connection.close(VarInt::from_u32(0), b"");
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            close();
            return;
        };
        let stopped = if matches!(self.shutdown, Shutdown::Done) {
            close();
            None
        } else {
            let _ = self.send.finish();
            Some(self.send.stopped())
        };
        let endpoint = self.endpoint.take();
        runtime.spawn(async move {
            if let Some(stopped) = stopped {
                let _ = tokio::time::timeout(LINGER, stopped).await;
                close();
            }
            // A client's endpoint keeps driving the socket until CONNECTION_CLOSE is out.
            if let Some(endpoint) = endpoint {
                let _ = tokio::time::timeout(LINGER, endpoint.wait_idle()).await;
            }
        });
    }
}
