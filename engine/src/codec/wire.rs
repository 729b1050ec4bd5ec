//! Primitive wire types of MQTT (section 1.5): integers, variable byte integers, strings, binary data.
//!
//! Reading slices the packet's `Bytes` instead of copying, so payloads and strings share the receive buffer.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use super::error::{DecodeError, EncodeError};
use super::types::PacketType;

/// The largest value a variable byte integer can hold (four bytes of seven bits).
pub(crate) const VARINT_MAX: u32 = 268_435_455;

/// Reads the fields of one packet body, naming the packet in every error.
pub(crate) struct Reader {
    buf: Bytes,
    packet: PacketType,
}

impl Reader {
    pub(crate) fn new(buf: Bytes, packet: PacketType) -> Reader {
        Reader { buf, packet }
    }

    pub(crate) fn packet(&self) -> PacketType {
        self.packet
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn need(&self, n: usize, field: &'static str) -> Result<(), DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::UnexpectedEnd {
                packet: self.packet,
                field,
            });
        }
        Ok(())
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        self.need(1, field)?;
        Ok(self.buf.get_u8())
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        self.need(2, field)?;
        Ok(self.buf.get_u16())
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        self.need(4, field)?;
        Ok(self.buf.get_u32())
    }

    /// A variable byte integer, rejected unless in its shortest form ([MQTT-1.5.5-1]).
    pub(crate) fn varint(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        match parse_varint(&self.buf, field)? {
            Some((value, len)) => {
                self.buf.advance(len);
                Ok(value)
            }
            None => Err(DecodeError::UnexpectedEnd {
                packet: self.packet,
                field,
            }),
        }
    }

    /// The next `n` bytes, sharing the packet buffer.
    pub(crate) fn take(&mut self, n: usize, field: &'static str) -> Result<Bytes, DecodeError> {
        self.need(n, field)?;
        Ok(self.buf.split_to(n))
    }

    /// Whatever is left of the packet (a PUBLISH payload).
    pub(crate) fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }

    /// Binary data: a two-byte length and that many bytes.
    pub(crate) fn binary(&mut self, field: &'static str) -> Result<Bytes, DecodeError> {
        let len = self.u16(field)?;
        self.take(usize::from(len), field)
    }

    /// A UTF-8 encoded string (section 1.5.4): well-formed, no surrogates, no U+0000.
    pub(crate) fn string(&mut self, field: &'static str) -> Result<ByteString, DecodeError> {
        let raw = self.binary(field)?;
        validate_utf8(raw, field)
    }

    /// Fails unless the whole body has been consumed.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                packet: self.packet,
                extra: self.buf.len(),
            })
        }
    }

    /// Splits off the next `len` bytes as a reader of their own (a property block).
    pub(crate) fn sub_reader(
        &mut self,
        len: usize,
        field: &'static str,
    ) -> Result<Reader, DecodeError> {
        let buf = self.take(len, field)?;
        Ok(Reader::new(buf, self.packet))
    }
}

/// Checks the MQTT string rules and wraps the bytes without copying.
pub(crate) fn validate_utf8(raw: Bytes, field: &'static str) -> Result<ByteString, DecodeError> {
    if raw.contains(&0) {
        return Err(DecodeError::NullCharacter { field });
    }
    ByteString::try_from(raw.clone()).map_err(|_| {
        // Rust's UTF-8 validation already rejects encoded surrogates; tell them apart because the spec
        // names them separately and a log line should say which rule was broken.
        let surrogate = raw
            .windows(2)
            .any(|w| w[0] == 0xED && (0xA0..=0xBF).contains(&w[1]));
        if surrogate {
            DecodeError::Surrogate { field }
        } else {
            DecodeError::InvalidUtf8 { field }
        }
    })
}

/// Parses a variable byte integer at the start of `buf`.
///
/// Returns `Ok(None)` when `buf` ends before the integer does, so the framer can wait for more bytes.
pub(crate) fn parse_varint(
    buf: &[u8],
    field: &'static str,
) -> Result<Option<(u32, usize)>, DecodeError> {
    let mut value: u32 = 0;
    for (i, &byte) in buf.iter().enumerate() {
        if i == 4 {
            return Err(DecodeError::MalformedVarInt { field });
        }
        value |= u32::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            // A longer-than-needed encoding ends in a zero group.
            if i > 0 && byte == 0 {
                return Err(DecodeError::MalformedVarInt { field });
            }
            return Ok(Some((value, i + 1)));
        }
    }
    if buf.len() >= 4 {
        return Err(DecodeError::MalformedVarInt { field });
    }
    Ok(None)
}

