//! The default store: RocksDB embedded in the data directory.
//!
//! One column family per kind of record (sessions, subscriptions, messages, incoming QoS 2 ids,
//! retained messages; a cluster node's raft log, marks, move windows, relays and sessions handed
//! over), so loading reads each kind in key order and deleting a session is one range delete per
//! family. A group of engine batches is one `WriteBatch`: atomic, and one WAL write (and one fsync
//! with [`FsyncPolicy::Always`]).

use std::path::{Path, PathBuf};

use cicada_engine::{StoreOp, StoredSession, StoredState, StoredSubscription};
use rocksdb::{
    ColumnFamily, ColumnFamilyDescriptor, IteratorMode, Options, WriteBatch, WriteOptions, DB,
};

use crate::record::{self, RecordError, SessionRecord};
use crate::{FsyncPolicy, Store, StoreError};

const SESSIONS: &str = "sessions";
const SUBSCRIPTIONS: &str = "subscriptions";
const MESSAGES: &str = "messages";
const INCOMING: &str = "incoming";
const RETAINED: &str = "retained";
/// A cluster node's raft log (key: the index, big-endian) and hard state (key: `RAFT_HARD_STATE`).
const RAFT: &str = "raft";
/// A cluster node's sessions' high-water marks (key: the session prefix and the origin node,
/// big-endian; value: incarnation and counter, big-endian).
const SEEN: &str = "seen";
/// A cluster node's sessions' move windows (key: the session prefix and 0, value: when it closes
/// and its floor; then one key per stamp taken: the prefix, 1 and the stamp, big-endian).
const WINDOWS: &str = "windows";
/// A cluster node's relays not yet acknowledged (key: the session prefix and the stamp,
/// big-endian; value: the message). Not a session's: deleting a session leaves them.
const RELAYS: &str = "relays";
/// A cluster node's sessions stored only as versions handed over (key: the client identifier,
/// value: empty). Deleting the session deletes its key.
const HANDED_OVER: &str = "handed_over";
const FAMILIES: [&str; 10] = [
    SESSIONS,
    SUBSCRIPTIONS,
    MESSAGES,
    INCOMING,
    RETAINED,
    RAFT,
    SEEN,
    WINDOWS,
    RELAYS,
    HANDED_OVER,
];
/// The hard state's key: sorts after every entry (whose keys are eight bytes, at most eight 0xff),
/// so no range deletion of entries reaches it.
const RAFT_HARD_STATE: &[u8] = b"\xff\xff\xff\xff\xff\xff\xff\xffhs";
/// The hard state's key in earlier builds: it sorted among the entries, and a truncation of the log
/// deleted it. Still read, never written.
const RAFT_HARD_STATE_OLD: &[u8] = b"hs";
/// The snapshot's key, after every entry as well.
const RAFT_SNAPSHOT: &[u8] = b"\xff\xff\xff\xff\xff\xff\xff\xffsnapshot";

/// RocksDB in a directory.
pub struct RocksStore {
    db: DB,
    path: PathBuf,
    write_options: WriteOptions,
}

