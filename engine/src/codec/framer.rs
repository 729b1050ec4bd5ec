//! Incremental decoding: cut whole packets out of a receive buffer that may hold part of one packet, one
//! packet, or several.

use bytes::{Buf, Bytes, BytesMut};
use bytestring::ByteString;

use super::decode::decode_packet;
use super::error::DecodeError;
use super::packet::Packet;
use super::types::ProtocolVersion;
use super::wire::parse_varint;

/// The largest packet MQTT can express: a 1-byte header, a 4-byte remaining length and 268,435,455 bytes.
pub const MAX_PACKET_SIZE: usize = 1 + 4 + 268_435_455;

/// The outcome of one [`Decoder::decode`] call.
// The packet is moved out at once by the caller; boxing it would cost an allocation per packet.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A whole packet, removed from the front of the buffer.
    Packet(Packet),
    /// The buffer holds only part of a packet; nothing was consumed.
    Incomplete {
        /// At least this many more bytes are needed. Exact once the fixed header is complete; while it is
        /// not, a lower bound.
        needed: usize,
    },
}

/// Where the next packet lies in a buffer, read from its fixed header alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// The first byte: packet type and flags.
    pub first: u8,
    /// Length of the fixed header (2 to 5 bytes).
    pub header_len: usize,
    /// The remaining length: the size of the body.
    pub body_len: usize,
}

impl FrameHeader {
    /// The whole packet's size.
    pub fn packet_len(&self) -> usize {
        self.header_len + self.body_len
    }

    /// Parses the fixed header at the start of `buf`; `Ok(None)` if it is not all there yet.
    pub fn parse(buf: &[u8]) -> Result<Option<FrameHeader>, DecodeError> {
        let Some((&first, rest)) = buf.split_first() else {
            return Ok(None);
        };
        Ok(
            parse_varint(rest, "remaining length")?.map(|(body_len, len)| FrameHeader {
                first,
                header_len: 1 + len,
                body_len: body_len as usize,
            }),
        )
    }
}

/// A stateful decoder for one direction of one connection.
///
/// It learns the protocol version from the CONNECT packet it decodes (or from [`Decoder::set_version`] on
/// the client side). Until then non-CONNECT packets are decoded with the MQTT 3.1.1 layout; a server
/// rejects them anyway, since the first packet must be CONNECT.
#[derive(Clone, Debug)]
pub struct Decoder {
    version: Option<ProtocolVersion>,
    max_packet_size: usize,
}

impl Decoder {
    /// A decoder refusing packets larger than `max_packet_size` bytes (the whole packet, header included,
    /// as MQTT 5.0 counts it).
    pub fn new(max_packet_size: usize) -> Decoder {
        Decoder {
            version: None,
            max_packet_size: max_packet_size.min(MAX_PACKET_SIZE),
        }
    }

    /// The protocol version in force, once known.
    pub fn version(&self) -> Option<ProtocolVersion> {
        self.version
    }

    /// Fixes the protocol version (a client decoding a server's packets knows it from its own CONNECT).
    pub fn set_version(&mut self, version: ProtocolVersion) {
        self.version = Some(version);
    }

    /// The size limit in force.
    pub fn max_packet_size(&self) -> usize {
        self.max_packet_size
    }

    /// Changes the size limit (for instance after CONNECT negotiated limits).
    pub fn set_max_packet_size(&mut self, max: usize) {
        self.max_packet_size = max.min(MAX_PACKET_SIZE);
    }

    /// Removes the next whole packet from the front of `buf`, or says how many more bytes it needs.
    ///
    /// An oversized packet is refused as soon as its fixed header is complete, before its body is
    /// buffered. After an error the stream cannot be resynchronised: close the connection.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, DecodeError> {
        let Some(header) = FrameHeader::parse(buf)? else {
            return Ok(Decoded::Incomplete {
                needed: if buf.is_empty() { 2 } else { 1 },
            });
        };
        let size = header.packet_len();
        if size > self.max_packet_size {
            return Err(DecodeError::PacketTooLarge {
                size,
                max: self.max_packet_size,
            });
        }
        if buf.len() < size {
            return Ok(Decoded::Incomplete {
                needed: size - buf.len(),
            });
        }
        buf.advance(header.header_len);
        let body = buf.split_to(header.body_len).freeze();
        let version = self.version.unwrap_or(ProtocolVersion::V3_1_1);
        let packet = decode_packet(header.first, body, version)?;
        if let Packet::Connect(connect) = &packet {
            self.version.get_or_insert(connect.protocol);
        }
        Ok(Decoded::Packet(packet))
    }
}

