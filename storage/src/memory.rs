//! A store that keeps everything in memory: what an in-memory broker and tests use.

use cicada_engine::{StoreOp, StoredState};

use crate::{Store, StoreError};

/// Holds the fold of every batch written; loading returns a copy of it.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: StoredState,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }
}

impl Store for MemoryStore {
    fn load(&mut self) -> Result<StoredState, StoreError> {
        Ok(self.state.clone())
    }

    fn write(&mut self, batches: &[Vec<StoreOp>]) -> Result<(), StoreError> {
        for batch in batches {
            self.state.apply(batch);
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}
