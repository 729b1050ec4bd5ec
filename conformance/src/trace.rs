//! The trace format: what `cicada-record` writes and the replayers read.
//!
//! A trace is text, one event a line, in time order. Every packet line is followed by its raw bytes, so
//! a trace can be decoded again after a codec fix and a codec bug cannot hide behind its own rendering:
//!
//! ```text
//! # scenario: paho_v5/qos1_roundtrip
//! # profile: default
//! +0.000000 c1 open
//! +0.000512 c1 > CONNECT v5.0 client_id="a" clean keep_alive=60
//!   = 101000044d5154540502003c00000161
//! +0.000893 c1 < CONNACK session_present=0 0x00 Success {receive_maximum=20}
//!   = 2006000003210014
//! +0.200000 c1 > close
//! +0.300000 end
//! ```
//!
//! `>` is client to broker, `<` broker to client; `c1`, `c2`... number connections in the order the
//! proxy accepted them. `close` is the side that closed the connection first (the other side's close
//! that follows is not an event). Header lines (`# key: value`) carry the scenario, the broker
//! profile, the statements covered, and, where the recorded broker deviates from the specification, a
//! `deviation` note with `expect` lines giving the output the specification requires instead.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use cicada_engine::codec::{decode_one, FrameHeader, Packet, ProtocolVersion};

/// A connection of a trace: `c1`, `c2`...
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Label(pub u32);

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}", self.0)
    }
}

/// Which way bytes went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Client to broker (`>`).
    ToBroker,
    /// Broker to client (`<`).
    ToClient,
}

impl Dir {
    fn arrow(self) -> char {
        match self {
            Dir::ToBroker => '>',
            Dir::ToClient => '<',
        }
    }
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum What {
    /// The proxy accepted a connection.
    Open,
    /// A packet (or, after a framing error, the rest of the stream) went `dir`.
    Bytes {
        /// The direction.
        dir: Dir,
        /// Exactly what went over the wire.
        raw: Bytes,
        /// The packet as our codec renders it, or `malformed: ...`.
        text: String,
    },
    /// The side `dir` points away from closed the connection first: `ToBroker` is the client closing.
    Close {
        /// `ToBroker` when the client closed, `ToClient` when the broker did.
        dir: Dir,
    },
}

/// One line of a trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Since the trace started.
    pub at: Duration,
    /// The connection.
    pub conn: Label,
    /// What happened.
    pub what: What,
}

/// A whole trace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trace {
    /// Header lines in order, `(key, value)`.
    pub header: Vec<(String, String)>,
    /// The events in time order.
    pub events: Vec<Event>,
    /// When recording stopped.
    pub end: Duration,
}

/// A trace that cannot be read, naming the line.
#[derive(Debug, thiserror::Error)]
#[error("trace line {line}: {message}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub message: String,
}

/// Renders one packet's bytes the way traces show them.
pub fn describe(raw: &[u8], version: ProtocolVersion) -> (String, Option<Packet>) {
    match decode_one(raw, version) {
        Ok(packet) => (packet.to_string(), Some(packet)),
        Err(e) => (format!("malformed: {e}"), None),
    }
}

/// Cuts one direction of a byte stream into packets by their fixed headers, so each packet can be
/// logged with its own raw bytes. After a broken fixed header the stream cannot be framed again, and
/// the rest is passed on as it comes.
#[derive(Debug, Default)]
pub struct Splitter {
    buf: BytesMut,
    broken: bool,
}

impl Splitter {
    /// Appends `data` and returns every complete piece: whole packets, or unframeable bytes.
    pub fn push(&mut self, data: &[u8]) -> Vec<Bytes> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        while !self.buf.is_empty() {
            if self.broken {
                out.push(self.buf.split().freeze());
                break;
            }
            match FrameHeader::parse(&self.buf) {
                Ok(Some(h)) if self.buf.len() >= h.packet_len() => {
                    out.push(self.buf.split_to(h.packet_len()).freeze());
                }
                Ok(_) => break,
                Err(_) => self.broken = true,
            }
        }
        out
    }

    /// Bytes held back waiting for the rest of a packet.
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }
}