/// Decodes exactly one packet from `bytes`, which must hold it whole and nothing else.
///
/// For tests and tools; connections use [`Decoder`].
pub fn decode_one(bytes: &[u8], version: ProtocolVersion) -> Result<Packet, DecodeError> {
    decode_shared(Bytes::copy_from_slice(bytes), version)
}

/// Like [`decode_one`], without copying: topic, payload and properties of the packet are slices of
/// `bytes`. Storage uses it so a loaded message costs one buffer, not one per field.
pub fn decode_shared(bytes: Bytes, version: ProtocolVersion) -> Result<Packet, DecodeError> {
    let Some(header) = FrameHeader::parse(&bytes)? else {
        return Err(DecodeError::Truncated {
            needed: if bytes.is_empty() { 2 } else { 1 },
        });
    };
    let size = header.packet_len();
    if size > MAX_PACKET_SIZE {
        return Err(DecodeError::PacketTooLarge {
            size,
            max: MAX_PACKET_SIZE,
        });
    }
    if bytes.len() < size {
        return Err(DecodeError::Truncated {
            needed: size - bytes.len(),
        });
    }
    let packet = decode_packet(header.first, bytes.slice(header.header_len..size), version)?;
    if bytes.len() > size {
        return Err(DecodeError::TrailingBytes {
            packet: packet.packet_type(),
            extra: bytes.len() - size,
        });
    }
    Ok(packet)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::codec::{Publish, TopicName};

    fn publish_bytes() -> Bytes {
        let p = Publish::new(
            TopicName::new("a/b").expect("valid"),
            Bytes::from_static(b"payload"),
        );
        let mut out = BytesMut::new();
        Packet::Publish(p)
            .encode(ProtocolVersion::V5, &mut out)
            .expect("encodes");
        out.freeze()
    }

    #[test]
    fn decode_shared_slices_the_payload_out_of_its_input() {
        let bytes = publish_bytes();
        let Ok(Packet::Publish(p)) = decode_shared(bytes.clone(), ProtocolVersion::V5) else {
            panic!("decodes");
        };
        assert_eq!(&p.payload[..], b"payload");
        let range = bytes.as_ptr_range();
        assert!(range.contains(&p.payload.as_ptr()), "payload was copied");
    }

    #[test]
    fn decode_shared_refuses_truncated_and_trailing_input() {
        let bytes = publish_bytes();
        assert!(matches!(
            decode_shared(bytes.slice(..bytes.len() - 1), ProtocolVersion::V5),
            Err(DecodeError::Truncated { needed: 1 })
        ));
        let mut longer = BytesMut::from(&bytes[..]);
        longer.extend_from_slice(b"xy");
        assert!(matches!(
            decode_shared(longer.freeze(), ProtocolVersion::V5),
            Err(DecodeError::TrailingBytes { extra: 2, .. })
        ));
        assert!(matches!(
            decode_shared(Bytes::new(), ProtocolVersion::V5),
            Err(DecodeError::Truncated { needed: 2 })
        ));
    }
}

/// What the first bytes of a new connection say about its client, read without consuming them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peek {
    /// The first packet is not all there yet.
    Incomplete,
    /// The first packet is a well-formed CONNECT with this client identifier (possibly empty).
    ClientId(ByteString),
    /// The first packet is larger than `max_packet_size`, not a CONNECT, or malformed: whoever
    /// handles the connection refuses it.
    Refused,
}

/// Reads the client identifier of the CONNECT at the start of `buf`, for a shell that hands each
/// connection to the engine owning its client identifier ([`crate::Shard::owner`]) before any engine
/// sees it. `buf` is left as it is: the owner decodes the packet again.
pub fn peek_client_id(buf: &[u8], max_packet_size: usize) -> Peek {
    let header = match FrameHeader::parse(buf) {
        Ok(Some(header)) => header,
        Ok(None) => return Peek::Incomplete,
        Err(_) => return Peek::Refused,
    };
    if header.packet_len() > max_packet_size {
        return Peek::Refused;
    }
    if buf.len() < header.packet_len() {
        return Peek::Incomplete;
    }
    match decode_one(&buf[..header.packet_len()], ProtocolVersion::V3_1_1) {
        Ok(Packet::Connect(connect)) => Peek::ClientId(connect.client_id),
        _ => Peek::Refused,
    }
}
