//! `POST /api/v1/publish` and `POST /api/v1/publish/batch`: publishing over HTTP.
//!
//! The caller authenticates like an MQTT client: `Authorization: Basic` carries a user name and a
//! password (or a JWT as the password), checked by the configured providers off the engine task.
//! Without credentials, only `http.publish_anonymous = true` lets a request through, as an anonymous
//! client. The engine then checks the ACL for that user (with an empty client identifier) and the
//! same rules as a PUBLISH, and answers once the message is durable. The admin token does not
//! publish: it is for operators, not for producers of data.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use bytestring::ByteString;
use cicada_engine::codec::{PublishProperties, QoS, ReasonCode, TopicName, UserProperty};
use cicada_engine::{AuthDecision, ExternalPublish, Principal, PublishOutcome};
use serde::Deserialize;
use serde_json::{json, Value};

use super::api::{Reply, Request};
use super::{ApiError, HttpState};
use crate::providers::Credentials;

/// The most messages one batch carries.
const MAX_BATCH: usize = 1000;

/// The listener name HTTP publishers are checked under (see [`Credentials::listener`]).
pub const LISTENER: &str = "http-api";

/// One message as JSON.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Message {
    topic: String,
    #[serde(default)]
    payload: String,
    /// `text` (default) or `base64`.
    #[serde(default)]
    payload_encoding: Encoding,
    #[serde(default)]
    qos: u8,
    #[serde(default)]
    retain: bool,
    #[serde(default)]
    properties: Properties,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Encoding {
    #[default]
    Text,
    Base64,
}

/// The MQTT 5 properties a publisher may set.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Properties {
    payload_format_indicator: Option<bool>,
    message_expiry_interval: Option<u32>,
    content_type: Option<String>,
    response_topic: Option<String>,
    /// Base64.
    correlation_data: Option<String>,
    /// Name → value, sent in name order.
    #[serde(default)]
    user_properties: std::collections::BTreeMap<String, String>,
}

/// The batch body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch {
    messages: Vec<Message>,
}

impl Message {
    /// The engine's message; `at` names the field's place for errors (e.g. `messages[2].`).
    fn checked(self, at: &str) -> Result<ExternalPublish, ApiError> {
        let field = |name: &str| format!("{at}{name}");
        let topic = TopicName::new(self.topic)
            .map_err(|e| ApiError::bad(&field("topic"), format!("not a topic name: {e}")))?;
        let payload = match self.payload_encoding {
            Encoding::Text => Bytes::from(self.payload),
            Encoding::Base64 => base64::engine::general_purpose::STANDARD
                .decode(self.payload.as_bytes())
                .map(Bytes::from)
                .map_err(|e| ApiError::bad(&field("payload"), format!("not base64: {e}")))?,
        };
        let qos = QoS::from_u8(self.qos)
            .ok_or_else(|| ApiError::bad(&field("qos"), "expected 0, 1 or 2"))?;
        let p = self.properties;
        let response_topic = p
            .response_topic
            .map(TopicName::new)
            .transpose()
            .map_err(|e| {
                ApiError::bad(
                    &field("properties.response_topic"),
                    format!("not a topic name: {e}"),
                )
            })?;
        let correlation_data = p
            .correlation_data
            .map(|data| base64::engine::general_purpose::STANDARD.decode(data.as_bytes()))
            .transpose()
            .map_err(|e| {
                ApiError::bad(
                    &field("properties.correlation_data"),
                    format!("not base64: {e}"),
                )
            })?
            .map(Bytes::from);
        let properties = PublishProperties {
            payload_format_indicator: p.payload_format_indicator,
            message_expiry_interval: p.message_expiry_interval,
            content_type: p.content_type.map(ByteString::from),
            response_topic,
            correlation_data,
            user_properties: p
                .user_properties
                .into_iter()
                .map(|(name, value)| UserProperty {
                    name: name.into(),
                    value: value.into(),
                })
                .collect(),
            ..PublishProperties::default()
        };
        Ok(ExternalPublish {
            topic,
            payload,
            qos,
            retain: self.retain,
            properties,
        })
    }
}

/// What the request presented, read before its body so a caller without credentials gets 401 at
/// once (no body parsed, no provider asked).
enum Caller {
    Anonymous,
    Basic { username: String, password: String },
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, Some("Authorization"), message)
}

fn caller(state: &HttpState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        if state.publish_anonymous {
            return Ok(Caller::Anonymous);
        }
        return Err(unauthorized(
            "send a user name and password as `Authorization: Basic`; anonymous publishing is off (http.publish_anonymous)",
        ));
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b64| {
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
        })
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|text| {
            text.split_once(':').map(|(u, p)| Caller::Basic {
                username: u.to_string(),
                password: p.to_string(),
            })
        })
        .ok_or_else(|| unauthorized("expected `Authorization: Basic base64(user:password)`"))
}

