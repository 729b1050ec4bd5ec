//! The cluster under a deterministic simulation: 3–5 engines, a seeded hostile network, crashes that
//! lose unconfirmed writes, partitions and clock jumps; invariants checked after every step.
//!
//! A failing seed prints its log; replay it with `CICADA_SIM_SEED=<seed> cargo test -p cicada-engine
//! --test cluster_sim seeds`. `CICADA_SIM_SEEDS=<n>` runs more seeds (default 200),
//! starting from `CICADA_SIM_FROM=<seed>` (default 0). `CICADA_SIM_LOG=1` prints the log of every
//! seed, passing or not.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use cicada_engine::cluster_sim::{ClusterSim, Faults};
use cicada_engine::codec::{QoS, TopicName};
use cicada_engine::{Config, Input, MemberAddress};

fn config() -> Config {
    Config {
        durable: true,
        ..Config::default()
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

/// The leader of an `n`-node simulation, and the other nodes.
fn leader_and_others(sim: &ClusterSim, n: u16) -> (u16, Vec<u16>) {
    let leader = *leaders(sim).iter().next().expect("a leader");
    (leader, (1..=n).filter(|id| *id != leader).collect())
}

fn leaders(sim: &ClusterSim) -> BTreeSet<u16> {
    sim.live()
        .into_iter()
        .filter(|id| {
            sim.engine(*id)
                .and_then(|e| e.cluster_stats())
                .is_some_and(|s| s.leader)
        })
        .collect()
}

#[test]
fn three_nodes_elect_route_retain_and_take_over() {
    let mut sim = ClusterSim::new(3, &config(), 1);
    sim.run(secs(3));
    assert_eq!(leaders(&sim).len(), 1, "one leader\n{}", sim.log());

    sim.connect("sub", 1);
    sim.run(ms(100));
    sim.subscribe("sub", "t/#", QoS::AtLeastOnce);
    sim.connect("pub", 2);
    sim.run(ms(300));
    assert!(sim.clients["sub"].connected && sim.clients["pub"].connected);

    sim.publish("pub", "t/1", QoS::AtLeastOnce, false, "hello");
    sim.run(ms(100));
    assert_eq!(sim.clients["pub"].acked, vec![Bytes::from("hello")]);
    let got: Vec<_> = sim.clients["sub"]
        .received
        .iter()
        .map(|(_, p)| p.clone())
        .collect();
    assert_eq!(got, vec![Bytes::from("hello")], "{}", sim.log());

    // Retained converges on every node.
    sim.publish("pub", "r/a", QoS::AtLeastOnce, true, "kept");
    sim.run(ms(300));
    let topic = TopicName::new("r/a").expect("topic");
    for id in 1..=3 {
        let kept = sim.engine(id).and_then(|e| e.retained(&topic));
        assert_eq!(
            kept.map(|m| m.payload.clone()),
            Some(Bytes::from("kept")),
            "node {id}"
        );
    }

    // The same client id connecting to node 3 takes the session over from node 1.
    let start = sim.now();
    sim.connect("sub", 3);
    let mut taken = None;
    sim.run_checked(secs(1), &mut |s| {
        if taken.is_none()
            && s.clients["sub"].connected
            && s.engine(1).expect("up").session("sub").is_none()
        {
            taken = Some(s.now());
        }
    });
    let took = taken.expect("taken over").saturating_duration_since(start);
    assert!(took < ms(200), "takeover took {took:?}\n{}", sim.log());
    assert_eq!(sim.clients["sub"].node, Some(3));
    for id in 1..=3 {
        assert_eq!(
            sim.engine(id).expect("up").cluster_owner("sub"),
            Some(3),
            "node {id}"
        );
    }
}

#[test]
fn a_minority_node_refuses_new_clients_until_the_claim_can_commit() {
    let mut sim = ClusterSim::new(3, &config(), 2);
    sim.run(secs(3));
    sim.partition(1, &[2, 3]);
    sim.run(secs(3));
    sim.connect("lonely", 1);
    sim.run(secs(6));
    assert!(!sim.clients["lonely"].connected, "{}", sim.log());
    assert!(
        sim.engine(1)
            .expect("up")
            .cluster_stats()
            .expect("up")
            .claims_timed_out
            >= 1
    );
    sim.heal();
    sim.run(secs(3));
    sim.connect("lonely", 1);
    sim.run(ms(500));
    assert!(sim.clients["lonely"].connected, "{}", sim.log());
}

#[test]
fn a_crashed_node_restarts_from_its_log_and_catches_up() {
    let mut sim = ClusterSim::new(3, &config(), 3);
    sim.run(secs(3));
    sim.connect("a", 1);
    sim.run(ms(200));
    sim.crash(3);
    sim.connect("b", 2);
    sim.publish("a", "r/x", QoS::AtLeastOnce, true, "while-3-was-down");
    sim.run(secs(1));
    sim.restart(3);
    sim.run(secs(3));
    let e3 = sim.engine(3).expect("up");
    assert_eq!(e3.cluster_owner("a"), Some(1));
    assert_eq!(e3.cluster_owner("b"), Some(2));
    let kept = e3.retained(&TopicName::new("r/x").expect("topic"));
    assert_eq!(
        kept.map(|m| m.payload.clone()),
        Some(Bytes::from("while-3-was-down"))
    );
}

fn payloads(sim: &ClusterSim, name: &str) -> Vec<String> {
    sim.clients[name]
        .received
        .iter()
        .map(|(_, p)| String::from_utf8_lossy(p).into_owned())
        .collect()
}

fn stats(sim: &ClusterSim, id: u16) -> cicada_engine::ClusterStats {
    sim.engine(id)
        .and_then(|e| e.cluster_stats())
        .expect("a live cluster node")
}

#[test]
fn a_persistent_session_follows_its_client_to_another_node() {
    let mut sim = roamer_online_on_node_1(11);
    sim.publish("pub", "q2/a", QoS::ExactlyOnce, false, "online");
    sim.run(ms(100));
    assert_eq!(payloads(&sim, "roamer"), ["online"], "{}", sim.log());

    // Offline: node 1 queues for it.
    sim.drop_connection("roamer");
    sim.run(ms(50));
    publish_q2(&mut sim, "queued", 3);
    sim.run(ms(100));
    assert_eq!(
        sim.engine(1)
            .and_then(|e| e.session("roamer"))
            .map(|s| s.queued),
        Some(3),
        "{}",
        sim.log()
    );

    // It comes back on node 3: the session, its queue and its subscription come along.
    let took = resume_timed(&mut sim, 3, secs(1));
    assert!(took < ms(200), "handover took {took:?}\n{}", sim.log());
    assert_resumed_with(&sim, &["online", "queued0", "queued1", "queued2"]);
    assert!(sim.engine(1).expect("up").session("roamer").is_none());
    assert_eq!(stats(&sim, 1).handovers_sent, 1);
    assert_eq!(stats(&sim, 3).handovers_received, 1);

    // Its subscription now lives on node 3.
    settle(&mut sim, &[(3, "q2/#")], 11);
    sim.publish("pub", "q2/a", QoS::ExactlyOnce, false, "after");
    sim.run(ms(200));
    assert_eq!(
        payloads(&sim, "roamer").last().map(String::as_str),
        Some("after")
    );
}

/// A publish every 2 ms while the roamer moves from node 1 to node 3: each acknowledged message
/// reaches it, once and in order. Before, node 1's interest went with the handover and node 3's
/// came only once its own entry applied; what was published in between reached no node that held
/// the session. Now the claim routes the session's filters to node 3 at once, and node 3 keeps
/// what arrives before the session does.
#[test]
fn messages_published_while_a_session_moves_reach_it() {
    let mut sim = roamer_offline_on_node_1(59);
    sim.connect_session("roamer", 3);
    for i in 0..60 {
        let payload = format!("m{i}");
        sim.publish("pub", "q2/a", QoS::ExactlyOnce, false, &payload);
        sim.run_checked(ms(2), &mut |s| s.check());
    }
    sim.run_checked(secs(2), &mut |s| s.check());
    assert!(sim.clients["roamer"].session_present, "{}", sim.log());
    assert_eq!(sim.clients["pub"].acked.len(), 60, "{}", sim.log());
    let sent: Vec<String> = (0..60).map(|i| format!("m{i}")).collect();
    assert_eq!(payloads(&sim, "roamer"), sent, "{}", sim.log());
}

/// A message routed to the roamer's old node before the publisher's node applied the move, held
/// up on that link until after the handover: the old node relays it to the new one, where the
/// roamer gets it once, after the message published later that went there directly.
#[test]
fn a_message_that_reaches_the_old_node_after_the_handover_is_relayed() {
    let mut sim = roamer_offline_on_node_1(63);
    // Node 1 still hears the log: the leader is not node 2.
    assert!(!leaders(&sim).contains(&2), "{}", sim.log());
    late_message_held_for_node_1(&mut sim);
    sim.heal();
    sim.run_checked(secs(2), &mut |s| s.check());
    assert_late_after_direct(&sim);
}

/// The roamer moves from node 1 to node 3 while a QoS 2 message ("late") routed to node 1 before
/// the move is held up on node 2's link to node 1; then "direct" reaches the roamer on node 3.
fn late_message_held_for_node_1(sim: &mut ClusterSim) {
    sim.mute(2, &[1]);
    sim.connect_session("roamer", 3);
    sim.publish("pub", "q2/a", QoS::ExactlyOnce, false, "late");
    sim.run_checked(ms(500), &mut |s| s.check());
    assert_eq!(stats(sim, 1).handovers_sent, 1, "{}", sim.log());
    assert!(sim.clients["roamer"].connected, "{}", sim.log());
    sim.publish("pub", "q2/a", QoS::ExactlyOnce, false, "direct");
    sim.run_checked(ms(200), &mut |s| s.check());
    assert_eq!(payloads(sim, "roamer"), ["direct"], "{}", sim.log());
}

/// The roamer got "late" once, after "direct", and its publisher was acknowledged.
fn assert_late_after_direct(sim: &ClusterSim) {
    assert_eq!(payloads(sim, "roamer"), ["direct", "late"], "{}", sim.log());
    let acked = &sim.clients["pub"].acked;
    assert!(acked.iter().any(|p| p == "late"), "{}", sim.log());
}

/// As above, but node 3 restarts after the direct message and before the late one is relayed:
/// the session's move window comes back from node 3's store, so the late message, below the mark
/// the direct one raised, is still judged by what the session took (seed 804: the window was in
/// memory only, and the marks dropped four such messages).
#[test]
fn a_move_window_survives_a_restart_of_the_node_holding_the_session() {
    let mut sim = roamer_offline_on_node_1(63);
    late_message_held_for_node_1(&mut sim);
    sim.crash(3);
    sim.restart(3);
    sim.run_checked(ms(300), &mut |s| s.check());
    sim.heal();
    sim.run_checked(secs(2), &mut |s| s.check());
    resume_checked(&mut sim, 3, secs(2), &["direct", "late"]);
    let acked = &sim.clients["pub"].acked;
    assert!(acked.iter().any(|p| p == "late"), "{}", sim.log());
}

/// As `a_message_that_reaches_the_old_node_after_the_handover_is_relayed`, but the old node
/// crashes after it relayed the late message and acknowledged it on its own link, before the relay
/// reached the new node: its store kept the relay, and it sends it again once restarted (seeds
/// 7840 and 8670: relays lost with their sender's crash).
#[test]
fn a_relay_survives_a_crash_of_the_node_that_sent_it() {
    let mut sim = roamer_offline_on_node_1(63);
    late_message_held_for_node_1(&mut sim);
    // The late message reaches node 1 now; its relay to node 3 does not.
    sim.heal();
    sim.mute(1, &[3]);
    sim.run_checked(ms(500), &mut |s| s.check());
    let relays = &sim.disk(1).relays;
    assert_eq!(relays.len(), 1, "stored: {relays:?}\n{}", sim.log());
    sim.crash(1);
    sim.restart(1);
    sim.heal();
    sim.run_checked(secs(2), &mut |s| s.check());
    assert_late_after_direct(&sim);
    assert!(sim.disk(1).relays.is_empty(), "{}", sim.log());
}

/// Five nodes led by node 4 (seed 1), the roamer offline on node 1: a cut between two others
/// leaves both heard by the leader, so neither is declared down.
fn roamer_offline_on_node_1_led_by_node_4() -> ClusterSim {
    let sim = roamer_offline_on_node_1_of(5, 1);
    assert_eq!(leaders(&sim), BTreeSet::from([4]), "{}", sim.log());
    sim
}

/// Runs for `d` (longer than a link waits for an acknowledgement): node `giving_up` gave up on a
/// link, and nobody was declared down.
fn outlast_the_link(sim: &mut ClusterSim, d: Duration, giving_up: u16) {
    sim.run_checked(d, &mut |s| s.check());
    assert!(
        stats(sim, giving_up).peer_drops > 0,
        "gave up: {}",
        sim.log()
    );
    assert_eq!(stats(sim, 4).nodes_down, 0, "{}", sim.log());
}

/// As `a_message_that_reaches_the_old_node_after_the_handover_is_relayed`, but the relay's link
/// stays cut (one way) for longer than a link waits for an acknowledgement, while the leader
/// (node 4 of five) hears both nodes, so neither is declared down: the old node gives up on the
/// link and sends the relay again, rather than dropping it.
#[test]
fn a_relay_outlasts_its_link_giving_up() {
    let mut sim = roamer_offline_on_node_1_led_by_node_4();
    late_message_held_for_node_1(&mut sim);
    sim.heal();
    sim.mute(1, &[3]);
    outlast_the_link(&mut sim, secs(25), 1);
    sim.heal();
    sim.run_checked(secs(2), &mut |s| s.check());
    assert_late_after_direct(&sim);
    assert!(sim.disk(1).relays.is_empty(), "{}", sim.log());
}

/// As `a_message_that_reaches_the_old_node_after_the_handover_is_relayed`, but the publisher's
/// link to the old node stays cut (one way) for longer than a link waits, while the leader (node
/// 4 of five) hears both nodes, so neither is declared down: the publisher's node gives up on the
/// message and relays it to the session's owner now itself, instead of dropping it (seed 62155:
/// dropped, it was acknowledged and lost).
#[test]
fn a_publish_given_up_on_reaches_the_session_that_moved_since() {
    let mut sim = roamer_offline_on_node_1_led_by_node_4();
    late_message_held_for_node_1(&mut sim);
    outlast_the_link(&mut sim, secs(25), 2);
    assert_late_after_direct(&sim);
    assert!(sim.disk(2).relays.is_empty(), "{}", sim.log());
}

/// The publisher's link to the roamer's node stays cut (one way) for longer than a link waits,
/// while the leader (node 4 of five) hears both nodes, so neither is declared down. The
/// publisher's node gives up on the message, acknowledges it once it stored a relay of it for the
/// roamer's session, which stayed where it was, and sends the relay again until that node
/// acknowledges it, after the heal (before, the message was acknowledged and lost).
#[test]
fn a_publish_given_up_on_reaches_the_session_that_stayed() {
    let mut sim = roamer_offline_on_node_1_led_by_node_4();
    sim.mute(2, &[1]);
    sim.publish("pub", "q2/a", QoS::ExactlyOnce, false, "cut");
    outlast_the_link(&mut sim, secs(25), 2);
    assert_eq!(sim.clients["pub"].acked, ["cut"], "{}", sim.log());
    assert_eq!(sim.disk(2).relays.len(), 1, "{}", sim.log());
    sim.heal();
    sim.run_checked(secs(2), &mut |s| s.check());
    assert!(sim.disk(2).relays.is_empty(), "{}", sim.log());
    resume_checked(&mut sim, 1, secs(2), &["cut"]);
}

/// The roamer moves from node 1 to node 3 while node 3 does not hear node 1 (a one-way cut) and
/// the leader (node 4 of five) hears both, so nobody is declared down. Node 3 takes the session
/// from its copy; node 1 keeps the session's records until its handover arrives, and relays a
/// message routed to it as the move committed. Both wait on the cut link for longer than a link
/// waits: node 1 gives up on them and sends them again, so after the heal the roamer gets the
/// message, once, and node 1's store lets the session go.
#[test]
fn a_handover_and_a_relay_outlast_their_link_giving_up() {
    let mut sim = roamer_offline_on_node_1_led_by_node_4();
    sim.mute(1, &[3]);
    sim.connect_session("roamer", 3);
    // Routed to node 1 as the claim commits, and reaching it after node 1 applied it.
    sim.run(ms(5));
    sim.publish("pub", "q2/a", QoS::ExactlyOnce, false, "late");
    sim.run_checked(secs(3), &mut |s| s.check());
    assert!(sim.clients["pub"].acked.iter().any(|p| p == "late"));
    assert_eq!(stats(&sim, 1).handovers_sent, 1, "{}", sim.log());
    assert_eq!(stats(&sim, 3).handover_timeouts, 1, "{}", sim.log());
    assert!(payloads(&sim, "roamer").is_empty(), "{}", sim.log());
    assert!(
        sim.disk(1).sessions.contains_key("roamer"),
        "kept until the handover arrives"
    );
    assert!(sim.disk(1).handed_over.contains("roamer"), "as handed over");
    outlast_the_link(&mut sim, secs(22), 1);
    sim.heal();
    sim.run_checked(secs(2), &mut |s| s.check());
    assert_eq!(payloads(&sim, "roamer"), ["late"], "{}", sim.log());
    assert!(
        !sim.disk(1).sessions.contains_key("roamer"),
        "{}",
        sim.log()
    );
    assert!(sim.disk(1).handed_over.is_empty(), "{}", sim.log());
}

/// The roamer's old node takes messages and writes them just before it applies the roamer's
/// move, and those writes commit after the move: the copies take them from the node that built
/// them, so when its handover dies with it in a crash, the new node's fail-over from its copy
/// still has them (seed 3818: they were left out, and four acknowledged messages were lost).
#[test]
fn writes_the_old_owner_made_before_the_move_reach_the_copies() {
    let mut sim = ClusterSim::new(3, &config(), 71);
    sim.run(secs(3));
    let (leader, others) = leader_and_others(&sim, 3);
    let (old, new) = (others[0], others[1]);
    sim.connect_session("roamer", old);
    sim.subscribe("roamer", "q2/#", QoS::ExactlyOnce);
    sim.connect("pub", leader);
    settle(&mut sim, &[(old, "q2/#")], 71);
    sim.drop_connection("roamer");
    sim.run(ms(50));
    // The handover never leaves the old node.
    sim.mute(old, &[new]);
    sim.connect_session("roamer", new);
    publish_q2(&mut sim, "w", 3);
    sim.run_checked(ms(100), &mut |s| s.check());
    assert_eq!(stats(&sim, old).handovers_sent, 1, "{}", sim.log());
    assert_eq!(sim.clients["pub"].acked.len(), 3, "{}", sim.log());
    sim.crash(old);
    sim.heal();
    sim.run_checked(secs(3), &mut |s| s.check());
    assert_resumed_with(&sim, &["w0", "w1", "w2"]);
}

/// Node 1 holds the roamer's session and is cut off while the roamer moves to node 3, then
/// catches up from a snapshot: it never applies the claim, so it never hands the session over
/// on that account, and node 3, waiting for it, has no interest in the session's filters yet.
/// Node 1 hands the session over when it finds it is another's, and routes the session's
/// filters to node 3 meanwhile, so a message published on node 1 right then reaches the roamer
/// (seed 13: it went nowhere and was acknowledged).
#[test]
fn a_node_that_learns_of_a_move_from_a_snapshot_hands_the_session_over() {
    let mut sim = ClusterSim::tuned(3, &config(), 29, |c| c.handover_timeout = secs(5));
    sim.run(secs(3));
    sim.connect_session("roamer", 1);
    sim.subscribe("roamer", "q2/#", QoS::ExactlyOnce);
    sim.connect("pub", 1);
    sim.connect("churn", 2);
    settle(&mut sim, &[(1, "q2/#")], 29);
    sim.drop_connection("roamer");
    sim.run(ms(50));
    sim.partition(1, &[2, 3]);
    sim.run(ms(300));
    sim.connect_session("roamer", 3);
    for _ in 0..300 {
        let owner = |id| sim.engine(id).and_then(|e| e.cluster_owner("roamer"));
        if owner(2) == Some(3) && owner(3) == Some(3) {
            break;
        }
        sim.run(ms(10));
    }
    assert_eq!(
        sim.engine(2).and_then(|e| e.cluster_owner("roamer")),
        Some(3)
    );
    // Enough log entries after the claim that node 1 gets a snapshot, not the entries.
    for i in 0..(3 * cicada_engine::cluster_sim::SNAPSHOT_ENTRIES) {
        let payload = format!("r{i}");
        sim.publish("churn", "r/churn", QoS::AtLeastOnce, true, &payload);
        sim.run(ms(20));
    }
    assert!(
        !sim.clients["roamer"].connected,
        "still waiting\n{}",
        sim.log()
    );
    assert_eq!(stats(&sim, 1).snapshots_received, 0, "{}", sim.log());
    sim.heal();
    for _ in 0..3000 {
        if stats(&sim, 1).snapshots_received > 0 {
            break;
        }
        sim.run(ms(1));
    }
    assert!(stats(&sim, 1).snapshots_received > 0, "{}", sim.log());
    sim.publish("pub", "q2/a", QoS::ExactlyOnce, false, "after");
    sim.run_checked(ms(500), &mut |s| s.check());
    assert!(sim.clients["roamer"].connected, "{}", sim.log());
    assert_eq!(stats(&sim, 3).handover_timeouts, 0, "{}", sim.log());
    assert_eq!(stats(&sim, 3).handovers_received, 1, "{}", sim.log());
    assert_eq!(sim.clients["pub"].acked, ["after"], "{}", sim.log());
    assert_eq!(payloads(&sim, "roamer"), ["after"], "{}", sim.log());
}

/// Node 1 holds the roamer's session and takes a message into it, but nobody hears node 1 any
/// more, so its write never commits and the copies lack the message. The roamer moves to node 3,
/// which takes the session from its copy at the deadline. Once node 1 is heard again, its
/// handover comes late; node 3 merges the message it lacks, by the stamp stored with it (seed
/// 165: such a handover was dropped, and the message with it, although acknowledged).
#[test]
fn a_late_handover_is_merged_into_the_session_taken_from_the_copy() {
    let mut sim = roamer_offline_on_node_1(67);
    let roamer = publish_held_on_muted_node_1(&mut sim);
    assert_eq!(roamer.map(|s| s.queued), Some(1), "{}", sim.log());
    held_reaches_the_roamer_on_node_3(&mut sim);
}

/// The roamer's node (cut off: it hears nobody, though the others hear it) keeps the session,
/// with "held" on its way to it, while the leader claims the client and waits for the session in
/// vain, keeping "kept", a later message of the same publisher. The roamer comes back to its
/// node, whose claim commits without it; it learns both claims from a snapshot, so the session
/// never left it. The leader passes the copy and "kept" on to it at its deadline; "held" comes
/// after "kept" (seed 67767: the marks "kept" raised refused "held", which was acknowledged and
/// lost).
#[test]
fn a_session_that_never_left_takes_what_its_claimant_kept_and_what_was_held_for_it() {
    let (mut sim, [leader, old, third]) =
        roamer_offline_off_the_leader(5, |c| c.handover_timeout = secs(4), |r| r[2]);
    sim.connect("churn", leader);
    sim.run(ms(100));
    sim.deafen(old, &[leader, third]);
    sim.publish("pub", "q2/a", QoS::ExactlyOnce, false, "held");
    sim.run(ms(20));
    sim.connect_session("roamer", leader);
    let owner = |sim: &ClusterSim, id| sim.engine(id).and_then(|e| e.cluster_owner("roamer"));
    for _ in 0..50 {
        if owner(&sim, third) == Some(leader) {
            break;
        }
        sim.run(ms(5));
    }
    assert_eq!(owner(&sim, third), Some(leader), "{}", sim.log());
    sim.publish("pub", "q2/a", QoS::ExactlyOnce, false, "kept");
    sim.run(ms(30));
    sim.connect_session("roamer", old);
    for _ in 0..50 {
        if owner(&sim, third) == Some(old) {
            break;
        }
        sim.run(ms(5));
    }
    assert_eq!(owner(&sim, third), Some(old), "{}", sim.log());
    // Enough log entries after the claim that the roamer's node gets a snapshot, not them.
    churn(&mut sim);
    assert_eq!(stats(&sim, old).snapshots_received, 0, "{}", sim.log());
    sim.heal();
    sim.mute(third, &[old]);
    sim.run_checked(secs(5), &mut |s| s.check());
    assert!(stats(&sim, old).snapshots_received > 0, "{}", sim.log());
    sim.heal();
    sim.run_checked(secs(2), &mut |s| s.check());
    let acked = &sim.clients["pub"].acked;
    assert!(acked.iter().any(|p| p == "held"), "{}", sim.log());
    assert_eq!(payloads(&sim, "roamer"), ["kept", "held"], "{}", sim.log());
}

/// Node 1 dies holding the roamer's session; "old" waits on the link to it. The roamer resumes on
/// node 3 from its copy and gets "new" (which waits for node 1 too: its interest stays). Node 1
/// comes back behind a snapshot, the roamer resumes there at once, and node 1 dies again before
/// it catches up (the write that ended its stale session is lost) and before node 3's handover
/// arrives. Back once more, node 1 gets that handover before it catches up: it is early, not
/// late, though its claim is of node 1's earlier incarnation. Then, from a snapshot, node 1 owns
/// the client by that claim and still has its session of long before in its store: it takes the
/// handover for the session rather than that. The roamer then moves to node 2, and what waited on
/// the link to node 1 goes there too: "old" once, "new" not again (seed 18563: node 1 took its
/// stale version for the session and handed it on without the marks of "new", which reached the
/// client twice; here, the handover was also merged into the stale version as late).
#[test]
fn a_restored_session_the_copies_went_past_is_waited_for_not_taken() {
    let seed = 4;
    let mut sim = roamer_offline_on_node_1(seed);
    assert_eq!(leaders(&sim), BTreeSet::from([3]), "{}", sim.log());
    sim.connect("churn", 3);
    sim.crash(1);
    sim.publish("pub", "q2/a", QoS::ExactlyOnce, false, "old");
    sim.run(ms(50));
    sim.connect_session("roamer", 3);
    sim.run_checked(secs(2), &mut |s| s.check());
    assert!(sim.clients["roamer"].connected, "{}", sim.log());
    assert_eq!(stats(&sim, 3).failovers, 1, "{}", sim.log());
    settle(&mut sim, &[(3, "q2/#")], seed);
    sim.publish("pub", "q2/a", QoS::ExactlyOnce, false, "new");
    sim.run_checked(ms(200), &mut |s| s.check());
    assert_eq!(payloads(&sim, "roamer"), ["new"], "{}", sim.log());
    sim.drop_connection("roamer");
    sim.run(ms(50));
    // Enough log entries that node 1 needs a snapshot to catch up.
    churn(&mut sim);
    // Node 1 hears the log from node 3 but nothing from node 2, the publisher's node.
    sim.deafen(1, &[2]);
    sim.restart(1);
    sim.connect_session("roamer", 1);
    let owner = |sim: &ClusterSim, id| sim.engine(id).and_then(|e| e.cluster_owner("roamer"));
    for _ in 0..100 {
        if owner(&sim, 3) == Some(1) {
            break;
        }
        sim.run(ms(1));
    }
    assert_eq!(owner(&sim, 3), Some(1), "{}", sim.log());
    sim.crash(1);
    churn(&mut sim);
    sim.restart(1);
    sim.run_checked(secs(2), &mut |s| s.check());
    assert!(stats(&sim, 1).snapshots_received > 0, "{}", sim.log());
    sim.connect_session("roamer", 2);
    sim.run_checked(secs(2), &mut |s| s.check());
    sim.heal();
    sim.run_checked(secs(3), &mut |s| s.check());
    assert!(sim.clients["roamer"].connected, "{}", sim.log());
    assert_eq!(payloads(&sim, "roamer"), ["new", "old"], "{}", sim.log());
}

/// "churn" publishes twice as many retained messages as a snapshot covers, 10 ms apart.
fn churn(sim: &mut ClusterSim) {
    for i in 0..(2 * cicada_engine::cluster_sim::SNAPSHOT_ENTRIES) {
        let payload = format!("r{i}");
        sim.publish("churn", "r/churn", QoS::AtLeastOnce, true, &payload);
        sim.run(ms(10));
    }
}

/// Nobody hears node 1 any more (it still hears the log, and the publisher's node): it takes
/// "held" into the roamer's session, but its write never commits. Returns the session there.
fn publish_held_on_muted_node_1(sim: &mut ClusterSim) -> Option<cicada_engine::SessionInfo> {
    assert!(!leaders(sim).contains(&1), "{}", sim.log());
    sim.mute(1, &[2, 3]);
    sim.publish("pub", "q2/a", QoS::ExactlyOnce, false, "held");
    sim.run_checked(ms(100), &mut |s| s.check());
    assert!(sim.clients["pub"].acked.is_empty(), "{}", sim.log());
    assert!(payloads(sim, "roamer").is_empty(), "{}", sim.log());
    sim.engine(1).and_then(|e| e.session("roamer"))
}

/// The roamer moves to node 3, which takes the session from its copy (without "held"); once
/// node 1 is heard again, its late handover brings "held" to the roamer, and its publisher is
/// acknowledged.
fn held_reaches_the_roamer_on_node_3(sim: &mut ClusterSim) {
    sim.connect_session("roamer", 3);
    sim.run_checked(secs(2), &mut |s| s.check());
    assert!(sim.clients["roamer"].connected, "{}", sim.log());
    assert_eq!(stats(sim, 3).failovers, 1, "{}", sim.log());
    assert!(payloads(sim, "roamer").is_empty(), "{}", sim.log());
    sim.heal();
    sim.run_checked(secs(2), &mut |s| s.check());
    assert_eq!(sim.clients["pub"].acked, ["held"], "{}", sim.log());
    assert_eq!(payloads(sim, "roamer"), ["held"], "{}", sim.log());
}

/// The claimant does not hear the leader, so the old owner applies the claim and hands the
/// session over long before the claimant does, and a message published meanwhile on the old node
/// reaches the claimant behind it. The early handover and what it kept wait for the claim past
/// `handover_timeout` (seed 18: both were forgotten at the timeout, the message acknowledged, and
/// the roamer got the session from the copy without it).
#[test]
fn an_early_handover_waits_for_its_claim_however_long() {
    let (mut sim, [leader, old, claimant]) = roamer_offline_off_the_leader(71, |_| {}, |r| r[1]);
    sim.deafen(claimant, &[leader]);
    sim.connect_session("roamer", claimant);
    sim.run_checked(ms(100), &mut |s| s.check());
    assert_eq!(stats(&sim, old).handovers_sent, 1, "{}", sim.log());
    sim.publish("pub", "q2/a", QoS::ExactlyOnce, false, "behind");
    sim.run_checked(secs(2), &mut |s| s.check());
    let owner = sim.engine(claimant).and_then(|e| e.cluster_owner("roamer"));
    assert_eq!(owner, Some(old), "{}", sim.log());
    assert!(sim.clients["pub"].acked.is_empty(), "{}", sim.log());
    sim.heal();
    sim.run_checked(secs(2), &mut |s| s.check());
    assert!(sim.clients["roamer"].connected, "{}", sim.log());
    assert_eq!(stats(&sim, claimant).handovers_received, 1, "{}", sim.log());
    assert_eq!(stats(&sim, claimant).handover_timeouts, 0, "{}", sim.log());
    assert_eq!(sim.clients["pub"].acked, ["behind"], "{}", sim.log());
    assert_resumed_with(&sim, &["behind"]);
}

/// A handover that arrives after its claim applied and its client left (a clean session that
/// ended, so no claim of it is in force) is late, not early: it does not hold its link's
/// acknowledgements (seed 620: it waited for ever, and with it every publisher whose messages
/// took that link).
#[test]
fn a_handover_for_a_claim_applied_and_ended_does_not_hold_its_link() {
    let mut sim = ClusterSim::new(3, &config(), 73);
    sim.run(secs(3));
    let (_, others) = leader_and_others(&sim, 3);
    let (old, claimant) = (others[0], others[1]);
    sim.connect("c", old);
    sim.connect("sub", claimant);
    sim.subscribe("sub", "t/#", QoS::AtLeastOnce);
    sim.connect("pub", old);
    settle(&mut sim, &[(claimant, "t/#")], 73);
    sim.mute(old, &[claimant]);
    sim.connect("c", claimant);
    sim.run_checked(ms(300), &mut |s| s.check());
    assert!(sim.clients["c"].connected, "{}", sim.log());
    sim.disconnect("c");
    sim.run_checked(ms(300), &mut |s| s.check());
    let owner = sim.engine(claimant).and_then(|e| e.cluster_owner("c"));
    assert_eq!(owner, None, "{}", sim.log());
    sim.heal();
    sim.run_checked(ms(300), &mut |s| s.check());
    sim.publish("pub", "t/a", QoS::AtLeastOnce, false, "through");
    sim.run_checked(secs(3), &mut |s| s.check());
    assert_eq!(sim.clients["pub"].acked, ["through"], "{}", sim.log());
    assert_eq!(payloads(&sim, "sub"), ["through"], "{}", sim.log());
}

/// The roamer's node dies with two messages on their way to it, and the roamer resumes on the
/// publisher's node, which waits for the session. When the dead node is declared down, what
/// waited for it is kept for that session too, and the roamer gets it once the session comes
/// (seed 1125: it went to the adopter and the other nodes only, and was lost).
#[test]
fn messages_waiting_for_a_dead_node_reach_its_session_where_it_is_awaited() {
    // Neither the dead node nor the one the roamer resumes on adopts: the leader does.
    let tune = |c: &mut cicada_engine::ClusterConfig| c.handover_timeout = secs(30);
    let (mut sim, [leader, dead, next]) = roamer_offline_off_the_leader(79, tune, |r| r[2]);
    sim.crash(dead);
    publish_q2(&mut sim, "waiting", 2);
    sim.run(ms(100));
    sim.connect_session("roamer", next);
    sim.run_checked(secs(15), &mut |s| s.check());
    assert_eq!(stats(&sim, next).nodes_down, 1, "{}", sim.log());
    assert_eq!(leaders(&sim), BTreeSet::from([leader]), "{}", sim.log());
    sim.restart(dead);
    sim.run_checked(secs(5), &mut |s| s.check());
    assert!(sim.clients["roamer"].connected, "{}", sim.log());
    assert_eq!(sim.clients["pub"].acked.len(), 2, "{}", sim.log());
    assert_resumed_with(&sim, &["waiting0", "waiting1"]);
}

/// As above, but the roamer is still connected to node 1, which sends it the QoS 2 message:
/// behind the write of its packet id, which never commits, so the PUBLISH never leaves. The
/// session goes on with it as never sent, and node 3 merges it (seed 3998: a QoS 2 message
/// counted as sent was left out, the client might have had it, and was lost).
#[test]
fn a_qos2_message_whose_publish_never_left_goes_with_the_session_as_never_sent() {
    let mut sim = roamer_online_on_node_1(67);
    let roamer = publish_held_on_muted_node_1(&mut sim);
    assert_eq!(roamer.map(|s| s.inflight), Some(1), "{}", sim.log());
    held_reaches_the_roamer_on_node_3(&mut sim);
}

/// The claimant crashes right after proposing its claim: the claim commits without it, the old
/// owner's handover and two messages routed to the claimant for the session wait on their links
/// for its restart, by when the log was compacted past the claim. The restarted claimant handles
/// those messages only once it applied the log as far as their sender had (here: installed the
/// snapshot), so it knows its claim and waits for the session, and keeps them for it (seed 2818:
/// they came first, reached a node that neither held nor waited for the session, and were
/// dropped).
#[test]
fn messages_for_a_restarted_claimant_wait_until_it_knows_its_claim() {
    let (mut sim, [leader, _, claimant]) = roamer_offline_off_the_leader(83, |_| {}, |r| r[0]);
    sim.connect_session("roamer", claimant);
    sim.run(ms(2));
    sim.crash(claimant);
    sim.run_checked(ms(100), &mut |s| s.check());
    let owner = sim.engine(leader).and_then(|e| e.cluster_owner("roamer"));
    assert_eq!(owner, Some(claimant), "{}", sim.log());
    publish_q2(&mut sim, "down", 2);
    sim.run_checked(ms(100), &mut |s| s.check());
    // Enough log entries that the claimant, back, gets a snapshot, not the claim's entry.
    sim.connect("churn", leader);
    for i in 0..(3 * cicada_engine::cluster_sim::SNAPSHOT_ENTRIES) {
        let payload = format!("r{i}");
        sim.publish("churn", "r/churn", QoS::AtLeastOnce, true, &payload);
        sim.run(ms(20));
    }
    sim.restart(claimant);
    sim.run_checked(secs(3), &mut |s| s.check());
    assert!(
        stats(&sim, claimant).snapshots_received > 0,
        "{}",
        sim.log()
    );
    resume_checked(&mut sim, claimant, secs(2), &["down0", "down1"]);
    assert_eq!(sim.clients["pub"].acked.len(), 2, "{}", sim.log());
}

/// The publisher's node is cut off and routes two messages to the roamer's old node, by the
/// table it had; meanwhile the roamer moves on, and its old node hands the session over and
/// restarts, forgetting it did. When the cut heals, the messages reach the restarted node, which
/// relays them to the session's owner: their sender routed by an older table than its own
/// (seeds 1618 and 4994: they were dropped there).
#[test]
fn messages_routed_by_a_stale_table_reach_the_session_that_moved_since() {
    let mut sim = ClusterSim::new(4, &config(), 89);
    sim.run(secs(3));
    let (_, others) = leader_and_others(&sim, 4);
    let (old, new, cut) = (others[0], others[1], others[2]);
    sim.connect_session("roamer", old);
    sim.subscribe("roamer", "q2/#", QoS::ExactlyOnce);
    sim.connect("pub", cut);
    settle(&mut sim, &[(old, "q2/#")], 89);
    sim.drop_connection("roamer");
    sim.run(ms(50));
    sim.partition(cut, &others_than(4, cut));
    publish_q2(&mut sim, "stale", 2);
    sim.run(ms(50));
    sim.connect_session("roamer", new);
    sim.run_checked(ms(300), &mut |s| s.check());
    assert!(sim.clients["roamer"].session_present, "{}", sim.log());
    assert_eq!(stats(&sim, old).handovers_sent, 1, "{}", sim.log());
    sim.crash(old);
    sim.restart(old);
    sim.run_checked(ms(300), &mut |s| s.check());
    sim.heal();
    sim.run_checked(secs(3), &mut |s| s.check());
    assert_eq!(sim.clients["pub"].acked.len(), 2, "{}", sim.log());
    assert_eq!(
        payloads(&sim, "roamer"),
        ["stale0", "stale1"],
        "{}",
        sim.log()
    );
}

/// Every node of an `n`-node simulation but `id`.
fn others_than(n: u16, id: u16) -> Vec<u16> {
    (1..=n).filter(|other| *other != id).collect()
}

#[test]
fn a_late_copy_of_a_message_is_not_delivered_again_after_a_move() {
    // Node 3 has a subscriber of its own, so node 2 forwards every q2 message to it as well.
    // While node 3 is cut off, the roamer takes messages on node 1 and then moves to node 3,
    // where the late copies arrive once the partition heals.
    let mut sim = ClusterSim::new(3, &config(), 12);
    sim.run(secs(3));
    sim.connect_session("roamer", 1);
    sim.subscribe("roamer", "q2/#", QoS::ExactlyOnce);
    sim.connect("other", 3);
    sim.subscribe("other", "q2/#", QoS::ExactlyOnce);
    sim.connect("pub", 2);
    settle(&mut sim, &[(1, "q2/#"), (3, "q2/#")], 12);
    // Frames from node 2 to node 3 are held back, not lost: the link resends them.
    sim.partition(3, &[2]);
    publish_q2(&mut sim, "x", 3);
    sim.run(ms(100));
    assert_eq!(
        payloads(&sim, "roamer"),
        ["x0", "x1", "x2"],
        "{}",
        sim.log()
    );
    sim.connect_session("roamer", 3);
    sim.run(ms(300));
    assert!(sim.clients["roamer"].session_present, "{}", sim.log());
    sim.heal();
    sim.run(secs(1));
    assert_eq!(
        payloads(&sim, "roamer"),
        ["x0", "x1", "x2"],
        "{}",
        sim.log()
    );
    assert_eq!(payloads(&sim, "other"), ["x0", "x1", "x2"], "{}", sim.log());
    assert!(stats(&sim, 3).duplicates_dropped >= 3, "{}", sim.log());
}

#[test]
fn a_persistent_session_survives_the_loss_of_its_node() {
    let mut sim = roamer_offline_on_node_1(13);
    publish_q2(&mut sim, "queued", 3);
    sim.run(ms(100));
    assert_eq!(sim.clients["pub"].acked.len(), 3, "{}", sim.log());
    // Node 1 dies with the queued messages; whatever it had not confirmed to disk is lost too.
    sim.crash(1);
    let took = resume_timed(&mut sim, 3, secs(3));
    // It waited for a handover that could not come, then took node 3's copy.
    assert!(took >= secs(1), "it waited {took:?}\n{}", sim.log());
    assert_resumed_with(&sim, &["queued0", "queued1", "queued2"]);
    assert_eq!(stats(&sim, 3).failovers, 1);
    assert_eq!(stats(&sim, 3).handover_timeouts, 1);

    // The subscription lives on node 3 now.
    settle(&mut sim, &[(3, "q2/#")], 13);
    sim.publish("pub", "q2/a", QoS::ExactlyOnce, false, "after");
    sim.run(ms(300));
    assert_eq!(
        payloads(&sim, "roamer").last().map(String::as_str),
        Some("after")
    );

    // Node 1 comes back with the session in its store; the log says node 3 owns the client now,
    // so node 1 drops its stale copy once it has replayed the log.
    sim.restart(1);
    sim.run(secs(3));
    assert!(
        sim.engine(1).expect("up").session("roamer").is_none(),
        "{}",
        sim.log()
    );
    assert!(sim.clients["roamer"].connected);
}

/// A shared group with one member on node 1 and two on node 2, a publisher and a plain
/// subscriber on node 3: every message goes to exactly one member, in turn over all three (the
/// publishing node weights each node by its members), and the plain subscriber gets them all. Once
/// node 1 dies, what was chosen for it waits until it is declared down, then goes to a member on
/// node 2; nothing is lost and nothing goes twice.
#[test]
fn a_shared_group_spread_over_nodes_gets_each_message_once_and_outlives_a_node() {
    let seed = 29;
    let mut sim = ClusterSim::new(3, &config(), seed);
    sim.run(secs(3));
    let group = "$share/g/jobs/+";
    for (name, id) in [("m1", 1), ("m2a", 2), ("m2b", 2)] {
        sim.connect(name, id);
        sim.subscribe(name, group, QoS::AtLeastOnce);
    }
    sim.connect("plain", 3);
    sim.subscribe("plain", "jobs/#", QoS::AtLeastOnce);
    sim.connect("pub", 3);
    settle(&mut sim, &[(1, group), (2, group), (3, "jobs/#")], seed);
    assert_eq!(sim.engine(3).map(|e| e.cluster_interest(2, group)), Some(2));
    let publish = |sim: &mut ClusterSim, range: std::ops::Range<u32>| {
        for i in range {
            sim.publish("pub", "jobs/x", QoS::AtLeastOnce, false, &i.to_string());
            sim.run_checked(ms(20), &mut |s| s.check());
        }
    };
    let numbers = |sim: &ClusterSim, names: &[&str]| {
        let mut got: Vec<u32> = (names.iter())
            .flat_map(|name| payloads(sim, name))
            .map(|p| p.parse().expect("a number"))
            .collect();
        got.sort_unstable();
        got
    };
    publish(&mut sim, 0..60);
    sim.run_checked(ms(300), &mut |s| s.check());
    assert_eq!(sim.clients["pub"].acked.len(), 60, "{}", sim.log());
    assert_eq!(
        numbers(&sim, &["m1", "m2a", "m2b"]),
        (0..60).collect::<Vec<_>>()
    );
    for name in ["m1", "m2a", "m2b"] {
        assert_eq!(payloads(&sim, name).len(), 20, "{name}: {}", sim.log());
    }
    assert_eq!(numbers(&sim, &["plain"]), (0..60).collect::<Vec<_>>());

    sim.crash(1);
    publish(&mut sim, 60..90);
    // Node 1 is declared down after peer_timeout (10 s); what waited for it goes to node 2.
    sim.run_checked(secs(12), &mut |s| s.check());
    assert_eq!(sim.clients["pub"].acked.len(), 90, "{}", sim.log());
    let on_node_2 = numbers(&sim, &["m2a", "m2b"]);
    let after: Vec<u32> = on_node_2.into_iter().filter(|n| *n >= 60).collect();
    assert_eq!(after, (60..90).collect::<Vec<_>>(), "{}", sim.log());
    assert_eq!(numbers(&sim, &["plain"]), (0..90).collect::<Vec<_>>());
}

#[test]
fn a_dead_nodes_sessions_and_their_messages_go_to_the_leader_that_declares_it_down() {
    let mut sim = roamer_offline_on_node_1(17);
    publish_q2(&mut sim, "before", 2);
    sim.run(ms(100));
    sim.crash(1);
    // Published for node 1's session while node 1 is dead: they wait for it.
    publish_q2(&mut sim, "while", 3);
    sim.run_checked(secs(3), &mut |s| s.check());
    assert_eq!(sim.clients["pub"].acked.len(), 2, "{}", sim.log());
    // The leader declares node 1 down after peer_timeout (10 s), takes the session from its copy,
    // and the waiting messages go to it: their publisher is acknowledged once it stored them.
    sim.run_checked(secs(10), &mut |s| s.check());
    assert_eq!(sim.clients["pub"].acked.len(), 5, "{}", sim.log());
    let adopter = *leaders(&sim).iter().next().expect("a leader");
    assert_eq!(stats(&sim, adopter).sessions_adopted, 1, "{}", sim.log());
    for id in [2, 3] {
        assert_eq!(stats(&sim, id).nodes_down, 1);
        let owner = sim.engine(id).expect("up").cluster_owner("roamer");
        assert_eq!(owner, Some(adopter));
    }
    // Nothing waits for node 1 any more: a publish now is acknowledged at once.
    publish_q2(&mut sim, "after", 1);
    sim.run(ms(300));
    assert_eq!(sim.clients["pub"].acked.len(), 6, "{}", sim.log());
    // The client comes back on the other node: the adopter hands the session over, every
    // message in it, each once.
    let other = if adopter == 2 { 3 } else { 2 };
    resume_checked(
        &mut sim,
        other,
        secs(2),
        &["before0", "before1", "while0", "while1", "while2", "after0"],
    );
    // Node 1 comes back: its stale session goes, and it serves again.
    sim.restart(1);
    sim.run_checked(secs(3), &mut |s| s.check());
    assert!(sim.engine(1).expect("up").session("roamer").is_none());
    serves_again(&mut sim, 1, 17);
    assert_eq!(
        payloads(&sim, "roamer").last().map(String::as_str),
        Some("again")
    );
}

/// Node `id`, back after it was declared down, serves again: a subscriber there gets a message
/// ("again") published on node 2.
fn serves_again(sim: &mut ClusterSim, id: u16, seed: u64) {
    sim.connect("local", id);
    sim.subscribe("local", "q2/#", QoS::ExactlyOnce);
    settle(sim, &[(id, "q2/#")], seed);
    sim.publish("pub", "q2/a", QoS::ExactlyOnce, false, "again");
    sim.run_checked(secs(1), &mut |s| s.check());
    assert_eq!(payloads(sim, "local"), ["again"], "{}", sim.log());
}

#[test]
fn a_node_cut_off_for_longer_than_peer_timeout_gives_its_sessions_up_and_comes_back() {
    let mut sim = roamer_offline_on_node_1(19);
    sim.partition(1, &[2, 3]);
    publish_q2(&mut sim, "cut", 2);
    sim.run_checked(secs(14), &mut |s| s.check());
    assert_eq!(sim.clients["pub"].acked.len(), 2, "{}", sim.log());
    let adopter = *leaders(&sim)
        .iter()
        .find(|id| **id != 1)
        .expect("a leader in the majority");
    assert_eq!(stats(&sim, adopter).sessions_adopted, 1, "{}", sim.log());
    // Healed, node 1 learns it was declared down: it drops the session (the adopter's now), says
    // it is back, and serves again.
    sim.heal();
    sim.run_checked(secs(3), &mut |s| s.check());
    assert!(
        sim.engine(1).expect("up").session("roamer").is_none(),
        "{}",
        sim.log()
    );
    serves_again(&mut sim, 1, 19);
    resume_checked(&mut sim, 1, secs(2), &["cut0", "cut1", "again"]);
}

/// Messages routed to a node that is then cut off wait on their links. The roamer, whose session
/// was there, moves on meanwhile and its new node takes the session from its copy, without them.
/// When the node is declared down, they go to the adopter, which has no session for them, and
/// now also to the nodes that need them now (seed 17: they were acknowledged and lost).
#[test]
fn messages_waiting_for_a_node_declared_down_reach_a_session_that_left_it() {
    let mut sim = ClusterSim::new(4, &config(), 23);
    sim.run(secs(3));
    let (leader, others) = leader_and_others(&sim, 4);
    let (old, new) = (others[0], others[1]);
    sim.connect_session("roamer", old);
    sim.subscribe("roamer", "q2/#", QoS::ExactlyOnce);
    sim.connect("pub", leader);
    settle(&mut sim, &[(old, "q2/#")], 23);
    sim.drop_connection("roamer");
    sim.run(ms(50));
    let rest: Vec<u16> = (1..=4).filter(|id| *id != old).collect();
    sim.partition(old, &rest);
    publish_q2(&mut sim, "cut", 2);
    sim.run(ms(100));
    assert!(sim.clients["pub"].acked.is_empty(), "{}", sim.log());
    sim.connect_session("roamer", new);
    sim.run_checked(secs(3), &mut |s| s.check());
    assert!(sim.clients["roamer"].connected, "{}", sim.log());
    assert!(payloads(&sim, "roamer").is_empty(), "{}", sim.log());
    sim.run_checked(secs(12), &mut |s| s.check());
    assert!(stats(&sim, leader).nodes_down >= 1, "{}", sim.log());
    assert_eq!(sim.clients["pub"].acked.len(), 2, "{}", sim.log());
    assert_eq!(payloads(&sim, "roamer"), ["cut0", "cut1"], "{}", sim.log());
}

/// Seed 200: a node crashed holding a session handed over ahead of its claim, in memory only.
/// Five nodes; the old owner O delivered `a0` but the log never took its last writes (the leader
/// stopped hearing it), so the copies still queue `a0`. The claimant C hears the handover but not
/// the leader, and crashes before its claim applies there. The handover must reach C again after
/// its restart: the roamer, moving on to a fifth node, gets C's session, not the stale copy.
#[test]
fn a_handover_held_in_memory_by_a_node_that_crashes_reaches_it_again() {
    let mut sim = ClusterSim::new(5, &config(), 21);
    sim.run(secs(3));
    let (leader, others) = leader_and_others(&sim, 5);
    let (old, claimant, next) = (others[0], others[1], others[2]);
    sim.connect_session("roamer", old);
    sim.subscribe("roamer", "q2/#", QoS::ExactlyOnce);
    sim.connect("pub", leader);
    settle(&mut sim, &[(old, "q2/#")], 21);
    sim.drop_connection("roamer");
    sim.publish("pub", "q2/a", QoS::ExactlyOnce, false, "a0");
    sim.run(ms(100));
    assert_eq!(
        sim.clients["pub"].acked.len(),
        1,
        "a0 is in the copies\n{}",
        sim.log()
    );
    // The roamer comes back for a0; the leader stops hearing O the moment its QoS 2 flow is
    // complete (O's write that says so is on its way).
    sim.connect_session("roamer", old);
    for _ in 0..100 {
        let roamer = &sim.clients["roamer"];
        if !roamer.received.is_empty() && roamer.incoming.is_empty() {
            break;
        }
        sim.run(ms(1));
    }
    assert_eq!(payloads(&sim, "roamer"), ["a0"], "{}", sim.log());
    sim.deafen(leader, &[old]);
    sim.deafen(claimant, &[leader]);
    sim.connect_session("roamer", claimant);
    sim.run(ms(200));
    assert_eq!(
        stats(&sim, claimant).handovers_received,
        0,
        "the claim must not have applied on the claimant\n{}",
        sim.log()
    );
    sim.crash(claimant);
    sim.heal();
    sim.run(ms(300));
    sim.restart(claimant);
    sim.run_checked(secs(2), &mut |s| s.check());
    assert_eq!(stats(&sim, claimant).handovers_received, 1, "{}", sim.log());
    sim.connect_session("roamer", next);
    sim.run_checked(secs(2), &mut |s| s.check());
    assert!(sim.clients["roamer"].connected, "{}", sim.log());
    assert_eq!(payloads(&sim, "roamer"), ["a0"], "{}", sim.log());
}

/// Three nodes; "watcher" on node 2 subscribes to status/#; on node 1, "clean" (session ends with
/// the connection) and "kept" (persistent) connect with wills, and "polite" connects with one and
/// disconnects normally.
fn wills_on_node_1(seed: u64, tune: impl Fn(&mut cicada_engine::ClusterConfig)) -> ClusterSim {
    let mut sim = ClusterSim::tuned(3, &config(), seed, tune);
    sim.run(secs(3));
    sim.connect("watcher", 2);
    sim.subscribe("watcher", "status/#", QoS::AtLeastOnce);
    sim.connect_with_will("clean", 1, None, "status/clean", "clean-gone");
    sim.connect_with_will("kept", 1, Some(3600), "status/kept", "kept-gone");
    sim.connect_with_will("polite", 1, None, "status/polite", "polite-gone");
    settle(&mut sim, &[(2, "status/#")], seed);
    sim.disconnect("polite");
    sim.run(ms(300));
    for name in ["clean", "kept"] {
        assert!(sim.clients[name].connected, "{name}\n{}", sim.log());
    }
    assert!(payloads(&sim, "watcher").is_empty(), "{}", sim.log());
    sim
}

/// The watcher got exactly the wills of "clean" and "kept", each once.
fn assert_wills_once(sim: &ClusterSim) {
    let mut got = payloads(sim, "watcher");
    got.sort();
    assert_eq!(got, ["clean-gone", "kept-gone"], "{}", sim.log());
}

/// Node 1 restarts: the watcher still has each will exactly once, soon after and once the others
/// would have declared node 1 down.
fn restart_with_wills_once(sim: &mut ClusterSim) {
    sim.restart(1);
    sim.run_checked(secs(4), &mut |s| s.check());
    assert_wills_once(sim);
    sim.run_checked(secs(12), &mut |s| s.check());
    assert_wills_once(sim);
}

#[test]
fn the_wills_of_a_dead_nodes_clients_are_published_once_by_the_adopter() {
    let mut sim = wills_on_node_1(23, |_| {});
    sim.crash(1);
    sim.run_checked(secs(3), &mut |s| s.check());
    assert!(payloads(&sim, "watcher").is_empty(), "{}", sim.log());
    // Declared down after peer_timeout: the adopter publishes the clean session's will from the
    // table and the persistent one's from the session's copy; not the polite client's.
    sim.run_checked(secs(10), &mut |s| s.check());
    assert_wills_once(&sim);
    // Node 1 comes back: it publishes none of them again.
    sim.restart(1);
    sim.run_checked(secs(5), &mut |s| s.check());
    assert_wills_once(&sim);
}

#[test]
fn a_node_that_restarts_before_it_is_declared_down_publishes_its_clients_wills_once() {
    let mut sim = wills_on_node_1(29, |_| {});
    sim.crash(1);
    sim.run_checked(secs(2), &mut |s| s.check());
    // The clean session's will from the table (its last incarnation's), the persistent one's
    // from its own store.
    restart_with_wills_once(&mut sim);
    assert_eq!(stats(&sim, 2).nodes_down, 0, "{}", sim.log());
}

/// Seed 803: a persistent session's will came due and went out while the batch that took it out
/// of the session was still unconfirmed; the node crashed, restored the session with its will, and
/// published it again. Now the will waits for that batch.
#[test]
fn a_will_published_just_before_a_crash_is_not_published_again_after_the_restart() {
    let mut sim = wills_on_node_1(31, |_| {});
    sim.drop_connection("kept");
    sim.crash(1);
    sim.run_checked(secs(2), &mut |s| s.check());
    restart_with_wills_once(&mut sim);
}

/// Seed 1077: a node published a will at once and was cut off in the same instant, before the log
/// took the will out of the replicated state (the clean session's `Release`, the persistent one's
/// session write); declared down, its adopter published the will from there, and the node's own
/// copy arrived after the heal. Now such a will waits for the log.
#[test]
fn a_will_due_on_a_node_cut_off_at_once_is_published_once_by_the_adopter() {
    let mut sim = wills_on_node_1(37, |_| {});
    sim.drop_connection("clean");
    sim.drop_connection("kept");
    sim.partition(1, &[2, 3]);
    sim.run_checked(secs(14), &mut |s| s.check());
    assert_eq!(stats(&sim, 2).nodes_down, 1, "{}", sim.log());
    assert_wills_once(&sim);
    sim.heal();
    sim.run_checked(secs(5), &mut |s| s.check());
    assert_wills_once(&sim);
}

/// Seed 939: while a node was down, another took its client's session from its copy (the client's
/// CONNECT there closed before its claim applied) and published the session's will; the node came
/// back with the session and its will in its store, and published the will again.
#[test]
fn a_restarted_node_does_not_publish_the_will_of_a_session_another_node_took() {
    let mut sim = wills_on_node_1(41, |_| {});
    sim.crash(1);
    sim.connect_session("kept", 3);
    sim.drop_connection("kept");
    sim.run_checked(secs(3), &mut |s| s.check());
    assert_eq!(stats(&sim, 3).failovers, 1, "{}", sim.log());
    assert_eq!(payloads(&sim, "watcher"), ["kept-gone"], "{}", sim.log());
    restart_with_wills_once(&mut sim);
}

/// Seed 4687: a persistent session's will came due on a node cut off, and waited there for the
/// write taking it out of the session. Meanwhile its client came back on node 3 and left again
/// before the session arrived: node 3 took the session from its copy and published the will. Back,
/// node 1 handed over and its write committed after the claim, so no copy applied it; node 1 took
/// that commit for its will's and published the will again. Now the handover carries the will.
#[test]
fn a_will_waiting_for_its_write_when_the_client_moves_goes_out_once() {
    let mut sim = wills_on_node_1(53, |_| {});
    sim.partition(1, &[2, 3]);
    sim.drop_connection("kept");
    sim.connect_session("kept", 3);
    sim.run(ms(100));
    sim.drop_connection("kept");
    sim.run_checked(secs(2), &mut |s| s.check());
    assert_eq!(stats(&sim, 3).handover_timeouts, 1, "{}", sim.log());
    assert_eq!(payloads(&sim, "watcher"), ["kept-gone"], "{}", sim.log());
    sim.heal();
    sim.run_checked(secs(3), &mut |s| s.check());
    assert_eq!(stats(&sim, 1).handovers_sent, 1, "{}", sim.log());
    assert_eq!(payloads(&sim, "watcher"), ["kept-gone"], "{}", sim.log());
}

/// Seed 5057: a node sets a retained message its publisher sent it at once (its own clients read
/// their writes), and proposes it. Its proposal never reached the others, but the node applied
/// their entries meanwhile, took a snapshot of its retained store, crashed, and came back from that
/// snapshot with a retained message no other node had. A snapshot holds the log's retained
/// messages only.
#[test]
fn a_retained_message_that_never_committed_stays_out_of_its_nodes_snapshot() {
    let mut sim = ClusterSim::new(3, &config(), 53);
    sim.run(secs(3));
    let leader = *leaders(&sim).iter().next().expect("a leader");
    let (muted, other) = match leader {
        1 => (2, 3),
        2 => (1, 3),
        _ => (1, 2),
    };
    sim.connect("p1", muted);
    sim.connect("p2", other);
    sim.run(ms(200));
    sim.mute(muted, &[1, 2, 3]);
    sim.publish("p1", "r/solo", QoS::AtLeastOnce, true, "never");
    let before = stats(&sim, muted).snapshots_taken;
    for i in 0..60 {
        sim.publish("p2", &format!("r/{i}"), QoS::AtMostOnce, true, "x");
        sim.run(ms(10));
    }
    sim.run(ms(200));
    assert!(stats(&sim, muted).snapshots_taken > before, "{}", sim.log());
    sim.crash(muted);
    sim.heal();
    sim.restart(muted);
    sim.run_checked(secs(3), &mut |s| s.check());
    let topic = TopicName::new("r/solo").expect("topic");
    for id in [1, 2, 3] {
        let here = sim.engine(id).and_then(|e| e.retained(&topic));
        assert!(here.is_none(), "node {id}: {here:?}\n{}", sim.log());
    }
}

/// A retained QoS 1 message is acknowledged only once its `Retain` entry committed: before, its
/// node acknowledged it at once, and lost it if it crashed before the proposal reached the
/// leader (seed 5057).
#[test]
fn a_retained_message_is_acknowledged_once_its_entry_committed() {
    let mut sim = ClusterSim::new(3, &config(), 59);
    sim.run(secs(3));
    let leader = *leaders(&sim).iter().next().expect("a leader");
    let muted = if leader == 1 { 2 } else { 1 };
    sim.connect("p", muted);
    sim.run(ms(200));
    sim.mute(muted, &[1, 2, 3]);
    sim.publish("p", "r/held", QoS::AtLeastOnce, true, "kept");
    sim.run(ms(500));
    assert!(sim.clients["p"].acked.is_empty(), "{}", sim.log());
    sim.heal();
    sim.run_checked(secs(2), &mut |s| s.check());
    assert_eq!(sim.clients["p"].acked, ["kept"], "{}", sim.log());
    let topic = TopicName::new("r/held").expect("topic");
    sim.crash(muted);
    sim.run(ms(100));
    for id in sim.live() {
        let here = sim.engine(id).and_then(|e| e.retained(&topic));
        let payload = here.map(|m| m.payload.clone());
        assert_eq!(
            payload.as_deref(),
            Some(&b"kept"[..]),
            "node {id}\n{}",
            sim.log()
        );
    }
}

/// The clean client's node dies and the client is back on node 3 at once, long before node 1 is
/// declared down: its claim there replaces the will of its dead connection in the table, which
/// still goes out, once: the adopter publishes it at the `Down`, or node 1 itself at its restart.
/// (Before, the new claim dropped it, and nobody published it.)
#[test]
fn a_will_replaced_by_a_new_connection_elsewhere_still_goes_out_once() {
    for restart_first in [false, true] {
        let mut sim = wills_on_node_1(43, |_| {});
        sim.crash(1);
        sim.connect("clean", 3);
        sim.run_checked(secs(2), &mut |s| s.check());
        assert!(sim.clients["clean"].connected, "{}", sim.log());
        assert!(payloads(&sim, "watcher").is_empty(), "{}", sim.log());
        if restart_first {
            restart_with_wills_once(&mut sim);
            assert_eq!(stats(&sim, 2).nodes_down, 0, "{}", sim.log());
        } else {
            sim.run_checked(secs(12), &mut |s| s.check());
            assert_eq!(stats(&sim, 2).nodes_down, 1, "{}", sim.log());
            assert_wills_once(&sim);
            restart_with_wills_once(&mut sim);
        }
    }
}

/// Node 1 is cut off for less than `fence_after`; meanwhile its clean client connects to node 3,
/// whose claim commits without node 1. Once it hears the log again, node 1 takes the client's old
/// connection over and publishes its will, once, when its release of the client applied.
#[test]
fn a_will_replaced_while_its_node_was_cut_off_is_published_by_that_node_once() {
    let mut sim = wills_on_node_1(47, |_| {});
    sim.partition(1, &[2, 3]);
    sim.connect("clean", 3);
    sim.run_checked(secs(2), &mut |s| s.check());
    assert!(sim.clients["clean"].connected, "{}", sim.log());
    sim.heal();
    sim.run_checked(secs(3), &mut |s| s.check());
    assert_eq!(payloads(&sim, "watcher"), ["clean-gone"], "{}", sim.log());
    sim.run_checked(secs(12), &mut |s| s.check());
    assert_eq!(payloads(&sim, "watcher"), ["clean-gone"], "{}", sim.log());
    assert_eq!(stats(&sim, 2).nodes_down, 0, "{}", sim.log());
}

#[test]
fn a_node_cut_off_keeps_its_clients_wills_back_until_the_log_says_whose_they_are() {
    // Cut off for longer than fence_after but not peer_timeout: node 1 disconnects its clients
    // and keeps their wills back; once it hears the log again, it publishes them.
    let mut sim = wills_on_node_1(31, |_| {});
    sim.partition(1, &[2, 3]);
    sim.run_checked(secs(7), &mut |s| s.check());
    assert!(!sim.clients["clean"].connected, "fenced\n{}", sim.log());
    assert!(payloads(&sim, "watcher").is_empty(), "{}", sim.log());
    sim.heal();
    sim.run_checked(secs(3), &mut |s| s.check());
    assert_wills_once(&sim);
    // Cut off for longer than peer_timeout: the adopter publishes them, and node 1, back, does not.
    let mut sim = wills_on_node_1(37, |_| {});
    sim.partition(1, &[2, 3]);
    sim.run_checked(secs(14), &mut |s| s.check());
    assert_wills_once(&sim);
    sim.heal();
    sim.run_checked(secs(5), &mut |s| s.check());
    assert_wills_once(&sim);
}

#[test]
fn a_node_lost_in_the_middle_of_qos2_deliveries_loses_none_and_repeats_none() {
    // The subscriber's node dies at a different point of the flows in each run (every
    // millisecond of the ~20 ms they take): before, between and after PUBLISH, PUBREC, PUBREL and
    // PUBCOMP of five messages, and before and after the publisher's acknowledgements.
    for crash_after in 0..=30 {
        let mut sim = ClusterSim::new(3, &config(), 14);
        sim.run(secs(3));
        sim.connect_session("roamer", 1);
        sim.subscribe("roamer", "q2/#", QoS::ExactlyOnce);
        sim.connect("pub", 2);
        settle(&mut sim, &[(1, "q2/#")], 14);
        publish_q2(&mut sim, "m", 5);
        sim.run(ms(crash_after));
        let acked = sim.clients["pub"].acked.len();
        sim.crash(1);
        sim.connect_session("roamer", 3);
        sim.run_checked(secs(3), &mut |s| s.check());
        let got = payloads(&sim, "roamer");
        let at = format!("crash after {crash_after} ms\n{}", sim.log());
        assert!(sim.clients["roamer"].session_present, "{at}");
        let unique: BTreeSet<&String> = got.iter().collect();
        assert_eq!(unique.len(), got.len(), "a message twice: {got:?}, {at}");
        for payload in sim.clients["pub"].acked.iter().take(acked) {
            let payload = String::from_utf8_lossy(payload).into_owned();
            assert!(got.contains(&payload), "{payload} lost: {got:?}, {at}");
        }
    }
}

#[test]
fn a_node_back_from_behind_a_snapshot_gets_the_state_from_it_and_can_take_a_session_over() {
    let mut sim = roamer_offline_on_node_1(15);
    sim.crash(3);
    sim.run(secs(3));
    // While node 3 is down, the log grows by more than two snapshots' worth, and the others
    // drop what node 3 would need: it can only catch up from a snapshot.
    publish_q2(&mut sim, "queued", 3);
    for i in 0..2 * cicada_engine::cluster_sim::SNAPSHOT_ENTRIES {
        sim.publish(
            "pub",
            &format!("r/{}", i % 7),
            QoS::AtLeastOnce,
            true,
            &format!("r{i}"),
        );
        sim.run(ms(20));
    }
    sim.run(ms(300));
    assert!(stats(&sim, 1).snapshots_taken >= 2, "{:?}", stats(&sim, 1));
    assert!(stats(&sim, 1).snapshot_index > stats(&sim, 1).applied - 25 - 1);
    sim.restart(3);
    sim.run_checked(secs(3), &mut |s| s.check());
    let (s1, s3) = (stats(&sim, 1), stats(&sim, 3));
    assert!(s3.snapshots_received >= 1, "{s3:?}\n{}", sim.log());
    // The simulation's snapshots are larger than its part size: they came in parts.
    assert!(s3.raft_parts_received >= 2, "{s3:?}\n{}", sim.log());
    assert_eq!(s3.applied, s1.applied);
    let (e1, e3) = (sim.engine(1).expect("up"), sim.engine(3).expect("up"));
    assert_eq!(e3.cluster_digest(), e1.cluster_digest());
    for k in 0..7 {
        let topic = TopicName::new(format!("r/{k}")).expect("topic");
        assert_eq!(
            e3.retained(&topic).map(|m| m.payload.clone()),
            e1.retained(&topic).map(|m| m.payload.clone()),
            "r/{k}"
        );
    }
    // Node 1 dies: node 3's copy of the session, which came in the snapshot, is the session.
    sim.crash(1);
    resume_checked(&mut sim, 3, secs(4), &["queued0", "queued1", "queued2"]);
}

#[test]
fn a_connect_whose_claim_committed_inside_a_snapshot_is_admitted() {
    let mut sim = ClusterSim::new(3, &config(), 21);
    sim.run(secs(3));
    let leader = *leaders(&sim).iter().next().expect("a leader");
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    let others: Vec<u16> = (1..=3).filter(|id| *id != follower).collect();
    sim.connect("pub", leader);
    sim.run(ms(300));
    // The follower's proposals reach the leader but nothing comes back: its claim commits without
    // it, and the log moves on past a snapshot, so it can only learn of the claim from one.
    sim.deafen(follower, &others);
    sim.connect("late", follower);
    for i in 0..2 * cicada_engine::cluster_sim::SNAPSHOT_ENTRIES {
        let topic = format!("r/{}", i % 5);
        sim.publish("pub", &topic, QoS::AtLeastOnce, true, &format!("r{i}"));
        sim.run(ms(20));
    }
    assert!(!sim.clients["late"].connected, "{}", sim.log());
    assert_eq!(
        sim.engine(leader).expect("up").cluster_owner("late"),
        Some(follower),
        "{}",
        sim.log()
    );
    assert!(stats(&sim, leader).snapshot_index > 0);
    sim.heal();
    sim.run_checked(secs(2), &mut |s| s.check());
    assert!(
        stats(&sim, follower).snapshots_received >= 1,
        "{}",
        sim.log()
    );
    assert!(sim.clients["late"].connected, "{}", sim.log());
}

#[test]
fn a_node_added_through_a_member_gets_the_state_serves_and_counts_and_a_member_leaves() {
    let mut sim = roamer_offline_on_node_1(16);
    sim.publish("pub", "r/x", QoS::AtLeastOnce, true, "before-join");
    publish_q2(&mut sim, "queued", 2);
    sim.run(ms(300));

    // Node 4 starts with no configuration: it takes no part until a member adds it.
    let id = sim.start_joining(&config());
    assert_eq!(id, 4);
    sim.run(secs(1));
    assert_eq!(stats(&sim, 4).applied, 0);
    let address = MemberAddress {
        address: "10.0.0.4:7101".into(),
        server_name: None,
        mqtt: Some("10.0.0.4:1883".into()),
    };
    sim.input(
        2,
        Input::ClusterAddMember {
            node: 4,
            address: address.clone(),
        },
    );
    sim.run_checked(secs(3), &mut |s| s.check());
    let (s1, s4) = (stats(&sim, 1), stats(&sim, 4));
    assert!(s4.snapshots_received >= 1, "{s4:?}\n{}", sim.log());
    assert_eq!(s4.applied, s1.applied, "{}", sim.log());
    let (e1, e4) = (sim.engine(1).expect("up"), sim.engine(4).expect("up"));
    assert_eq!(e4.cluster_digest(), e1.cluster_digest());
    let members = e1.cluster_members().expect("a cluster node");
    assert!(members.contains(&(4, Some(address))), "{members:?}");
    assert_eq!(e4.cluster_members().map(|m| m.len()), Some(4));
    let topic = TopicName::new("r/x").expect("topic");
    assert_eq!(
        e4.retained(&topic).map(|m| m.payload.clone()),
        Some(Bytes::from("before-join"))
    );

    // It serves clients: their subscriptions reach the others, publishes reach them.
    sim.connect("s4", 4);
    sim.subscribe("s4", "t/#", QoS::AtLeastOnce);
    settle(&mut sim, &[(4, "t/#")], 16);
    sim.publish("pub", "t/a", QoS::AtLeastOnce, false, "to-4");
    sim.run(ms(300));
    assert_eq!(payloads(&sim, "s4"), ["to-4"], "{}", sim.log());

    // It holds a copy of every session, and takes one over when its node dies.
    sim.crash(1);
    resume_checked(&mut sim, 4, secs(4), &["queued0", "queued1"]);

    // Node 3 leaves: it serves no one, and the other two of {1, 2, 4} (1 is down) still make a
    // majority.
    sim.input(2, Input::ClusterRemoveMember { node: 3 });
    sim.run_checked(secs(4), &mut |s| s.check());
    assert!(
        sim.engine(3).expect("up").cluster_removed(),
        "{}",
        sim.log()
    );
    let members: Vec<u16> = sim
        .engine(2)
        .and_then(|e| e.cluster_members())
        .map(|m| m.into_iter().map(|(n, _)| n).collect())
        .unwrap_or_default();
    assert!(!members.contains(&3) && members.len() == 3, "{members:?}");
    sim.connect("late", 2);
    sim.run(secs(2));
    assert!(sim.clients["late"].connected, "{}", sim.log());
    sim.connect("refused", 3);
    sim.run(ms(100));
    assert!(!sim.clients["refused"].connected, "{}", sim.log());
}

/// Resumes "roamer" on node `id` and runs `within` with the invariants checked after every step;
/// returns how long its CONNECT took to be accepted.
fn resume_timed(sim: &mut ClusterSim, id: u16, within: Duration) -> Duration {
    let start = sim.now();
    sim.connect_session("roamer", id);
    let mut admitted = None;
    sim.run_checked(within, &mut |s| {
        s.check();
        if admitted.is_none() && s.clients["roamer"].connected {
            admitted = Some(s.now());
        }
    });
    admitted.expect("admitted").saturating_duration_since(start)
}

/// Three nodes; "roamer", a persistent QoS 2 subscriber of q2/# on node 1, offline; "pub" on node 2.
/// Three nodes: the roamer's persistent session offline on a node that does not lead, and "pub"
/// connected to the one `pub_on` picks. Returns the simulation and the nodes: [the leader, the
/// roamer's, the third].
fn roamer_offline_off_the_leader(
    seed: u64,
    tune: impl Fn(&mut cicada_engine::ClusterConfig),
    pub_on: impl Fn([u16; 3]) -> u16,
) -> (ClusterSim, [u16; 3]) {
    let mut sim = ClusterSim::tuned(3, &config(), seed, tune);
    sim.run(secs(3));
    let (leader, others) = leader_and_others(&sim, 3);
    let roles = [leader, others[0], others[1]];
    sim.connect_session("roamer", roles[1]);
    sim.subscribe("roamer", "q2/#", QoS::ExactlyOnce);
    sim.connect("pub", pub_on(roles));
    settle(&mut sim, &[(roles[1], "q2/#")], seed);
    sim.drop_connection("roamer");
    sim.run(ms(50));
    (sim, roles)
}

/// Three nodes: the roamer connected to node 1 with a persistent session subscribed to `q2/#`,
/// "pub" connected to node 2.
fn roamer_online_on_node_1(seed: u64) -> ClusterSim {
    roamer_online_on_node_1_of(3, seed)
}

/// As [`roamer_online_on_node_1`], in a cluster of `n` nodes.
fn roamer_online_on_node_1_of(n: u16, seed: u64) -> ClusterSim {
    let mut sim = ClusterSim::new(n, &config(), seed);
    sim.run(secs(3));
    sim.connect_session("roamer", 1);
    sim.subscribe("roamer", "q2/#", QoS::ExactlyOnce);
    sim.connect("pub", 2);
    settle(&mut sim, &[(1, "q2/#")], seed);
    sim
}

fn roamer_offline_on_node_1(seed: u64) -> ClusterSim {
    roamer_offline_on_node_1_of(3, seed)
}

fn roamer_offline_on_node_1_of(n: u16, seed: u64) -> ClusterSim {
    let mut sim = roamer_online_on_node_1_of(n, seed);
    sim.drop_connection("roamer");
    sim.run(ms(50));
    sim
}

/// The roamer resumes on node `id` (checking the invariants for `within`) with its session and
/// exactly `expected`, in order.
fn resume_checked(sim: &mut ClusterSim, id: u16, within: Duration, expected: &[&str]) {
    sim.connect_session("roamer", id);
    sim.run_checked(within, &mut |s| s.check());
    assert_resumed_with(sim, expected);
}

/// The roamer resumed with its session and got exactly `expected`, in order.
fn assert_resumed_with(sim: &ClusterSim, expected: &[&str]) {
    assert!(sim.clients["roamer"].session_present, "{}", sim.log());
    assert_eq!(payloads(sim, "roamer"), expected, "{}", sim.log());
}

/// `pub` publishes `n` QoS 2 messages to q2/a, with payloads `prefix`0, `prefix`1, ...
fn publish_q2(sim: &mut ClusterSim, prefix: &str, n: usize) {
    for i in 0..n {
        sim.publish(
            "pub",
            "q2/a",
            QoS::ExactlyOnce,
            false,
            &format!("{prefix}{i}"),
        );
    }
}

fn settle(sim: &mut ClusterSim, wanted: &[(u16, &str)], seed: u64) {
    for _ in 0..200 {
        sim.run(ms(100));
        let known = sim.live().into_iter().all(|id| {
            wanted.iter().all(|(node, f)| {
                sim.engine(id)
                    .is_some_and(|e| e.cluster_interest(*node, f) > 0)
            })
        });
        if known {
            return;
        }
    }
    sim.fail(&format!(
        "seed {seed}: interest {wanted:?} never reached every node"
    ));
}

/// One seed of the randomized scenario; panics with the log when an invariant breaks, and returns
/// the log otherwise.
fn scenario(seed: u64) -> String {
    let n = 3 + (seed % 3) as u16;
    // Odd seeds give up on a silent node after 3.5 s instead of 10: their crashes and partitions
    // often outlast it, so nodes are declared down, their sessions adopted, and cut-off nodes
    // come back. A cut-off node still fences its clients first: within an election timeout
    // (0.5-1.25 s) plus 1 s, with room for a clock jump of 1 s.
    let mut sim = ClusterSim::tuned(n, &config(), seed, |c| {
        if seed % 2 == 1 {
            c.election_ticks = 5;
            c.fence_after = secs(1);
            c.peer_timeout = ms(3500);
        }
    });
    sim.run(secs(3));
    sim.connect("s1", 1);
    sim.connect("s2", n);
    sim.run(ms(300));
    sim.subscribe("s1", "t/#", QoS::AtLeastOnce);
    sim.subscribe("s2", "q2/#", QoS::ExactlyOnce);
    sim.subscribe("s2", "t/#", QoS::AtLeastOnce);
    sim.connect("p", 2);
    // A persistent session that moves between nodes, and survives the loss of its node (its QoS 2
    // messages are checked never to arrive twice, and its session never to be lost).
    let home = 1 + (seed % u64::from(n)) as u16;
    sim.connect_session("roamer", home);
    sim.subscribe("roamer", "q2/#", QoS::ExactlyOnce);
    // Interest is eventually consistent (docs/cluster.md): traffic starts once every node applied
    // the subscriptions, which is what "a live subscriber receives it" can promise. The roamer's
    // too (seed 52995: `x0` was published on a node that had not applied it yet, and went to
    // the other subscriber's node only). Interest is per node: on `n`, s2's covers it.
    let wanted = [(1, "t/#"), (n, "t/#"), (n, "q2/#"), (home, "q2/#")];
    settle(&mut sim, &wanted, seed);

    let faults = Faults {
        loss: sim.rng().below(100),
        duplicate: sim.rng().below(20),
        max_latency: ms(1 + sim.rng().below(30)),
    };
    sim.set_faults(faults);
    let mut down: Option<u16> = None;
    let mut cut = false;
    // The retained messages published, by payload: the topic's index and the step.
    let mut retained_sent: BTreeMap<Bytes, (u64, u32)> = BTreeMap::new();
    // The QoS 2 messages published once the roamer's subscription was acknowledged (seed 32487:
    // its first CONNECT waited on a claim while x0 was published and acknowledged).
    let mut roamer_wants: BTreeSet<Bytes> = BTreeSet::new();
    for step in 0..40u32 {
        let roll = sim.rng().below(100);
        if !sim.clients["p"].connected && sim.rng().below(2) == 0 {
            let live = sim.live();
            let at = live[sim.rng().below(live.len() as u64) as usize];
            sim.connect("p", at);
        }
        // A client with a QoS 2 will, a new payload at each connection, to q2/: the QoS 2 check
        // then also says no will is published twice (by its node and by an adopter, say).
        match sim.rng().below(10) {
            0 => sim.drop_connection("willing"),
            1 => {
                let live = sim.live();
                let at = live[sim.rng().below(live.len() as u64) as usize];
                let expiry = (seed % 4 >= 2).then_some(3600);
                let payload = format!("will{step}");
                sim.connect_with_will("willing", at, expiry, "q2/will", &payload);
            }
            _ => {}
        }
        match sim.rng().below(8) {
            0 => sim.drop_connection("roamer"),
            1 => {
                let live = sim.live();
                let at = live[sim.rng().below(live.len() as u64) as usize];
                sim.connect_session("roamer", at);
                sim.subscribe("roamer", "q2/#", QoS::ExactlyOnce);
            }
            _ => {}
        }
        match roll {
            0..=39 => sim.publish("p", "t/a", QoS::AtLeastOnce, false, &format!("m{step}")),
            40..=59 => {
                let payload = format!("x{step}");
                if sim.clients["roamer"].subscribed {
                    roamer_wants.insert(Bytes::from(payload.clone()));
                }
                sim.publish("p", "q2/a", QoS::ExactlyOnce, false, &payload);
            }
            60..=69 => {
                let k = sim.rng().below(3);
                retained_sent.insert(Bytes::from(format!("r{step}")), (k, step));
                sim.publish(
                    "p",
                    &format!("r/k{k}"),
                    QoS::AtLeastOnce,
                    true,
                    &format!("r{step}"),
                );
            }
            70..=77 if !cut => {
                let a = 1 + sim.rng().below(u64::from(n)) as u16;
                let others: Vec<u16> = (1..=n).filter(|b| *b != a).collect();
                sim.partition(a, &others);
                cut = true;
            }
            78..=84 => {
                sim.heal();
                cut = false;
            }
            85..=91 if down.is_none() => {
                let a = 1 + sim.rng().below(u64::from(n)) as u16;
                sim.crash(a);
                down = Some(a);
            }
            92..=95 => {
                if let Some(a) = down.take() {
                    sim.restart(a);
                }
            }
            96..=99 => {
                let a = 1 + sim.rng().below(u64::from(n)) as u16;
                let by = ms(200 + sim.rng().below(800));
                sim.jump_clock(a, by);
            }
            _ => {}
        }
        sim.run(ms(150));
    }
    // Heal everything and let the cluster settle.
    sim.heal();
    sim.set_faults(Faults::NONE);
    if let Some(a) = down.take() {
        sim.restart(a);
    }
    sim.run(secs(12));

    // No acknowledged message is lost for a subscriber that stayed connected.
    let acked: Vec<Bytes> = sim.clients["p"].acked.clone();
    for (name, wants) in [("s1", "m"), ("s2", "m"), ("s2", "x")] {
        let c = &sim.clients[name];
        if c.interrupted {
            continue;
        }
        let got: BTreeSet<&Bytes> = c.received.iter().map(|(_, p)| p).collect();
        for m in acked.iter().filter(|m| m.starts_with(wants.as_bytes())) {
            if !got.contains(m) {
                sim.fail(&format!("seed {seed}: {name} never got acknowledged {m:?}"));
            }
        }
    }
    // A persistent session survives whatever happened to its nodes: once a SUBSCRIBE of it was
    // acknowledged, every resuming CONNECT accepted found it.
    if sim.clients["roamer"].sessions_lost > 0 {
        sim.fail(&format!("seed {seed}: the roamer's session was lost"));
    }
    // Retained messages converge on every node.
    for k in 0..3 {
        let topic = TopicName::new(format!("r/k{k}")).expect("topic");
        let live = sim.live();
        let first = sim.engine(live[0]).and_then(|e| e.retained(&topic));
        for id in &live[1..] {
            let here = sim.engine(*id).and_then(|e| e.retained(&topic));
            if here.as_ref().map(|m| &m.payload) != first.as_ref().map(|m| &m.payload) {
                let all: Vec<_> = live
                    .iter()
                    .map(|i| {
                        sim.engine(*i)
                            .and_then(|e| e.retained(&topic))
                            .map(|m| m.payload.clone())
                    })
                    .collect();
                sim.fail(&format!(
                    "seed {seed}: retained r/k{k} differs on node {id}: {all:?}"
                ));
            }
        }
    }
    // An acknowledged retained message is not lost: its topic holds it, or one published later.
    for (payload, (k, step)) in &retained_sent {
        if !acked.contains(payload) {
            continue;
        }
        let topic = TopicName::new(format!("r/k{k}")).expect("topic");
        let kept = sim.engine(sim.live()[0]).and_then(|e| e.retained(&topic));
        let kept_step = kept.as_ref().and_then(|m| retained_sent.get(&m.payload));
        if kept_step.is_none_or(|(_, s)| s < step) {
            sim.fail(&format!(
                "seed {seed}: acknowledged retained {payload:?} on r/k{k} is lost: {:?}",
                kept.map(|m| m.payload.clone())
            ));
        }
    }
    // Every live subscriber gets what is published now.
    for name in ["s1", "s2", "p"] {
        if !sim.clients[name].connected {
            let at = sim.live()[0];
            sim.connect(name, at);
        }
    }
    sim.run(ms(500));
    sim.subscribe("s1", "t/#", QoS::AtLeastOnce);
    sim.subscribe("s2", "t/#", QoS::AtLeastOnce);
    let (n1, n2) = (
        sim.clients["s1"].node.unwrap_or(0),
        sim.clients["s2"].node.unwrap_or(0),
    );
    settle(&mut sim, &[(n1, "t/#"), (n2, "t/#")], seed);
    sim.publish("p", "t/final", QoS::AtLeastOnce, false, "final");
    sim.run(secs(1));
    // And its publisher's acknowledgement: nothing left waiting for ever on a receipt that a
    // crashed node never sent.
    if !sim.clients["p"].acked.iter().any(|p| p == "final") {
        sim.fail(&format!(
            "seed {seed}: the final message was never acknowledged"
        ));
    }
    for name in ["s1", "s2"] {
        let got = sim.clients[name].received.iter().any(|(_, p)| p == "final");
        if !got {
            sim.fail(&format!(
                "seed {seed}: live subscriber {name} missed the final message"
            ));
        }
    }
    // Measured, not checked (docs/cluster.md, "Delivery window during a move"): the roamer's
    // acknowledged QoS 2 messages that never reached it, once it resumed its session at the end.
    if !sim.clients["roamer"].connected {
        let at = sim.live()[0];
        sim.connect_session("roamer", at);
    }
    sim.run(secs(3));
    // Its CONNECT is answered, on a settled cluster (seed 13653: it waited for ever).
    if !sim.clients["roamer"].connected {
        sim.fail(&format!(
            "seed {seed}: the roamer's last CONNECT was never accepted"
        ));
    }
    // Every relay a node stored arrived (or was given up on) by now: none stays on a disk; nor
    // does a session kept only as a version handed over (its handover arrived, or the node took
    // the session back and merged the version).
    for id in sim.live() {
        let relays = &sim.disk(id).relays;
        if !relays.is_empty() {
            sim.fail(&format!(
                "seed {seed}: node {id} still stores relays {:?}",
                relays.keys().collect::<Vec<_>>()
            ));
        }
        let handed_over = &sim.disk(id).handed_over;
        if !handed_over.is_empty() {
            sim.fail(&format!(
                "seed {seed}: node {id} still keeps sessions handed over: {handed_over:?}"
            ));
        }
    }
    let got: BTreeSet<&Bytes> = sim.clients["roamer"]
        .received
        .iter()
        .map(|(_, p)| p)
        .collect();
    let sent: Vec<&Bytes> = acked.iter().filter(|m| roamer_wants.contains(*m)).collect();
    let missed = sent.iter().filter(|m| !got.contains(*m)).count();
    let handed: u64 = sim
        .live()
        .into_iter()
        .map(|id| stats(&sim, id).handovers_received)
        .sum();
    let down: u64 = sim
        .live()
        .into_iter()
        .map(|id| stats(&sim, id).nodes_down)
        .max()
        .unwrap_or(0);
    format!(
        "{}{:?}\nhandovers received: {handed}\nnodes declared down: {down}\n\
         roamer missed: {missed}\nroamer acknowledged: {}\n",
        sim.log(),
        sim.clients,
        sent.len()
    )
}

#[test]
fn a_seed_replays_exactly() {
    assert_eq!(scenario(7), scenario(7));
}

/// The sum of the numbers after `prefix` on the lines of a scenario's log.
fn tally(log: &str, prefix: &str) -> usize {
    log.lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .filter_map(|n| n.parse::<usize>().ok())
        .sum()
}

/// Seeds beyond the CI range whose roamer missed messages until the cause was traced and fixed:
/// 804 (the move window was in memory only), 3319 (a write made for a session handed over on one
/// entry was labelled with the next, which gave the session back, and started the copies over
/// with nothing but the session's record: the session later taken from a copy had no
/// subscription, and the roamer missed all 8), 1179 (a node that had not yet applied the claim
/// that gave it the session dropped three relays for it as another node's), 662 (a node that had
/// handed the session on and restarted dropped three relays for it instead of passing them on),
/// 4137 (three messages that waited for a node declared down never reached the session the
/// publisher's node had taken from its copy meanwhile), 516 (the session went back to the node
/// it had left, whose interest from before was still in the table: the publisher's node stopped
/// routing the session's filters there, and the old interest's decrement then left a message
/// with nowhere to go), 1954 (a QoS 2 message the session had sent on a connection its client
/// had left, on a node that crashed before the write reached the copies, came back in a late
/// handover; the session taken from a copy meanwhile had given its packet identifier to another
/// message, so it was left out), 2732 (the owner sent three QoS 2 messages on a connection its
/// client had left and crashed before their writes reached the copies; restarted, it found the
/// session another node's and relayed only its queued messages), 854 (the owner crashed while two
/// QoS 2 PUBLISHes waited for their writes, restarted with them as sent, and its late handover was
/// merged without them), 5172 (a session installed from a handover was written to the log whole,
/// but its move window in a later entry, which never committed: the node that then took the
/// session from its copy had its marks without the window, and dropped two messages the window
/// had still to take), 3630 (a node cut off while another restarted took the restart in a
/// snapshot, and routed a message for the restarted node's session nowhere), 4990 (a late
/// handover with two messages no copy had reached a node whose wait a newer claim had ended,
/// which passed on only the session it waited for), 8149 (a handover that came ahead of its claim
/// was superseded by a newer claim of the same node inside a snapshot, and dropped with four
/// messages only it had), 7840 and 8670 (the old node relayed what reached it after a partition
/// healed, acknowledged those messages on its inbound link at once, and crashed before the relays
/// arrived), 13653 (a restarted node applied its own `Down` while it waited for the roamer's
/// session, and dropped the wait with two relays it kept: their receipt held every later storage
/// batch, and the roamer's CONNACK there, for ever), 11154 (a node handed the session over with three
/// messages whose writes the move had made moot, deleted it from its store, and crashed before the
/// handover arrived), 16899 (a node cut off took two messages into the session it still thought
/// its own, learned from a snapshot that a newer claim of its own gave the client back, and
/// installed the handover from the node in between over its own version, without them), 20110
/// (a node learned from a snapshot that the session of a client connected to it was another
/// node's, handed it over and ended it, and left the connection open, attached to nothing),
/// 23141 (a node took the session in a handover, and a second claim of its own came in a
/// snapshot before it wrote the session: it waited for the writer of its copy instead of going
/// on with the session it held, and left the first connection attached to it while the client
/// moved on), 21162 (a node behind the log learned of a new claim of its own from a snapshot and
/// waited for the session, with the client's connection from its claim long before still
/// attached to its stale version), 21098 (a node that had owned the client long before took its
/// stale session for the latest, and delivered a QoS 2 message a second time under another
/// packet identifier), 21131 (a node ended a session it handed over, keeping its records until
/// the handover arrived, took the session back, and crashed: restarted with the old records under
/// the new session, it took the old one's relays again and delivered a QoS 2 message twice),
/// 21815 (a node behind the log got the handover for its claim, learned of that claim and its
/// next one from a snapshot, waited for a handover for the next one, which nobody sends, and
/// took the session from its copy at the deadline: a QoS 2 message the handover's sender had
/// completed went to the client again), 24039 (a node that kept a session's records for its
/// handover crashed, restarted, handed the version over again, crashed again, and restarted
/// owning the client by a claim of its earlier incarnation: it took the records for the session
/// and sent a QoS 2 message again that the session had completed elsewhere), 20587 (the first fix
/// for 21815 took a restarted node's late handover of flows alone, sent at the position that gave
/// the node the client, for the session, without its high-water marks: a relay then went in
/// again and a QoS 2 message was delivered twice), 32815 (the same with a node's own flows-only
/// late handover, under its incarnation and token 0, passed back to it by the node it went to),
/// 36881 (a node restarted with a version it had handed over before its crash set aside, learned
/// that it had been declared down meanwhile, and ended its wait without passing the version on:
/// its records stayed in the store for good), 42610 (a node back from a partition found that a
/// client connected to it had moved, and published the client's will as it took the connection
/// over, after the owner had published it from its copy: delivered twice), 51529 (a node cut off
/// for the whole of another's second incarnation still had that node's first as the last its link
/// heard, took a relay of the first incarnation's for the newest, and delivered a QoS 2 message
/// twice), 52316 (a node took a message into the session, learned of a new claim of its own from
/// a snapshot, waited for the session from the writer of its copy, passed on the one that came,
/// and dropped its own version with the message), 56584 (a claimant got the session, with four
/// messages no copy had, handed it on to a newer claimant cut off from it, and crashed: the
/// handover died with its link, and the old owner had dropped its records on the claimant's
/// acknowledgement), 56902 (a session went to another node and back within what a snapshot
/// covered; its owner crashed before it arrived, and the node that took the snapshot routed a
/// message for it nowhere), 59483 (a node back from a partition found in an old snapshot that the
/// session it held was another node's, under a claim that node still waited on; its stale
/// version was taken for the session, and a QoS 2 message the client had completed on a third
/// node in between went to it again), 62041 (a node behind the log handed over its stale version
/// of the session and took its own newer claim; its interest went to 0 and back to 1 around the
/// session's arrival, and a message published in between reached no node), 91539 (a node
/// restarted owning the client, took the session from its store, and merged a late handover whose
/// messages raised the marks; a message routed to it before its crash, held on the link, came
/// after and was refused as taken), 105726 (on the first fix for seed 18563, a node restarted with
/// the session it had taken from its copy while cut off, whose writes never committed, and after
/// a snapshot took it for superseded: set aside, its seven messages reached the next owner after
/// the marks had passed them).
#[test]
fn traced_seeds_miss_nothing() {
    for seed in [
        516, 662, 804, 854, 1179, 1954, 2732, 3319, 3630, 4137, 4990, 5172, 7840, 8149, 8670,
        11154, 13653, 16899, 20110, 20587, 21098, 21131, 21162, 21815, 23141, 24039, 32815, 36881,
        42610, 51529, 52316, 56584, 56902, 59483, 62041, 91539, 105726,
    ] {
        let log = scenario(seed);
        assert!(tally(&log, "roamer acknowledged: ") > 0, "seed {seed}");
        assert_eq!(tally(&log, "roamer missed: "), 0, "seed {seed}:\n{log}");
    }
}

/// Seeds that broke an invariant on earlier builds, rather than miss a message (18563 counts none
/// for the roamer, so it cannot be among the seeds above): 18563 (a node restarted owning the client by a claim of its
/// earlier incarnation, whose handover never came before the restart; it took the version its
/// store held from long before for the session, handed it on to the next claimant without the
/// marks of what the session had taken elsewhere, and three old messages held on a link to it
/// reached the client a second time), 97191 (on the first fix for 18563, a node restarted
/// with its own session and, at the end of the replay of its log, took it for superseded: the
/// entry with its writes came after the commit index it had stored; the version it set aside
/// stayed in its store for good).
#[test]
fn traced_seeds_keep_the_invariants() {
    let seeds: &[u64] = &[18563, 97191];
    for &seed in seeds {
        let log = scenario(seed);
        assert!(
            tally(&log, "handovers received: ") > 0,
            "seed {seed}:\n{log}"
        );
    }
}

#[test]
fn seeds() {
    let seeds: Vec<u64> = match std::env::var("CICADA_SIM_SEED") {
        Ok(one) => vec![one.parse().expect("CICADA_SIM_SEED is a number")],
        Err(_) => {
            let n = std::env::var("CICADA_SIM_SEEDS")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(200);
            let from: u64 = std::env::var("CICADA_SIM_FROM")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            (from..from + n).collect()
        }
    };
    let (mut moved, mut downs, mut missed, mut roamed) = (0, 0, 0, 0);
    for &seed in &seeds {
        let result = std::panic::catch_unwind(|| scenario(seed));
        match result {
            Ok(log) => {
                if std::env::var_os("CICADA_SIM_LOG").is_some() {
                    eprintln!("--- seed {seed} ---\n{log}");
                }
                let count = |prefix: &str| tally(&log, prefix);
                moved += count("handovers received: ");
                downs += count("nodes declared down: ");
                let lost = count("roamer missed: ");
                if lost > 0 {
                    eprintln!("seed {seed}: the roamer missed {lost}");
                }
                missed += lost;
                roamed += count("roamer acknowledged: ");
            }
            Err(e) => {
                eprintln!("cluster simulation failed with seed {seed}; replay: CICADA_SIM_SEED={seed} cargo test -p cicada-engine --test cluster_sim seeds");
                std::panic::resume_unwind(e);
            }
        }
    }
    // The seeds exercise what they are meant to: sessions handed over between nodes (counted on
    // the nodes alive at the end).
    eprintln!(
        "{} seeds, {moved} sessions handed over, {downs} nodes declared down; the roamer \
         missed {missed} of {roamed} acknowledged QoS 2 messages",
        seeds.len()
    );
    if seeds.len() >= 100 {
        assert!(
            moved >= seeds.len() / 2,
            "only {moved} sessions handed over"
        );
        // and nodes declared down, in the seeds that give up on a silent node sooner.
        assert!(
            downs >= seeds.len() / 20,
            "only {downs} nodes declared down"
        );
        // What the roamer misses is the known gap of docs/cluster.md ("Session handover", "Not
        // covered"): none of the CI seeds' 1,424 acknowledged messages, which every fixed seed
        // keeps so; beyond them it must not grow back past 1%.
        let ci_seeds = seeds.first() == Some(&0) && seeds.len() == 200;
        assert!(
            missed * 100 <= roamed && (missed == 0 || !ci_seeds),
            "the roamer missed {missed} of {roamed} acknowledged QoS 2 messages"
        );
    }
}
