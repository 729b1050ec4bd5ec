//! `cicada-bench`: drives an MQTT broker with a load scenario and reports throughput, latency
//! percentiles and the broker's CPU time (read from `/proc/<pid>/stat`).
//!
//! The clients are minimal and built on `cicada_engine::codec`, so the load generator costs little next
//! to the broker. Each payload carries its send time, so latency is publish-to-delivery.
//!
//! ```text
//! cicada-bench --port 1883 --scenario fan-out --clients 100 --qos 1 --seconds 10 --broker-pid 1234
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use cicada_engine::codec::{
    Ack, Connect, Decoded, Decoder, Delivery, Packet, PacketId, ProtocolVersion, Publish, QoS,
    Subscribe, Subscription, SubscriptionOptions, TopicFilter, TopicName,
};
use cicada_transports::client::{ClientTls, Target};
use cicada_transports::BoxStream;
use clap::{Parser, ValueEnum};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Scenario {
    /// `clients` publishers, one subscriber on `bench/#`.
    FanIn,
    /// One publisher, `clients` subscribers on the same topic.
    FanOut,
    /// `clients` publisher/subscriber pairs, each pair on its own topic.
    Pairs,
    /// `clients` idle connections; reports connect time and broker CPU while idle.
    Idle,
    /// One client stores `clients` retained messages (QoS 1, topics `site/{i / 1000}/sensor/{i % 1000}`);
    /// reports the broker's resident memory per retained message.
    Retained,
    /// `clients` loops each connecting (over the transport of `--url`), completing CONNECT/CONNACK
    /// and disconnecting, for `seconds`; reports connections per second.
    Handshakes,
    /// `clients` publishers at full speed into one subscriber that never reads: what the broker
    /// holds for a stuck consumer; reports the broker's peak resident memory.
    Flood,
}

#[derive(Debug, Parser)]
#[command(name = "cicada-bench", about)]
struct Args {
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 1883)]
    port: u16,
    /// Broker URL (`mqtt://`, `mqtts://`, `ws://`, `wss://`, `quic://`); replaces --host/--port.
    #[arg(long)]
    url: Option<String>,
    /// CA bundle (PEM) to verify a TLS broker with.
    #[arg(long)]
    cafile: Option<std::path::PathBuf>,
    #[arg(long, value_enum, default_value = "pairs")]
    scenario: Scenario,
    /// Publishers (fan-in), subscribers (fan-out), pairs, or idle connections.
    #[arg(long, default_value_t = 10)]
    clients: usize,
    /// QoS of publishes and subscriptions: 0 or 1.
    #[arg(long, default_value_t = 0)]
    qos: u8,
    /// Payload bytes (at least 8: the send timestamp).
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// Messages per second per publisher (0: as fast as the broker takes them).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// How long to publish.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// The broker's process id, to report its CPU seconds.
    #[arg(long)]
    broker_pid: Option<u32>,
    /// A label for the output line.
    #[arg(long, default_value = "broker")]
    label: String,
    /// Persistent sessions (clean session off): QoS 1 deliveries are then stored by a durable broker.
    #[arg(long)]
    persistent: bool,
}

/// Delivery latencies in microseconds, and counts.
#[derive(Default)]
struct Stats {
    sent: AtomicU64,
    received: AtomicU64,
    latencies: Mutex<Vec<u32>>,
}

struct Conn {
    read: ReadHalf<BoxStream>,
    write: WriteHalf<BoxStream>,
    decoder: Decoder,
    buf: BytesMut,
}

impl Conn {
    async fn open(args: &Args, id: String) -> std::io::Result<Conn> {
        let url = match &args.url {
            Some(url) => url.clone(),
            None => format!("mqtt://{}:{}", args.host, args.port),
        };
        let target = Target::parse(&url).map_err(std::io::Error::other)?;
        let tls = ClientTls {
            ca: args.cafile.clone(),
            ..ClientTls::default()
        };
        let stream = cicada_transports::client::connect(&target, &tls)
            .await
            .map_err(std::io::Error::other)?;
        let (read, write) = tokio::io::split(stream);
        let mut decoder = Decoder::new(1 << 24);
        decoder.set_version(ProtocolVersion::V3_1_1);
        let mut conn = Conn {
            read,
            write,
            decoder,
            buf: BytesMut::new(),
        };
        let connect = Connect {
            protocol: ProtocolVersion::V3_1_1,
            clean_start: !args.persistent,
            // rumqttd refuses keep alive 0; nothing here runs long enough to need a PINGREQ.
            keep_alive: 300,
            properties: Default::default(),
            client_id: id.into(),
            will: None,
            username: None,
            password: None,
        };
        conn.send(&Packet::Connect(Box::new(connect))).await?;
        match conn.recv().await? {
            Some(Packet::ConnAck(_)) => Ok(conn),
            other => Err(std::io::Error::other(format!(
                "expected CONNACK, got {other:?}"
            ))),
        }
    }

