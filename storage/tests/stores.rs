//! Both stores load exactly what the engine's fold of its batches holds, across reopening, and a
//! damaged record is a clear error, never a silent wipe.

use std::time::Duration;

use bytes::Bytes;
use cicada_engine::codec::{
    Ack, Packet, ProtocolVersion, Publish, QoS, TopicName, Will, WillProperties,
};
use cicada_engine::sim::Sim;
use cicada_engine::{Config, Event, StoreOp, StoredState};
use cicada_storage::{FsyncPolicy, MemoryStore, RocksStore, Store, StoreError};

/// Runs a busy scenario through the engine and returns every batch it emitted, in order.
fn engine_batches() -> (Vec<Vec<StoreOp>>, StoredState) {
    let mut sim = Sim::new(Config::default());
    let v5 = ProtocolVersion::V5;
    let persistent = |name: &str, expiry: u32| {
        let mut c = Sim::connect_packet(name, v5);
        c.clean_start = false;
        c.properties.session_expiry_interval = Some(expiry);
        c
    };
    let mut with_will = persistent("w", 600);
    let mut will = Will {
        topic: TopicName::new("will/w").expect("valid"),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: WillProperties::default(),
    };
    will.properties.will_delay_interval = Some(3000);
    will.properties.content_type = Some("text/plain".into());
    with_will.will = Some(will);
    sim.connect_with("w", with_will);
    sim.connect_with("s1", persistent("s1", 3600));
    sim.subscribe("s1", "t/#", QoS::ExactlyOnce);
    sim.subscribe("s1", "other/+", QoS::AtLeastOnce);
    let mut v3 = Sim::connect_packet("s2", ProtocolVersion::V3_1_1);
    v3.clean_start = false;
    sim.connect_with("s2", v3);
    sim.subscribe("s2", "t/+", QoS::AtLeastOnce);
    sim.connect_with("p", persistent("p", 60));
    for i in 0..20 {
        let qos = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce][i % 3];
        sim.publish("p", &format!("t/{i}"), qos, &format!("m{i}"));
    }
    // s1 completes some flows, then goes offline and gets more queued.
    for packet in sim.recv_all("s1").into_iter().take(6) {
        if let Packet::Publish(p) = packet {
            match p.delivery.packet_id() {
                Some(id) if p.qos() == QoS::ExactlyOnce => {
                    sim.send("s1", Packet::PubRec(Ack::new(id)))
                }
                Some(id) => sim.send("s1", Packet::PubAck(Ack::new(id))),
                None => {}
            }
        }
    }
    sim.drop_connection("s1");
    sim.drop_connection("w");
    // A QoS 2 publish the broker holds the packet id of (PUBREL not sent yet).
    let mut p = Publish::new(
        TopicName::new("t/x").expect("valid"),
        Bytes::from_static(b"q2"),
    );
    p.delivery = cicada_engine::codec::Delivery::ExactlyOnce(sim.next_packet_id("p"));
    sim.send("p", Packet::Publish(p));
    for (topic, payload) in [("r/1", "a"), ("r/2", "b"), ("r/1", "c"), ("r/2", "")] {
        let mut p = Publish::new(
            TopicName::new(topic).expect("valid"),
            Bytes::from(payload.to_string()),
        );
        p.retain = true;
        sim.send("p", Packet::Publish(p));
    }
    sim.publish("p", "other/x", QoS::AtLeastOnce, "queued for s1");
    sim.advance(Duration::from_secs(1));
    // A session that ends: its records must go.
    sim.connect_with("gone", persistent("gone", 100));
    sim.subscribe("gone", "t/#", QoS::AtLeastOnce);
    sim.publish("p", "t/last", QoS::AtLeastOnce, "last");
    let mut d = cicada_engine::codec::Disconnect::new(cicada_engine::codec::ReasonCode::Success);
    d.properties.session_expiry_interval = Some(0);
    sim.send("gone", Packet::Disconnect(d));
    sim.advance(Duration::from_secs(5));

    let batches: Vec<Vec<StoreOp>> = sim
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Persist { ops, .. } => Some(ops.clone()),
            _ => None,
        })
        .collect();
    (batches, sim.durable.clone())
}

