//! The HTTP listener (`[http]`): Prometheus `/metrics`, `/health` and `/ready`, the admin REST API
//! under `/api/v1` (documented in `docs/openapi.json`), and the dashboard's static files.
//!
//! Handlers never touch the engine: they send a [`Call`] to the engine task, which answers from
//! the engine's state between two inputs, so every answer is consistent and nothing is locked.

mod api;
mod bridges;
pub mod metrics;
pub mod publish;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

pub use api::{Reply, Request};

/// How long a handler waits for the engine task before answering 503.
const ENGINE_TIMEOUT: Duration = Duration::from_secs(5);

/// One request to the engine task and where its answer goes.
#[derive(Debug)]
pub struct Call {
    pub request: Request,
    pub reply: oneshot::Sender<Reply>,
}

/// Where the broker is in its life, for `/ready`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Loading storage, binding listeners.
    Starting = 0,
    /// Serving clients.
    Ready = 1,
    /// SIGTERM: no new connections, clients being sent away.
    Draining = 2,
}

/// The broker's phase, shared with the HTTP handlers.
#[derive(Debug, Clone, Default)]
pub struct PhaseFlag(Arc<AtomicU8>);

impl PhaseFlag {
    pub fn set(&self, phase: Phase) {
        self.0.store(phase as u8, Ordering::Release);
    }

    fn get(&self) -> Phase {
        match self.0.load(Ordering::Acquire) {
            1 => Phase::Ready,
            2 => Phase::Draining,
            _ => Phase::Starting,
        }
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct HttpState {
    calls: mpsc::Sender<Call>,
    phase: PhaseFlag,
    /// SHA-256 of the admin token; `None`: the admin API is off.
    token: Option<Arc<[u8; 32]>>,
    telemetry: metrics::Telemetry,
    /// Whether `POST /api/v1/publish` takes requests without credentials (`http.publish_anonymous`).
    publish_anonymous: bool,
    /// The running MQTT bridges.
    bridges: crate::bridge::Bridges,
    /// The webhooks' counters.
    webhooks: crate::webhook::WebhookStats,
}

/// What the integrations share with the HTTP listener: the bridges (managed through the admin API)
/// and the webhooks' counters (for `/metrics`).
#[derive(Clone, Debug)]
pub struct Integrations {
    pub bridges: crate::bridge::Bridges,
    pub webhooks: crate::webhook::WebhookStats,
}

impl HttpState {
    pub fn new(
        calls: mpsc::Sender<Call>,
        phase: PhaseFlag,
        token: Option<&str>,
        telemetry: metrics::Telemetry,
        publish_anonymous: bool,
        integrations: Integrations,
    ) -> HttpState {
        HttpState {
            calls,
            phase,
            token: token.map(|t| Arc::new(sha256(t.as_bytes()))),
            telemetry,
            publish_anonymous,
            bridges: integrations.bridges,
            webhooks: integrations.webhooks,
        }
    }

    /// Asks the engine task.
    async fn call(&self, request: Request) -> Result<Reply, ApiError> {
        let (reply, answer) = oneshot::channel();
        let busy = || {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                "the broker is busy or stopping; try again",
            )
        };
        tokio::time::timeout(ENGINE_TIMEOUT, self.calls.send(Call { request, reply }))
            .await
            .map_err(|_| busy())?
            .map_err(|_| busy())?;
        tokio::time::timeout(ENGINE_TIMEOUT, answer)
            .await
            .map_err(|_| busy())?
            .map_err(|_| busy())
    }
}

fn sha256(data: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// A JSON error naming the field at fault: `{"error": {"field": "limit", "message": "..."}}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub field: Option<String>,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, field: Option<&str>, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            field: field.map(str::to_string),
            message: message.into(),
        }
    }

    pub fn bad(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, Some(field), message)
    }

    pub fn not_found(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, Some(field), message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": { "field": self.field, "message": self.message }
        });
        (self.status, axum::Json(body)).into_response()
    }
}

/// The dashboard, compiled in: the binary serves it with no files to install.
const INDEX_HTML: &str = include_str!("../../dashboard/index.html");
const APP_JS: &str = include_str!("../../dashboard/app.js");
const STYLE_CSS: &str = include_str!("../../dashboard/style.css");

fn static_file(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:",
            ),
        ],
        body,
    )
        .into_response()
}