/// Who the caller's credentials prove it to be, checked by the configured providers.
async fn principal(state: &HttpState, caller: Caller) -> Result<Principal, ApiError> {
    let (username, password) = match caller {
        Caller::Anonymous => {
            return Ok(Principal {
                username: None,
                claims: Vec::new(),
            })
        }
        Caller::Basic { username, password } => (username, password),
    };
    let providers = match state.call(Request::Providers).await? {
        Reply::Providers(providers) => providers,
        _ => {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                None,
                "unexpected answer",
            ))
        }
    };
    let credentials = Credentials {
        client_id: ByteString::new(),
        username: Some(ByteString::from(username.clone())),
        password: Some(Bytes::from(password)),
        identity: None,
        peer: "http".into(),
        listener: LISTENER.into(),
    };
    // A password check may take tens of milliseconds (argon2id): not on the runtime's threads.
    let (decision, _) = tokio::task::spawn_blocking(move || providers.check(&credentials))
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                None,
                "the credential check failed",
            )
        })?;
    match decision {
        AuthDecision::Authenticated { principal, .. } => Ok(principal),
        AuthDecision::Allow | AuthDecision::AllowWithData { .. } => Ok(Principal {
            username: Some(username.into()),
            claims: Vec::new(),
        }),
        AuthDecision::Deny { reason } => {
            Err(unauthorized(&format!("credentials refused ({reason})")))
        }
        AuthDecision::Continue { .. } => Err(unauthorized(
            "enhanced authentication is not available over HTTP",
        )),
    }
}

async fn send(
    state: &HttpState,
    principal: Principal,
    messages: Vec<ExternalPublish>,
) -> Result<Vec<PublishOutcome>, ApiError> {
    match state
        .call(Request::Publish {
            principal,
            messages,
        })
        .await?
    {
        Reply::Published(outcomes) => Ok(outcomes),
        Reply::Error(e) => Err(e),
        _ => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            None,
            "unexpected answer",
        )),
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad("body", e.to_string()))
}

/// An outcome as JSON, with the HTTP status a single publish answers with.
fn outcome_json(outcome: &PublishOutcome) -> (StatusCode, Value) {
    match outcome {
        PublishOutcome::Accepted => (
            StatusCode::OK,
            json!({ "reason_code": 0, "reason": "success" }),
        ),
        PublishOutcome::Refused { reason, why } => {
            let status = match reason {
                ReasonCode::NotAuthorized => StatusCode::FORBIDDEN,
                ReasonCode::PacketTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
                _ => StatusCode::BAD_REQUEST,
            };
            (
                status,
                json!({
                    "reason_code": reason.as_u8(),
                    "reason": reason.description(),
                    "error": why,
                }),
            )
        }
        PublishOutcome::StorageFailed => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({
                "reason_code": ReasonCode::UnspecifiedError.as_u8(),
                "reason": ReasonCode::UnspecifiedError.description(),
                "error": "storage failed: the message was routed but may not survive a restart",
            }),
        ),
    }
}

/// `POST /api/v1/publish`: one message.
pub(super) async fn publish(
    State(state): State<HttpState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let caller = caller(&state, &headers)?;
        let message = parse::<Message>(&body)?.checked("")?;
        let principal = principal(&state, caller).await?;
        send(&state, principal, vec![message]).await
    }
    .await;
    match result {
        Ok(outcomes) => match outcomes.first() {
            Some(outcome) => {
                let (status, body) = outcome_json(outcome);
                (status, axum::Json(body)).into_response()
            }
            None => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, None, "no answer").into_response()
            }
        },
        Err(e) => e.into_response(),
    }
}

/// `POST /api/v1/publish/batch`: up to [`MAX_BATCH`] messages, each answered on its own, in order.
pub(super) async fn publish_batch(
    State(state): State<HttpState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let caller = caller(&state, &headers)?;
        let batch = parse::<Batch>(&body)?;
        if batch.messages.is_empty() || batch.messages.len() > MAX_BATCH {
            return Err(ApiError::bad(
                "messages",
                format!("expected 1 to {MAX_BATCH} messages"),
            ));
        }
        let messages = batch
            .messages
            .into_iter()
            .enumerate()
            .map(|(i, m)| m.checked(&format!("messages[{i}].")))
            .collect::<Result<Vec<_>, _>>()?;
        let principal = principal(&state, caller).await?;
        send(&state, principal, messages).await
    }
    .await;
    match result {
        Ok(outcomes) => {
            let results: Vec<Value> = outcomes.iter().map(|o| outcome_json(o).1).collect();
            (StatusCode::OK, axum::Json(json!({ "results": results }))).into_response()
        }
        Err(e) => e.into_response(),
    }
}
