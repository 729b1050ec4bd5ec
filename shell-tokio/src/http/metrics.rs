//! Prometheus metrics: the engine's counters and gauges, read in one snapshot per scrape, plus the
//! shell's own latency histograms.
//!
//! The engine counts (it is the only one that sees every packet); a scrape asks the engine task
//! for a [`Snapshot`] and renders it here, off the engine task, in the OpenMetrics text format.
//! Names follow Prometheus conventions: a `cicada_` prefix, base units (seconds, bytes), counters
//! ending in `_total`.

use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use cicada_engine::{Stats, TenantStats, Totals};

/// Latencies the shell measures, shared by the threads that measure them (atomics inside).
#[derive(Debug, Clone)]
pub struct Telemetry {
    /// From a storage batch's hand-off to the storage thread until it is durable.
    pub persist_latency: Histogram,
    /// One engine loop turn: handling what arrived and sending what it produced.
    pub loop_turn: Histogram,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry {
            // 10 µs .. ~5 s.
            persist_latency: Histogram::new(exponential_buckets(0.000_01, 2.5, 15)),
            // 1 µs .. ~0.5 s.
            loop_turn: Histogram::new(exponential_buckets(0.000_001, 2.5, 15)),
        }
    }
}

impl Telemetry {
    pub fn persisted(&self, took: Duration) {
        self.persist_latency.observe(took.as_secs_f64());
    }

    pub fn turn(&self, took: Duration) {
        self.loop_turn.observe(took.as_secs_f64());
    }
}

/// What the engine task reports for one scrape.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub stats: Stats,
    pub totals: Totals,
    pub connections: usize,
    pub sessions: usize,
    pub subscriptions: usize,
    pub retained: usize,
    pub tenants: Vec<(String, TenantStats)>,
    pub uptime: Duration,
    /// This node's cluster state and its links, if it is a cluster node.
    pub cluster: Option<ClusterSnapshot>,
}

/// A cluster node's state for one scrape.
#[derive(Debug, Clone, Default)]
pub struct ClusterSnapshot {
    pub node: u16,
    pub stats: cicada_engine::ClusterStats,
    /// The leader this node knows of.
    pub leader: Option<u16>,
    /// Frames received from other nodes.
    pub received: u64,
    pub links: Vec<crate::cluster::LinkView>,
}

