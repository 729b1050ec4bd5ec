//! MQTT over WebSocket (MQTT 5.0 §6): binary frames carried as one byte stream.
//!
//! A WebSocket frame boundary means nothing to MQTT: a packet may span frames and a frame may hold
//! several packets [MQTT-6.0.0-2, -3], so frames are simply concatenated into a byte stream and the
//! engine's decoder does the rest. A text frame is a protocol error: the connection is closed
//! [MQTT-6.0.0-1].

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use futures_util::{Sink, Stream as _};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

/// The WebSocket subprotocol for MQTT (MQTT 5.0 §6, [MQTT-6.0.0-3]).
pub const SUBPROTOCOL: &str = "mqtt";

/// The largest WebSocket message accepted: MQTT's own maximum packet size bounds what the engine
/// takes, this only bounds one frame's buffer.
const MAX_MESSAGE: usize = 16 << 20;

/// A WebSocket as a byte stream: reads yield the payloads of binary messages in order; each write
/// goes out as one binary message.
pub struct WsStream<S> {
    ws: WebSocketStream<S>,
    /// What is left of the last binary message read.
    pending: Bytes,
}

impl<S> WsStream<S> {
    /// Wraps an established WebSocket.
    pub fn new(ws: WebSocketStream<S>) -> WsStream<S> {
        WsStream {
            ws,
            pending: Bytes::new(),
        }
    }
}

/// The WebSocket limits used on both sides.
pub fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
}

fn to_io(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        WsError::ConnectionClosed | WsError::AlreadyClosed => {
            io::Error::new(io::ErrorKind::NotConnected, e)
        }
        other => io::Error::new(io::ErrorKind::InvalidData, other),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.remaining());
                buf.put_slice(&self.pending[..n]);
                self.pending.advance(n);
                return Poll::Ready(Ok(()));
            }
            // Pings are answered by tungstenite itself while it reads.
            match ready!(Pin::new(&mut self.ws).poll_next(cx)) {
                None | Some(Err(WsError::ConnectionClosed)) => return Poll::Ready(Ok(())),
                Some(Err(e)) => return Poll::Ready(Err(to_io(e))),
                Some(Ok(Message::Binary(data))) => self.pending = data,
                Some(Ok(Message::Close(_))) => return Poll::Ready(Ok(())),
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "text frame: MQTT over WebSocket uses binary frames only [MQTT-6.0.0-1]",
                    )))
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut ws = Pin::new(&mut self.ws);
        ready!(ws.as_mut().poll_ready(cx)).map_err(to_io)?;
        ws.start_send(Message::Binary(Bytes::copy_from_slice(data)))
            .map_err(to_io)?;
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws).poll_flush(cx).map_err(to_io)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match ready!(Pin::new(&mut self.ws).poll_close(cx)) {
            Ok(()) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(to_io(e))),
        }
    }
}

/// Why a WebSocket upgrade was refused.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    /// The handshake failed (not HTTP, wrong path, no `mqtt` subprotocol, I/O).
    #[error("WebSocket handshake: {0}")]
    Handshake(Box<WsError>),
}

/// Answers a WebSocket upgrade on `path`, negotiating the `mqtt` subprotocol.
///
/// A request for another path gets 404; one that offers subprotocols but not `mqtt` gets 400
/// (a client offering none is let in, as several browser libraries do not send one).
// tungstenite's callback type fixes the size of the refusal (an HTTP response).
#[allow(clippy::result_large_err)]
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    path: &str,
) -> Result<WsStream<S>, UpgradeError> {
    let check = |request: &Request, mut response: Response| -> Result<Response, ErrorResponse> {
        if request.uri().path() != path {
            return Err(refusal(StatusCode::NOT_FOUND, "no MQTT endpoint here"));
        }
        let offered: Vec<&str> = request
            .headers()
            .get_all("sec-websocket-protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(',').map(str::trim))
            .collect();
        if offered.is_empty() {
            return Ok(response);
        }
        if !offered.iter().any(|p| p.eq_ignore_ascii_case(SUBPROTOCOL)) {
            return Err(refusal(
                StatusCode::BAD_REQUEST,
                "the WebSocket subprotocol must be `mqtt`",
            ));
        }
        response.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_static(SUBPROTOCOL),
        );
        Ok(response)
    };
    let ws = tokio_tungstenite::accept_hdr_async_with_config(stream, check, Some(config()))
        .await
        .map_err(|e| UpgradeError::Handshake(Box::new(e)))?;
    Ok(WsStream::new(ws))
}

fn refusal(status: StatusCode, why: &str) -> ErrorResponse {
    let mut response = ErrorResponse::new(Some(why.to_string()));
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    async fn pair(
        path: &str,
        protocol: Option<&str>,
    ) -> Result<
        (
            WsStream<tokio::io::DuplexStream>,
            WebSocketStream<tokio::io::DuplexStream>,
        ),
        UpgradeError,
    > {
        let (a, b) = tokio::io::duplex(1 << 16);
        let path = path.to_string();
        let server = tokio::spawn(async move { accept(a, &path).await });
        let mut request = "ws://localhost/mqtt"
            .into_client_request()
            .expect("request");
        if let Some(p) = protocol {
            request.headers_mut().insert(
                "sec-websocket-protocol",
                HeaderValue::from_str(p).expect("header"),
            );
        }
        let client = tokio_tungstenite::client_async(request, b).await;
        let server = server.await.expect("join")?;
        let (client, response) = client.expect("client handshake");
        assert_eq!(
            response
                .headers()
                .get("sec-websocket-protocol")
                .map(|v| v.to_str().ok()),
            protocol.map(|_| Some(SUBPROTOCOL))
        );
        Ok((server, client))
    }

    #[tokio::test]
    async fn frames_become_one_byte_stream() {
        let (mut server, mut client) = pair("/mqtt", Some("mqtt")).await.expect("upgrade");
        // A packet spanning two frames, then two packets in one frame.
        client
            .send(Message::Binary(Bytes::from_static(&[0xC0])))
            .await
            .expect("send");
        client
            .send(Message::Binary(Bytes::from_static(&[0x00, 0xC0, 0x00])))
            .await
            .expect("send");
        let mut got = [0u8; 4];
        server.read_exact(&mut got).await.expect("read");
        assert_eq!(got, [0xC0, 0x00, 0xC0, 0x00]);
        server.write_all(&[0xD0, 0x00]).await.expect("write");
        server.flush().await.expect("flush");
        let msg = client.next().await.expect("message").expect("ok");
        assert_eq!(msg, Message::Binary(Bytes::from_static(&[0xD0, 0x00])));
    }

    #[tokio::test]
    async fn text_frames_are_refused() {
        let (mut server, mut client) = pair("/mqtt", None).await.expect("upgrade");
        client.send(Message::text("hello")).await.expect("send");
        let mut got = [0u8; 1];
        let err = server.read_exact(&mut got).await.expect_err("refused");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[tokio::test]
    async fn wrong_path_and_subprotocol_are_refused() {
        assert!(pair("/other", Some("mqtt")).await.is_err());
        assert!(pair("/mqtt", Some("graphql-ws")).await.is_err());
    }
}
