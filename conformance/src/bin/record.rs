//! `cicada-record`: a recording proxy. It listens on a loopback port, forwards every connection to a
//! broker, and writes both directions as a trace (see `cicada_conformance::trace`) when it is stopped
//! with SIGTERM or SIGINT.
//!
//! Each piece is logged before it is forwarded, so an answer is never logged before its question.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use cicada_conformance::trace::{describe, Dir, Event, Label, Splitter, Trace, What};
use cicada_engine::codec::{Packet, ProtocolVersion};
use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

/// Records MQTT traffic between clients and a broker.
#[derive(Debug, Parser)]
#[command(name = "cicada-record", version, about)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:1884")]
    listen: SocketAddr,
    /// The broker to forward to.
    #[arg(long, default_value = "127.0.0.1:1883")]
    upstream: SocketAddr,
    /// Where to write the trace.
    #[arg(long)]
    out: PathBuf,
    /// A header line `KEY=VALUE` for the trace (repeatable).
    #[arg(long = "header", value_parser = parse_header)]
    headers: Vec<(String, String)>,
}

fn parse_header(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("--header takes KEY=VALUE, got {s:?}"))
}

/// The trace being recorded: every event stamped under one lock, so times never go backwards.
struct Recorder {
    start: Instant,
    events: Vec<Event>,
    next_label: u32,
}

type Shared<T> = Arc<Mutex<T>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Recorder {
    fn record(&mut self, conn: Label, what: What) {
        let at = self.start.elapsed();
        self.events.push(Event { at, conn, what });
    }
}

/// What the two directions of one connection share.
#[derive(Default)]
struct ConnState {
    version: Option<ProtocolVersion>,
    closed: bool,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let listener = match TcpListener::bind(cli.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cicada-record: cannot listen on {}: {e}", cli.listen);
            return ExitCode::from(1);
        }
    };
    let recorder = Arc::new(Mutex::new(Recorder {
        start: Instant::now(),
        events: Vec::new(),
        next_label: 1,
    }));
    println!("listening on {}", cli.listen);
    let accept = {
        let recorder = recorder.clone();
        async move {
            loop {
                match listener.accept().await {
                    Ok((client, _)) => {
                        tokio::spawn(proxy(client, cli.upstream, recorder.clone()));
                    }
                    Err(e) => eprintln!("cicada-record: accept: {e}"),
                }
            }
        }
    };
    tokio::select! {
        () = accept => {}
        () = stopped() => {}
    }
    // Let pieces read just before the signal be logged.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let trace = {
        let r = lock(&recorder);
        Trace {
            header: cli.headers,
            events: r.events.clone(),
            end: r.start.elapsed(),
        }
    };
    match std::fs::write(&cli.out, trace.to_text()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cicada-record: cannot write {}: {e}", cli.out.display());
            ExitCode::from(1)
        }
    }
}

async fn stopped() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

async fn proxy(client: TcpStream, upstream: SocketAddr, recorder: Shared<Recorder>) {
    let broker = match TcpStream::connect(upstream).await {
        Ok(b) => b,
        Err(e) => {
            eprintln!("cicada-record: cannot reach the broker at {upstream}: {e}");
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = broker.set_nodelay(true);
    let label = {
        let mut r = lock(&recorder);
        let label = Label(r.next_label);
        r.next_label += 1;
        r.record(label, What::Open);
        label
    };
    let state = Arc::new(Mutex::new(ConnState::default()));
    let (client_rx, client_tx) = client.into_split();
    let (broker_rx, broker_tx) = broker.into_split();
    let up = pump(
        client_rx,
        broker_tx,
        Dir::ToBroker,
        label,
        state.clone(),
        recorder.clone(),
    );
    let down = pump(broker_rx, client_tx, Dir::ToClient, label, state, recorder);
    tokio::join!(up, down);
}

async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    dir: Dir,
    conn: Label,
    state: Shared<ConnState>,
    recorder: Shared<Recorder>,
) {
    let mut splitter = Splitter::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = from.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            {
                let mut s = lock(&state);
                if !s.closed {
                    s.closed = true;
                    lock(&recorder).record(conn, What::Close { dir });
                }
            }
            let _ = to.shutdown().await;
            return;
        }
        for raw in splitter.push(&buf[..n]) {
            // Still logged after the other side closed: a broker answering a client that sent its
            // last packets and hung up at once did send that answer.
            let mut s = lock(&state);
            let version = s.version.unwrap_or(ProtocolVersion::V3_1_1);
            let (text, packet) = describe(&raw, version);
            if let (Dir::ToBroker, Some(Packet::Connect(c))) = (dir, &packet) {
                s.version.get_or_insert(c.protocol);
            }
            lock(&recorder).record(conn, What::Bytes { dir, raw, text });
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
