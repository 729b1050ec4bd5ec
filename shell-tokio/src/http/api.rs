//! The admin REST API: request checking here, answers from the engine task (`crate::admin`).
//!
//! Every route needs `Authorization: Bearer <token>` (the token in `http.admin_token_file`).
//! Parameters are checked before the engine is asked; a bad one gets 400 with its name.

use std::collections::HashMap;

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use bytes::Bytes;
use cicada_engine::codec::TopicName;
use cicada_engine::limits::BanTarget;
use serde_json::Value;

use super::metrics::Snapshot;
use super::{ApiError, HttpState};
use crate::banfile::BanEntry;

/// The most items one listing returns.
const MAX_LIMIT: usize = 1000;

/// What a handler asks the engine task.
#[derive(Debug)]
pub enum Request {
    /// Is the engine task alive?
    Ping,
    /// Counters and gauges for `/metrics`.
    Metrics,
    /// The dashboard's headline numbers.
    Overview,
    /// Sessions (with their connection, if any), filtered and paged.
    Clients(ClientQuery),
    /// One session with its subscriptions.
    Client(String),
    /// Disconnect a client (0x98).
    Kick(String),
    /// Remove a session.
    DeleteSession(String),
    /// Subscriptions, filtered and paged.
    Subscriptions(SubscriptionQuery),
    /// Retained messages matching a filter.
    Retained { filter: String, limit: usize },
    /// The retained message of one topic.
    RetainedTopic(TopicName),
    /// Clear the retained message of a topic.
    DeleteRetained(TopicName),
    /// Who a topic reaches.
    TopicStats(TopicName),
    /// Reload the configuration and the files it names.
    Reload,
    /// Bans in force.
    Bans,
    /// Add or replace a ban.
    AddBan(BanEntry),
    /// Lift a ban.
    RemoveBan(BanTarget),
    /// The listeners and their connections.
    Listeners,
    /// This node's view of the cluster.
    Cluster,
    /// Send this node's clients to another node (`to`, or any member with an MQTT address) and
    /// refuse new ones with its Server Reference.
    Drain { to: Option<u16> },
    /// Stop redirecting: accept clients again.
    Undrain,
    /// Add a node to the cluster (a raft configuration change).
    AddMember {
        node: u16,
        address: cicada_engine::MemberAddress,
    },
    /// Remove a node from the cluster.
    RemoveMember(u16),
    /// The authentication providers in force, to check an HTTP publisher's credentials with.
    Providers,
    /// Publish these messages as `principal` (answered once each is durable or refused).
    Publish {
        principal: cicada_engine::Principal,
        messages: Vec<cicada_engine::ExternalPublish>,
    },
}

impl Request {
    /// Its name, for spans.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Ping => "ping",
            Request::Metrics => "metrics",
            Request::Overview => "overview",
            Request::Clients(_) => "clients",
            Request::Client(_) => "client",
            Request::Kick(_) => "kick",
            Request::DeleteSession(_) => "delete_session",
            Request::Subscriptions(_) => "subscriptions",
            Request::Retained { .. } => "retained",
            Request::RetainedTopic(_) => "retained_topic",
            Request::DeleteRetained(_) => "delete_retained",
            Request::TopicStats(_) => "topic_stats",
            Request::Reload => "reload",
            Request::Bans => "bans",
            Request::AddBan(_) => "add_ban",
            Request::RemoveBan(_) => "remove_ban",
            Request::Listeners => "listeners",
            Request::Cluster => "cluster",
            Request::Drain { .. } => "drain",
            Request::Undrain => "undrain",
            Request::AddMember { .. } => "add_member",
            Request::RemoveMember(_) => "remove_member",
            Request::Providers => "providers",
            Request::Publish { .. } => "publish",
        }
    }
}

/// `GET /clients` parameters.
#[derive(Debug, Default)]
pub struct ClientQuery {
    /// A substring of the client id or user name.
    pub search: String,
    pub connected: Option<bool>,
    pub limit: usize,
    pub offset: usize,
}

