//! PROXY protocol v1 (text) and v2 (binary) headers, server side (HAProxy's
//! `proxy-protocol.txt`).
//!
//! A load balancer in front of the broker terminates the client's TCP connection and opens its own,
//! so the socket's peer address is the balancer's. With the PROXY protocol the balancer first sends
//! a header naming the real client; [`read_header`] consumes it and returns the client's address
//! and the rest of the stream. Parsing is done by the `ppp` crate; this module only buffers enough
//! bytes, bounds the memory a peer can make us hold, and maps the result.
//!
//! A listener that expects the header must refuse connections without one: otherwise any client
//! reaching the broker directly could claim any address. Timeouts are the caller's business.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use ppp::v1;
use ppp::v2;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// The start of a v1 header, up to and including the space after `PROXY`.
const V1_PREFIX: &[u8] = b"PROXY ";

/// The longest v1 header the spec allows, CRLF included.
const V1_MAX_LEN: usize = 107;

/// The fixed part of a v2 header: the 12-byte signature, version/command, family/protocol and the
/// two-byte length of what follows.
const V2_FIXED_LEN: usize = 16;

/// The longest v2 header (fixed part, addresses and TLVs) we accept. The format allows 64 KiB, but
/// real balancers send at most a few hundred bytes; the bound keeps a hostile peer from making us
/// buffer more.
const V2_MAX_LEN: usize = 4096;

/// How much to ask the stream for at a time while looking for the end of the header. Bytes read
/// past the header are not lost: [`Prefixed`] replays them.
const READ_CHUNK: usize = 512;

/// Why a PROXY header could not be read. The connection should be closed.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Reading the stream failed.
    #[error("read failed: {0}")]
    Io(#[from] io::Error),
    /// The peer closed the connection before sending a complete header.
    #[error("connection closed before the header was complete")]
    Closed,
    /// The first bytes are neither a v1 nor a v2 header: the peer did not come through a proxy
    /// speaking the PROXY protocol (or the listener should not expect one).
    #[error("not a PROXY protocol header (the listener expects one before any other data)")]
    NotProxy,
    /// The header starts like a PROXY header but does not parse; the text is ppp's explanation.
    #[error("malformed: {0}")]
    Malformed(String),
    /// The header is longer than a v1 header may be (107 bytes) or than we accept for v2 (4096
    /// bytes), so we stopped buffering it.
    #[error(
        "too long (a v1 header must end with CRLF within {V1_MAX_LEN} bytes, a v2 header may \
         have at most {V2_MAX_LEN} bytes)"
    )]
    TooLong,
}

