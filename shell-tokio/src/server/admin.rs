//! The engine task's side of the admin API: answers from the engine's state, and changes made
//! through the engine's inputs, between two inputs like any other happening.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use base64::Engine as _;
use bytes::Bytes;
use cicada_engine::codec::ReasonCode;
use cicada_engine::{ConnId, Input, Message, SessionInfo, SubscriptionInfo};
use serde_json::{json, Value};
use tracing::{info, warn};

use super::EngineTask;
use crate::banfile::BanEntry;
use crate::http::metrics::Snapshot;
use crate::http::{ApiError, Reply, Request};

fn ok(body: Value) -> Reply {
    Reply::Json(StatusCode::OK, body)
}

fn unix_secs(at: cicada_engine::Instant) -> u64 {
    at.since_origin().as_secs()
}

fn session_json(s: &SessionInfo) -> Value {
    json!({
        "client_id": &*s.client_id,
        "connected": s.conn.is_some(),
        "protocol": s.protocol.to_string(),
        "peer": s.peer,
        "listener": s.listener,
        "username": s.username.as_deref(),
        "tenant": s.tenant,
        "expiry_interval": s.expiry_interval,
        "offline_since": s.offline_since.map(unix_secs),
        "subscriptions": s.subscriptions,
        "queued": s.queued,
        "queued_bytes": s.queued_bytes,
        "inflight": s.inflight,
    })
}

fn subscription_json(s: &SubscriptionInfo) -> Value {
    json!({
        "client_id": &*s.client_id,
        "filter": &*s.filter,
        "qos": s.qos as u8,
        "no_local": s.no_local,
        "retain_as_published": s.retain_as_published,
        "retain_handling": s.retain_handling,
        "subscription_id": s.id,
    })
}

fn message_json(m: &Message) -> Value {
    json!({
        "topic": m.topic.as_str(),
        "qos": m.qos as u8,
        "size": m.payload.len(),
        "payload": std::str::from_utf8(&m.payload).ok(),
        "payload_base64": base64::engine::general_purpose::STANDARD.encode(&m.payload),
    })
}

fn ban_json(b: &BanEntry) -> Value {
    let (kind, value) = match &b.target {
        cicada_engine::limits::BanTarget::ClientId(g) => ("client", g.clone()),
        cicada_engine::limits::BanTarget::Username(g) => ("user", g.clone()),
        cicada_engine::limits::BanTarget::Address(net) => ("address", net.to_string()),
    };
    json!({
        "kind": kind,
        "value": value,
        "line": b.to_string(),
        "until": b.until.map(|t| humantime::format_rfc3339(t).to_string()),
        "reason": b.reason,
    })
}

fn page<T>(
    items: impl Iterator<Item = T>,
    offset: usize,
    limit: usize,
    json: impl Fn(&T) -> Value,
) -> Value {
    let mut total = 0;
    let mut page = Vec::new();
    for item in items {
        if total >= offset && page.len() < limit {
            page.push(json(&item));
        }
        total += 1;
    }
    json!({ "total": total, "items": page })
}

