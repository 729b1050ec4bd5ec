//! One MQTT client connection of a bridge, through the engine's codec: packets in and out, nothing
//! acknowledged on its own. The relay decides every acknowledgement, because a message is
//! acknowledged to one side only once the other side has acknowledged it.
//!
//! Reading is cancel-safe ([`Link::fill`] keeps what it read in the buffer), so the relay can wait
//! on both links at once.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use cicada_engine::codec::{
    ConnAck, Connect, Decoded, Decoder, Packet, ProtocolVersion, ReasonCode,
};
use cicada_transports::BoxStream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// The largest packet a bridge accepts from either side.
pub(super) const MAX_PACKET_SIZE: usize = 16 << 20;

/// How long a link waits for CONNACK.
const CONNACK_WAIT: Duration = Duration::from_secs(10);

/// Which side of the bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    /// This broker.
    Local,
    /// The remote broker.
    Remote,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::Local => "local",
            Side::Remote => "remote",
        })
    }
}

/// Why a link ended.
#[derive(Debug, thiserror::Error)]
pub(super) enum LinkError {
    #[error("cannot connect to the remote: {0}")]
    Connect(#[from] cicada_transports::client::ClientError),
    #[error("the {side} broker refused the connection: {reason}")]
    Refused { side: Side, reason: ReasonCode },
    #[error("the {side} broker closed the connection{}", reason.map(|r| format!(": {r}")).unwrap_or_default())]
    Closed {
        side: Side,
        reason: Option<ReasonCode>,
    },
    #[error("{side} connection: {source}")]
    Io { side: Side, source: std::io::Error },
    #[error("the {side} broker broke the protocol: {what}")]
    Protocol { side: Side, what: String },
    #[error("the {side} broker did not answer {what} within {}s", after.as_secs())]
    Timeout {
        side: Side,
        what: &'static str,
        after: Duration,
    },
    #[error("the bridge's local connection was refused: the broker is stopping")]
    LocalGone,
}

/// A connected MQTT link.
pub(super) struct Link {
    pub(super) side: Side,
    pub(super) version: ProtocolVersion,
    stream: BoxStream,
    decoder: Decoder,
    rx: BytesMut,
    tx: BytesMut,
    /// PINGREQ after this long without sending; `None`: no keep alive.
    ping_every: Option<Duration>,
    last_sent: Instant,
    /// When the PINGREQ awaiting its PINGRESP went out.
    ping_sent: Option<Instant>,
}

impl Link {
    /// Sends `connect` over `stream` and waits for a successful CONNACK.
    pub(super) async fn connect(
        side: Side,
        stream: BoxStream,
        connect: Connect,
    ) -> Result<(Link, ConnAck), LinkError> {
        let mut decoder = Decoder::new(MAX_PACKET_SIZE);
        decoder.set_version(connect.protocol);
        let mut link = Link {
            side,
            version: connect.protocol,
            stream,
            decoder,
            rx: BytesMut::with_capacity(4096),
            tx: BytesMut::with_capacity(4096),
            ping_every: None,
            last_sent: Instant::now(),
            ping_sent: None,
        };
        let keep_alive = connect.keep_alive;
        link.queue(&Packet::Connect(Box::new(connect)))?;
        link.flush().await?;
        let connack = tokio::time::timeout(CONNACK_WAIT, async {
            loop {
                if let Some(packet) = link.decode()? {
                    return Ok::<_, LinkError>(packet);
                }
                link.fill().await?;
            }
        })
        .await
        .map_err(|_| LinkError::Timeout {
            side,
            what: "CONNECT",
            after: CONNACK_WAIT,
        })??;
        let Packet::ConnAck(connack) = connack else {
            return Err(link.protocol(format!("expected CONNACK, got {}", connack.packet_type())));
        };
        if connack.reason.is_error() {
            return Err(LinkError::Refused {
                side,
                reason: connack.reason,
            });
        }
        let keep_alive = connack.properties.server_keep_alive.unwrap_or(keep_alive);
        link.ping_every =
            (keep_alive > 0).then(|| Duration::from_millis(u64::from(keep_alive) * 500));
        Ok((link, connack))
    }

    /// The next whole packet already read, if any.
    pub(super) fn decode(&mut self) -> Result<Option<Packet>, LinkError> {
        match self.decoder.decode(&mut self.rx) {
            Ok(Decoded::Packet(packet)) => {
                if matches!(packet, Packet::PingResp) {
                    self.ping_sent = None;
                }
                Ok(Some(packet))
            }
            Ok(Decoded::Incomplete { .. }) => Ok(None),
            Err(e) => Err(self.protocol(format!("malformed packet: {e}"))),
        }
    }

    /// Reads more bytes; cancel-safe.
    pub(super) async fn fill(&mut self) -> Result<(), LinkError> {
        match self.stream.read_buf(&mut self.rx).await {
            Ok(0) => Err(LinkError::Closed {
                side: self.side,
                reason: None,
            }),
            Ok(_) => Ok(()),
            Err(source) => Err(LinkError::Io {
                side: self.side,
                source,
            }),
        }
    }

    /// Encodes `packet` for the next [`Link::flush`].
    pub(super) fn queue(&mut self, packet: &Packet) -> Result<(), LinkError> {
        packet
            .encode(self.version, &mut self.tx)
            .map_err(|e| LinkError::Protocol {
                side: self.side,
                what: format!("cannot encode {}: {e}", packet.packet_type()),
            })
    }

    /// Writes everything queued.
    pub(super) async fn flush(&mut self) -> Result<(), LinkError> {
        if self.tx.is_empty() {
            return Ok(());
        }
        let io = |source| LinkError::Io {
            side: self.side,
            source,
        };
        while !self.tx.is_empty() {
            let n = self.stream.write(&self.tx).await.map_err(io)?;
            if n == 0 {
                return Err(LinkError::Closed {
                    side: self.side,
                    reason: None,
                });
            }
            self.tx.advance(n);
        }
        self.stream.flush().await.map_err(io)?;
        self.last_sent = Instant::now();
        Ok(())
    }

    /// Sends PINGREQ when the link has been quiet for half the keep alive; fails when the last one
    /// went unanswered that long.
    pub(super) fn keep_alive(&mut self, now: Instant) -> Result<(), LinkError> {
        let Some(every) = self.ping_every else {
            return Ok(());
        };
        if let Some(sent) = self.ping_sent {
            if now.duration_since(sent) >= every {
                return Err(LinkError::Timeout {
                    side: self.side,
                    what: "PINGREQ",
                    after: every,
                });
            }
            return Ok(());
        }
        if now.duration_since(self.last_sent) >= every {
            self.queue(&Packet::PingReq)?;
            self.ping_sent = Some(now);
        }
        Ok(())
    }

    /// Sends DISCONNECT and closes the stream, bounded so a stuck peer cannot hold the bridge.
    pub(super) async fn close(mut self, disconnect: cicada_engine::codec::Disconnect) {
        if self.queue(&Packet::Disconnect(disconnect)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                let _ = self.flush().await;
                let _ = self.stream.shutdown().await;
            })
            .await;
        }
    }

    pub(super) fn protocol(&self, what: String) -> LinkError {
        LinkError::Protocol {
            side: self.side,
            what,
        }
    }
}
