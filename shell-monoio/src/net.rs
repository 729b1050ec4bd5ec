//! Connections on a core: accepting, reading the CONNECT to find the owning core, handing the socket
//! over when that is another core, and each connection's reader and writer tasks.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use cicada_engine::codec::{peek_client_id, Peek};
use cicada_engine::{ConnId, ConnMeta, Input};
use cicada_transports::config::Listener;
use monoio::io::{
    AsyncWriteRent, AsyncWriteRentExt, CancelHandle, CancelableAsyncReadRent, Canceller, Splitable,
};
use monoio::net::TcpStream;
use tracing::{debug, warn};

use crate::core::{Handoff, Shared};
use crate::tls::{TlsRead, TlsSession, TlsWrite};

/// A peer that takes no byte for this long is gone or hostile.
const WRITE_STALL: Duration = Duration::from_secs(30);
/// The first read buffer of a connection; it grows while reads fill it. Small, so an idle
/// connection costs little memory.
const FIRST_READ: usize = 512;
/// The largest read buffer.
const MAX_READ: usize = 64 * 1024;

/// A listener as the cores see it.
pub(crate) struct ListenerInfo {
    pub(crate) config: Listener,
    /// Connections open on it, across all cores.
    pub(crate) open: Arc<AtomicUsize>,
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
}

impl ListenerInfo {
    pub(crate) fn new(
        config: Listener,
        open: Arc<AtomicUsize>,
    ) -> Result<ListenerInfo, cicada_transports::tls::TlsError> {
        let tls = match &config.tls {
            Some(cfg) => Some(crate::tls::server_config(cfg)?),
            None => None,
        };
        Ok(ListenerInfo { config, open, tls })
    }
}

