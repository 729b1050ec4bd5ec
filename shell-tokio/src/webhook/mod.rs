//! Webhooks: engine events POSTed as JSON to configured URLs (`[[webhook]]`).
//!
//! The engine task only offers each event: it builds the JSON body and puts it on each interested
//! webhook's bounded queue without waiting. A full queue drops the event (counted), so a slow or
//! dead receiver never slows the broker. One task per webhook sends its queue in order, one POST at
//! a time, retrying a failed POST with doubling waits; an event that fails `max_attempts` times, or
//! is refused with a 4xx other than 408 and 429, is a dead letter (counted and logged). Every body
//! carries the webhook's `seq`, numbered as events are offered, so a receiver sees drops as gaps.

pub mod config;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use cicada_engine::{ConnId, Event};
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;
use tracing::{info, warn};

pub use config::{Kind, WebhookConfig, WebhookConfigError, WebhookSpec};

/// A webhook's counters, for `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Events offered and queued.
    queued: AtomicU64,
    /// Events the receiver accepted (2xx).
    sent: AtomicU64,
    /// Events dropped because the queue was full.
    dropped: AtomicU64,
    /// Events given up on after their attempts (or refused for good).
    dead_letters: AtomicU64,
    /// Attempts that failed and were retried.
    retries: AtomicU64,
}

/// A webhook's counters as `/metrics` renders them.
#[derive(Debug, Clone, Default)]
pub struct WebhookView {
    pub name: String,
    pub queued: u64,
    pub sent: u64,
    pub dropped: u64,
    pub dead_letters: u64,
    pub retries: u64,
}

struct Hook {
    spec: Arc<WebhookSpec>,
    queue: mpsc::Sender<Bytes>,
    counters: Arc<Counters>,
    /// The number of the next event offered.
    seq: u64,
}

/// Why a webhook cannot start.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook {name}: {why}")]
    Client { name: String, why: String },
}

/// The configured webhooks, owned by the engine task; their counters are shared with `/metrics`.
#[derive(Default)]
pub struct Webhooks {
    hooks: Vec<Hook>,
}

/// The webhooks' counters, shared with the HTTP listener.
#[derive(Debug, Clone, Default)]
pub struct WebhookStats(Arc<Vec<(String, Arc<Counters>)>>);

impl WebhookStats {
    pub fn list(&self) -> Vec<WebhookView> {
        self.0
            .iter()
            .map(|(name, c)| WebhookView {
                name: name.clone(),
                queued: c.queued.load(Ordering::Relaxed),
                sent: c.sent.load(Ordering::Relaxed),
                dropped: c.dropped.load(Ordering::Relaxed),
                dead_letters: c.dead_letters.load(Ordering::Relaxed),
                retries: c.retries.load(Ordering::Relaxed),
            })
            .collect()
    }
}

impl Webhooks {
    /// Starts one sender task per webhook.
    pub fn start(specs: &[WebhookSpec]) -> Result<(Webhooks, WebhookStats), WebhookError> {
        let mut hooks = Vec::new();
        for spec in specs {
            let client = http_client(spec)?;
            let (queue, rx) = mpsc::channel(spec.queue_size);
            let counters = Arc::new(Counters::default());
            let spec = Arc::new(spec.clone());
            info!(webhook = %spec.name, url = %spec.url, events = ?spec.events.iter().map(|k| k.name()).collect::<Vec<_>>(), "webhook started");
            tokio::spawn(send_all(spec.clone(), client, rx, counters.clone()));
            hooks.push(Hook {
                spec,
                queue,
                counters,
                seq: 0,
            });
        }
        let stats = hooks
            .iter()
            .map(|h| (h.spec.name.clone(), h.counters.clone()))
            .collect();
        Ok((Webhooks { hooks }, WebhookStats(Arc::new(stats))))
    }

    /// Offers an engine event to every webhook that wants it; never waits. `time_ms` is wall-clock
    /// milliseconds since the Unix epoch; `peer` names a connection's address and listener.
    pub fn offer(
        &mut self,
        event: &Event,
        time_ms: u64,
        peer: impl Fn(ConnId) -> (String, String),
    ) {
        if self.hooks.is_empty() {
            return;
        }
        for (kind, topic, fields) in describe(event, &peer) {
            self.offer_one(kind, topic, &fields, time_ms);
        }
    }

    fn offer_one(
        &mut self,
        kind: Kind,
        topic: Option<&str>,
        fields: &Map<String, Value>,
        time_ms: u64,
    ) {
        for hook in &mut self.hooks {
            if !hook.spec.wants(kind) || topic.is_some_and(|t| !hook.spec.watches(t)) {
                continue;
            }
            let seq = hook.seq;
            hook.seq += 1;
            let mut body = Map::new();
            body.insert("seq".into(), seq.into());
            body.insert("event".into(), kind.name().into());
            body.insert("timestamp_ms".into(), time_ms.into());
            body.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
            let bytes = Bytes::from(Value::Object(body).to_string());
            match hook.queue.try_send(bytes) {
                Ok(()) => {
                    hook.counters.queued.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    let dropped = hook.counters.dropped.fetch_add(1, Ordering::Relaxed);
                    // The first drop and every thousandth after, so a dead receiver does not flood
                    // the log.
                    if dropped % 1000 == 0 {
                        warn!(webhook = %hook.spec.name, dropped = dropped + 1, "webhook queue full; events dropped");
                    }
                }
            }
        }
    }

    /// The topic filters whose messages the engine must report (for `message.*` events).
    pub fn message_filters(specs: &[WebhookSpec]) -> Vec<cicada_engine::codec::TopicFilter> {
        let mut filters: Vec<_> = specs
            .iter()
            .filter(|s| s.events.iter().any(|k| k.is_message()))
            .flat_map(|s| s.topics.iter().cloned())
            .collect();
        filters.sort();
        filters.dedup();
        filters
    }
}

