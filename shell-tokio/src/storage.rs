//! The storage thread: writes the engine's batches with group commit and reports them durable.
//!
//! RocksDB calls block (an fsync takes milliseconds), so they run on a thread of their own, never on
//! the engine task. The thread takes every batch waiting when it wakes and writes them as one
//! `WriteBatch` (one WAL write, one fsync with `fsync = "always"`), then reports the highest batch
//! number durable: while one fsync runs, the next group gathers, so the cost of a sync is shared by
//! every acknowledgement of a loop turn or more.

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
pub(crate) enum Done {
    /// Every batch up to this one is durable.
    Persisted(PersistSeq),
    /// These batches could not be written.
    Failed(Vec<PersistSeq>),
}

/// A batch, and when it was handed over (for the persist latency histogram).
type Queued = (PersistSeq, Vec<StoreOp>, Instant);

/// The engine task's handle on the storage thread.
pub(crate) struct StorageHandle {
    batches: Option<std_mpsc::Sender<Queued>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StorageHandle {
    /// Starts the thread around `store`; results arrive on `done`.
    pub(crate) fn start(
        store: Box<dyn Store>,
        fsync: FsyncPolicy,
        interval: Duration,
        done: mpsc::UnboundedSender<Done>,
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

    /// Queues a batch for writing.
    pub(crate) fn write(&self, seq: PersistSeq, ops: Vec<StoreOp>) -> bool {
        self.batches
            .as_ref()
            .is_some_and(|tx| tx.send((seq, ops, Instant::now())).is_ok())
    }

    /// Writes what is queued, syncs, and stops the thread.
    pub(crate) async fn close(mut self) {
        self.batches = None;
        if let Some(thread) = self.thread.take() {
            let joined = tokio::task::spawn_blocking(move || thread.join()).await;
            if !matches!(joined, Ok(Ok(()))) {
                error!("the storage thread ended abnormally");
            }
        }
    }
}

fn run(
    mut store: Box<dyn Store>,
    fsync: FsyncPolicy,
    interval: Duration,
    rx: std_mpsc::Receiver<Queued>,
    done: mpsc::UnboundedSender<Done>,
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
            let mut seqs = vec![first.0];
            let mut group = vec![first.1];
            let mut queued = vec![first.2];
            while group.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok((seq, ops, at)) => {
                        seqs.push(seq);
                        group.push(ops);
                        queued.push(at);
                    }
                    Err(_) => break,
                }
            }
            match store.write(&group) {
                Ok(()) => {
                    unsynced = true;
                    // Durable as the policy makes it (`interval` syncs later, by design).
                    for at in queued {
                        telemetry.persisted(at.elapsed());
                    }
                    let upto = seqs.last().copied().unwrap_or(PersistSeq(0));
                    if done.send(Done::Persisted(upto)).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    error!(batches = seqs.len(), "storage write failed: {e}");
                    if done.send(Done::Failed(seqs)).is_err() {
                        break;
                    }
                }
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
