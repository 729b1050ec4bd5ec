//! Every recorded trace replayed against the engine: the broker side must match the recording (after
//! the normalisation described in `cicada_conformance::replay`), and the replay's transcript is an insta
//! snapshot (`cargo insta review` after a deliberate change).

use cicada_conformance::replay::{compare, expected, replay_engine};
use cicada_conformance::trace::{describe, Dir, Trace, What};
use cicada_engine::codec::{Packet, ProtocolVersion};

fn load(path: &std::path::Path) -> Trace {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Trace::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn traces_replay_against_the_engine() {
    let failures = std::cell::RefCell::new(Vec::new());
    insta::glob!("../traces", "*.trace", |path| {
        let trace = load(path);
        let replay = replay_engine(&trace).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        match compare(&expected(&trace), &replay.observed) {
            Ok(()) => insta::assert_snapshot!(replay.transcript),
            Err(diff) => failures.borrow_mut().push(format!(
                "{}: the engine's broker side differs from the recording\n{diff}--- replay ---\n{}",
                path.display(),
                replay.transcript
            )),
        }
    });
    let failures = failures.into_inner();
    assert!(
        failures.is_empty(),
        "{} trace(s) differ:\n\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The rendering stored in each trace line is what our codec makes of the line's raw bytes today: a
/// codec change that alters how a recorded packet decodes shows up here, not silently in a replay.
#[test]
fn trace_renderings_match_their_raw_bytes() {
    insta::glob!("../traces", "*.trace", |path| {
        let trace = load(path);
        let mut versions = std::collections::BTreeMap::new();
        for e in &trace.events {
            if let What::Bytes { dir, raw, text } = &e.what {
                let version = *versions.get(&e.conn).unwrap_or(&ProtocolVersion::V3_1_1);
                let (now, packet) = describe(raw, version);
                if let (Dir::ToBroker, Some(Packet::Connect(c))) = (dir, &packet) {
                    versions.entry(e.conn).or_insert(c.protocol);
                }
                assert_eq!(&now, text, "{}: {} at {:?}", path.display(), e.conn, e.at);
            }
        }
    });
}