/// A listener place held by one connection, given back when it is dropped.
#[derive(Debug)]
pub(crate) struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(info: &ListenerInfo) -> Option<Slot> {
        let before = info.open.fetch_add(1, Ordering::AcqRel);
        if info.config.max_connections.is_some_and(|max| before >= max) {
            info.open.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Slot(info.open.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A socket on its way to another core, with its TLS session when it has one.
#[derive(Debug)]
pub(crate) struct Moved {
    socket: std::net::TcpStream,
    tls: Option<Box<rustls::ServerConnection>>,
}

/// What a connection's tasks and the engine task share.
#[derive(Default)]
pub(crate) struct ConnIo {
    /// Bytes from the engine not yet written.
    out: RefCell<Vec<Bytes>>,
    /// The engine closed it (or the reader saw it end): the writer writes what is left and stops.
    closing: Cell<bool>,
    writer: RefCell<Option<Waker>>,
    /// The engine paused reading (a rate limit).
    paused: Cell<bool>,
    reader: RefCell<Option<Waker>>,
    canceller: RefCell<Option<Canceller>>,
    /// The writer is done.
    finished: Cell<bool>,
    done_waker: RefCell<Option<Waker>>,
}

impl ConnIo {
    /// Queues bytes for the writer.
    pub(crate) fn send(&self, data: Bytes) {
        self.out.borrow_mut().push(data);
        if let Some(w) = self.writer.borrow_mut().take() {
            w.wake();
        }
    }

    /// Tells the writer to finish, and the reader to stop.
    pub(crate) fn close(&self) {
        self.closing.set(true);
        if let Some(w) = self.writer.borrow_mut().take() {
            w.wake();
        }
        self.cancel_read();
    }

    pub(crate) fn pause(&self, paused: bool) {
        self.paused.set(paused);
        if !paused {
            if let Some(w) = self.reader.borrow_mut().take() {
                w.wake();
            }
        }
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.finished.get()
    }

    pub(crate) fn poll_finished(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.finished.get() {
            return Poll::Ready(());
        }
        *self.done_waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }

    fn set_finished(&self) {
        self.finished.set(true);
        if let Some(w) = self.done_waker.borrow_mut().take() {
            w.wake();
        }
    }

    fn cancel_read(&self) {
        if let Some(c) = self.canceller.borrow_mut().take() {
            c.cancel();
        }
        if let Some(w) = self.reader.borrow_mut().take() {
            w.wake();
        }
    }

    /// A handle the next read is cancelled through; `None` once the connection is closing.
    fn read_handle(&self) -> Option<CancelHandle> {
        if self.closing.get() {
            return None;
        }
        Some(
            self.canceller
                .borrow_mut()
                .get_or_insert_with(Canceller::new)
                .handle(),
        )
    }

    /// Resolves when reading may go on (`true`), or the connection is closing (`false`).
    async fn may_read(&self) -> bool {
        poll_fn(|cx| {
            if self.closing.get() {
                Poll::Ready(false)
            } else if self.paused.get() {
                *self.reader.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            } else {
                Poll::Ready(true)
            }
        })
        .await
    }

    /// The bytes to write next (joined into one buffer: one write), or `None` when closing and
    /// everything is written.
    fn poll_chunks(&self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let mut out = self.out.borrow_mut();
        match out.len() {
            0 if self.closing.get() => Poll::Ready(None),
            0 => {
                *self.writer.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
            1 => Poll::Ready(out.pop()),
            _ => {
                let mut joined = BytesMut::with_capacity(out.iter().map(Bytes::len).sum());
                for chunk in out.drain(..) {
                    joined.extend_from_slice(&chunk);
                }
                Poll::Ready(Some(joined.freeze()))
            }
        }
    }
}

/// Accepts connections on `listener` for as long as the core runs.
pub(crate) async fn accept_loop(
    core: Shared,
    listener: monoio::net::TcpListener,
    info: Rc<ListenerInfo>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let Some(slot) = Slot::take(&info) else {
                    debug!(listener = %info.config.name, %peer, "connection refused: listener full (max_connections)");
                    continue;
                };
                let _ = stream.set_nodelay(true);
                monoio::spawn(admit(core.clone(), stream, peer, info.clone(), slot));
            }
            Err(e) => {
                warn!(listener = %info.config.name, "accept failed: {e}");
                monoio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Reads a new connection's CONNECT (after the TLS handshake), then keeps it here or hands it to
/// the core owning its client identifier.
async fn admit(
    core: Shared,
    mut stream: TcpStream,
    peer: std::net::SocketAddr,
    info: Rc<ListenerInfo>,
    slot: Slot,
) {
    let timeout = info.config.handshake_timeout;
    let admitted = monoio::time::timeout(timeout, async {
        let mut tls = match &info.tls {
            Some(config) => Some(
                crate::tls::handshake(&mut stream, config.clone())
                    .await
                    .map_err(|e| Refusal::Tls(e.to_string()))?,
            ),
            None => None,
        };
        let mut buf = BytesMut::new();
        let (max, shard, prefix) = {
            let c = core.borrow();
            (c.max_packet_size, c.shard, c.assigned_prefix.clone())
        };
        loop {
            match peek_client_id(&buf, max) {
                Peek::Incomplete => {}
                Peek::ClientId(id) if !id.is_empty() => {
                    return Ok((shard.owner(&id, &prefix), buf, tls))
                }
                // No identifier (one is assigned here) or not a CONNECT (refused here).
                _ => return Ok((shard.index, buf, tls)),
            }
            buf.reserve(FIRST_READ);
            let n = match tls.as_mut() {
                Some(session) => session.read_plain(&mut stream, &mut buf).await,
                None => {
                    let (res, b) = monoio::io::AsyncReadRent::read(&mut stream, buf).await;
                    buf = b;
                    res
                }
            };
            match n {
                Ok(0) => return Err(Refusal::Ended(String::new())),
                Ok(_) => {}
                Err(e) => return Err(Refusal::Ended(format!(": {e}"))),
            }
        }
    })
    .await;
    let (owner, initial, tls) = match admitted {
        Ok(Ok(found)) => found,
        Ok(Err(Refusal::Tls(why))) => {
            warn!(listener = %info.config.name, %peer, "closing connection: TLS handshake: {why}");
            return;
        }
        Ok(Err(Refusal::Ended(why))) => {
            debug!(listener = %info.config.name, %peer, "connection ended before CONNECT{why}");
            return;
        }
        Err(_) => {
            warn!(listener = %info.config.name, %peer, "closing connection: handshake not finished within {timeout:?}");
            return;
        }
    };
    let identity = tls.as_ref().and_then(TlsSession::identity);
    let username = match (&info.config.tls, &identity) {
        (Some(t), _) if t.identity_as_username => match identity.as_ref().and_then(|i| i.name()) {
            Some(name) => Some(name.into()),
            None => {
                warn!(%peer, listener = %info.config.name, "refused: the listener takes the user name from the client certificate, which names none");
                return;
            }
        },
        _ => None,
    };
    let meta = ConnMeta {
        peer: peer.to_string(),
        listener: info.config.name.clone(),
        identity,
        username,
    };
    let here = core.borrow().shard.index;
    if owner == here {
        start(&core, Stream::from_parts(stream, tls), meta, initial, slot);
        return;
    }
    // The socket leaves this runtime: take its descriptor out of the monoio stream.
    let fd = stream.into_raw_fd();
    // SAFETY: `fd` was just released by `into_raw_fd`, so nothing else owns or closes it.
    #[allow(unsafe_code)]
    let socket = unsafe { std::net::TcpStream::from_raw_fd(fd) };
    let handoff = Handoff {
        stream: Moved {
            socket,
            tls: tls.map(TlsSession::into_inner),
        },
        meta,
        initial,
        slot,
    };
    let sent = core
        .borrow()
        .handoffs
        .get(usize::from(owner))
        .is_some_and(|tx| tx.send(handoff).is_ok());
    if !sent {
        warn!(%peer, owner, "the owning core is gone; connection dropped");
    }
}

/// Why a new connection went no further than its handshake.
enum Refusal {
    /// The TLS handshake failed (logged as a warning, like `cicada`).
    Tls(String),
    /// The client went away (or its stream broke) before a whole CONNECT.
    Ended(String),
}

/// Takes over a connection another core accepted.
pub(crate) fn adopt(core: &Shared, h: Handoff) {
    let Handoff {
        stream,
        meta,
        initial,
        slot,
    } = h;
    match TcpStream::from_std(stream.socket) {
        Ok(socket) => {
            let tls = stream.tls.map(TlsSession::from_inner);
            start(core, Stream::from_parts(socket, tls), meta, initial, slot);
        }
        Err(e) => warn!(peer = %meta.peer, "cannot adopt a connection from another core: {e}"),
    }
}

/// A connection's byte stream: plain, or TLS over it.
enum Stream {
    Tcp(TcpStream),
    Tls(TcpStream, TlsSession),
}

impl Stream {
    fn from_parts(socket: TcpStream, tls: Option<TlsSession>) -> Stream {
        match tls {
            Some(session) => Stream::Tls(socket, session),
            None => Stream::Tcp(socket),
        }
    }
}

/// Registers the connection with the engine and starts its reader and writer.
fn start(core: &Shared, stream: Stream, meta: ConnMeta, initial: BytesMut, slot: Slot) {
    let (peer, listener) = (meta.peer.clone(), meta.listener.clone());
    let identity = meta
        .identity
        .as_ref()
        .and_then(|i| i.name().map(str::to_string));
    let (conn, io) = core.borrow_mut().add_conn(meta, initial);
    let core_index = core.borrow().shard.index;
    debug!(%conn, %peer, %listener, identity = ?identity, core = core_index, "accepted");
    match stream {
        Stream::Tcp(socket) => {
            let (read, write) = socket.into_split();
            monoio::spawn(read_loop(core.clone(), io.clone(), conn, PlainRead(read)));
            monoio::spawn(write_loop(core.clone(), io, conn, PlainWrite(write), slot));
        }
        Stream::Tls(socket, session) => {
            let (read, write) = socket.into_split();
            let session = Rc::new(RefCell::new(session));
            monoio::spawn(read_loop(
                core.clone(),
                io.clone(),
                conn,
                TlsRead::new(read, session.clone(), io.clone()),
            ));
            monoio::spawn(write_loop(
                core.clone(),
                io,
                conn,
                TlsWrite::new(write, session),
                slot,
            ));
        }
    }
}

/// Reads plaintext for the engine.
pub(crate) trait ReadHalf {
    /// Appends what arrives to `buf`; 0 at the end of the stream.
    async fn read_into(
        &mut self,
        buf: BytesMut,
        cancel: CancelHandle,
    ) -> (std::io::Result<usize>, BytesMut);
}

/// Writes the engine's bytes.
pub(crate) trait WriteHalf {
    /// Writes all of `data` (empty: only what the transport itself has to send).
    async fn write_bytes(&mut self, data: Bytes) -> std::io::Result<()>;
    /// Ends the stream (TLS close_notify, then FIN).
    async fn finish(&mut self);
}

struct PlainRead(monoio::net::tcp::TcpOwnedReadHalf);
struct PlainWrite(monoio::net::tcp::TcpOwnedWriteHalf);

impl ReadHalf for PlainRead {
    async fn read_into(
        &mut self,
        buf: BytesMut,
        cancel: CancelHandle,
    ) -> (std::io::Result<usize>, BytesMut) {
        self.0.cancelable_read(buf, cancel).await
    }
}

impl WriteHalf for PlainWrite {
    async fn write_bytes(&mut self, data: Bytes) -> std::io::Result<()> {
        self.0.write_all(data).await.0.map(|_| ())
    }

    async fn finish(&mut self) {
        let _ = self.0.shutdown().await;
    }
}

/// Reads until the peer closes or the engine closes the connection, growing the buffer only while
/// reads fill it.
async fn read_loop(core: Shared, io: Rc<ConnIo>, conn: ConnId, mut read: impl ReadHalf) {
    let mut buf = BytesMut::new();
    let mut size = FIRST_READ;
    while io.may_read().await {
        let Some(cancel) = io.read_handle() else {
            break;
        };
        if buf.capacity() == buf.len() {
            buf.reserve(size);
        }
        let room = buf.capacity() - buf.len();
        let (res, b) = read.read_into(buf, cancel).await;
        buf = b;
        match res {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if n == room {
                    size = (size * 4).min(MAX_READ);
                }
                let data = buf.split().freeze();
                core.borrow_mut().push(Input::Received { conn, data });
            }
        }
    }
    let mut c = core.borrow_mut();
    if c.conns.remove(&conn).is_some() {
        io.close();
        c.push(Input::Closed { conn });
    }
}

/// Writes what the engine gives, one write per turn, until the connection closes.
async fn write_loop(
    core: Shared,
    io: Rc<ConnIo>,
    conn: ConnId,
    mut write: impl WriteHalf,
    slot: Slot,
) {
    let _slot = slot;
    loop {
        let data = poll_fn(|cx| io.poll_chunks(cx)).await;
        let Some(data) = data else {
            break;
        };
        let bytes = data.len();
        let written = monoio::time::timeout(WRITE_STALL, write.write_bytes(data)).await;
        if !matches!(written, Ok(Ok(()))) {
            let mut c = core.borrow_mut();
            if c.conns.remove(&conn).is_some() {
                c.push(Input::Closed { conn });
            }
            io.close();
            break;
        }
        if bytes > 0 {
            core.borrow_mut().push(Input::Flushed { conn, bytes });
        }
    }
    let _ = monoio::time::timeout(WRITE_STALL, write.finish()).await;
    io.cancel_read();
    io.set_finished();
}