type Labels = Vec<(&'static str, String)>;

fn gauge(registry: &mut Registry, name: &str, help: &str, value: usize) {
    let value = i64::try_from(value).unwrap_or(i64::MAX);
    registry.register(name, help, ConstGauge::new(value));
}

fn counter(registry: &mut Registry, name: &str, help: &str, value: u64) {
    registry.register(name, help, ConstCounter::new(value));
}

/// A counter family with one label, e.g. messages by QoS.
fn labelled(
    registry: &mut Registry,
    name: &str,
    help: &str,
    label: &'static str,
    values: &[(&str, u64)],
) {
    let family = Family::<Labels, prometheus_client::metrics::counter::Counter>::default();
    for (value, count) in values {
        family
            .get_or_create(&vec![(label, (*value).to_string())])
            .inc_by(*count);
    }
    registry.register(name, help, family);
}

/// The text a scrape gets.
pub fn render(
    snapshot: &Snapshot,
    telemetry: &Telemetry,
    bridges: &[crate::bridge::BridgeView],
    webhooks: &[crate::webhook::WebhookView],
) -> String {
    let mut r = Registry::default();
    let s = &snapshot.stats;
    let t = &snapshot.totals;
    let gauges = [
        (
            "cicada_connections",
            "Open network connections, connected or not yet",
            snapshot.connections,
        ),
        (
            "cicada_clients_connected",
            "Clients that completed CONNECT",
            t.connected,
        ),
        (
            "cicada_sessions",
            "Sessions, online or offline",
            snapshot.sessions,
        ),
        (
            "cicada_subscriptions",
            "Subscriptions across all sessions",
            snapshot.subscriptions,
        ),
        (
            "cicada_retained_messages",
            "Topics holding a retained message",
            snapshot.retained,
        ),
        (
            "cicada_inflight_messages",
            "QoS 1/2 messages sent and not yet acknowledged",
            t.inflight,
        ),
        (
            "cicada_queued_messages",
            "Messages queued in sessions, not yet sent",
            t.queued,
        ),
        (
            "cicada_queued_bytes",
            "Payload bytes of the queued messages",
            t.queued_bytes,
        ),
    ];
    for (name, help, value) in gauges {
        gauge(&mut r, name, help, value);
    }
    let uptime = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
    uptime.set(snapshot.uptime.as_secs_f64());
    r.register(
        "cicada_uptime_seconds",
        "Seconds since the broker started",
        uptime,
    );
    let qos = |counts: &[u64; 3]| [("0", counts[0]), ("1", counts[1]), ("2", counts[2])];
    labelled(
        &mut r,
        "cicada_messages_received",
        "PUBLISH packets accepted from clients, by QoS",
        "qos",
        &qos(&s.publishes_received_by_qos),
    );
    labelled(
        &mut r,
        "cicada_messages_sent",
        "PUBLISH packets written to clients (retransmissions included), by delivery QoS",
        "qos",
        &qos(&s.publishes_sent_by_qos),
    );
    let counters = [
        (
            "cicada_connections_accepted",
            "Connections accepted",
            s.connections_accepted,
        ),
        (
            "cicada_received_bytes",
            "Bytes received from clients",
            s.bytes_received,
        ),
        ("cicada_sent_bytes", "Bytes sent to clients", s.bytes_sent),
        (
            "cicada_auth_failures",
            "CONNECTs and re-authentications the authenticator refused",
            s.auth_failures,
        ),
        (
            "cicada_protocol_violations",
            "Connections closed for breaking a protocol rule",
            s.protocol_violations,
        ),
    ];
    for (name, help, value) in counters {
        counter(&mut r, name, help, value);
    }
    let d = &s.dropped;
    labelled(
        &mut r,
        "cicada_messages_dropped",
        "Messages not delivered to a session, by reason",
        "reason",
        &[
            ("queue_full", d.queue_full),
            ("qos0_evicted", d.qos0_evicted),
            ("expired", d.expired),
            ("too_large_for_client", d.too_large_for_client),
            ("offline", d.offline),
        ],
    );
    labelled(
        &mut r,
        "cicada_refused",
        "Requests refused by the ACL, a ban or a quota, by rule",
        "rule",
        &[
            ("publish_denied", s.publishes_denied),
            ("publish_over_rate", s.publishes_dropped_by_quota),
            ("publish_throttled", s.publishes_throttled),
            ("subscribe_denied", s.subscriptions_denied),
            ("subscriptions_over_quota", s.subscriptions_over_quota),
            ("connect_banned", s.connects_banned),
            ("connect_rate", s.connects_rate_limited),
            ("slow_consumer", s.slow_consumers_disconnected),
        ],
    );
    tenant_metrics(&mut r, &snapshot.tenants);
    bridge_metrics(&mut r, bridges);
    if let Some(cluster) = &snapshot.cluster {
        cluster_metrics(&mut r, cluster);
    }
    webhook_metrics(&mut r, webhooks);
    r.register(
        "cicada_persist_latency_seconds",
        "From a storage batch's hand-off until it is durable",
        telemetry.persist_latency.clone(),
    );
    r.register(
        "cicada_loop_turn_seconds",
        "One engine loop turn: handling inputs and sending their output",
        telemetry.loop_turn.clone(),
    );
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut text, &r);
    text
}