/// `GET /subscriptions` parameters.
#[derive(Debug, Default)]
pub struct SubscriptionQuery {
    pub client_id: Option<String>,
    /// A substring of the filter.
    pub search: String,
    pub limit: usize,
    pub offset: usize,
}

/// The engine task's answer.
#[derive(Debug)]
pub enum Reply {
    Json(StatusCode, Value),
    Metrics(Box<Snapshot>),
    Error(ApiError),
    Providers(std::sync::Arc<crate::providers::Providers>),
    /// One outcome per message of a [`Request::Publish`], in order.
    Published(Vec<cicada_engine::PublishOutcome>),
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        match self {
            Reply::Json(status, body) => (status, axum::Json(body)).into_response(),
            Reply::Metrics(_) | Reply::Providers(_) | Reply::Published(_) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, None, "unexpected answer")
                    .into_response()
            }
            Reply::Error(e) => e.into_response(),
        }
    }
}

/// Proof that the request carried the admin token.
pub(super) struct Admin;

impl FromRequestParts<HttpState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &HttpState) -> Result<Admin, ApiError> {
        let Some(expected) = &state.token else {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                None,
                "the admin API is off: set http.admin_token_file in the configuration",
            ));
        };
        let given = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    Some("Authorization"),
                    "send the admin token as `Authorization: Bearer <token>`",
                )
            })?;
        // Compared as digests, every byte, so the time taken says nothing about the token.
        let digest = super::sha256(given.trim().as_bytes());
        let differ = digest
            .iter()
            .zip(expected.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if differ != 0 {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                Some("Authorization"),
                "wrong admin token",
            ));
        }
        Ok(Admin)
    }
}

/// Query parameters, checked one by one; unknown ones are refused by name.
struct Params(HashMap<String, String>);

impl Params {
    fn new(map: HashMap<String, String>, known: &[&str]) -> Result<Params, ApiError> {
        if let Some(unknown) = map.keys().find(|k| !known.contains(&k.as_str())) {
            let message = format!("unknown parameter; known here: {}", known.join(", "));
            return Err(ApiError::bad(unknown, message));
        }
        Ok(Params(map))
    }

    fn text(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    fn required(&self, name: &str) -> Result<&str, ApiError> {
        self.text(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ApiError::bad(name, "required"))
    }

    fn number(&self, name: &str, default: usize, max: usize) -> Result<usize, ApiError> {
        match self.text(name) {
            None | Some("") => Ok(default),
            Some(v) => match v.parse::<usize>() {
                Ok(n) if n <= max => Ok(n),
                _ => Err(ApiError::bad(
                    name,
                    format!("expected a whole number from 0 to {max}, got {v:?}"),
                )),
            },
        }
    }

    fn flag(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.text(name) {
            None | Some("") => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(v) => Err(ApiError::bad(
                name,
                format!("expected true or false, got {v:?}"),
            )),
        }
    }

    fn topic(&self, name: &str) -> Result<TopicName, ApiError> {
        let text = self.required(name)?;
        TopicName::new(text.to_string())
            .map_err(|e| ApiError::bad(name, format!("not a topic name: {e}")))
    }

    fn filter(&self, name: &str) -> Result<String, ApiError> {
        let text = self.text(name).filter(|v| !v.is_empty()).unwrap_or("#");
        cicada_engine::codec::TopicFilter::new(text.to_string())
            .map_err(|e| ApiError::bad(name, format!("not a topic filter: {e}")))?;
        Ok(text.to_string())
    }
}

type Q = Query<HashMap<String, String>>;

async fn ask(state: &HttpState, request: Result<Request, ApiError>) -> Response {
    match request {
        Ok(request) => match state.call(request).await {
            Ok(reply) => reply.into_response(),
            Err(e) => e.into_response(),
        },
        Err(e) => e.into_response(),
    }
}

pub(super) fn routes() -> Router<HttpState> {
    Router::new()
        .route("/overview", get(overview))
        .route("/clients", get(clients))
        .route("/clients/{client_id}", get(client))
        .route("/clients/{client_id}/kick", post(kick))
        .route("/sessions/{client_id}", delete(delete_session))
        .route("/subscriptions", get(subscriptions))
        .route("/retained", get(retained).delete(delete_retained))
        .route("/retained/message", get(retained_message))
        .route("/topics/stats", get(topic_stats))
        .route("/reload", post(reload))
        .route("/bans", get(bans).post(add_ban).delete(remove_ban))
        .route("/listeners", get(listeners))
        .route("/cluster", get(cluster))
        .route("/cluster/drain", post(drain).delete(undrain))
        .route("/cluster/members", post(add_member))
        .route("/cluster/members/{node}", delete(remove_member))
        .route(
            "/bridges",
            get(super::bridges::list).post(super::bridges::create),
        )
        .route("/bridges/{name}", delete(super::bridges::remove))
        .route("/publish", post(super::publish::publish))
        .route("/publish/batch", post(super::publish::publish_batch))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                None,
                "no such API route; see docs/openapi.json",
            )
        })
}