#[test]
fn rocksdb_loads_what_the_engine_stored_after_reopening() {
    let (batches, expected) = engine_batches();
    assert!(!expected.sessions.is_empty() && !expected.retained.is_empty());
    assert!(
        expected.sessions.values().any(|s| !s.messages.is_empty()),
        "the scenario stores messages"
    );
    assert!(expected.sessions.values().any(|s| !s.incoming.is_empty()));
    assert!(expected.sessions.values().any(|s| s.will.is_some()));
    assert!(!expected.sessions.contains_key("gone"));
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let mut store = RocksStore::open(dir.path(), FsyncPolicy::Always).expect("opens");
        assert_eq!(store.load().expect("loads"), StoredState::default());
        // In groups of varying size, as the shell's group commit would.
        for group in batches.chunks(3) {
            store.write(group).expect("writes");
        }
        store.sync().expect("syncs");
    }
    let mut store = RocksStore::open(dir.path(), FsyncPolicy::Never).expect("reopens");
    assert_eq!(store.load().expect("loads"), expected);

    let mut memory = MemoryStore::new();
    memory.write(&batches).expect("writes");
    assert_eq!(memory.load().expect("loads"), expected);
}

#[test]
fn deleting_a_session_leaves_other_sessions_whose_ids_share_a_prefix() {
    let (batches, _) = engine_batches();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut store = RocksStore::open(dir.path(), FsyncPolicy::Never).expect("opens");
    let mut memory = MemoryStore::new();
    // Store session "s1" as "a" and as "ab", then delete "a": "ab" must be intact.
    for id in ["a", "ab"] {
        let renamed: Vec<Vec<StoreOp>> = batches
            .iter()
            .map(|ops| ops.iter().filter_map(|op| rename(op, "s1", id)).collect())
            .collect();
        store.write(&renamed).expect("writes");
        memory.write(&renamed).expect("writes");
    }
    let delete = vec![vec![StoreOp::DeleteSession {
        client_id: "a".into(),
    }]];
    store.write(&delete).expect("writes");
    memory.write(&delete).expect("writes");
    let loaded = store.load().expect("loads");
    assert!(!loaded.sessions.contains_key("a"));
    assert!(!loaded.sessions["ab"].messages.is_empty());
    assert!(!loaded.sessions["ab"].subscriptions.is_empty());
    assert_eq!(loaded, memory.load().expect("loads"));
}

#[test]
fn a_cluster_sessions_high_water_marks_survive_reopening_and_go_with_the_session() {
    let (_, mut state) = engine_batches();
    let mut session = state.sessions.remove("s1").expect("s1 is stored");
    session.seen.insert(2, (77, 41));
    session.seen.insert(3, (5, 9));
    // Stored the way a node stores a session handed over to it, then one more mark.
    let mut ops = session.ops(&"roamer".into());
    ops.push(StoreOp::PutSeen {
        client_id: "roamer".into(),
        stamp: cicada_engine::Stamp {
            node: 2,
            incarnation: 77,
            seq: 42,
        },
    });
    session.seen.insert(2, (77, 42));
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let mut store = RocksStore::open(dir.path(), FsyncPolicy::Always).expect("opens");
        store.write(&[ops.clone()]).expect("writes");
    }
    let mut store = RocksStore::open(dir.path(), FsyncPolicy::Never).expect("reopens");
    let loaded = store.load().expect("loads");
    assert_eq!(loaded.sessions.get("roamer"), Some(&session));
    let mut memory = MemoryStore::new();
    memory.write(&[ops]).expect("writes");
    assert_eq!(memory.load().expect("loads"), loaded);

    let delete = vec![vec![StoreOp::DeleteSession {
        client_id: "roamer".into(),
    }]];
    store.write(&delete).expect("writes");
    let mut again = store.load().expect("loads");
    assert!(again.sessions.is_empty());
    // Marks written under no session are dropped at load, like every other orphan record.
    store
        .write(&[vec![StoreOp::PutSeen {
            client_id: "nobody".into(),
            stamp: cicada_engine::Stamp {
                node: 1,
                incarnation: 1,
                seq: 1,
            },
        }]])
        .expect("writes");
    again = store.load().expect("loads");
    assert!(again.sessions.is_empty());
}