/// A stream whose first bytes were already read: it yields them first, then reads from the inner
/// stream. Writes go straight to the inner stream.
///
/// [`read_header`] reads in chunks rather than byte by byte, so it usually reads past the header
/// into the client's first MQTT (or TLS) bytes; this hands them back.
#[derive(Debug)]
pub struct Prefixed<S> {
    /// Bytes read past the header, not yet handed to the reader.
    prefix: Bytes,
    /// The stream the header was read from.
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.prefix.is_empty() {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let n = this.prefix.len().min(buf.remaining());
        buf.put_slice(&this.prefix[..n]);
        this.prefix.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Reads a PROXY protocol v1 or v2 header from the start of `stream`.
///
/// Returns the stream positioned just after the header (bytes already read past it are replayed
/// first) and the client's address the header carries: `Some` for v1 `TCP4`/`TCP6` and for v2
/// `PROXY` over IPv4/IPv6; `None` for v1 `UNKNOWN`, v2 `LOCAL` (the balancer's own health checks)
/// and v2 UNIX or unspecified addresses, where the caller keeps the socket's address.
///
/// Fails as soon as the first bytes cannot start a header ([`ProxyError::NotProxy`]), and never
/// buffers more than a header may hold ([`ProxyError::TooLong`]). It does not time out: wrap it in
/// `tokio::time::timeout`.
pub async fn read_header<S: AsyncRead + Unpin>(
    mut stream: S,
) -> Result<(Prefixed<S>, Option<SocketAddr>), ProxyError> {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        if let Some((len, source)) = parse(&buf)? {
            buf.advance(len);
            let prefixed = Prefixed {
                prefix: buf.freeze(),
                inner: stream,
            };
            return Ok((prefixed, source));
        }
        buf.reserve(READ_CHUNK);
        let read = stream.read_buf(&mut (&mut buf).limit(READ_CHUNK)).await?;
        if read == 0 {
            return Err(ProxyError::Closed);
        }
    }
}

/// Looks for a complete header at the start of `buf`: its length and source address once there is
/// one, `None` while more bytes are needed.
fn parse(buf: &[u8]) -> Result<Option<(usize, Option<SocketAddr>)>, ProxyError> {
    if agrees(buf, V1_PREFIX) {
        parse_v1(buf)
    } else if agrees(buf, v2::PROTOCOL_PREFIX) {
        parse_v2(buf)
    } else {
        Err(ProxyError::NotProxy)
    }
}

/// Whether `buf` and `signature` agree on their common length (an empty `buf` agrees with both
/// signatures, so we keep reading).
fn agrees(buf: &[u8], signature: &[u8]) -> bool {
    let n = buf.len().min(signature.len());
    buf[..n] == signature[..n]
}

/// [`parse`] for a buffer that starts like a v1 header.
fn parse_v1(buf: &[u8]) -> Result<Option<(usize, Option<SocketAddr>)>, ProxyError> {
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    let Some(cr) = window.windows(2).position(|pair| pair == b"\r\n") else {
        return if buf.len() >= V1_MAX_LEN {
            Err(ProxyError::TooLong)
        } else {
            Ok(None)
        };
    };
    let line = &buf[..cr + 2];
    let header = v1::Header::try_from(line).map_err(|e| malformed("v1", &e))?;
    // ppp stops at the first CR; a stray CR inside the line must not end the header early.
    if header.header.len() != line.len() {
        return Err(ProxyError::Malformed(
            "v1: carriage return inside the header".to_owned(),
        ));
    }
    let source = match header.addresses {
        v1::Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        v1::Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        v1::Addresses::Unknown => None,
    };
    Ok(Some((line.len(), source)))
}

/// [`parse`] for a buffer that starts like a v2 header.
fn parse_v2(buf: &[u8]) -> Result<Option<(usize, Option<SocketAddr>)>, ProxyError> {
    if buf.len() < V2_FIXED_LEN {
        return Ok(None);
    }
    let total = V2_FIXED_LEN + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    match v2::Header::try_from(buf) {
        Ok(header) => {
            if header.len() > V2_MAX_LEN {
                return Err(ProxyError::TooLong);
            }
            let source = match (header.command, header.addresses) {
                (v2::Command::Proxy, v2::Addresses::IPv4(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                (v2::Command::Proxy, v2::Addresses::IPv6(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                (v2::Command::Local, _)
                | (v2::Command::Proxy, v2::Addresses::Unix(_) | v2::Addresses::Unspecified) => None,
            };
            Ok(Some((header.len(), source)))
        }
        Err(v2::ParseError::Partial(..) | v2::ParseError::Incomplete(..)) => {
            if total > V2_MAX_LEN {
                Err(ProxyError::TooLong)
            } else {
                Ok(None)
            }
        }
        Err(e) => Err(malformed("v2", &e)),
    }
}

/// [`ProxyError::Malformed`] with ppp's message and the messages of its sources (which ppp leaves
/// out of its own, e.g. why an address did not parse).
fn malformed(version: &str, error: &dyn std::error::Error) -> ProxyError {
    let mut text = version.to_owned();
    let mut next = Some(error);
    while let Some(cause) = next {
        text.push_str(": ");
        text.push_str(cause.to_string().trim_end_matches('.'));
        next = cause.source();
    }
    ProxyError::Malformed(text)
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Reads everything left in `stream`.
    async fn rest<S: AsyncRead + Unpin>(mut stream: Prefixed<S>) -> Vec<u8> {
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await.expect("read the rest");
        out
    }

    /// A v2 header: `command` (0 LOCAL, 1 PROXY), `family_protocol` byte, then `payload`.
    fn v2_header(command: u8, family_protocol: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = v2::PROTOCOL_PREFIX.to_vec();
        out.push(0x20 | command);
        out.push(family_protocol);
        let len = u16::try_from(payload.len()).expect("payload fits in a v2 header");
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    #[tokio::test]
    async fn v1_tcp4_keeps_trailing_bytes() {
        let input = b"PROXY TCP4 192.0.2.7 198.51.100.1 51234 1883\r\n\x10\x0c\x00\x04MQTT";
        let (stream, source) = read_header(&input[..]).await.expect("header");
        assert_eq!(source, Some("192.0.2.7:51234".parse().expect("addr")));
        assert_eq!(rest(stream).await, b"\x10\x0c\x00\x04MQTT");
    }

    #[tokio::test]
    async fn v1_tcp6_keeps_trailing_bytes() {
        let input = b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 8883\r\nhello";
        let (stream, source) = read_header(&input[..]).await.expect("header");
        assert_eq!(source, Some("[2001:db8::7]:40000".parse().expect("addr")));
        assert_eq!(rest(stream).await, b"hello");
    }

    #[tokio::test]
    async fn v1_unknown_has_no_source() {
        let input = b"PROXY UNKNOWN\r\nabc";
        let (stream, source) = read_header(&input[..]).await.expect("header");
        assert_eq!(source, None);
        assert_eq!(rest(stream).await, b"abc");

        let input = b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n";
        let (stream, source) = read_header(&input[..]).await.expect("header");
        assert_eq!(source, None);
        assert!(rest(stream).await.is_empty());
    }

    #[tokio::test]
    async fn v2_proxy_ipv4_keeps_trailing_bytes() {
        let mut payload = vec![203, 0, 113, 9, 10, 0, 0, 1];
        payload.extend_from_slice(&60000u16.to_be_bytes());
        payload.extend_from_slice(&1883u16.to_be_bytes());
        // A NOOP TLV after the addresses, which we skip.
        payload.extend_from_slice(&[0x04, 0x00, 0x02, 0xaa, 0xbb]);
        let mut input = v2_header(1, 0x11, &payload);
        input.extend_from_slice(b"\x10\x00mqtt");
        let (stream, source) = read_header(&input[..]).await.expect("header");
        assert_eq!(
            source,
            Some(SocketAddr::from((Ipv4Addr::new(203, 0, 113, 9), 60000)))
        );
        assert_eq!(rest(stream).await, b"\x10\x00mqtt");
    }

    #[tokio::test]
    async fn v2_proxy_ipv6_keeps_trailing_bytes() {
        let src: Ipv6Addr = "2001:db8::42".parse().expect("addr");
        let dst: Ipv6Addr = "2001:db8::1".parse().expect("addr");
        let mut payload = src.octets().to_vec();
        payload.extend_from_slice(&dst.octets());
        payload.extend_from_slice(&12345u16.to_be_bytes());
        payload.extend_from_slice(&8883u16.to_be_bytes());
        let mut input = v2_header(1, 0x21, &payload);
        input.extend_from_slice(b"tls");
        let (stream, source) = read_header(&input[..]).await.expect("header");
        assert_eq!(source, Some(SocketAddr::from((src, 12345))));
        assert_eq!(rest(stream).await, b"tls");
    }

    #[tokio::test]
    async fn v2_local_and_unix_have_no_source() {
        let mut input = v2_header(0, 0x00, &[]);
        input.extend_from_slice(b"x");
        let (stream, source) = read_header(&input[..]).await.expect("LOCAL header");
        assert_eq!(source, None);
        assert_eq!(rest(stream).await, b"x");

        // LOCAL with addresses: they are the balancer's own and ignored.
        let input = v2_header(0, 0x11, &[127, 0, 0, 1, 127, 0, 0, 1, 0, 1, 0, 2]);
        let (_, source) = read_header(&input[..]).await.expect("LOCAL header");
        assert_eq!(source, None);

        let input = v2_header(1, 0x31, &[0u8; 216]);
        let (_, source) = read_header(&input[..]).await.expect("UNIX header");
        assert_eq!(source, None);
    }

    #[tokio::test]
    async fn header_split_across_reads() {
        let (mut client, server) = tokio::io::duplex(64);
        let task = tokio::spawn(async move { read_header(server).await });
        let input = b"PROXY TCP4 192.0.2.1 192.0.2.2 1000 2000\r\nafter";
        for piece in input.chunks(5) {
            client.write_all(piece).await.expect("write");
            client.flush().await.expect("flush");
            tokio::task::yield_now().await;
        }
        drop(client);
        let (stream, source) = task.await.expect("task").expect("header");
        assert_eq!(source, Some("192.0.2.1:1000".parse().expect("addr")));
        assert_eq!(rest(stream).await, b"after");

        let (mut client, server) = tokio::io::duplex(64);
        let task = tokio::spawn(async move { read_header(server).await });
        let mut input = v2_header(1, 0x11, &[192, 0, 2, 3, 192, 0, 2, 4, 0, 7, 0, 8]);
        input.extend_from_slice(b"after");
        for piece in input.chunks(3) {
            client.write_all(piece).await.expect("write");
            tokio::task::yield_now().await;
        }
        drop(client);
        let (stream, source) = task.await.expect("task").expect("header");
        assert_eq!(source, Some("192.0.2.3:7".parse().expect("addr")));
        assert_eq!(rest(stream).await, b"after");
    }

    #[tokio::test]
    async fn prefixed_writes_pass_through() {
        let (mut client, server) = tokio::io::duplex(256);
        client
            .write_all(b"PROXY UNKNOWN\r\nping")
            .await
            .expect("write");
        let (mut stream, _) = read_header(server).await.expect("header");
        let mut ping = [0u8; 4];
        stream.read_exact(&mut ping).await.expect("read");
        assert_eq!(&ping, b"ping");
        stream.write_all(b"pong").await.expect("write back");
        let mut pong = [0u8; 4];
        client.read_exact(&mut pong).await.expect("read back");
        assert_eq!(&pong, b"pong");
    }

    #[tokio::test]
    async fn garbage_is_not_proxy() {
        let input = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert!(matches!(
            read_header(&input[..]).await,
            Err(ProxyError::NotProxy)
        ));
        // An MQTT CONNECT without a header.
        let input = b"\x10\x0c\x00\x04MQTT\x05\x02\x00\x3c";
        assert!(matches!(
            read_header(&input[..]).await,
            Err(ProxyError::NotProxy)
        ));
        // Detected on the first byte that disagrees, without waiting for more.
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(b"PROXX").await.expect("write");
        assert!(matches!(
            read_header(server).await,
            Err(ProxyError::NotProxy)
        ));
    }

    #[tokio::test]
    async fn truncated_header_is_closed() {
        for input in [
            &b""[..],
            &b"PROXY TCP4 192.0.2.1 192.0"[..],
            &b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c\xc0"[..],
        ] {
            assert!(
                matches!(read_header(input).await, Err(ProxyError::Closed)),
                "{input:?}"
            );
        }
    }

    #[tokio::test]
    async fn malformed_headers() {
        let input = b"PROXY TCP4 nonsense\r\nrest";
        match read_header(&input[..]).await {
            Err(ProxyError::Malformed(text)) => assert!(text.starts_with("v1: "), "{text}"),
            other => panic!("expected Malformed, got {other:?}"),
        }
        let input = b"PROXY TCP4 192.0.2.1 192.0.2.2 1 2 \r\n";
        assert!(matches!(
            read_header(&input[..]).await,
            Err(ProxyError::Malformed(_))
        ));
        let input = b"PROXY TCP4 192.0.2.1 192.0.2.2 1\r2\r\n";
        assert!(matches!(
            read_header(&input[..]).await,
            Err(ProxyError::Malformed(_))
        ));
        // Version 3.
        let mut input = v2_header(1, 0x11, &[0; 12]);
        input[12] = 0x31;
        assert!(matches!(
            read_header(&input[..]).await,
            Err(ProxyError::Malformed(_))
        ));
        // IPv4 with too short an address block.
        let input = v2_header(1, 0x11, &[0; 4]);
        assert!(matches!(
            read_header(&input[..]).await,
            Err(ProxyError::Malformed(_))
        ));
    }

    #[tokio::test]
    async fn overlong_headers() {
        let mut input = b"PROXY UNKNOWN ".to_vec();
        input.resize(200, b'a');
        input.extend_from_slice(b"\r\n");
        assert!(matches!(
            read_header(&input[..]).await,
            Err(ProxyError::TooLong)
        ));

        // A v2 header announcing 8000 bytes is refused as soon as its length is known.
        let (mut client, server) = tokio::io::duplex(64);
        let mut fixed = v2::PROTOCOL_PREFIX.to_vec();
        fixed.extend_from_slice(&[0x21, 0x11]);
        fixed.extend_from_slice(&8000u16.to_be_bytes());
        client.write_all(&fixed).await.expect("write");
        assert!(matches!(
            read_header(server).await,
            Err(ProxyError::TooLong)
        ));

        // The largest accepted v2 header still parses.
        let payload = vec![0u8; V2_MAX_LEN - V2_FIXED_LEN];
        let input = v2_header(0, 0x00, &payload);
        let (_, source) = read_header(&input[..]).await.expect("4096-byte header");
        assert_eq!(source, None);
    }

    #[test]
    fn error_messages_read_well() {
        assert_eq!(
            ProxyError::NotProxy.to_string(),
            "not a PROXY protocol header (the listener expects one before any other data)"
        );
        let error = parse(b"PROXY TCP4 1.2.3 1.2.3.4 1 2\r\n").expect_err("bad address");
        assert_eq!(
            error.to_string(),
            "malformed: v1: Header contains invalid IP address for the source: invalid IPv4 \
             address syntax"
        );
    }
}
