//! The storage thread: writes the engine's batches with group commit and reports them durable.
//!
//! RocksDB calls block (an fsync takes milliseconds), so they run on a thread of their own, never on
//! the engine task. The thread takes every batch waiting when it wakes and writes them as one
//! `WriteBatch` (one WAL write, one fsync with `fsync = "always"`), then reports the highest batch
//! number durable: while one fsync runs, the next group gathers, so the cost of a sync is shared by
//! every acknowledgement of a loop turn or more.

use std::collections::BTreeMap;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use cicada_engine::{PersistSeq, StoreOp};
use cicada_storage::{FsyncPolicy, Store};
use tokio::sync::mpsc;
use tracing::{error, warn};

use crate::http::metrics::Telemetry;

/// The most batches merged into one write.
const MAX_GROUP: usize = 1024;

/// What the storage thread reports to the engine task.
#[derive(Debug)]
pub enum Done {
    /// Every batch up to this one is durable.
    Persisted(PersistSeq),
    /// These batches could not be written.
    Failed(Vec<PersistSeq>),
}

/// A batch: the engine it comes from (its [`cicada_engine::Shard::index`]; 0 with a single engine),
/// its number, its writes, and when it was handed over (for the persist latency histogram).
type Queued = (u16, PersistSeq, Vec<StoreOp>, Instant);

/// Hands one engine's batches to the storage thread; one per engine, movable to its thread.
#[derive(Clone, Debug)]
pub struct StorageWriter {
    shard: u16,
    tx: std_mpsc::Sender<Queued>,
}

impl StorageWriter {
    /// Queues a batch for writing; false if the storage thread is gone.
    pub fn write(&self, seq: PersistSeq, ops: Vec<StoreOp>) -> bool {
        self.tx.send((self.shard, seq, ops, Instant::now())).is_ok()
    }
}

/// The engine task's handle on the storage thread.
pub struct StorageHandle {
    batches: Option<std_mpsc::Sender<Queued>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StorageHandle {
    /// Starts the thread around `store`; results for engine `i`'s batches arrive on `done[i]`.
    pub fn start(
        store: Box<dyn Store>,
        fsync: FsyncPolicy,
        interval: Duration,
        done: Vec<mpsc::UnboundedSender<Done>>,
        telemetry: Telemetry,
    ) -> std::io::Result<StorageHandle> {
        let (tx, rx) = std_mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("cicada-storage".into())
            .spawn(move || run(store, fsync, interval, rx, done, telemetry))?;
        Ok(StorageHandle {
            batches: Some(tx),
            thread: Some(thread),
        })
    }

    /// Queues a batch of engine 0 for writing.
    pub fn write(&self, seq: PersistSeq, ops: Vec<StoreOp>) -> bool {
        self.writer(0).is_some_and(|w| w.write(seq, ops))
    }

    /// A writer for engine `shard`'s batches.
    pub fn writer(&self, shard: u16) -> Option<StorageWriter> {
        self.batches.as_ref().map(|tx| StorageWriter {
            shard,
            tx: tx.clone(),
        })
    }

    /// Writes what is queued, syncs, and stops the thread, blocking. Every [`StorageWriter`] must
    /// be dropped first.
    pub fn close_blocking(mut self) {
        self.batches = None;
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                error!("the storage thread ended abnormally");
            }
        }
    }

    /// Writes what is queued, syncs, and stops the thread.
    pub async fn close(self) {
        if tokio::task::spawn_blocking(move || self.close_blocking())
            .await
            .is_err()
        {
            error!("the storage thread ended abnormally");
        }
    }
}

fn run(
    mut store: Box<dyn Store>,
    fsync: FsyncPolicy,
    interval: Duration,
    rx: std_mpsc::Receiver<Queued>,
    done: Vec<mpsc::UnboundedSender<Done>>,
    telemetry: Telemetry,
) {
    let mut last_sync = Instant::now();
    let mut unsynced = false;
    loop {
        let first = if fsync == FsyncPolicy::Interval && unsynced {
            match rx.recv_timeout(interval.saturating_sub(last_sync.elapsed())) {
                Ok(batch) => Some(batch),
                Err(std_mpsc::RecvTimeoutError::Timeout) => None,
                Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match rx.recv() {
                Ok(batch) => Some(batch),
                Err(_) => break,
            }
        };
        if let Some(first) = first {
            let mut batches = vec![first];
            while batches.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(batch) => batches.push(batch),
                    Err(_) => break,
                }
            }
            let group: Vec<Vec<StoreOp>> = batches
                .iter_mut()
                .map(|(_, _, ops, _)| std::mem::take(ops))
                .collect();
            // Each engine numbers its batches on its own: report per engine.
            let mut seqs: BTreeMap<u16, Vec<PersistSeq>> = BTreeMap::new();
            for (shard, seq, _, _) in &batches {
                seqs.entry(*shard).or_default().push(*seq);
            }
            let written = store.write(&group);
            if let Err(e) = &written {
                error!(batches = batches.len(), "storage write failed: {e}");
            } else {
                unsynced = true;
                // Durable as the policy makes it (`interval` syncs later, by design).
                for (_, _, _, at) in &batches {
                    telemetry.persisted(at.elapsed());
                }
            }
            let mut engines_gone = false;
            for (shard, seqs) in seqs {
                let report = match (&written, seqs.last()) {
                    (Ok(()), Some(upto)) => Done::Persisted(*upto),
                    _ => Done::Failed(seqs),
                };
                let sent = done
                    .get(usize::from(shard))
                    .is_some_and(|tx| tx.send(report).is_ok());
                engines_gone |= !sent;
            }
            if engines_gone {
                break;
            }
        }
        if fsync == FsyncPolicy::Interval && unsynced && last_sync.elapsed() >= interval {
            sync(&mut *store);
            last_sync = Instant::now();
            unsynced = false;
        }
    }
    // Stopping: everything written so far goes to disk whatever the policy.
    sync(&mut *store);
}

fn sync(store: &mut dyn Store) {
    if let Err(e) = store.sync() {
        warn!("storage sync failed: {e}");
    }
}