    /// Sends DISCONNECT and closes the stream.
    async fn close(mut self) -> std::io::Result<()> {
        self.send(&Packet::Disconnect(cicada_engine::codec::Disconnect::new(
            cicada_engine::codec::ReasonCode::Success,
        )))
        .await?;
        self.write.shutdown().await
    }

    async fn send(&mut self, packet: &Packet) -> std::io::Result<()> {
        let mut out = BytesMut::new();
        packet
            .encode(ProtocolVersion::V3_1_1, &mut out)
            .map_err(std::io::Error::other)?;
        self.write.write_all(&out).await
    }

    /// The next packet already read, if a whole one is buffered.
    fn buffered(&mut self) -> Option<Packet> {
        match self.decoder.decode(&mut self.buf) {
            Ok(Decoded::Packet(p)) => Some(p),
            _ => None,
        }
    }

    async fn recv(&mut self) -> std::io::Result<Option<Packet>> {
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Decoded::Packet(p)) => return Ok(Some(p)),
                Ok(Decoded::Incomplete { .. }) => {}
                Err(e) => return Err(std::io::Error::other(e)),
            }
            // Grown on demand, so thousands of idle connections stay small here too.
            self.buf.reserve(16 * 1024);
            if self.read.read_buf(&mut self.buf).await? == 0 {
                return Ok(None);
            }
        }
    }

    async fn subscribe(&mut self, filter: &str, qos: QoS) -> std::io::Result<()> {
        let sub = Subscribe {
            packet_id: PacketId::new(1).ok_or_else(|| std::io::Error::other("pid"))?,
            properties: Default::default(),
            subscriptions: vec![Subscription {
                filter: TopicFilter::new(filter.to_string()).map_err(std::io::Error::other)?,
                options: SubscriptionOptions {
                    qos,
                    ..Default::default()
                },
            }],
        };
        self.send(&Packet::Subscribe(sub)).await?;
        match self.recv().await? {
            Some(Packet::SubAck(_)) => Ok(()),
            other => Err(std::io::Error::other(format!(
                "expected SUBACK, got {other:?}"
            ))),
        }
    }
}

