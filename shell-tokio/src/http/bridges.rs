//! `/api/v1/bridges`: list, create and delete MQTT bridges at runtime. Bridges created here run
//! until deleted or until the broker stops; those meant to outlive a restart belong in
//! `[[bridge]]` in the configuration file.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;

use super::api::Admin;
use super::{ApiError, HttpState};
use crate::bridge::{BridgeConfig, Origin};

/// `GET /api/v1/bridges`: every bridge with its state and counters.
pub(super) async fn list(_: Admin, State(s): State<HttpState>) -> Response {
    Json(serde_json::json!({ "bridges": s.bridges.list() })).into_response()
}

/// `POST /api/v1/bridges`: a bridge in the shape of a `[[bridge]]` entry, as JSON.
pub(super) async fn create(_: Admin, State(s): State<HttpState>, body: Bytes) -> Response {
    let config: BridgeConfig = match serde_json::from_slice(&body) {
        Ok(config) => config,
        Err(e) => {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                None,
                format!("the body is not a bridge: {e}"),
            )
            .into_response()
        }
    };
    let spec = match config.check("body") {
        Ok(spec) => spec,
        Err(e) => return ApiError::bad(&e.key, e.fix).into_response(),
    };
    let name = spec.name.clone();
    match s.bridges.start(spec, Origin::Api) {
        Ok(()) => {
            let view = s.bridges.list().into_iter().find(|b| b.name == name);
            (StatusCode::CREATED, Json(view)).into_response()
        }
        Err(e) => ApiError::new(StatusCode::CONFLICT, Some("name"), e.to_string()).into_response(),
    }
}

/// `DELETE /api/v1/bridges/{name}`: stops the bridge and deletes its buffered messages.
pub(super) async fn remove(
    _: Admin,
    State(s): State<HttpState>,
    Path(name): Path<String>,
) -> Response {
    if s.bridges.remove(&name) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        ApiError::not_found("name", format!("no bridge named {name:?}")).into_response()
    }
}