/// The webhook events an engine event makes (a connection that did not resume a session makes
/// two: `client.connected`, then `session.created`): each one's kind, message topic (for message
/// events) and JSON fields.
fn describe<'a>(
    event: &'a Event,
    peer: &impl Fn(ConnId) -> (String, String),
) -> Vec<(Kind, Option<&'a str>, Map<String, Value>)> {
    let object = |value: Value| match value {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    vec![match event {
        Event::ClientConnected {
            conn,
            client_id,
            protocol,
            session_present,
        } => {
            let mut fields = connection(*conn, client_id, peer);
            fields.insert("protocol".into(), protocol.to_string().into());
            fields.insert("session_present".into(), (*session_present).into());
            let connected = (Kind::ClientConnected, None, fields);
            if *session_present {
                return vec![connected];
            }
            let created = object(json!({ "client_id": &**client_id }));
            return vec![connected, (Kind::SessionCreated, None, created)];
        }
        Event::ClientDisconnected {
            conn,
            client_id: Some(client_id),
            reason,
        } => {
            let mut fields = connection(*conn, client_id, peer);
            fields.insert("reason".into(), format!("{reason:?}").into());
            (Kind::ClientDisconnected, None, fields)
        }
        Event::SessionExpired { client_id } => (
            Kind::SessionExpired,
            None,
            object(json!({ "client_id": &**client_id })),
        ),
        Event::MessagePublished { message } => {
            let mut fields = object(json!({
                "from": message.origin.as_deref(),
                "topic": message.topic.as_str(),
                "qos": message.qos.as_u8(),
                "retain": message.retain,
            }));
            payload(&mut fields, &message.payload);
            (Kind::MessagePublished, Some(message.topic.as_str()), fields)
        }
        Event::MessageDelivered {
            client_id,
            qos,
            message,
        } => (
            Kind::MessageDelivered,
            Some(message.topic.as_str()),
            object(json!({
                "client_id": &**client_id,
                "topic": message.topic.as_str(),
                "qos": qos.as_u8(),
            })),
        ),
        Event::MessageDropped {
            client_id,
            topic,
            reason,
        } => (
            Kind::MessageDropped,
            Some(topic.as_str()),
            object(json!({
                "client_id": &**client_id,
                "topic": topic.as_str(),
                "reason": format!("{reason:?}"),
            })),
        ),
        _ => return Vec::new(),
    }]
}

/// The fields every connection event has: the client, its address and its listener.
fn connection(
    conn: ConnId,
    client_id: &str,
    peer: &impl Fn(ConnId) -> (String, String),
) -> Map<String, Value> {
    let (address, listener) = peer(conn);
    let mut fields = Map::new();
    fields.insert("client_id".into(), client_id.into());
    fields.insert("peer".into(), address.into());
    fields.insert("listener".into(), listener.into());
    fields
}

/// The payload as text when it is UTF-8, else as base64.
fn payload(fields: &mut Map<String, Value>, payload: &[u8]) {
    match std::str::from_utf8(payload) {
        Ok(text) => fields.insert("payload".into(), text.into()),
        Err(_) => fields.insert(
            "payload_base64".into(),
            base64::engine::general_purpose::STANDARD
                .encode(payload)
                .into(),
        ),
    };
}

fn http_client(spec: &WebhookSpec) -> Result<reqwest::Client, WebhookError> {
    let fail = |why: String| WebhookError::Client {
        name: spec.name.clone(),
        why,
    };
    // reqwest is built without a crypto provider: its TLS configuration always comes from here,
    // with ring, like every other TLS client and server of the broker. Without `cafile` the URL is
    // http:// (checked with the configuration) and the configuration trusts nothing.
    let tls = match &spec.cafile {
        Some(ca) => cicada_transports::client::ClientTls {
            ca: Some(ca.clone()),
            ..Default::default()
        }
        .client_config(&[b"http/1.1"])
        .map_err(|e| fail(e.to_string()))?,
        None => rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(e.to_string()))?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth(),
    };
    let builder = reqwest::Client::builder()
        .timeout(spec.timeout)
        .default_headers(spec.headers.clone())
        .no_proxy()
        .tls_backend_preconfigured(tls);
    builder.build().map_err(|e| fail(e.to_string()))
}

/// Sends a webhook's queue in order until the broker stops.
async fn send_all(
    spec: Arc<WebhookSpec>,
    client: reqwest::Client,
    mut queue: mpsc::Receiver<Bytes>,
    counters: Arc<Counters>,
) {
    while let Some(body) = queue.recv().await {
        let mut wait = spec.retry_initial;
        let mut attempt = 1;
        loop {
            let failure = match client
                .post(spec.url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await
            {
                Ok(response) if response.status().is_success() => {
                    counters.sent.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Ok(response) => {
                    let status = response.status();
                    let permanent = status.is_client_error()
                        && status != reqwest::StatusCode::REQUEST_TIMEOUT
                        && status != reqwest::StatusCode::TOO_MANY_REQUESTS;
                    (format!("the receiver answered {status}"), permanent)
                }
                Err(e) => (e.to_string(), false),
            };
            let (why, permanent) = failure;
            if permanent || attempt >= spec.max_attempts {
                counters.dead_letters.fetch_add(1, Ordering::Relaxed);
                warn!(webhook = %spec.name, attempts = attempt, error = %why, "webhook event given up (dead letter)");
                break;
            }
            counters.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(spec.retry_max);
            attempt += 1;
        }
    }
}