fn micros_since(origin: Instant) -> u64 {
    u64::try_from(origin.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Receives until the connection closes, recording latencies and acknowledging QoS 1: the PUBACKs
/// of everything one read brought go out in one write, as a real client library batches them.
async fn subscriber(mut conn: Conn, origin: Instant, stats: Arc<Stats>) {
    let mut local = Vec::new();
    let mut acks = BytesMut::new();
    while let Ok(Some(first)) = conn.recv().await {
        let mut next = Some(first);
        while let Some(packet) = next {
            if let Packet::Publish(p) = packet {
                if p.payload.len() >= 8 {
                    let mut ts = [0u8; 8];
                    ts.copy_from_slice(&p.payload[..8]);
                    let sent = u64::from_le_bytes(ts);
                    let latency = micros_since(origin).saturating_sub(sent);
                    local.push(u32::try_from(latency).unwrap_or(u32::MAX));
                }
                stats.received.fetch_add(1, Ordering::Relaxed);
                if let Delivery::AtLeastOnce(id) = p.delivery {
                    let _ = Packet::PubAck(Ack::new(id)).encode(ProtocolVersion::V3_1_1, &mut acks);
                }
            }
            next = conn.buffered();
        }
        if !acks.is_empty() && conn.write.write_all(&acks.split()).await.is_err() {
            break;
        }
        if local.len() >= 256 {
            if let Ok(mut all) = stats.latencies.lock() {
                all.append(&mut local);
            }
        }
    }
    if let Ok(mut all) = stats.latencies.lock() {
        all.append(&mut local);
    }
}

/// Publishes to `topic` until `until`; QoS 1 keeps at most 64 unacknowledged.
async fn publisher(
    mut conn: Conn,
    topic: String,
    args: Arc<Args>,
    origin: Instant,
    until: Instant,
    stats: Arc<Stats>,
) {
    let qos1 = args.qos == 1;
    let topic = match TopicName::new(topic) {
        Ok(t) => t,
        Err(_) => return,
    };
    let mut id: u16 = 0;
    let mut inflight = 0usize;
    let interval = (args.rate > 0).then(|| Duration::from_secs_f64(1.0 / args.rate as f64));
    let mut next = Instant::now();
    while Instant::now() < until {
        if let Some(i) = interval {
            next += i;
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                tokio::time::sleep(wait).await;
            }
        }
        let mut payload = vec![0u8; args.payload.max(8)];
        payload[..8].copy_from_slice(&micros_since(origin).to_le_bytes());
        let mut p = Publish::new(topic.clone(), Bytes::from(payload));
        if qos1 {
            id = id.checked_add(1).unwrap_or(1);
            let Some(pid) = PacketId::new(id) else {
                return;
            };
            p.delivery = Delivery::AtLeastOnce(pid);
            inflight += 1;
        }
        if conn.send(&Packet::Publish(p)).await.is_err() {
            return;
        }
        stats.sent.fetch_add(1, Ordering::Relaxed);
        while qos1 && inflight >= 64 {
            match conn.recv().await {
                Ok(Some(Packet::PubAck(_))) => inflight -= 1,
                Ok(Some(_)) => {}
                _ => return,
            }
        }
        if !qos1 && interval.is_none() && stats.sent.load(Ordering::Relaxed) % 64 == 0 {
            // Let the runtime schedule the readers.
            tokio::task::yield_now().await;
        }
    }
}

/// Publishes `count` retained messages at QoS 1 with at most 64 unacknowledged, and waits for the
/// last acknowledgement, so the broker holds them all when it returns.
async fn store_retained(mut conn: Conn, count: usize, payload: usize) -> std::io::Result<()> {
    let mut inflight = 0usize;
    let mut id: u16 = 0;
    for i in 0..count {
        let topic = TopicName::new(format!("site/{}/sensor/{}", i / 1000, i % 1000))
            .map_err(std::io::Error::other)?;
        let mut p = Publish::new(topic, Bytes::from(vec![0x5A; payload]));
        p.retain = true;
        id = id.checked_add(1).unwrap_or(1);
        p.delivery =
            Delivery::AtLeastOnce(PacketId::new(id).ok_or_else(|| std::io::Error::other("pid"))?);
        conn.send(&Packet::Publish(p)).await?;
        inflight += 1;
        while inflight >= 64 || (i + 1 == count && inflight > 0) {
            match conn.recv().await? {
                Some(Packet::PubAck(_)) => inflight -= 1,
                Some(_) => {}
                None => return Err(std::io::Error::other("broker closed the connection")),
            }
        }
    }
    Ok(())
}

/// `clients` concurrent loops of connect + CONNECT/CONNACK + DISCONNECT for `seconds`.
async fn handshakes(args: &Arc<Args>) -> std::io::Result<()> {
    let done = Arc::new(AtomicU64::new(0));
    let cpu_before = args.broker_pid.and_then(cpu_seconds);
    let start = Instant::now();
    let until = start + Duration::from_secs(args.seconds);
    let mut tasks = Vec::new();
    for i in 0..args.clients {
        let (args, done) = (args.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < until {
                let conn = Conn::open(&args, format!("hs-{i}-{n}")).await?;
                conn.close().await?;
                n += 1;
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<(), std::io::Error>(())
        }));
    }
    for t in tasks {
        t.await.map_err(std::io::Error::other)??;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = match (cpu_before, args.broker_pid.and_then(cpu_seconds)) {
        (Some(a), Some(b)) => format!("{:.2}", b - a),
        _ => "n/a".into(),
    };
    let n = done.load(Ordering::Relaxed);
    result(
        args,
        &[(
            "connects_per_s",
            format!("{:.0}", n as f64 / elapsed.max(1e-9)),
        )],
    );
    println!(
        "{label} scenario=Handshakes clients={clients}: {rate:.0} connections/s ({n} in {elapsed:.1}s), broker cpu {cpu}s",
        label = args.label,
        clients = args.clients,
        rate = n as f64 / elapsed.max(1e-9),
    );
    Ok(())
}

/// Prints the machine-readable line the bench scripts collect: `RESULT key=value ...`.
fn result(args: &Args, fields: &[(&str, String)]) {
    let mut line = format!(
        "RESULT broker={} scenario={:?} clients={} qos={}",
        args.label, args.scenario, args.clients, args.qos
    );
    for (k, v) in fields {
        line.push_str(&format!(" {k}={v}"));
    }
    println!("{line}");
}

/// Samples the broker's resident memory every 50 ms until dropped; the peak is in the returned cell.
fn watch_rss(pid: Option<u32>) -> (Arc<AtomicU64>, tokio::task::JoinHandle<()>) {
    let peak = Arc::new(AtomicU64::new(0));
    let seen = peak.clone();
    let task = tokio::spawn(async move {
        let Some(pid) = pid else { return };
        loop {
            if let Some(rss) = rss_kib(pid) {
                seen.fetch_max(rss, Ordering::Relaxed);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    (peak, task)
}

/// Resident memory of `pid`, in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// utime + stime of `pid`, in seconds.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Arc::new(Args::parse());
    let qos = if args.qos == 1 {
        QoS::AtLeastOnce
    } else {
        QoS::AtMostOnce
    };
    if let Scenario::Retained = args.scenario {
        let before = args.broker_pid.and_then(rss_kib);
        let start = Instant::now();
        let conn = Conn::open(&args, "retained-loader".into()).await?;
        store_retained(conn, args.clients, args.payload).await?;
        let took = start.elapsed().as_secs_f64();
        let memory = match (before, args.broker_pid.and_then(rss_kib)) {
            (Some(a), Some(b)) => format!(
                "broker resident memory +{:.0} MiB ({:.0} bytes per message)",
                b.saturating_sub(a) as f64 / 1024.0,
                b.saturating_sub(a) as f64 * 1024.0 / args.clients.max(1) as f64
            ),
            _ => "broker memory n/a".into(),
        };
        println!(
            "{label} scenario=Retained messages={n} payload={payload}B: stored in {took:.2}s ({rate:.0}/s), {memory}",
            label = args.label,
            n = args.clients,
            payload = args.payload,
            rate = args.clients as f64 / took.max(1e-9),
        );
        return Ok(());
    }
    if let Scenario::Handshakes = args.scenario {
        return handshakes(&args).await;
    }
    let origin = Instant::now();
    let stats = Arc::new(Stats::default());
    let (subs, pubs): (Vec<String>, Vec<String>) = match args.scenario {
        Scenario::FanIn => (
            vec!["bench/#".into()],
            (0..args.clients).map(|i| format!("bench/{i}")).collect(),
        ),
        Scenario::FanOut => (
            (0..args.clients).map(|_| "bench/x".into()).collect(),
            vec!["bench/x".into()],
        ),
        Scenario::Pairs => (
            (0..args.clients).map(|i| format!("bench/{i}")).collect(),
            (0..args.clients).map(|i| format!("bench/{i}")).collect(),
        ),
        Scenario::Flood => (
            Vec::new(),
            (0..args.clients).map(|_| "bench/flood".into()).collect(),
        ),
        Scenario::Idle | Scenario::Retained | Scenario::Handshakes => (Vec::new(), Vec::new()),
    };
    let connect_start = Instant::now();
    let mut idle = Vec::new();
    let rss_before = args.broker_pid.and_then(rss_kib);
    if let Scenario::Idle = args.scenario {
        for i in 0..args.clients {
            idle.push(Conn::open(&args, format!("idle-{i}")).await?);
        }
        // Let the broker settle (buffers shrink, tasks park) before reading its memory.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss_after = args.broker_pid.and_then(rss_kib);
        let took = connect_start.elapsed().as_secs_f64() - 1.0;
        let per_conn = match (rss_before, rss_after) {
            (Some(a), Some(b)) => format!(
                "{:.0}",
                b.saturating_sub(a) as f64 * 1024.0 / args.clients.max(1) as f64
            ),
            _ => "nan".into(),
        };
        result(
            &args,
            &[
                ("bytes_per_idle_conn", per_conn.clone()),
                (
                    "connects_per_s",
                    format!("{:.0}", args.clients as f64 / took.max(1e-9)),
                ),
            ],
        );
        println!(
            "{label} scenario=Idle clients={n}: {per_conn} bytes of broker memory per idle connection, connected in {took:.2}s",
            label = args.label,
            n = args.clients,
        );
    }
    // The flood's subscriber subscribes and then reads nothing.
    let mut stuck = None;
    if let Scenario::Flood = args.scenario {
        let mut conn = Conn::open(&args, "stuck".into()).await?;
        conn.subscribe("bench/flood", QoS::AtMostOnce).await?;
        stuck = Some(conn);
    }
    let (rss_peak, rss_task) = watch_rss(args.broker_pid);
    let mut sub_tasks = Vec::new();
    for (i, filter) in subs.iter().enumerate() {
        let mut conn = Conn::open(&args, format!("sub-{i}")).await?;
        conn.subscribe(filter, qos).await?;
        sub_tasks.push(tokio::spawn(subscriber(conn, origin, stats.clone())));
    }
    let mut pub_conns = Vec::new();
    for i in 0..pubs.len() {
        pub_conns.push(Conn::open(&args, format!("pub-{i}")).await?);
    }
    let connect_time = connect_start.elapsed();
    let cpu_before = args.broker_pid.and_then(cpu_seconds);
    let start = Instant::now();
    let until = start + Duration::from_secs(args.seconds);
    let mut pub_tasks = Vec::new();
    for (conn, topic) in pub_conns.into_iter().zip(pubs) {
        pub_tasks.push(tokio::spawn(publisher(
            conn,
            topic,
            args.clone(),
            origin,
            until,
            stats.clone(),
        )));
    }
    if pub_tasks.is_empty() {
        tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    }
    for t in pub_tasks {
        let _ = t.await;
    }
    // Let deliveries in flight arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let elapsed = start.elapsed().as_secs_f64() - 0.5;
    let cpu = match (cpu_before, args.broker_pid.and_then(cpu_seconds)) {
        (Some(a), Some(b)) => format!("{:.2}", b - a),
        _ => "n/a".into(),
    };
    for t in &sub_tasks {
        t.abort();
    }
    rss_task.abort();
    drop((idle, stuck));
    let mut lat = stats
        .latencies
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default();
    lat.sort_unstable();
    let sent = stats.sent.load(Ordering::Relaxed);
    let received = stats.received.load(Ordering::Relaxed);
    let cpu_s = match (cpu_before, args.broker_pid.and_then(cpu_seconds)) {
        (Some(a), Some(b)) => b - a,
        _ => f64::NAN,
    };
    result(
        &args,
        &[
            (
                "sent_per_s",
                format!("{:.0}", sent as f64 / elapsed.max(1e-9)),
            ),
            (
                "delivered_per_s",
                format!("{:.0}", received as f64 / elapsed.max(1e-9)),
            ),
            ("cpu_s", format!("{cpu_s:.2}")),
            (
                "delivered_per_cpu_s",
                format!("{:.0}", received as f64 / cpu_s),
            ),
            ("p50_ms", format!("{:.3}", percentile(&lat, 0.5))),
            ("p99_ms", format!("{:.3}", percentile(&lat, 0.99))),
            ("rss_peak_kib", rss_peak.load(Ordering::Relaxed).to_string()),
        ],
    );
    println!(
        "{label} scenario={scenario:?} clients={clients} qos={q} payload={payload}B: sent {sps:.0}/s, delivered {rps:.0}/s, \
         latency ms p50={p50:.2} p99={p99:.2} max={max:.2}, broker cpu {cpu}s, connect {ct:.2}s",
        label = args.label,
        scenario = args.scenario,
        clients = args.clients,
        q = args.qos,
        payload = args.payload,
        sps = sent as f64 / elapsed.max(1e-9),
        rps = received as f64 / elapsed.max(1e-9),
        p50 = percentile(&lat, 0.5),
        p99 = percentile(&lat, 0.99),
        max = percentile(&lat, 1.0),
        ct = connect_time.as_secs_f64(),
    );
    Ok(())
}
