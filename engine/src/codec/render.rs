//! A readable one-line rendering of packets, used in logs, traces and snapshot tests.
//!
//! Example: `PUBLISH q1 pid=7 retain "a/b" payload="hello" {message_expiry_interval=30}`.

use std::fmt::{self, Write};

use super::packet::{Ack, Packet, RetainHandling, SubscriptionOptions};
use super::reason::ReasonCode;

/// Bytes past this many are summarised rather than shown.
const SHOWN_BYTES: usize = 64;

/// Renders binary data as a quoted string when it is printable UTF-8, else as hex; long data is cut.
pub fn render_bytes(data: &[u8]) -> String {
    let shown = &data[..data.len().min(SHOWN_BYTES)];
    let mut out = match std::str::from_utf8(shown) {
        Ok(text)
            if !text
                .chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t') =>
        {
            format!("{text:?}")
        }
        _ => {
            let mut hex = String::with_capacity(2 + 2 * shown.len());
            hex.push_str("0x");
            for b in shown {
                let _ = write!(hex, "{b:02x}");
            }
            hex
        }
    };
    if data.len() > shown.len() {
        let _ = write!(out, "…({} bytes)", data.len());
    }
    out
}

fn props(f: &mut fmt::Formatter<'_>, rendered: String) -> fmt::Result {
    if rendered.is_empty() {
        Ok(())
    } else {
        write!(f, " {{{rendered}}}")
    }
}

fn reason(f: &mut fmt::Formatter<'_>, reason: ReasonCode) -> fmt::Result {
    write!(f, " {:#04x} {}", reason.as_u8(), reason.description())
}

fn ack(f: &mut fmt::Formatter<'_>, name: &str, a: &Ack) -> fmt::Result {
    write!(f, "{name} pid={}", a.packet_id)?;
    if a.reason != ReasonCode::Success {
        reason(f, a.reason)?;
    }
    props(f, a.properties.render())
}

fn options(f: &mut fmt::Formatter<'_>, o: &SubscriptionOptions) -> fmt::Result {
    write!(f, " q{}", o.qos.as_u8())?;
    if o.no_local {
        f.write_str(" no_local")?;
    }
    if o.retain_as_published {
        f.write_str(" rap")?;
    }
    match o.retain_handling {
        RetainHandling::SendAtSubscribe => Ok(()),
        RetainHandling::SendIfNew => f.write_str(" rh=1"),
        RetainHandling::DoNotSend => f.write_str(" rh=2"),
    }
}

fn reasons(f: &mut fmt::Formatter<'_>, codes: &[ReasonCode]) -> fmt::Result {
    f.write_str(" [")?;
    for (i, code) in codes.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{:#04x}", code.as_u8())?;
    }
    f.write_str("]")
}

impl fmt::Display for Packet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Packet::Connect(c) => {
                write!(f, "CONNECT v{} client_id={:?}", c.protocol, &*c.client_id)?;
                if c.clean_start {
                    f.write_str(" clean")?;
                }
                write!(f, " keep_alive={}", c.keep_alive)?;
                if let Some(u) = &c.username {
                    write!(f, " user={:?}", &**u)?;
                }
                if let Some(p) = &c.password {
                    write!(f, " password=<{} bytes>", p.len())?;
                }
                if let Some(w) = &c.will {
                    write!(f, " will=(q{}", w.qos.as_u8())?;
                    if w.retain {
                        f.write_str(" retain")?;
                    }
                    write!(
                        f,
                        " {:?} payload={}",
                        w.topic.as_str(),
                        render_bytes(&w.payload)
                    )?;
                    props(f, w.properties.render())?;
                    f.write_str(")")?;
                }
                props(f, c.properties.render())
            }
            Packet::ConnAck(c) => {
                write!(f, "CONNACK session_present={}", u8::from(c.session_present))?;
                reason(f, c.reason)?;
                props(f, c.properties.render())
            }
            Packet::Publish(p) => {
                write!(f, "PUBLISH q{}", p.qos().as_u8())?;
                if let Some(id) = p.delivery.packet_id() {
                    write!(f, " pid={id}")?;
                }
                if p.dup {
                    f.write_str(" dup")?;
                }
                if p.retain {
                    f.write_str(" retain")?;
                }
                write!(
                    f,
                    " {:?} payload={}",
                    p.topic.as_str(),
                    render_bytes(&p.payload)
                )?;
                props(f, p.properties.render())
            }
            Packet::PubAck(a) => ack(f, "PUBACK", a),
            Packet::PubRec(a) => ack(f, "PUBREC", a),
            Packet::PubRel(a) => ack(f, "PUBREL", a),
            Packet::PubComp(a) => ack(f, "PUBCOMP", a),
            Packet::Subscribe(s) => {
                write!(f, "SUBSCRIBE pid={}", s.packet_id)?;
                for (i, sub) in s.subscriptions.iter().enumerate() {
                    f.write_str(if i == 0 { " " } else { ", " })?;
                    write!(f, "{:?}", sub.filter.as_str())?;
                    options(f, &sub.options)?;
                }
                props(f, s.properties.render())
            }
            Packet::SubAck(s) => {
                write!(f, "SUBACK pid={}", s.packet_id)?;
                reasons(f, &s.reasons)?;
                props(f, s.properties.render())
            }
            Packet::Unsubscribe(u) => {
                write!(f, "UNSUBSCRIBE pid={}", u.packet_id)?;
                for (i, filter) in u.filters.iter().enumerate() {
                    f.write_str(if i == 0 { " " } else { ", " })?;
                    write!(f, "{:?}", filter.as_str())?;
                }
                props(f, u.properties.render())
            }
            Packet::UnsubAck(u) => {
                write!(f, "UNSUBACK pid={}", u.packet_id)?;
                if !u.reasons.is_empty() {
                    reasons(f, &u.reasons)?;
                }
                props(f, u.properties.render())
            }
            Packet::PingReq => f.write_str("PINGREQ"),
            Packet::PingResp => f.write_str("PINGRESP"),
            Packet::Disconnect(d) => {
                f.write_str("DISCONNECT")?;
                reason(f, d.reason)?;
                props(f, d.properties.render())
            }
            Packet::Auth(a) => {
                f.write_str("AUTH")?;
                reason(f, a.reason)?;
                props(f, a.properties.render())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::render_bytes;

    #[test]
    fn bytes_render_as_text_or_hex_and_are_cut() {
        assert_eq!(render_bytes(b"hello"), "\"hello\"");
        assert_eq!(render_bytes(&[0, 1, 0xff]), "0x0001ff");
        assert_eq!(render_bytes(b""), "\"\"");
        let long = vec![b'a'; 100];
        assert_eq!(
            render_bytes(&long),
            format!("\"{}\"…(100 bytes)", "a".repeat(64))
        );
    }
}