impl std::fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl RocksStore {
    /// Opens (creating if needed) the database in `path`.
    pub fn open(path: &Path, fsync: FsyncPolicy) -> Result<RocksStore, StoreError> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        let families = FAMILIES
            .iter()
            .map(|name| ColumnFamilyDescriptor::new(*name, Options::default()));
        let db =
            DB::open_cf_descriptors(&options, path, families).map_err(|e| StoreError::Open {
                path: path.to_path_buf(),
                detail: e.into_string(),
            })?;
        let mut write_options = WriteOptions::default();
        write_options.set_sync(fsync == FsyncPolicy::Always);
        Ok(RocksStore {
            db,
            path: path.to_path_buf(),
            write_options,
        })
    }

    fn family(&self, name: &'static str) -> Result<&ColumnFamily, StoreError> {
        self.db.cf_handle(name).ok_or_else(|| StoreError::Open {
            path: self.path.clone(),
            detail: format!("column family `{name}` is missing"),
        })
    }

    fn corrupt(&self, family: &'static str, key: &[u8], e: RecordError) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            family,
            key: key.escape_ascii().to_string(),
            detail: e.to_string(),
        }
    }

    /// Calls `each` with every record of `family`, in key order.
    fn scan(
        &self,
        family: &'static str,
        mut each: impl FnMut(&[u8], &[u8]) -> Result<(), RecordError>,
    ) -> Result<(), StoreError> {
        let cf = self.family(family)?;
        for item in self.db.iterator_cf(cf, IteratorMode::Start) {
            let (key, value) = item.map_err(|e| StoreError::Read {
                path: self.path.clone(),
                detail: e.into_string(),
            })?;
            each(&key, &value).map_err(|e| self.corrupt(family, &key, e))?;
        }
        Ok(())
    }

    fn add_ops(&self, batch: &mut WriteBatch, ops: &[StoreOp]) -> Result<(), StoreError> {
        let sessions = self.family(SESSIONS)?;
        let subscriptions = self.family(SUBSCRIPTIONS)?;
        let messages = self.family(MESSAGES)?;
        let incoming = self.family(INCOMING)?;
        let raft = self.family(RAFT)?;
        let retained = self.family(RETAINED)?;
        let seen = self.family(SEEN)?;
        let windows = self.family(WINDOWS)?;
        let relays = self.family(RELAYS)?;
        let handed_over = self.family(HANDED_OVER)?;
        for op in ops {
            match op {
                StoreOp::PutSession {
                    client_id,
                    protocol,
                    expiry_interval,
                    offline_since,
                    will,
                } => batch.put_cf(
                    sessions,
                    client_id.as_bytes(),
                    record::encode_session(&SessionRecord {
                        protocol: *protocol,
                        expiry_interval: *expiry_interval,
                        offline_since: *offline_since,
                        will: will.clone(),
                    }),
                ),
                StoreOp::DeleteSession { client_id } => {
                    batch.delete_cf(sessions, client_id.as_bytes());
                    batch.delete_cf(handed_over, client_id.as_bytes());
                    let from = record::session_prefix(client_id);
                    let to = record::prefix_end(&from);
                    for cf in [subscriptions, messages, incoming, seen, windows] {
                        batch.delete_range_cf(cf, &from, &to);
                    }
                }
                StoreOp::PutSubscription {
                    client_id,
                    filter,
                    options,
                    id,
                } => batch.put_cf(
                    subscriptions,
                    record::subscription_key(client_id, filter),
                    record::encode_subscription(&StoredSubscription {
                        options: *options,
                        id: *id,
                    }),
                ),
                StoreOp::DeleteSubscription { client_id, filter } => {
                    batch.delete_cf(subscriptions, record::subscription_key(client_id, filter));
                }
                StoreOp::PutMessage { .. } => {
                    if let Some((client_id, seq, m)) = op.stored_message() {
                        batch.put_cf(
                            messages,
                            record::message_key(client_id, seq),
                            record::encode_stored_message(&m),
                        );
                    }
                }
                StoreOp::DeleteMessage { client_id, seq } => {
                    batch.delete_cf(messages, record::message_key(client_id, *seq));
                }
                StoreOp::PutIncoming {
                    client_id,
                    packet_id,
                } => batch.put_cf(incoming, record::incoming_key(client_id, *packet_id), []),
                StoreOp::DeleteIncoming {
                    client_id,
                    packet_id,
                } => batch.delete_cf(incoming, record::incoming_key(client_id, *packet_id)),
                StoreOp::PutSeen { client_id, stamp } => batch.put_cf(
                    seen,
                    record::seen_key(client_id, stamp.node),
                    record::encode_seen(stamp.incarnation, stamp.seq),
                ),
                StoreOp::PutWindow { client_id, window } => {
                    let from = record::session_prefix(client_id);
                    batch.delete_range_cf(windows, &from, &record::prefix_end(&from));
                    batch.put_cf(
                        windows,
                        record::window_key(client_id),
                        record::encode_window(window),
                    );
                    for (&(node, incarnation), seqs) in &window.taken {
                        for &seq in seqs {
                            let stamp = cicada_engine::Stamp {
                                node,
                                incarnation,
                                seq,
                            };
                            batch.put_cf(windows, record::taken_key(client_id, &stamp), []);
                        }
                    }
                }
                StoreOp::PutTaken { client_id, stamp } => {
                    batch.put_cf(windows, record::taken_key(client_id, stamp), []);
                }
                StoreOp::DeleteWindow { client_id } => {
                    let from = record::session_prefix(client_id);
                    batch.delete_range_cf(windows, &from, &record::prefix_end(&from));
                }
                StoreOp::PutRetained { message } => batch.put_cf(
                    retained,
                    message.topic.as_str().as_bytes(),
                    record::encode_message(message),
                ),
                StoreOp::DeleteRetained { topic } => {
                    batch.delete_cf(retained, topic.as_str().as_bytes());
                }
                StoreOp::PutRelay {
                    client_id,
                    stamp,
                    message,
                } => batch.put_cf(
                    relays,
                    record::relay_key(client_id, stamp),
                    record::encode_message(message),
                ),
                StoreOp::DeleteRelay { client_id, stamp } => {
                    batch.delete_cf(relays, record::relay_key(client_id, stamp));
                }
                StoreOp::PutHandedOver { client_id } => {
                    batch.put_cf(handed_over, client_id.as_bytes(), []);
                }
                StoreOp::PutRaftEntry { index, entry } => {
                    batch.put_cf(raft, index.to_be_bytes(), entry);
                }
                StoreOp::TruncateRaftLog { from } => {
                    batch.delete_range_cf(raft, from.to_be_bytes(), u64::MAX.to_be_bytes());
                    batch.delete_cf(raft, u64::MAX.to_be_bytes());
                }
                StoreOp::PutRaftHardState { hard_state } => {
                    batch.delete_cf(raft, RAFT_HARD_STATE_OLD);
                    batch.put_cf(raft, RAFT_HARD_STATE, hard_state);
                }
                StoreOp::PutRaftSnapshot { index, snapshot } => {
                    batch.put_cf(raft, RAFT_SNAPSHOT, snapshot);
                    batch.delete_range_cf(raft, 0u64.to_be_bytes(), (index + 1).to_be_bytes());
                }
            }
        }
        Ok(())
    }
}