impl EngineTask {
    /// Answers one admin request.
    pub(super) fn answer(
        &mut self,
        request: Request,
        batch: &mut BTreeMap<ConnId, Vec<Bytes>>,
    ) -> Reply {
        match request {
            Request::Ping => ok(json!({})),
            Request::Metrics => Reply::Metrics(Box::new(self.snapshot())),
            Request::Overview => {
                let s = self.engine.stats();
                ok(json!({
                    "uptime_secs": self.start.elapsed().as_secs(),
                    "connections": self.engine.connection_count(),
                    "sessions": self.engine.session_count(),
                    "subscriptions": self.engine.subscription_count(),
                    "retained": self.engine.retained_count(),
                    "messages_received": s.publishes_received,
                    "messages_sent": s.publishes_sent,
                    "messages_dropped": s.messages_dropped,
                    "bytes_received": s.bytes_received,
                    "bytes_sent": s.bytes_sent,
                }))
            }
            Request::Clients(q) => {
                let matches = |s: &SessionInfo| {
                    (q.search.is_empty()
                        || s.client_id.contains(q.search.as_str())
                        || s.username
                            .as_deref()
                            .is_some_and(|u| u.contains(q.search.as_str())))
                        && q.connected.is_none_or(|c| c == s.conn.is_some())
                };
                ok(page(
                    self.engine.sessions().filter(matches),
                    q.offset,
                    q.limit,
                    session_json,
                ))
            }
            Request::Client(id) => {
                match (self.engine.session(&id), self.engine.subscriptions_of(&id)) {
                    (Some(session), Some(subs)) => {
                        let mut body = session_json(&session);
                        body["subscription_list"] = subs.iter().map(subscription_json).collect();
                        ok(body)
                    }
                    _ => no_session(&id),
                }
            }
            Request::Kick(id) => match self.engine.session(&id).map(|s| s.conn) {
                Some(Some(conn)) => {
                    info!(client_id = %id, "admin: kicking the client");
                    self.input(
                        Input::Kick {
                            conn,
                            reason: ReasonCode::AdministrativeAction,
                            why: "disconnected by an administrator".into(),
                        },
                        batch,
                    );
                    ok(json!({ "kicked": id }))
                }
                Some(None) => Reply::Error(ApiError::new(
                    StatusCode::CONFLICT,
                    Some("client_id"),
                    format!("client {id:?} is not connected (its session is offline)"),
                )),
                None => no_session(&id),
            },
            Request::DeleteSession(id) => {
                if self.engine.session(&id).is_none() {
                    return no_session(&id);
                }
                info!(client_id = %id, "admin: deleting the session");
                self.input(
                    Input::DeleteSession {
                        client_id: id.as_str().into(),
                    },
                    batch,
                );
                ok(json!({ "deleted": id }))
            }
            Request::Subscriptions(q) => {
                let matches = |s: &SubscriptionInfo| {
                    q.client_id.as_deref().is_none_or(|c| *s.client_id == *c)
                        && s.filter.contains(q.search.as_str())
                };
                ok(page(
                    self.engine.subscriptions().filter(matches),
                    q.offset,
                    q.limit,
                    subscription_json,
                ))
            }
            Request::Retained { filter, limit } => {
                let items: Vec<Value> = self
                    .engine
                    .retained_matching(&filter, limit)
                    .iter()
                    .map(|m| message_json(m))
                    .collect();
                ok(json!({ "items": items }))
            }
            Request::RetainedTopic(topic) => match self.engine.retained(&topic) {
                Some(m) => ok(message_json(&m)),
                None => Reply::Error(ApiError::not_found(
                    "topic",
                    format!("no retained message on {:?}", topic.as_str()),
                )),
            },
            Request::DeleteRetained(topic) => {
                if self.engine.retained(&topic).is_none() {
                    return Reply::Error(ApiError::not_found(
                        "topic",
                        format!("no retained message on {:?}", topic.as_str()),
                    ));
                }
                info!(topic = %topic.as_str(), "admin: deleting the retained message");
                self.input(
                    Input::DeleteRetained {
                        topic: topic.clone(),
                    },
                    batch,
                );
                ok(json!({ "deleted": topic.as_str() }))
            }
            Request::TopicStats(topic) => {
                let t = self.engine.topic_stats(&topic);
                ok(json!({
                    "topic": t.topic.as_str(),
                    "subscribers": t.subscribers,
                    "shared_groups": t.shared_groups,
                    "retained": t.retained.as_deref().map(message_json),
                }))
            }
            Request::Reload => {
                let report = self.reload(batch);
                report.log();
                ok(serde_json::to_value(&report).unwrap_or_default())
            }
            Request::Bans => {
                ok(json!({ "items": self.bans.iter().map(ban_json).collect::<Vec<_>>() }))
            }
            Request::AddBan(entry) => {
                let body = ban_json(&entry);
                match self.bans.iter_mut().find(|b| b.target == entry.target) {
                    Some(existing) => *existing = entry,
                    None => self.bans.push(entry),
                }
                self.bans_changed(batch);
                Reply::Json(StatusCode::CREATED, body)
            }
            Request::RemoveBan(target) => {
                let before = self.bans.len();
                self.bans.retain(|b| b.target != target);
                if self.bans.len() == before {
                    return Reply::Error(ApiError::not_found(
                        "value",
                        format!("no ban on {target}"),
                    ));
                }
                self.bans_changed(batch);
                ok(json!({ "lifted": target.to_string() }))
            }
            Request::Listeners => {
                let mut open: BTreeMap<&str, usize> = BTreeMap::new();
                for (_, listener) in self.peers.values() {
                    *open.entry(listener).or_default() += 1;
                }
                let items: Vec<Value> = self
                    .bound
                    .iter()
                    .map(|(name, kind, addr)| {
                        let config = self.settings.listeners.iter().find(|l| &l.name == name);
                        json!({
                            "name": name,
                            "kind": kind.as_str(),
                            "address": addr.to_string(),
                            "accepting": self.listeners.is_some(),
                            "connections": open.get(name.as_str()).copied().unwrap_or(0),
                            "max_connections": config.and_then(|l| l.max_connections),
                            "allow_anonymous": config.map(|l| l.allow_anonymous),
                        })
                    })
                    .collect();
                ok(json!({ "items": items }))
            }
            Request::Cluster => match self.cluster_snapshot() {
                Some(c) => {
                    let links: Vec<Value> = c
                        .links
                        .iter()
                        .map(|l| {
                            json!({
                                "node": l.node,
                                "address": l.address,
                                "connected": l.connected,
                                "dials": l.dials,
                                "frames_sent": l.sent,
                                "frames_dropped": l.dropped,
                            })
                        })
                        .collect();
                    let s = c.stats;
                    let members: Vec<Value> = self
                        .engine
                        .cluster_members()
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(node, added)| {
                            json!({
                                "node": node,
                                "address": added.as_ref().map(|a| a.address.clone()),
                                "mqtt": added.and_then(|a| a.mqtt),
                            })
                        })
                        .collect();
                    let owners = self.engine.cluster_owners();
                    let owned = owners.map_or(0, |o| o.values().filter(|n| **n == c.node).count());
                    ok(json!({
                        "node": c.node,
                        "leader": c.leader,
                        "is_leader": s.leader,
                        "term": s.term,
                        "applied_index": s.applied,
                        "clients_owned": owned,
                        "clients_in_cluster": owners.map_or(0, |o| o.len()),
                        "unacked_messages": s.unacked,
                        "frames_received": c.received,
                        "handovers_sent": s.handovers_sent,
                        "handovers_received": s.handovers_received,
                        "handover_timeouts": s.handover_timeouts,
                        "failovers": s.failovers,
                        "replicated_sessions": s.replicated_sessions,
                        "writes_uncommitted": s.writes_uncommitted,
                        "members": members,
                        "removed": self.engine.cluster_removed(),
                        "snapshot_index": s.snapshot_index,
                        "log_entries": s.log_entries,
                        "snapshots_taken": s.snapshots_taken,
                        "snapshots_received": s.snapshots_received,
                        "raft_parts_received": s.raft_parts_received,
                        "nodes_down": s.nodes_down,
                        "sessions_adopted": s.sessions_adopted,
                        "draining_to": self
                            .engine
                            .config()
                            .redirect
                            .as_ref()
                            .map(|r| r.server_reference.clone()),
                        "links": links,
                    }))
                }
                None => not_a_cluster_node(),
            },
            Request::Drain { to } => self.drain_node(to, batch),
            Request::AddMember { node, address } => {
                let Some(members) = self.engine.cluster_members() else {
                    return not_a_cluster_node();
                };
                if members.iter().any(|(n, _)| *n == node) {
                    return Reply::Error(ApiError::new(
                        StatusCode::CONFLICT,
                        Some("node"),
                        format!("node {node} is a member already"),
                    ));
                }
                info!(node, address = %address.address, "admin: adding a node to the cluster");
                let view = json!({
                    "node": node,
                    "address": address.address,
                    "server_name": address.server_name,
                    "mqtt": address.mqtt,
                    "state": "proposed",
                });
                self.input(Input::ClusterAddMember { node, address }, batch);
                Reply::Json(StatusCode::ACCEPTED, view)
            }
            Request::RemoveMember(node) => {
                let Some(members) = self.engine.cluster_members() else {
                    return not_a_cluster_node();
                };
                if !members.iter().any(|(n, _)| *n == node) {
                    return Reply::Error(ApiError::not_found(
                        "node",
                        format!("node {node} is not a member"),
                    ));
                }
                if members.len() == 1 {
                    return Reply::Error(ApiError::new(
                        StatusCode::CONFLICT,
                        Some("node"),
                        "the last member cannot leave",
                    ));
                }
                info!(node, "admin: removing a node from the cluster");
                self.input(Input::ClusterRemoveMember { node }, batch);
                Reply::Json(
                    StatusCode::ACCEPTED,
                    json!({ "node": node, "state": "proposed" }),
                )
            }
            Request::Undrain => {
                if self.settings.cluster.is_none() {
                    return not_a_cluster_node();
                }
                info!("admin: drain over, accepting clients again");
                self.input(Input::SetRedirect { redirect: None }, batch);
                ok(json!({ "draining_to": null }))
            }
            Request::Providers => Reply::Providers(self.auth.providers()),
            // Answered later, when the engine has (see `EngineTask::publish`).
            Request::Publish { .. } => Reply::Error(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                None,
                "publish requests are not answered here",
            )),
        }
    }

    fn input(&mut self, input: Input, batch: &mut BTreeMap<ConnId, Vec<Bytes>>) {
        let now = self.now();
        self.engine.handle(now, input);
        self.drain(batch);
    }

    /// Bans changed through the API: the engine takes them (newly banned clients go, 0x98), and
    /// the ban file, if there is one, is rewritten so they survive a reload and a restart.
    fn bans_changed(&mut self, batch: &mut BTreeMap<ConnId, Vec<Bytes>>) {
        self.input(
            Input::SetBans {
                bans: crate::policy::engine_bans(&self.bans),
            },
            batch,
        );
        if let Some(path) = &self.settings.bans_file {
            if let Err(e) = crate::banfile::save(path, &self.bans) {
                warn!("admin: the bans are in force but not saved: {e}");
            }
        }
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            stats: self.engine.stats().clone(),
            totals: self.engine.totals(),
            connections: self.engine.connection_count(),
            sessions: self.engine.session_count(),
            subscriptions: self.engine.subscription_count(),
            retained: self.engine.retained_count(),
            tenants: self
                .engine
                .tenant_stats()
                .map(|(name, t)| (name.to_string(), t.clone()))
                .collect(),
            uptime: self.start.elapsed(),
            cluster: self.cluster_snapshot(),
        }
    }

    /// This node's cluster state and links; `None` outside a cluster.
    /// Drains this node: new CONNECTs are refused and every connected client is disconnected, v5
    /// clients with 0x9C Use another server and the Server Reference of node `to` (or of the first
    /// member with an `mqtt` address whose link is up). Their sessions stay here until they
    /// reconnect there, which hands each one over (see docs/cluster.md).
    fn drain_node(&mut self, to: Option<u16>, batch: &mut BTreeMap<ConnId, Vec<Bytes>>) -> Reply {
        if self.settings.cluster.is_none() {
            return not_a_cluster_node();
        }
        let peers = self
            .cluster
            .as_ref()
            .map(|net| net.peers())
            .unwrap_or_default();
        let connected: Vec<u16> = self.cluster.as_ref().map_or_else(Vec::new, |net| {
            net.views()
                .iter()
                .filter(|l| l.connected)
                .map(|l| l.node)
                .collect()
        });
        let target = match to {
            Some(node) => match peers.iter().find(|p| p.node == node) {
                Some(peer) => match &peer.mqtt {
                    Some(mqtt) => (peer.node, mqtt.clone()),
                    None => {
                        return Reply::Error(ApiError::new(
                            StatusCode::CONFLICT,
                            Some("to"),
                            format!("node {node} has no `mqtt` address in [[cluster.members]]: add the host:port its clients connect to"),
                        ))
                    }
                },
                None => {
                    return Reply::Error(ApiError::bad(
                        "to",
                        format!("node {node} is not another member of this cluster"),
                    ))
                }
            },
            None => {
                let mut candidates: Vec<_> = peers
                    .iter()
                    .filter_map(|p| Some((p.node, p.mqtt.clone()?)))
                    .collect();
                // Nodes this one can reach first: a client sent to a dead node comes back.
                candidates.sort_by_key(|(node, _)| !connected.contains(node));
                match candidates.into_iter().next() {
                    Some(target) => target,
                    None => {
                        return Reply::Error(ApiError::new(
                            StatusCode::CONFLICT,
                            None,
                            "no other member has an `mqtt` address in [[cluster.members]]: add the host:port each node's clients connect to",
                        ))
                    }
                }
            }
        };
        let (node, reference) = target;
        let clients = self.engine.connection_count();
        info!(to = node, server_reference = %reference, clients, "admin: draining this node");
        let redirect = cicada_engine::Redirect {
            server_reference: reference.clone(),
            permanent: false,
        };
        self.input(
            Input::SetRedirect {
                redirect: Some(redirect),
            },
            batch,
        );
        self.input(Input::Shutdown, batch);
        ok(json!({
            "draining_to": reference,
            "node": node,
            "clients_sent_away": clients,
        }))
    }

    fn cluster_snapshot(&self) -> Option<crate::http::metrics::ClusterSnapshot> {
        let (stats, net) = (self.engine.cluster_stats()?, self.cluster.as_ref()?);
        Some(crate::http::metrics::ClusterSnapshot {
            node: self.settings.cluster.as_ref()?.node,
            stats,
            leader: self.engine.cluster_leader(),
            received: net.received.load(std::sync::atomic::Ordering::Relaxed),
            links: net.views(),
        })
    }
}

fn not_a_cluster_node() -> Reply {
    Reply::Error(ApiError::new(
        StatusCode::NOT_FOUND,
        None,
        "this broker is not a cluster node ([cluster] is not configured)",
    ))
}

fn no_session(id: &str) -> Reply {
    Reply::Error(ApiError::not_found(
        "client_id",
        format!("no session for client {id:?}"),
    ))
}