/// A cluster node's raft state, counters and links (labelled `node`, the other end).
fn cluster_metrics(r: &mut Registry, c: &ClusterSnapshot) {
    let s = &c.stats;
    let as_usize = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    for (name, help, value) in [
        (
            "cicada_cluster_leader",
            "Whether this node is the raft leader (1) or not (0)",
            usize::from(s.leader),
        ),
        (
            "cicada_cluster_has_leader",
            "Whether this node knows of a raft leader (0: no majority reachable)",
            usize::from(c.leader.is_some()),
        ),
        ("cicada_cluster_term", "The raft term", as_usize(s.term)),
        (
            "cicada_cluster_applied_index",
            "The last raft log index applied on this node",
            as_usize(s.applied),
        ),
        (
            "cicada_cluster_unacked_messages",
            "Messages to other nodes waiting for their acknowledgement",
            as_usize(s.unacked),
        ),
        (
            "cicada_cluster_replicated_sessions",
            "Persistent sessions of other nodes copied here from the log",
            as_usize(s.replicated_sessions),
        ),
        (
            "cicada_cluster_writes_uncommitted",
            "Session write entries of this node not yet committed (they hold its acknowledgements)",
            as_usize(s.writes_uncommitted),
        ),
        (
            "cicada_cluster_log_entries",
            "Raft log entries held after the last snapshot",
            as_usize(s.log_entries),
        ),
        (
            "cicada_cluster_snapshot_index",
            "The log index of the last snapshot",
            as_usize(s.snapshot_index),
        ),
    ] {
        gauge(r, name, help, value);
    }
    for (name, help, value) in [
        (
            "cicada_cluster_frames_received",
            "Frames received from other nodes",
            c.received,
        ),
        (
            "cicada_cluster_bad_frames",
            "Frames from other nodes that did not decode",
            s.bad_frames,
        ),
        (
            "cicada_cluster_peer_drops",
            "Messages to other nodes dropped after the peer timeout",
            s.peer_drops,
        ),
        (
            "cicada_cluster_claims_timed_out",
            "CONNECTs refused because the claim of their client id did not commit in time",
            s.claims_timed_out,
        ),
        (
            "cicada_cluster_fenced",
            "Times this node lost its leader too long and disconnected its clients",
            s.fenced,
        ),
        (
            "cicada_cluster_handovers_sent",
            "Persistent sessions handed over to another node",
            s.handovers_sent,
        ),
        (
            "cicada_cluster_handovers_received",
            "Persistent sessions handed over from another node",
            s.handovers_received,
        ),
        (
            "cicada_cluster_handover_timeouts",
            "Resuming clients that got a fresh session because theirs did not come in time",
            s.handover_timeouts,
        ),
        (
            "cicada_cluster_handover_messages_dropped",
            "Queued messages a handover left behind: the session held more than one link frame carries",
            s.handover_messages_dropped,
        ),
        (
            "cicada_cluster_duplicates_dropped",
            "Late copies of messages a moved session had already taken",
            s.duplicates_dropped,
        ),
        (
            "cicada_cluster_failovers",
            "Resuming clients whose node had died that got their session from this node's copy",
            s.failovers,
        ),
        (
            "cicada_cluster_snapshots_taken",
            "Snapshots of the applied state this node took (and dropped the log up to)",
            s.snapshots_taken,
        ),
        (
            "cicada_cluster_snapshots_received",
            "Snapshots this node received from a leader after falling behind the log, or joining",
            s.snapshots_received,
        ),
        (
            "cicada_cluster_nodes_down",
            "Nodes declared down (silent for peer_timeout), as this node applied it",
            s.nodes_down,
        ),
        (
            "cicada_cluster_sessions_adopted",
            "Sessions this node adopted from nodes declared down",
            s.sessions_adopted,
        ),
    ] {
        counter(r, name, help, value);
    }
    type Counter = prometheus_client::metrics::counter::Counter;
    let label = |node: u16| vec![("node", node.to_string())];
    let connected = Family::<Labels, Gauge>::default();
    let sent = Family::<Labels, Counter>::default();
    let dropped = Family::<Labels, Counter>::default();
    for link in &c.links {
        connected
            .get_or_create(&label(link.node))
            .set(i64::from(link.connected));
        sent.get_or_create(&label(link.node)).inc_by(link.sent);
        dropped
            .get_or_create(&label(link.node))
            .inc_by(link.dropped);
    }
    r.register(
        "cicada_cluster_link_connected",
        "Whether the connection to another node is up",
        connected,
    );
    r.register(
        "cicada_cluster_link_frames_sent",
        "Frames written to another node",
        sent,
    );
    r.register(
        "cicada_cluster_link_frames_dropped",
        "Frames dropped at another node's full queue (the engine resends what matters)",
        dropped,
    );
}

/// Per-bridge state and counters, labelled `bridge` (and `direction` for messages).
fn bridge_metrics(r: &mut Registry, bridges: &[crate::bridge::BridgeView]) {
    if bridges.is_empty() {
        return;
    }
    type Counter = prometheus_client::metrics::counter::Counter;
    let label = |name: &str| vec![("bridge", name.to_string())];
    let connected = Family::<Labels, Gauge>::default();
    let messages = Family::<Labels, Counter>::default();
    let dropped = Family::<Labels, Counter>::default();
    let connects = Family::<Labels, Counter>::default();
    for b in bridges {
        connected
            .get_or_create(&label(&b.name))
            .set(i64::from(b.connected));
        for (direction, count) in [("out", b.messages_out), ("in", b.messages_in)] {
            let mut labels = label(&b.name);
            labels.push(("direction", direction.to_string()));
            messages.get_or_create(&labels).inc_by(count);
        }
        dropped.get_or_create(&label(&b.name)).inc_by(b.dropped);
        connects.get_or_create(&label(&b.name)).inc_by(b.connects);
    }
    r.register(
        "cicada_bridge_connected",
        "Whether a bridge's links to the remote and to this broker are up",
        connected,
    );
    r.register(
        "cicada_bridge_messages",
        "Messages a bridge forwarded, by direction (out: to the remote)",
        messages,
    );
    r.register(
        "cicada_bridge_dropped",
        "Messages a bridge dropped: refused by either side or matching no mapping",
        dropped,
    );
    r.register(
        "cicada_bridge_connects",
        "Successful connections of a bridge, the first and every reconnection",
        connects,
    );
}