async fn overview(_: Admin, State(s): State<HttpState>) -> Response {
    ask(&s, Ok(Request::Overview)).await
}

async fn clients(_: Admin, State(s): State<HttpState>, Query(q): Q) -> Response {
    let request = Params::new(q, &["search", "connected", "limit", "offset"]).and_then(|p| {
        Ok(Request::Clients(ClientQuery {
            search: p.text("search").unwrap_or_default().to_string(),
            connected: p.flag("connected")?,
            limit: p.number("limit", 100, MAX_LIMIT)?,
            offset: p.number("offset", 0, usize::MAX)?,
        }))
    });
    ask(&s, request).await
}

async fn client(_: Admin, State(s): State<HttpState>, Path(id): Path<String>) -> Response {
    ask(&s, Ok(Request::Client(id))).await
}

async fn kick(_: Admin, State(s): State<HttpState>, Path(id): Path<String>) -> Response {
    ask(&s, Ok(Request::Kick(id))).await
}

async fn delete_session(_: Admin, State(s): State<HttpState>, Path(id): Path<String>) -> Response {
    ask(&s, Ok(Request::DeleteSession(id))).await
}

async fn subscriptions(_: Admin, State(s): State<HttpState>, Query(q): Q) -> Response {
    let request = Params::new(q, &["client_id", "search", "limit", "offset"]).and_then(|p| {
        Ok(Request::Subscriptions(SubscriptionQuery {
            client_id: p
                .text("client_id")
                .filter(|c| !c.is_empty())
                .map(str::to_string),
            search: p.text("search").unwrap_or_default().to_string(),
            limit: p.number("limit", 100, MAX_LIMIT)?,
            offset: p.number("offset", 0, usize::MAX)?,
        }))
    });
    ask(&s, request).await
}

async fn retained(_: Admin, State(s): State<HttpState>, Query(q): Q) -> Response {
    let request = Params::new(q, &["filter", "limit"]).and_then(|p| {
        Ok(Request::Retained {
            filter: p.filter("filter")?,
            limit: p.number("limit", 100, MAX_LIMIT)?,
        })
    });
    ask(&s, request).await
}

async fn retained_message(_: Admin, State(s): State<HttpState>, Query(q): Q) -> Response {
    let request =
        Params::new(q, &["topic"]).and_then(|p| Ok(Request::RetainedTopic(p.topic("topic")?)));
    ask(&s, request).await
}

async fn delete_retained(_: Admin, State(s): State<HttpState>, Query(q): Q) -> Response {
    let request =
        Params::new(q, &["topic"]).and_then(|p| Ok(Request::DeleteRetained(p.topic("topic")?)));
    ask(&s, request).await
}