/// The number of bytes `value` takes as a variable byte integer.
pub(crate) fn varint_len(value: u32) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

pub(crate) fn put_varint(buf: &mut BytesMut, mut value: u32) {
    debug_assert!(value <= VARINT_MAX);
    loop {
        let mut byte = (value & 0x7F) as u8;
        value >>= 7;
        if value > 0 {
            byte |= 0x80;
        }
        buf.put_u8(byte);
        if value == 0 {
            break;
        }
    }
}

/// The encoded size of a string or binary field: a two-byte length plus the bytes.
pub(crate) fn binary_len(data: &[u8]) -> usize {
    2 + data.len()
}

/// Writes a two-byte length and `data`; the length was checked by [`check_field`].
pub(crate) fn put_binary(buf: &mut BytesMut, data: &[u8]) {
    buf.put_u16(data.len() as u16);
    buf.put_slice(data);
}

/// Fails if `data` cannot carry a two-byte length prefix.
pub(crate) fn check_field(data: &[u8], field: &'static str) -> Result<(), EncodeError> {
    if data.len() > usize::from(u16::MAX) {
        return Err(EncodeError::FieldTooLong {
            field,
            len: data.len(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_boundaries_from_spec_table_1_1() {
        for (value, bytes) in [
            (0u32, &[0x00][..]),
            (127, &[0x7F]),
            (128, &[0x80, 0x01]),
            (16_383, &[0xFF, 0x7F]),
            (16_384, &[0x80, 0x80, 0x01]),
            (2_097_151, &[0xFF, 0xFF, 0x7F]),
            (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
            (268_435_455, &[0xFF, 0xFF, 0xFF, 0x7F]),
        ] {
            let mut buf = BytesMut::new();
            put_varint(&mut buf, value);
            assert_eq!(&buf[..], bytes, "encoding {value}");
            assert_eq!(varint_len(value), bytes.len());
            assert_eq!(parse_varint(bytes, "x"), Ok(Some((value, bytes.len()))));
        }
    }

    #[test]
    fn varint_rejects_five_bytes_and_non_minimal_forms() {
        assert_eq!(
            parse_varint(&[0xFF, 0xFF, 0xFF, 0xFF, 0x7F], "x"),
            Err(DecodeError::MalformedVarInt { field: "x" })
        );
        assert_eq!(
            parse_varint(&[0xFF, 0xFF, 0xFF, 0xFF], "x"),
            Err(DecodeError::MalformedVarInt { field: "x" })
        );
        assert_eq!(
            parse_varint(&[0x80, 0x00], "x"),
            Err(DecodeError::MalformedVarInt { field: "x" })
        );
        assert_eq!(parse_varint(&[0x80, 0x80], "x"), Ok(None));
    }

    #[test]
    fn strings_reject_null_surrogates_and_bad_utf8() {
        assert_eq!(
            validate_utf8(Bytes::from_static(b"a\0b"), "s"),
            Err(DecodeError::NullCharacter { field: "s" })
        );
        assert_eq!(
            validate_utf8(Bytes::from_static(&[b'a', 0xED, 0xA0, 0x80]), "s"),
            Err(DecodeError::Surrogate { field: "s" })
        );
        assert_eq!(
            validate_utf8(Bytes::from_static(&[0xC3, 0x28]), "s"),
            Err(DecodeError::InvalidUtf8 { field: "s" })
        );
        // Spec example 1.5.4: U+2A6D4 encoded as F0 AA 9B 94, and U+FEFF kept as-is.
        let s =
            validate_utf8(Bytes::from_static(&[0x41, 0xF0, 0xAA, 0x9B, 0x94]), "s").expect("valid");
        assert_eq!(&*s, "A\u{2A6D4}");
        let bom = validate_utf8(Bytes::from_static(&[0xEF, 0xBB, 0xBF, b'x']), "s").expect("valid");
        assert_eq!(&*bom, "\u{FEFF}x");
    }
}
