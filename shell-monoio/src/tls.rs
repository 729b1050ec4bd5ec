//! TLS over io_uring through rustls's buffer API: ciphertext is read into owned buffers and fed to
//! the session (`read_tls`), records to send are taken from it (`write_tls`) and written as owned
//! buffers. No blocking, no adapter between the two I/O models.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::rc::Rc;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use cicada_engine::CertIdentity;
use cicada_transports::config::TlsConfig;
use cicada_transports::tls::{ReloadingTls, TlsError, Versions, ALPN_MQTT};
use monoio::io::CancelableAsyncReadRent;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, CancelHandle};
use monoio::net::tcp::{TcpOwnedReadHalf, TcpOwnedWriteHalf};
use monoio::net::TcpStream;
use rustls::ServerConnection;

use crate::net::{ConnIo, ReadHalf, WriteHalf};

/// Ciphertext read at once.
const CIPHER_READ: usize = 4096;

/// The rustls server configuration of a TLS listener (same certificates, versions and client
/// authentication as `cicada`'s).
pub(crate) fn server_config(cfg: &TlsConfig) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    Ok(ReloadingTls::load(cfg, &[ALPN_MQTT], Versions::Tls12And13)?.current())
}

/// One connection's TLS session.
pub(crate) struct TlsSession(Box<ServerConnection>);

fn tls_error(e: rustls::Error) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e)
}

impl TlsSession {
    pub(crate) fn into_inner(self) -> Box<ServerConnection> {
        self.0
    }

    pub(crate) fn from_inner(conn: Box<ServerConnection>) -> TlsSession {
        TlsSession(conn)
    }

    /// Who the client certificate names, if the client presented one.
    pub(crate) fn identity(&self) -> Option<CertIdentity> {
        let cert = self.0.peer_certificates()?.first()?;
        cicada_transports::identity::identity_of(cert)
    }

    /// Feeds ciphertext to the session; decrypted bytes wait in it.
    fn feed(&mut self, mut cipher: &[u8]) -> std::io::Result<()> {
        while !cipher.is_empty() {
            self.0.read_tls(&mut cipher)?;
            self.0.process_new_packets().map_err(tls_error)?;
        }
        Ok(())
    }

    /// Moves decrypted bytes to `buf`: `Some(n)` (0: the peer sent close_notify) or `None` if there
    /// are none yet.
    fn take_plain(&mut self, buf: &mut BytesMut) -> std::io::Result<Option<usize>> {
        let mut chunk = [0u8; 4096];
        let mut total = 0;
        loop {
            match self.0.reader().read(&mut chunk) {
                Ok(0) => return Ok(Some(total)),
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    total += n;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    return Ok((total > 0).then_some(total));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The records the session wants sent.
    fn records(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        if !self.0.wants_write() {
            return Ok(None);
        }
        let mut out = Vec::new();
        while self.0.wants_write() {
            self.0.write_tls(&mut out)?;
        }
        Ok(Some(out))
    }

    /// Reads until some plaintext arrives (before the connection has reader and writer tasks).
    pub(crate) async fn read_plain(
        &mut self,
        stream: &mut TcpStream,
        buf: &mut BytesMut,
    ) -> std::io::Result<usize> {
        loop {
            if let Some(n) = self.take_plain(buf)? {
                return Ok(n);
            }
            let (res, cipher) = stream.read(Vec::with_capacity(CIPHER_READ)).await;
            if res? == 0 {
                return Ok(0);
            }
            self.feed(&cipher)?;
            if let Some(records) = self.records()? {
                stream.write_all(records).await.0?;
            }
        }
    }
}

/// Runs the server side of the handshake on `stream`.
pub(crate) async fn handshake(
    stream: &mut TcpStream,
    config: Arc<rustls::ServerConfig>,
) -> std::io::Result<TlsSession> {
    let mut session = TlsSession(Box::new(ServerConnection::new(config).map_err(tls_error)?));
    while session.0.is_handshaking() {
        if let Some(records) = session.records()? {
            stream.write_all(records).await.0?;
        }
        if !session.0.is_handshaking() {
            break;
        }
        let (res, cipher) = stream.read(Vec::with_capacity(CIPHER_READ)).await;
        if res? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if let Err(e) = session.feed(&cipher) {
            // Tell the client why (an alert) before giving up.
            if let Ok(Some(records)) = session.records() {
                let _ = stream.write_all(records).await;
            }
            return Err(e);
        }
    }
    if let Some(records) = session.records()? {
        stream.write_all(records).await.0?;
    }
    Ok(session)
}

/// The reading half of a TLS connection.
pub(crate) struct TlsRead {
    half: TcpOwnedReadHalf,
    session: Rc<RefCell<TlsSession>>,
    io: Rc<ConnIo>,
}

impl TlsRead {
    pub(crate) fn new(
        half: TcpOwnedReadHalf,
        session: Rc<RefCell<TlsSession>>,
        io: Rc<ConnIo>,
    ) -> TlsRead {
        TlsRead { half, session, io }
    }
}

impl ReadHalf for TlsRead {
    async fn read_into(
        &mut self,
        mut buf: BytesMut,
        cancel: CancelHandle,
    ) -> (std::io::Result<usize>, BytesMut) {
        loop {
            match self.session.borrow_mut().take_plain(&mut buf) {
                Ok(Some(n)) => return (Ok(n), buf),
                Ok(None) => {}
                Err(e) => return (Err(e), buf),
            }
            let (res, cipher) = self
                .half
                .cancelable_read(Vec::with_capacity(CIPHER_READ), cancel.clone())
                .await;
            match res {
                Ok(0) => return (Ok(0), buf),
                Ok(_) => {}
                Err(e) => return (Err(e), buf),
            }
            let mut session = self.session.borrow_mut();
            if let Err(e) = session.feed(&cipher) {
                return (Err(e), buf);
            }
            if session.0.wants_write() {
                // A record to answer (a key update): an empty chunk wakes the writer to send it.
                self.io.send(Bytes::new());
            }
        }
    }
}

/// The writing half of a TLS connection.
pub(crate) struct TlsWrite {
    half: TcpOwnedWriteHalf,
    session: Rc<RefCell<TlsSession>>,
}

impl TlsWrite {
    pub(crate) fn new(half: TcpOwnedWriteHalf, session: Rc<RefCell<TlsSession>>) -> TlsWrite {
        TlsWrite { half, session }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        let records = self.session.borrow_mut().records()?;
        if let Some(records) = records {
            self.half.write_all(records).await.0?;
        }
        Ok(())
    }
}

impl WriteHalf for TlsWrite {
    async fn write_bytes(&mut self, data: Bytes) -> std::io::Result<()> {
        self.session.borrow_mut().0.writer().write_all(&data)?;
        self.flush().await
    }

    async fn finish(&mut self) {
        self.session.borrow_mut().0.send_close_notify();
        let _ = self.flush().await;
        let _ = self.half.shutdown().await;
    }
}