fn hex(data: &[u8]) -> String {
    let mut s = String::with_capacity(data.len() * 2);
    for b in data {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn seconds(at: Duration) -> String {
    format!("+{}.{:06}", at.as_secs(), at.subsec_micros())
}

impl Event {
    /// The event as trace lines (two for packets: the rendering and the raw bytes).
    pub fn to_lines(&self) -> String {
        let t = seconds(self.at);
        let c = self.conn;
        match &self.what {
            What::Open => format!("{t} {c} open\n"),
            What::Close { dir } => format!("{t} {c} {} close\n", dir.arrow()),
            What::Bytes { dir, raw, text } => {
                format!("{t} {c} {} {text}\n  = {}\n", dir.arrow(), hex(raw))
            }
        }
    }
}

impl Trace {
    /// The values of header key `key`, in order.
    pub fn header_values<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.header
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The broker profile the trace was recorded against (`default` if unnamed).
    pub fn profile(&self) -> &str {
        self.header_values("profile").next().unwrap_or("default")
    }

    /// The statements of specification `spec` (`3.1.1` or `5.0`) the trace exercises: its
    /// `covers-3.1.1` or `covers-5.0` lines, ids separated by spaces.
    pub fn covers(&self, spec: &str) -> Vec<String> {
        let key = format!("covers-{spec}");
        self.header
            .iter()
            .filter(|(k, _)| *k == key)
            .flat_map(|(_, v)| v.split_whitespace().map(str::to_string))
            .collect()
    }

    /// The broker side the specification requires where the recorded broker deviates: per
    /// connection, the `expect` lines (`c1 < CONNACK ...`) in order.
    pub fn expectations(&self) -> BTreeMap<Label, Vec<String>> {
        let mut out: BTreeMap<Label, Vec<String>> = BTreeMap::new();
        for line in self.header_values("expect") {
            if let Some((conn, rest)) = line.split_once(" < ") {
                if let Some(label) = parse_label(conn) {
                    out.entry(label).or_default().push(rest.to_string());
                }
            }
        }
        out
    }

    /// The whole trace as text.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for (k, v) in &self.header {
            let _ = writeln!(s, "# {k}: {v}");
        }
        for e in &self.events {
            s.push_str(&e.to_lines());
        }
        let _ = writeln!(s, "{} end", seconds(self.end));
        s
    }

    /// Reads a trace.
    pub fn parse(text: &str) -> Result<Trace, ParseError> {
        let mut trace = Trace::default();
        let mut lines = text.lines().enumerate().peekable();
        let mut ended = false;
        while let Some((i, line)) = lines.next() {
            let err = |message: String| ParseError {
                line: i + 1,
                message,
            };
            if line.trim().is_empty() {
                continue;
            }
            if ended {
                return Err(err("text after `end`".into()));
            }
            if let Some(h) = line.strip_prefix("# ") {
                let (k, v) = h
                    .split_once(": ")
                    .ok_or_else(|| err("a header line is `# key: value`".into()))?;
                trace.header.push((k.to_string(), v.to_string()));
                continue;
            }
            let (t, rest) = line
                .split_once(' ')
                .ok_or_else(|| err("expected `+SECONDS ...`".into()))?;
            let at = parse_time(t).ok_or_else(|| err(format!("bad time {t:?}")))?;
            if let Some(last) = trace.events.last() {
                if at < last.at {
                    return Err(err("time goes backwards".into()));
                }
            }
            if rest == "end" {
                trace.end = at;
                ended = true;
                continue;
            }
            let (conn, rest) = rest
                .split_once(' ')
                .ok_or_else(|| err("expected a connection label".into()))?;
            let conn = parse_label(conn).ok_or_else(|| err(format!("bad label {conn:?}")))?;
            let what = if rest == "open" {
                What::Open
            } else {
                let dir = match rest.get(..2) {
                    Some("> ") => Dir::ToBroker,
                    Some("< ") => Dir::ToClient,
                    _ => return Err(err("expected `open`, `> ...` or `< ...`".into())),
                };
                let text = &rest[2..];
                if text == "close" {
                    What::Close { dir }
                } else {
                    let raw = match lines.next() {
                        Some((_, raw)) => raw
                            .strip_prefix("  = ")
                            .and_then(unhex)
                            .ok_or_else(|| err("a packet line is followed by `  = HEX`".into()))?,
                        None => return Err(err("missing raw bytes".into())),
                    };
                    What::Bytes {
                        dir,
                        raw: Bytes::from(raw),
                        text: text.to_string(),
                    }
                }
            };
            trace.events.push(Event { at, conn, what });
        }
        if !ended {
            return Err(ParseError {
                line: text.lines().count(),
                message: "missing the `end` line".into(),
            });
        }
        Ok(trace)
    }
}