async fn topic_stats(_: Admin, State(s): State<HttpState>, Query(q): Q) -> Response {
    let request =
        Params::new(q, &["topic"]).and_then(|p| Ok(Request::TopicStats(p.topic("topic")?)));
    ask(&s, request).await
}

async fn reload(_: Admin, State(s): State<HttpState>) -> Response {
    ask(&s, Ok(Request::Reload)).await
}

async fn bans(_: Admin, State(s): State<HttpState>) -> Response {
    ask(&s, Ok(Request::Bans)).await
}

/// `{"kind": "client"|"user"|"address", "value": "...", "until": "2026-12-31T00:00:00Z", "reason": "..."}`
async fn add_ban(_: Admin, State(s): State<HttpState>, body: Bytes) -> Response {
    ask(&s, ban_entry(&body).map(Request::AddBan)).await
}

async fn remove_ban(_: Admin, State(s): State<HttpState>, Query(q): Q) -> Response {
    let request = Params::new(q, &["kind", "value"]).and_then(|p| {
        let target = target(p.required("kind")?, p.required("value")?)?;
        Ok(Request::RemoveBan(target))
    });
    ask(&s, request).await
}

async fn listeners(_: Admin, State(s): State<HttpState>) -> Response {
    ask(&s, Ok(Request::Listeners)).await
}

async fn cluster(_: Admin, State(s): State<HttpState>) -> Response {
    ask(&s, Ok(Request::Cluster)).await
}

async fn drain(_: Admin, State(s): State<HttpState>, Query(q): Q) -> Response {
    let request = Params::new(q, &["to"]).and_then(|p| {
        let to =
            match p.text("to") {
                None => None,
                Some(n) => Some(n.parse::<u16>().map_err(|_| {
                    ApiError::bad("to", format!("expected a node number, got {n:?}"))
                })?),
            };
        Ok(Request::Drain { to })
    });
    ask(&s, request).await
}

async fn undrain(_: Admin, State(s): State<HttpState>) -> Response {
    ask(&s, Ok(Request::Undrain)).await
}

async fn add_member(_: Admin, State(s): State<HttpState>, body: Bytes) -> Response {
    ask(&s, member(&body)).await
}

async fn remove_member(_: Admin, State(s): State<HttpState>, Path(node): Path<String>) -> Response {
    let request = node_number("node", &node).map(Request::RemoveMember);
    ask(&s, request).await
}

fn node_number(field: &str, text: &str) -> Result<u16, ApiError> {
    text.parse::<u16>().ok().filter(|n| *n != 0).ok_or_else(|| {
        ApiError::bad(
            field,
            format!("expected a node number 1..65535, got {text:?}"),
        )
    })
}

/// `POST /cluster/members`: `{"node": 4, "address": "10.0.0.4:7101", "server_name": "...",
/// "mqtt": "10.0.0.4:1883"}`.
fn member(body: &[u8]) -> Result<Request, ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        node: u16,
        address: String,
        #[serde(default)]
        server_name: Option<String>,
        #[serde(default)]
        mqtt: Option<String>,
    }
    let body: Body = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            None,
            format!("expected {{\"node\": 1..65535, \"address\": \"host:port\", \"server_name\"?, \"mqtt\"?}}: {e}"),
        )
    })?;
    if body.node == 0 {
        return Err(ApiError::bad("node", "number nodes from 1 to 65535"));
    }
    for (field, value) in [
        ("address", Some(&body.address)),
        ("mqtt", body.mqtt.as_ref()),
    ] {
        if let Some(v) = value {
            if crate::cluster::config::host_of(v).is_none() {
                return Err(ApiError::bad(
                    field,
                    format!("expected host:port, got {v:?}"),
                ));
            }
        }
    }
    Ok(Request::AddMember {
        node: body.node,
        address: cicada_engine::MemberAddress {
            address: body.address,
            server_name: body.server_name,
            mqtt: body.mqtt,
        },
    })
}

