//! Load time and memory of a large store: writes N retained messages (default 1,000,000; 64-byte
//! payloads, topics `site/{i / 1000}/sensor/{i % 1000}`) into a fresh RocksDB store in batches of 1,000,
//! then measures `RocksStore::load` and `Engine::restore` (what a restart does) and the resident
//! memory each added.
//!
//! Run: `cargo bench -p cicada-storage --bench load` (`CICADA_LOAD_N=100000` for a smaller run).
//! Not a criterion bench: one load of a million records takes seconds, and the figure wanted is that
//! one load, cold in the process (RocksDB's block cache aside), with its memory.

use std::sync::Arc;
use std::time::Instant as Clock;

use bytes::Bytes;
use cicada_engine::codec::{QoS, TopicName};
use cicada_engine::{Config, Engine, Instant, Message, StoreOp};
use cicada_storage::{FsyncPolicy, RocksStore, Store};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let n: u64 = std::env::var("CICADA_LOAD_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let payload = Bytes::from(vec![0x5A; 64]);
    let started = Clock::now();
    {
        let mut store = RocksStore::open(dir.path(), FsyncPolicy::Never).expect("opens");
        let mut i = 0;
        while i < n {
            let batch: Vec<StoreOp> = (i..n.min(i + 1000))
                .map(|k| StoreOp::PutRetained {
                    message: Arc::new(Message {
                        topic: TopicName::new(format!("site/{}/sensor/{}", k / 1000, k % 1000))
                            .expect("valid"),
                        payload: payload.clone(),
                        qos: QoS::AtLeastOnce,
                        retain: true,
                        properties: Default::default(),
                        origin: Some("bench".into()),
                        expires_at: None,
                    }),
                })
                .collect();
            store.write(&[batch]).expect("writes");
            i += 1000;
        }
        store.sync().expect("syncs");
    }
    let wrote = started.elapsed();
    let before = rss_kib();
    let started = Clock::now();
    let mut store = RocksStore::open(dir.path(), FsyncPolicy::Never).expect("opens");
    let state = store.load().expect("loads");
    let loaded = started.elapsed();
    let after_load = rss_kib();
    assert_eq!(state.retained.len() as u64, n);
    drop(store);
    let started = Clock::now();
    let mut engine = Engine::new(Config::default(), 1).expect("default config is valid");
    engine.restore(Instant::from_micros(0), state);
    let restored = started.elapsed();
    let after_restore = rss_kib();
    assert_eq!(engine.retained_count() as u64, n);
    let on_disk: u64 = walk(dir.path());
    let mib = |kib: u64| kib as f64 / 1024.0;
    let per_message = |kib: u64| kib as f64 * 1024.0 / n as f64;
    println!(
        "retained messages: {n}\nwrite (batches of 1000, no fsync): {:.2} s\nopen + load: {:.2} s ({:.0} k records/s)\n\
         resident memory added by the loaded state: {:.0} MiB ({:.0} bytes per message)\n\
         Engine::restore: {:.2} s; resident memory of the running engine's retained store: {:.0} MiB ({:.0} bytes per message)\n\
         on disk: {:.0} MiB",
        wrote.as_secs_f64(),
        loaded.as_secs_f64(),
        n as f64 / loaded.as_secs_f64() / 1000.0,
        mib(after_load.saturating_sub(before)),
        per_message(after_load.saturating_sub(before)),
        restored.as_secs_f64(),
        mib(after_restore.saturating_sub(before)),
        per_message(after_restore.saturating_sub(before)),
        on_disk as f64 / 1024.0 / 1024.0,
    );
    drop(engine);
}

fn walk(path: &std::path::Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => walk(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}