fn parse_label(s: &str) -> Option<Label> {
    s.strip_prefix('c')?.parse().ok().map(Label)
}

fn parse_time(s: &str) -> Option<Duration> {
    let (secs, micros) = s.strip_prefix('+')?.split_once('.')?;
    if micros.len() != 6 {
        return None;
    }
    Some(Duration::from_secs(secs.parse().ok()?) + Duration::from_micros(micros.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Trace {
        Trace {
            header: vec![
                ("scenario".into(), "test".into()),
                (
                    "expect".into(),
                    "c1 < CONNACK session_present=0 0x00 Success".into(),
                ),
            ],
            events: vec![
                Event {
                    at: Duration::ZERO,
                    conn: Label(1),
                    what: What::Open,
                },
                Event {
                    at: Duration::from_micros(1_500_002),
                    conn: Label(1),
                    what: What::Bytes {
                        dir: Dir::ToBroker,
                        raw: Bytes::from_static(&[0xc0, 0x00]),
                        text: "PINGREQ".into(),
                    },
                },
                Event {
                    at: Duration::from_secs(2),
                    conn: Label(1),
                    what: What::Close { dir: Dir::ToClient },
                },
            ],
            end: Duration::from_secs(3),
        }
    }

    #[test]
    fn text_round_trips() {
        let t = sample();
        let text = t.to_text();
        assert!(
            text.contains("+1.500002 c1 > PINGREQ\n  = c000\n"),
            "{text}"
        );
        let back = Trace::parse(&text).expect("parses");
        assert_eq!(back, t);
        assert_eq!(back.expectations()[&Label(1)].len(), 1);
    }

    #[test]
    fn errors_name_the_line() {
        let text = "# scenario: x\n+0.000000 c1 > PINGREQ\n+1.000000 end\n";
        let e = Trace::parse(text).expect_err("raw bytes missing");
        assert_eq!(e.line, 2, "{e}");
        let e = Trace::parse("+0.000000 c1 open\n").expect_err("no end");
        assert!(e.message.contains("end"), "{e}");
    }

    #[test]
    fn splitter_frames_packets_across_reads_and_gives_up_on_a_broken_header() {
        let mut s = Splitter::default();
        assert!(s.push(&[0xc0]).is_empty());
        let out = s.push(&[0x00, 0xd0, 0x00, 0x30]);
        assert_eq!(out.len(), 2);
        assert_eq!(s.pending(), &[0x30]);
        let out = s.push(&[0xff, 0xff, 0xff, 0xff, 0xff, 1, 2]);
        assert_eq!(out.len(), 1, "the rest is unframeable: {out:?}");
        assert_eq!(s.push(&[9]), vec![Bytes::from_static(&[9])]);
    }
}