/// Per-webhook counters, labelled `webhook` (and `outcome` for events).
fn webhook_metrics(r: &mut Registry, webhooks: &[crate::webhook::WebhookView]) {
    if webhooks.is_empty() {
        return;
    }
    type Counter = prometheus_client::metrics::counter::Counter;
    let events = Family::<Labels, Counter>::default();
    let retries = Family::<Labels, Counter>::default();
    for w in webhooks {
        for (outcome, count) in [
            ("queued", w.queued),
            ("sent", w.sent),
            ("dropped", w.dropped),
            ("dead_letter", w.dead_letters),
        ] {
            let labels = vec![
                ("webhook", w.name.clone()),
                ("outcome", outcome.to_string()),
            ];
            events.get_or_create(&labels).inc_by(count);
        }
        retries
            .get_or_create(&vec![("webhook", w.name.clone())])
            .inc_by(w.retries);
    }
    r.register(
        "cicada_webhook_events",
        "Webhook events by outcome: queued, sent (2xx), dropped (queue full), dead_letter (given up)",
        events,
    );
    r.register(
        "cicada_webhook_retries",
        "Webhook POSTs that failed and were tried again",
        retries,
    );
}

/// A per-tenant gauge: name, help, and what it reads.
type TenantGauge = (&'static str, &'static str, fn(&TenantStats) -> usize);
/// A per-tenant counter.
type TenantCounter = (&'static str, &'static str, fn(&TenantStats) -> u64);

const TENANT_GAUGES: [TenantGauge; 4] = [
    (
        "cicada_tenant_connections",
        "A tenant's open connections",
        |t| t.connections,
    ),
    (
        "cicada_tenant_subscriptions",
        "A tenant's subscriptions",
        |t| t.subscriptions,
    ),
    (
        "cicada_tenant_queued_messages",
        "Messages queued in a tenant's sessions",
        |t| t.queued_messages,
    ),
    (
        "cicada_tenant_queued_bytes",
        "Payload bytes queued in a tenant's sessions",
        |t| t.queued_bytes,
    ),
];

const TENANT_COUNTERS: [TenantCounter; 6] = [
    (
        "cicada_tenant_connects",
        "CONNECTs admitted into a tenant",
        |t| t.connects,
    ),
    (
        "cicada_tenant_connects_refused",
        "CONNECTs refused over a tenant's connection limit",
        |t| t.connects_refused,
    ),
    (
        "cicada_tenant_messages_received",
        "PUBLISH packets from a tenant's clients",
        |t| t.publishes_received,
    ),
    (
        "cicada_tenant_received_bytes",
        "Payload bytes from a tenant's clients",
        |t| t.bytes_received,
    ),
    (
        "cicada_tenant_publishes_over_rate",
        "PUBLISH packets over a tenant's shared rate",
        |t| t.publishes_over_rate,
    ),
    (
        "cicada_tenant_subscriptions_refused",
        "Subscriptions refused over a tenant's limit",
        |t| t.subscriptions_refused,
    ),
];

fn tenant_metrics(r: &mut Registry, tenants: &[(String, TenantStats)]) {
    if tenants.is_empty() {
        return;
    }
    let label = |name: &str| vec![("tenant", name.to_string())];
    for (name, help, read) in TENANT_GAUGES {
        let family = Family::<Labels, Gauge>::default();
        for (tenant, t) in tenants {
            family
                .get_or_create(&label(tenant))
                .set(i64::try_from(read(t)).unwrap_or(i64::MAX));
        }
        r.register(name, help, family);
    }
    for (name, help, read) in TENANT_COUNTERS {
        let family = Family::<Labels, prometheus_client::metrics::counter::Counter>::default();
        for (tenant, t) in tenants {
            family.get_or_create(&label(tenant)).inc_by(read(t));
        }
        r.register(name, help, family);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions() {
        let mut snapshot = Snapshot::default();
        snapshot.stats.publishes_received_by_qos = [3, 2, 1];
        snapshot.stats.bytes_received = 42;
        snapshot.connections = 2;
        snapshot.tenants = vec![("acme".into(), TenantStats::default())];
        let telemetry = Telemetry::default();
        telemetry.persisted(Duration::from_millis(2));
        let text = render(&snapshot, &telemetry, &[], &[]);
        for line in [
            "cicada_connections 2",
            "cicada_messages_received_total{qos=\"0\"} 3",
            "cicada_messages_received_total{qos=\"2\"} 1",
            "cicada_received_bytes_total 42",
            "cicada_tenant_connections{tenant=\"acme\"} 0",
            "cicada_persist_latency_seconds_count 1",
            "# TYPE cicada_loop_turn_seconds histogram",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line:?} missing in\n{text}"
            );
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
