//! Every recorded conformance trace (`conformance/traces`) replayed over real sockets against the
//! `cicada` binary: the client side is written at the recorded times, what the broker answers is read,
//! normalised and compared with the recording exactly as the engine replay does
//! (`cicada_conformance::replay`). Each trace gets a fresh broker with the trace's profile.
//!
//! Real clients react to what they receive, often within microseconds; so before writing a client
//! packet the replay also waits (up to [`CAUSALITY_WAIT`]) until the broker has sent on that connection
//! as many packets as the recorded broker had at that point.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use cicada_conformance::profile::cicada_limits;
use cicada_conformance::replay::{
    compare, expected, rewrite_ack, Normalizer, Observed, RecordedConn,
};
use cicada_conformance::trace::{describe, Dir, Label, Splitter, Trace, What};
use cicada_engine::codec::ProtocolVersion;
use support::Broker;

/// How many traces replay at once (each against its own broker).
const PARALLEL: usize = 6;

/// How long a client packet waits for the broker packets recorded before it.
const CAUSALITY_WAIT: Duration = Duration::from_secs(1);

/// What a reader thread saw: bytes or the broker closing, with when.
enum Seen {
    Bytes(Duration, Vec<u8>),
    Closed(Duration),
}

struct Conn {
    stream: TcpStream,
    recorded: RecordedConn,
    ours: Normalizer,
    splitter: Splitter,
    seen: Arc<Mutex<Vec<Seen>>>,
    taken: usize,
    client_closed: Arc<AtomicBool>,
    reader: Option<thread::JoinHandle<()>>,
    /// Broker packets the recording had on this connection so far.
    recorded_count: usize,
    /// Broker packets the replayed broker sent on it so far.
    our_count: usize,
}

impl Conn {
    /// Folds what the reader saw since the last call into `observed`.
    fn absorb(&mut self, label: Label, observed: &mut Vec<Observed>) {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        for s in &seen[self.taken..] {
            match s {
                Seen::Bytes(at, data) => {
                    for raw in self.splitter.push(data) {
                        let version = self.recorded.version.unwrap_or(ProtocolVersion::V3_1_1);
                        let text = match describe(&raw, version) {
                            (_, Some(p)) => self.ours.broker_packet(p),
                            (text, None) => text,
                        };
                        observed.push(Observed {
                            at: Some(*at),
                            conn: label,
                            text,
                        });
                        self.our_count += 1;
                    }
                }
                Seen::Closed(at) if !self.recorded.disconnected => observed.push(Observed {
                    at: Some(*at),
                    conn: label,
                    text: "close".into(),
                }),
                Seen::Closed(_) => {}
            }
        }
        self.taken = seen.len();
    }

    /// Waits until the broker sent at least what the recording had before the next client event.
    fn wait_for_broker(&mut self, label: Label, observed: &mut Vec<Observed>) {
        let deadline = Instant::now() + CAUSALITY_WAIT;
        loop {
            self.absorb(label, observed);
            let broker_closed = self
                .seen
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .any(|s| matches!(s, Seen::Closed(_)));
            if self.our_count >= self.recorded_count || broker_closed || Instant::now() > deadline {
                return;
            }
            thread::sleep(Duration::from_millis(1));
        }
    }
}

fn read_loop(
    mut stream: TcpStream,
    start: Instant,
    seen: Arc<Mutex<Vec<Seen>>>,
    client_closed: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut buf).unwrap_or(0);
        let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        if n == 0 {
            if !client_closed.load(Ordering::SeqCst) {
                seen.push(Seen::Closed(start.elapsed()));
            }
            return;
        }
        seen.push(Seen::Bytes(start.elapsed(), buf[..n].to_vec()));
    }
}

fn sleep_until(start: Instant, at: Duration) {
    let now = start.elapsed();
    if at > now {
        thread::sleep(at - now);
    }
}

