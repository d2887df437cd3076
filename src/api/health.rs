//! Liveness, readiness and metrics endpoints.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

use super::Context;

/// Alive: the runtime answers and the Raft core has not stopped.
pub async fn live(State(context): State<Arc<Context>>) -> impl IntoResponse {
    if context.cluster.core_is_running() {
        (StatusCode::OK, Json(json!({ "live": true })))
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "live": false, "error": "the Raft core stopped" })))
    }
}

/// Ready: in a quorum with a known leader. The jar store's state is reported too: a master
/// whose store is down still holds the quorum, but operators must see why uploads fail.
pub async fn ready(State(context): State<Arc<Context>>) -> impl IntoResponse {
    let status = context.cluster.status();
    let ready = context.cluster.is_ready();
    let jar_store = match context.jars.check().await {
        Ok(()) => {
            json!({ "store": context.jars.describe(), "ok": true, "ha": context.jars.is_highly_available() })
        }
        Err(e) => json!({ "store": context.jars.describe(), "ok": false, "error": e.to_string() }),
    };
    let body = json!({
        "ready": ready,
        "role": status.role,
        "term": status.term,
        "leader": status.leader,
        "bootstrap": context.cluster.bootstrap_state().to_string(),
        "jarStore": jar_store,
    });
    let code = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(body))
}

pub async fn metrics(State(context): State<Arc<Context>>) -> impl IntoResponse {
    let text = context.metrics.render(&context.cluster);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}
