//! # cicada-storage
//!
//! Durable state for the Cicada broker. The engine describes every change as a [`StoreOp`] in numbered
//! batches and holds the replies that depend on them; a [`Store`] writes batches and loads everything
//! back at start as a [`StoredState`] for [`cicada_engine::Engine::restore`].
//!
//! - [`RocksStore`]: the default, RocksDB embedded in the data directory, one column family per kind of
//!   record, one `WriteBatch` per group of engine batches.
//! - [`MemoryStore`]: keeps the state in memory (a broker that forgets everything at exit, and tests).
//!
//! What the engine stores, and how each operation changes it, is defined once, by
//! [`StoredState::apply`]; a store must load exactly what that fold would hold.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod memory;
mod record;
mod rocks;

use std::path::PathBuf;

pub use cicada_engine::{StoreOp, StoredState};
pub use memory::MemoryStore;
pub use rocks::RocksStore;

/// When written data reaches the disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Every write is synced before it is reported durable: nothing acknowledged is lost, even on
    /// power loss.
    #[default]
    Always,
    /// Writes go to the operating system at once and are synced by [`Store::sync`], which the shell
    /// calls periodically: a process crash loses nothing, a power loss may lose the last interval.
    Interval,
    /// Never synced explicitly: a process crash loses nothing, a power loss may lose what the
    /// operating system had not written yet.
    Never,
}

/// Durable storage of the engine's state.
pub trait Store: Send {
    /// Everything stored, as the fold of every batch written so far.
    fn load(&mut self) -> Result<StoredState, StoreError>;

    /// Writes `batches` in order, atomically (all or none), as one write. When it returns `Ok`, they
    /// are durable as the store's [`FsyncPolicy`] promises.
    fn write(&mut self, batches: &[Vec<StoreOp>]) -> Result<(), StoreError>;

    /// Makes every write so far durable on disk.
    fn sync(&mut self) -> Result<(), StoreError>;
}

/// Why storage failed. Each message names the file or directory and what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened.
    #[error(
        "cannot open the data directory {path}: {detail} (check its permissions and free space; \
         if another cicada is using it, stop that one or choose another `server.data_dir`)"
    )]
    Open {
        /// The data directory.
        path: PathBuf,
        /// What RocksDB said.
        detail: String,
    },
    /// A record could not be understood: the data is damaged or from an incompatible version.
    #[error(
        "corrupt record in {path} (column family `{family}`, key {key}): {detail}. Nothing was \
         changed. Restore the directory from a backup, or move it aside to start with empty state"
    )]
    Corrupt {
        /// The data directory.
        path: PathBuf,
        /// The column family holding the record.
        family: &'static str,
        /// The record's key, escaped.
        key: String,
        /// What is wrong with it.
        detail: String,
    },
    /// Reading failed.
    #[error("cannot read {path}: {detail}")]
    Read {
        /// The data directory.
        path: PathBuf,
        /// What RocksDB said.
        detail: String,
    },
    /// Writing or syncing failed (disk full, I/O error): the batches are not durable.
    #[error("cannot write to {path}: {detail} (check free space and the disk)")]
    Write {
        /// The data directory.
        path: PathBuf,
        /// What RocksDB said.
        detail: String,
    },
}