/// Replays one trace against a fresh broker; `Err` describes the differences.
fn replay(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let trace = Trace::parse(&text).map_err(|e| e.to_string())?;
    let limits = cicada_limits(trace.profile()).ok_or("unknown profile")?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let config = dir.path().join("cicada.toml");
    std::fs::write(
        &config,
        format!("[storage]\nbackend = \"memory\"\n\n[sys]\ninterval_secs = 0\n\n{limits}"),
    )
    .map_err(|e| e.to_string())?;
    let config = config.to_string_lossy().into_owned();
    let broker = Broker::start(&["--config", &config]);

    let start = Instant::now();
    let mut conns: BTreeMap<Label, Conn> = BTreeMap::new();
    let mut observed = Vec::new();
    for e in &trace.events {
        sleep_until(start, e.at);
        match &e.what {
            What::Open => {
                let stream =
                    TcpStream::connect(("127.0.0.1", broker.port)).map_err(|e| e.to_string())?;
                let _ = stream.set_nodelay(true);
                let seen = Arc::new(Mutex::new(Vec::new()));
                let client_closed = Arc::new(AtomicBool::new(false));
                let reader = {
                    let stream = stream.try_clone().map_err(|e| e.to_string())?;
                    let (seen, closed) = (seen.clone(), client_closed.clone());
                    thread::spawn(move || read_loop(stream, start, seen, closed))
                };
                conns.insert(
                    e.conn,
                    Conn {
                        stream,
                        recorded: RecordedConn::default(),
                        ours: Normalizer::default(),
                        splitter: Splitter::default(),
                        seen,
                        taken: 0,
                        client_closed,
                        reader: Some(reader),
                        recorded_count: 0,
                        our_count: 0,
                    },
                );
            }
            What::Bytes { dir, raw, .. } => {
                let Some(c) = conns.get_mut(&e.conn) else {
                    continue;
                };
                match dir {
                    Dir::ToClient => {
                        c.recorded.broker_bytes(raw);
                        c.recorded_count += 1;
                    }
                    Dir::ToBroker => {
                        c.recorded.client_bytes(raw);
                        c.wait_for_broker(e.conn, &mut observed);
                        let data = rewrite_ack(raw, &c.recorded.norm, &c.ours);
                        // The broker may have closed already; what it says about that is observed.
                        let _ = c.stream.write_all(&data);
                    }
                }
            }
            What::Close { dir: Dir::ToBroker } => {
                if let Some(c) = conns.get_mut(&e.conn) {
                    c.wait_for_broker(e.conn, &mut observed);
                    c.client_closed.store(true, Ordering::SeqCst);
                    // Like the recording proxy, keep reading what the broker still sends.
                    let _ = c.stream.shutdown(Shutdown::Write);
                }
            }
            What::Close { dir: Dir::ToClient } => {}
        }
    }
    sleep_until(start, trace.end + Duration::from_millis(200));
    for (label, c) in &mut conns {
        c.client_closed.store(true, Ordering::SeqCst);
        let _ = c.stream.shutdown(Shutdown::Both);
        if let Some(r) = c.reader.take() {
            let _ = r.join();
        }
        c.absorb(*label, &mut observed);
    }
    drop(broker);
    compare(&expected(&trace), &observed)
}

fn traces() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conformance/traces");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("conformance/traces")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "trace"))
        .collect();
    paths.sort();
    paths
}

#[test]
fn traces_replay_against_the_binary() {
    let paths = traces();
    assert!(paths.len() >= 150, "only {} traces", paths.len());
    let queue = Arc::new(Mutex::new(paths));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..PARALLEL)
        .map(|_| {
            let (queue, failures) = (queue.clone(), failures.clone());
            thread::spawn(move || loop {
                let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop();
                let Some(path) = next else { return };
                // A timing-sensitive trace that fails under load gets one more try on its own.
                let outcome = replay(&path).or_else(|_| replay(&path));
                if let Err(diff) = outcome {
                    failures
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(format!("{}:\n{diff}", path.display()));
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker");
    }
    let failures = failures.lock().unwrap_or_else(|e| e.into_inner());
    assert!(
        failures.is_empty(),
        "{} trace(s) differ against the binary:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
