//! A message's PUBLISH encoded once and copied to every subscriber that gets the same bytes.
//!
//! A fan-out sends one message to many sessions in a row. Subscribers without subscription
//! identifiers, tenant mount or outbound topic aliases get the same PUBLISH but for its packet
//! identifier, so it is encoded once per (protocol version, QoS, retain flag, remaining expiry) and the
//! bytes are copied, the packet identifier written in place. That saves, per delivery, a clone of
//! the properties, two reference-count round trips on the payload (whose buffer the shell's reader may
//! be touching on another core) and the encoding itself.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::codec::{FrameHeader, Packet, PacketId, ProtocolVersion, QoS};
use crate::message::Message;
use crate::session::Outbound;
use crate::time::Instant;

/// Different variants of one message kept at once (e.g. 3.1.1 and 5.0 subscribers, QoS 0 and 1).
const VARIANTS: usize = 6;

/// One encoded variant.
#[derive(Debug)]
struct Variant {
    version: ProtocolVersion,
    qos: QoS,
    retain: bool,
    expiry: Option<u32>,
    /// The whole PUBLISH, with packet identifier 1 when it has one.
    bytes: Bytes,
    /// Where the packet identifier's two bytes are.
    pid_at: usize,
}

/// The variants of the message being routed.
#[derive(Debug, Default)]
pub(super) struct EncodedCache {
    message: Option<Arc<Message>>,
    variants: Vec<Variant>,
}

/// An encoded PUBLISH ready to copy from the cache ([`EncodedCache::write`]): which variant and,
/// for QoS 1/2, the identifier to write in.
pub(super) struct Encoded {
    variant: usize,
    len: usize,
    pid: Option<(usize, PacketId)>,
}

impl Encoded {
    /// Its size on the wire.
    pub(super) fn len(&self) -> usize {
        self.len
    }
}

impl EncodedCache {
    /// `out` as a PUBLISH (not a resend) under `pid` to a `version` client without subscription
    /// identifiers, mount or aliases.
    pub(super) fn get(
        &mut self,
        out: &Outbound,
        pid: Option<PacketId>,
        version: ProtocolVersion,
        now: Instant,
    ) -> Encoded {
        if !self
            .message
            .as_ref()
            .is_some_and(|m| Arc::ptr_eq(m, &out.message))
        {
            self.message = Some(out.message.clone());
            self.variants.clear();
        }
        let expiry = out.message.remaining_expiry(now);
        let found = self.variants.iter().position(|v| {
            v.version == version && v.qos == out.qos && v.retain == out.retain && v.expiry == expiry
        });
        let index = match found {
            Some(i) => i,
            None => {
                if self.variants.len() == VARIANTS {
                    self.variants.remove(0);
                }
                self.variants.push(encode(out, version, now, expiry));
                self.variants.len() - 1
            }
        };
        let variant = &self.variants[index];
        Encoded {
            variant: index,
            len: variant.bytes.len(),
            pid: pid.map(|pid| (variant.pid_at, pid)),
        }
    }

    /// Appends `encoded`, got from this cache since its message last changed, to `out`.
    pub(super) fn write(&self, encoded: &Encoded, out: &mut BytesMut) {
        let Some(variant) = self.variants.get(encoded.variant) else {
            debug_assert!(false, "an encoded PUBLISH outlived its cache entry");
            return;
        };
        let start = out.len();
        out.extend_from_slice(&variant.bytes);
        if let Some((at, pid)) = encoded.pid {
            out[start + at..start + at + 2].copy_from_slice(&pid.get().to_be_bytes());
        }
    }

    /// Lets the last message go (its payload's buffer with it).
    pub(super) fn clear(&mut self) {
        self.message = None;
        self.variants.clear();
    }
}

fn encode(out: &Outbound, version: ProtocolVersion, now: Instant, expiry: Option<u32>) -> Variant {
    let placeholder = (out.qos != QoS::AtMostOnce).then_some(PacketId::MIN);
    let publish = super::deliver::outbound_publish(out, placeholder, false, now, None);
    let topic_len = publish.topic.as_str().len();
    let mut bytes = BytesMut::new();
    if let Err(e) = Packet::Publish(publish).encode(version, &mut bytes) {
        // Only an oversized packet fails; the caller checks sizes against the client's maximum.
        debug_assert!(false, "encoding a PUBLISH failed: {e}");
    }
    let header_len = FrameHeader::parse(&bytes)
        .ok()
        .flatten()
        .map_or(0, |h| h.header_len);
    Variant {
        version,
        qos: out.qos,
        retain: out.retain,
        expiry,
        bytes: bytes.freeze(),
        pid_at: header_len + 2 + topic_len,
    }
}