impl Store for RocksStore {
    fn load(&mut self) -> Result<StoredState, StoreError> {
        let mut state = StoredState::default();
        self.scan(SESSIONS, |key, value| {
            let client_id = record::utf8(key, "client identifier")?;
            let s = record::decode_session(value)?;
            state.sessions.insert(
                client_id,
                StoredSession {
                    protocol: s.protocol,
                    expiry_interval: s.expiry_interval,
                    offline_since: s.offline_since,
                    will: s.will,
                    subscriptions: Default::default(),
                    messages: Default::default(),
                    incoming: Default::default(),
                    seen: Default::default(),
                    window: None,
                    next_packet_id: None,
                },
            );
            Ok(())
        })?;
        // Records of a session that is not stored cannot exist (a session's records go with it in
        // one range delete); if some did, the engine's fold would ignore them too.
        self.scan(SUBSCRIPTIONS, |key, value| {
            let (client_id, filter) = record::split_key(key)?;
            let filter = record::utf8(filter, "topic filter")?;
            let sub = record::decode_subscription(value)?;
            if let Some(s) = state.sessions.get_mut(&client_id) {
                s.subscriptions.insert(filter, sub);
            }
            Ok(())
        })?;
        self.scan(MESSAGES, |key, value| {
            let (client_id, rest) = record::split_key(key)?;
            let seq = record::seq_of(rest)?;
            let m = record::decode_stored_message(value)?;
            if let Some(s) = state.sessions.get_mut(&client_id) {
                s.messages.insert(seq, m);
            }
            Ok(())
        })?;
        self.scan(INCOMING, |key, _| {
            let (client_id, rest) = record::split_key(key)?;
            let packet_id = record::packet_id_of(rest)?;
            if let Some(s) = state.sessions.get_mut(&client_id) {
                s.incoming.insert(packet_id);
            }
            Ok(())
        })?;
        self.scan(SEEN, |key, value| {
            let (client_id, rest) = record::split_key(key)?;
            let node = record::node_of(rest)?;
            let mark = record::decode_seen(value)?;
            if let Some(s) = state.sessions.get_mut(&client_id) {
                s.seen.insert(node, mark);
            }
            Ok(())
        })?;
        // A window's head sorts before its stamps; a stamp without one (never written so: a
        // window's stamps go with it) would be ignored, as the engine's fold ignores it.
        self.scan(WINDOWS, |key, value| {
            let (client_id, rest) = record::split_key(key)?;
            let record = record::window_record_of(rest)?;
            let Some(s) = state.sessions.get_mut(&client_id) else {
                return Ok(());
            };
            match record {
                record::WindowRecord::Head => {
                    s.window = Some(Box::new(record::decode_window(value)?));
                }
                record::WindowRecord::Taken(stamp) => {
                    if let Some(w) = &mut s.window {
                        w.insert(stamp);
                    }
                }
            }
            Ok(())
        })?;
        self.scan(RETAINED, |key, value| {
            let message = record::decode_message(value)?;
            if message.topic.as_str().as_bytes() != key {
                return Err(RecordError::Invalid("retained message under another topic"));
            }
            // The key shares the message's topic rather than holding a copy of its own.
            state
                .retained
                .insert(message.topic.as_bytestring().clone(), message);
            Ok(())
        })?;
        self.scan(RELAYS, |key, value| {
            let (client_id, rest) = record::split_key(key)?;
            let stamp = record::stamp_of(rest)?;
            let message = record::decode_message(value)?;
            state.relays.insert((client_id, stamp), message);
            Ok(())
        })?;
        self.scan(HANDED_OVER, |key, _| {
            state
                .handed_over
                .insert(record::utf8(key, "client identifier")?);
            Ok(())
        })?;
        self.scan(RAFT, |key, value| {
            let value = bytes::Bytes::copy_from_slice(value);
            if key == RAFT_HARD_STATE || key == RAFT_HARD_STATE_OLD {
                state.raft.hard_state = Some(value);
                return Ok(());
            }
            if key == RAFT_SNAPSHOT {
                state.raft.snapshot = Some(value);
                return Ok(());
            }
            let index: [u8; 8] = key
                .try_into()
                .map_err(|_| RecordError::Invalid("raft entry key is not eight bytes"))?;
            state.raft.entries.insert(u64::from_be_bytes(index), value);
            Ok(())
        })?;
        Ok(state)
    }

    fn write(&mut self, batches: &[Vec<StoreOp>]) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        for ops in batches {
            self.add_ops(&mut batch, ops)?;
        }
        self.db
            .write_opt(batch, &self.write_options)
            .map_err(|e| StoreError::Write {
                path: self.path.clone(),
                detail: e.into_string(),
            })
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        self.db.flush_wal(true).map_err(|e| StoreError::Write {
            path: self.path.clone(),
            detail: e.into_string(),
        })
    }
}