fn target(kind: &str, value: &str) -> Result<BanTarget, ApiError> {
    if !matches!(kind, "client" | "user" | "address") {
        return Err(ApiError::bad(
            "kind",
            format!("expected client, user or address, got {kind:?}"),
        ));
    }
    BanTarget::parse(kind, value).map_err(|e| ApiError::bad("value", e.to_string()))
}

fn ban_entry(body: &[u8]) -> Result<BanEntry, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            None,
            format!("the body is not JSON: {e}"),
        )
    })?;
    let Value::Object(fields) = value else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            None,
            "the body must be a JSON object",
        ));
    };
    if let Some(unknown) = fields
        .keys()
        .find(|k| !["kind", "value", "until", "reason"].contains(&k.as_str()))
    {
        return Err(ApiError::bad(
            unknown,
            "unknown field; known: kind, value, until, reason",
        ));
    }
    let text = |name: &str| -> Result<Option<&str>, ApiError> {
        match fields.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(ApiError::bad(name, "expected a string")),
        }
    };
    let kind =
        text("kind")?.ok_or_else(|| ApiError::bad("kind", "required: client, user or address"))?;
    let value = text("value")?.ok_or_else(|| ApiError::bad("value", "required"))?;
    let target = target(kind, value)?;
    let until = text("until")?
        .map(|t| {
            if !t.ends_with('Z') {
                return Err(ApiError::bad(
                    "until",
                    "expected an RFC 3339 time in UTC ending in Z",
                ));
            }
            humantime::parse_rfc3339(t).map_err(|e| {
                ApiError::bad("until", format!("expected an RFC 3339 time in UTC: {e}"))
            })
        })
        .transpose()?;
    let reason = text("reason")?.map(str::to_string);
    Ok(BanEntry {
        target,
        until,
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ban_body_names_the_field_at_fault() {
        let field = |body: &str| ban_entry(body.as_bytes()).err().and_then(|e| e.field);
        assert_eq!(
            field(r#"{"kind":"planet","value":"x"}"#).as_deref(),
            Some("kind")
        );
        assert_eq!(
            field(r#"{"kind":"address","value":"300.1.1.1"}"#).as_deref(),
            Some("value")
        );
        assert_eq!(
            field(r#"{"kind":"user","value":"m","until":"tomorrow"}"#).as_deref(),
            Some("until")
        );
        assert_eq!(
            field(r#"{"kind":"user","value":"m","colour":"red"}"#).as_deref(),
            Some("colour")
        );
        assert_eq!(field(r#"{"value":"m"}"#).as_deref(), Some("kind"));
        let ok = ban_entry(br#"{"kind":"client","value":"bad-*","reason":"spam"}"#).expect("valid");
        assert_eq!(ok.reason.as_deref(), Some("spam"));
    }

    #[test]
    fn query_parameters_are_checked_by_name() {
        let params = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>()
        };
        let err = Params::new(params(&[("limt", "5")]), &["limit"])
            .err()
            .expect("unknown");
        assert_eq!(err.field.as_deref(), Some("limt"));
        let p = Params::new(
            params(&[("limit", "5000"), ("connected", "maybe")]),
            &["limit", "connected"],
        )
        .expect("known");
        assert_eq!(
            p.number("limit", 1, MAX_LIMIT)
                .err()
                .and_then(|e| e.field)
                .as_deref(),
            Some("limit")
        );
        assert_eq!(
            p.flag("connected").err().and_then(|e| e.field).as_deref(),
            Some("connected")
        );
        let p = Params::new(
            params(&[("filter", "a/#/b"), ("topic", "a/+")]),
            &["filter", "topic"],
        )
        .expect("known");
        assert!(p.filter("filter").is_err());
        assert!(p.topic("topic").is_err());
    }
}