fn router(state: HttpState) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { static_file("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/dashboard/app.js",
            get(|| async { static_file("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/dashboard/style.css",
            get(|| async { static_file("text/css; charset=utf-8", STYLE_CSS) }),
        )
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics_page))
        .nest("/api/v1", api::routes())
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, None, "no such page") })
        .with_state(state)
}

/// 200 while the engine task answers, 503 when it does not (stuck or stopping).
async fn health(axum::extract::State(state): axum::extract::State<HttpState>) -> Response {
    match state.call(Request::Ping).await {
        Ok(_) => (
            StatusCode::OK,
            axum::Json(serde_json::json!({"status": "ok"})),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// 200 once storage is loaded and every listener is bound; 503 before, and while draining.
async fn ready(axum::extract::State(state): axum::extract::State<HttpState>) -> Response {
    let (status, word) = match state.phase.get() {
        Phase::Ready => (StatusCode::OK, "ready"),
        Phase::Starting => (StatusCode::SERVICE_UNAVAILABLE, "starting"),
        Phase::Draining => (StatusCode::SERVICE_UNAVAILABLE, "draining"),
    };
    (status, axum::Json(serde_json::json!({"status": word}))).into_response()
}

async fn metrics_page(axum::extract::State(state): axum::extract::State<HttpState>) -> Response {
    match state.call(Request::Metrics).await {
        Ok(Reply::Metrics(snapshot)) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            metrics::render(
                &snapshot,
                &state.telemetry,
                &state.bridges.list(),
                &state.webhooks.list(),
            ),
        )
            .into_response(),
        Ok(other) => other.into_response(),
        Err(e) => e.into_response(),
    }
}

/// Serves HTTP on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, state: HttpState) {
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, admin_api = state.token.is_some(), "http: listening (metrics, health, admin API, dashboard)");
    }
    if let Err(e) = axum::serve(listener, router(state)).await {
        warn!("http listener stopped: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    /// Every path and method in `docs/openapi.json` is served: without a token a real admin route
    /// answers 401 (the open ones 200/503), only unknown routes reach the 404 fallback.
    #[tokio::test]
    async fn every_documented_route_exists() {
        let spec: serde_json::Value =
            serde_json::from_str(include_str!("../../../docs/openapi.json")).expect("valid JSON");
        let (calls, mut rx) = mpsc::channel(16);
        // Answer the engine calls the open routes make.
        tokio::spawn(async move {
            while let Some(call) = rx.recv().await {
                let Call { request, reply } = call;
                let answer = match request {
                    Request::Metrics => Reply::Metrics(Box::default()),
                    _ => Reply::Json(StatusCode::OK, serde_json::json!({})),
                };
                let _ = reply.send(answer);
            }
        });
        let state = HttpState::new(
            calls,
            PhaseFlag::default(),
            Some("a-token-of-16-chars"),
            metrics::Telemetry::default(),
            false,
            Integrations {
                bridges: crate::bridge::Bridges::new(crate::bridge::LocalDialer::new(
                    mpsc::channel(1).0,
                )),
                webhooks: Default::default(),
            },
        );
        let app = router(state);
        let paths = spec["paths"].as_object().expect("paths");
        assert!(paths.len() >= 14, "{} paths", paths.len());
        for (path, methods) in paths {
            for method in methods.as_object().expect("methods").keys() {
                let uri = path
                    .replace("{client_id}", "someone")
                    .replace("{name}", "some-bridge");
                let request = axum::http::Request::builder()
                    .method(method.to_uppercase().as_str())
                    .uri(&uri)
                    .body(Body::empty())
                    .expect("request");
                let status = app
                    .clone()
                    .oneshot(request)
                    .await
                    .expect("response")
                    .status();
                let expected: &[u16] = if path.starts_with("/api/") {
                    &[401]
                } else {
                    &[200, 503]
                };
                assert!(
                    expected.contains(&status.as_u16()),
                    "{method} {path}: {status}, expected {expected:?}"
                );
            }
        }
        let missing = axum::http::Request::builder()
            .uri("/api/v1/nothing")
            .body(Body::empty())
            .expect("request");
        assert_eq!(
            app.oneshot(missing).await.expect("response").status(),
            StatusCode::NOT_FOUND
        );
    }
}