#[test]
fn a_cluster_sessions_move_window_survives_reopening_until_it_closes() {
    let (_, mut state) = engine_batches();
    let mut session = state.sessions.remove("s1").expect("s1 is stored");
    let stamp = |incarnation, seq| cicada_engine::Stamp {
        node: 2,
        incarnation,
        seq,
    };
    let mut window = cicada_engine::TakenSince {
        until: Some(cicada_engine::Instant::from_micros(9_000_000)),
        ..Default::default()
    };
    window.floor.insert((2, 77), 40);
    window.floor.insert((3, 5), 9);
    window.insert(stamp(77, 45));
    session.window = Some(Box::new(window));
    // Stored the way a node stores a session and the window it opened, then two more taken (one
    // of another incarnation of the origin, which has no floor).
    let mut ops = session.ops(&"roamer".into());
    for s in [stamp(77, 43), stamp(78, 1)] {
        ops.push(StoreOp::PutTaken {
            client_id: "roamer".into(),
            stamp: s,
        });
        session.window.as_mut().expect("a window").insert(s);
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let mut store = RocksStore::open(dir.path(), FsyncPolicy::Always).expect("opens");
    let mut memory = MemoryStore::new();
    let mut write = |ops: Vec<StoreOp>, store: &mut RocksStore| {
        store.write(std::slice::from_ref(&ops)).expect("writes");
        memory.write(&[ops]).expect("writes");
        let loaded = store.load().expect("loads");
        assert_eq!(memory.load().expect("loads"), loaded, "the fold agrees");
        loaded
    };
    write(ops, &mut store);
    drop(store);
    let mut store = RocksStore::open(dir.path(), FsyncPolicy::Never).expect("reopens");
    let loaded = store.load().expect("loads");
    assert_eq!(loaded.sessions.get("roamer"), Some(&session));
    let taken = &loaded.sessions["roamer"]
        .window
        .as_ref()
        .expect("kept")
        .taken;
    assert_eq!(taken[&(2, 77)].len(), 2);

    // A window opened again replaces the one before, stamps and all.
    let fresh = cicada_engine::TakenSince {
        until: Some(cicada_engine::Instant::from_micros(20_000_000)),
        ..Default::default()
    };
    let put = StoreOp::PutWindow {
        client_id: "roamer".into(),
        window: Box::new(fresh.clone()),
    };
    let loaded = write(vec![put], &mut store);
    assert_eq!(loaded.sessions["roamer"].window.as_deref(), Some(&fresh));

    // Closed, it is gone, and a stamp taken after (never written so) finds no window.
    let close = vec![
        StoreOp::DeleteWindow {
            client_id: "roamer".into(),
        },
        StoreOp::PutTaken {
            client_id: "roamer".into(),
            stamp: stamp(77, 50),
        },
    ];
    let loaded = write(close, &mut store);
    assert_eq!(loaded.sessions["roamer"].window, None);
    assert_eq!(
        loaded.sessions["roamer"].seen, session.seen,
        "the rest stays"
    );
}

#[test]
fn a_cluster_nodes_relays_survive_reopening_until_acknowledged_and_outlive_their_session() {
    let (batches, state) = engine_batches();
    let message = state.sessions["s1"]
        .messages
        .values()
        .next()
        .expect("s1 holds a message")
        .message
        .clone();
    let stamp = |seq| cicada_engine::Stamp {
        node: 3,
        incarnation: 9,
        seq,
    };
    let relay = |client: &str, seq| StoreOp::PutRelay {
        client_id: client.into(),
        stamp: stamp(seq),
        message: message.clone(),
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let store = RocksStore::open(dir.path(), FsyncPolicy::Always).expect("opens");
    let mut memory = MemoryStore::new();
    let mut ops = batches;
    // Relays for a stored session and for one this node never held; then the stored session
    // goes (it was handed over): its relays stay, they are this node's.
    ops.push(vec![relay("s1", 4), relay("s1", 5), relay("elsewhere", 1)]);
    ops.push(vec![StoreOp::DeleteSession {
        client_id: "s1".into(),
    }]);
    let (mut store, loaded) = write_and_reopen(dir.path(), store, &mut memory, &ops);
    let keys: Vec<_> = loaded.relays.keys().cloned().collect();
    assert_eq!(
        keys,
        vec![
            ("elsewhere".into(), stamp(1)),
            ("s1".into(), stamp(4)),
            ("s1".into(), stamp(5)),
        ]
    );
    assert_eq!(loaded.relays[&("s1".into(), stamp(4))], message);

    // Acknowledged, one goes; the others stay.
    let ack = vec![StoreOp::DeleteRelay {
        client_id: "s1".into(),
        stamp: stamp(4),
    }];
    store.write(std::slice::from_ref(&ack)).expect("writes");
    memory.write(&[ack]).expect("writes");
    let loaded = store.load().expect("loads");
    assert_eq!(memory.load().expect("loads"), loaded, "the fold agrees");
    assert_eq!(loaded.relays.len(), 2);
    assert!(!loaded.relays.contains_key(&("s1".into(), stamp(4))));
}

#[test]
fn a_session_kept_as_handed_over_is_marked_so_until_it_is_deleted() {
    let (batches, _) = engine_batches();
    let dir = tempfile::tempdir().expect("temp dir");
    let store = RocksStore::open(dir.path(), FsyncPolicy::Always).expect("opens");
    let mut memory = MemoryStore::new();
    let mut ops = batches;
    ops.push(vec![StoreOp::PutHandedOver {
        client_id: "s1".into(),
    }]);
    let (store, loaded) = write_and_reopen(dir.path(), store, &mut memory, &ops);
    assert!(loaded.sessions.contains_key("s1"), "its records stay");
    assert_eq!(loaded.handed_over, ["s1".into()].into());

    let delete = vec![vec![StoreOp::DeleteSession {
        client_id: "s1".into(),
    }]];
    let (_, loaded) = write_and_reopen(dir.path(), store, &mut memory, &delete);
    assert!(!loaded.sessions.contains_key("s1"));
    assert!(loaded.handed_over.is_empty(), "deleted with the session");
}

/// Writes `ops` to `store` and `memory`, reopens the RocksDB store in `dir` and loads it: what it
/// loads is what the in-memory fold holds.
fn write_and_reopen(
    dir: &std::path::Path,
    mut store: RocksStore,
    memory: &mut MemoryStore,
    ops: &[Vec<StoreOp>],
) -> (RocksStore, StoredState) {
    store.write(ops).expect("writes");
    memory.write(ops).expect("writes");
    drop(store);
    let mut store = RocksStore::open(dir, FsyncPolicy::Always).expect("reopens");
    let loaded = store.load().expect("loads");
    assert_eq!(memory.load().expect("loads"), loaded, "the fold agrees");
    (store, loaded)
}

/// `op` for session `from` with its client identifier replaced by `to`; `None` for other sessions'
/// operations.
fn rename(op: &StoreOp, from: &str, to: &str) -> Option<StoreOp> {
    let mut op = op.clone();
    match &mut op {
        StoreOp::PutSession { client_id, .. }
        | StoreOp::DeleteSession { client_id }
        | StoreOp::PutSubscription { client_id, .. }
        | StoreOp::DeleteSubscription { client_id, .. }
        | StoreOp::PutMessage { client_id, .. }
        | StoreOp::DeleteMessage { client_id, .. }
        | StoreOp::PutIncoming { client_id, .. }
        | StoreOp::DeleteIncoming { client_id, .. }
        | StoreOp::PutSeen { client_id, .. }
        | StoreOp::PutWindow { client_id, .. }
        | StoreOp::PutTaken { client_id, .. }
        | StoreOp::DeleteWindow { client_id } => {
            if client_id != from {
                return None;
            }
            *client_id = to.into();
        }
        StoreOp::PutRetained { .. }
        | StoreOp::DeleteRetained { .. }
        | StoreOp::PutRelay { .. }
        | StoreOp::DeleteRelay { .. }
        | StoreOp::PutHandedOver { .. }
        | StoreOp::PutRaftEntry { .. }
        | StoreOp::TruncateRaftLog { .. }
        | StoreOp::PutRaftSnapshot { .. }
        | StoreOp::PutRaftHardState { .. } => {}
    }
    Some(op)
}

#[test]
fn a_damaged_record_is_an_error_naming_the_directory_and_nothing_is_wiped() {
    let (batches, _) = engine_batches();
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let mut store = RocksStore::open(dir.path(), FsyncPolicy::Always).expect("opens");
        store.write(&batches).expect("writes");
    }
    // Damage one message record behind the store's back.
    {
        let mut options = rocksdb::Options::default();
        options.create_if_missing(false);
        let families = [
            "sessions",
            "subscriptions",
            "messages",
            "incoming",
            "retained",
            "raft",
            "seen",
            "windows",
            "relays",
            "handed_over",
        ];
        let db = rocksdb::DB::open_cf(&options, dir.path(), families).expect("opens raw");
        let cf = db.cf_handle("messages").expect("family");
        let key = db
            .iterator_cf(cf, rocksdb::IteratorMode::Start)
            .next()
            .expect("a message")
            .expect("readable")
            .0;
        db.put_cf(cf, &key, b"\x01\x07garbage").expect("writes");
    }
    let mut store = RocksStore::open(dir.path(), FsyncPolicy::Always).expect("opens");
    let err = store.load().expect_err("damaged");
    assert!(
        matches!(
            err,
            StoreError::Corrupt {
                family: "messages",
                ..
            }
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains(&dir.path().display().to_string()), "{text}");
    assert!(text.contains("move it aside"), "{text}");
    // Still there: loading again reports the same, nothing was deleted.
    assert!(matches!(store.load(), Err(StoreError::Corrupt { .. })));
}

#[test]
fn a_directory_that_cannot_be_opened_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").expect("writes");
    let err = RocksStore::open(&file, FsyncPolicy::Always).expect_err("a file");
    let text = err.to_string();
    assert!(text.contains("not-a-dir"), "{text}");
    assert!(text.contains("server.data_dir"), "{text}");
}

#[test]
fn a_cluster_nodes_raft_log_survives_reopening_with_truncations_and_snapshots_applied() {
    let entry = |i: u64, tag: &'static str| StoreOp::PutRaftEntry {
        index: i,
        entry: Bytes::from(format!("{tag}{i}")),
    };
    let batches = vec![
        vec![entry(1, "a"), entry(2, "a"), entry(3, "a")],
        vec![
            StoreOp::PutRaftHardState {
                hard_state: Bytes::from_static(b"term 2"),
            },
            // A new leader overwrote the log from 2 on.
            StoreOp::TruncateRaftLog { from: 2 },
            entry(2, "b"),
        ],
        vec![StoreOp::PutRaftHardState {
            hard_state: Bytes::from_static(b"term 3"),
        }],
        // A truncation alone leaves the hard state be.
        vec![
            entry(3, "b"),
            entry(4, "b"),
            StoreOp::TruncateRaftLog { from: 4 },
        ],
        // A snapshot at 1 drops the entries up to it.
        vec![StoreOp::PutRaftSnapshot {
            index: 1,
            snapshot: Bytes::from_static(b"state at 1"),
        }],
    ];
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let mut store = RocksStore::open(dir.path(), FsyncPolicy::Always).expect("opens");
        store.write(&batches).expect("writes");
    }
    let mut store = RocksStore::open(dir.path(), FsyncPolicy::Never).expect("reopens");
    let loaded = store.load().expect("loads");
    assert_eq!(loaded.raft.hard_state, Some(Bytes::from_static(b"term 3")));
    let entries: Vec<_> = loaded.raft.entries.values().cloned().collect();
    assert_eq!(entries, vec![Bytes::from("b2"), Bytes::from("b3")]);
    assert_eq!(
        loaded.raft.snapshot,
        Some(Bytes::from_static(b"state at 1"))
    );
    let mut memory = MemoryStore::new();
    memory.write(&batches).expect("writes");
    assert_eq!(memory.load().expect("loads"), loaded);
}
