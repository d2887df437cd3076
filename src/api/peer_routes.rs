//! Routes only masters call: Raft RPCs, bootstrap hello, status, forwarded writes and reads.
//! With a cluster secret configured, a request without it is refused with 401 and logged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::{ApiError, Context};
use crate::cluster::peer_protocol::{self as protocol, ReadIndex, WriteOutcome, WriteRequest};
use crate::cluster::{ClusterError, MembersView, MembershipChange, RaftRpc};

pub fn router(context: Arc<Context>) -> Router<Arc<Context>> {
    Router::new()
        .route(protocol::RAFT_APPEND, post(append))
        .route(protocol::RAFT_VOTE, post(vote))
        .route(protocol::RAFT_SNAPSHOT, post(snapshot))
        .route(protocol::HELLO, get(hello))
        .route(protocol::STATUS, get(status))
        .route(protocol::WRITE, post(write))
        .route(protocol::READ_INDEX, post(read_index))
        .route(protocol::TAKE_OVER, post(take_over))
        .route(protocol::MEMBERS, post(members))
        .route(crate::worker::protocol::HEARTBEAT, post(super::worker_routes::heartbeat))
        .layer(middleware::from_fn_with_state(context, require_secret))
}

async fn require_secret(State(context): State<Arc<Context>>, request: Request, next: Next) -> Response {
    if let Some(secret) = &context.secret {
        let given = request.headers().get(protocol::SECRET_HEADER).map(|v| v.as_bytes()).unwrap_or_default();
        if !constant_time_eq(given, secret.as_bytes()) {
            tracing::warn!(path = %request.uri().path(), "refused a peer request without the cluster secret");
            return ApiError::new(StatusCode::UNAUTHORIZED, "peer request without a valid cluster secret")
                .into_response();
        }
    }
    next.run(request).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn raft_rpc(context: &Context, rpc: RaftRpc, body: &[u8]) -> Result<Response, ApiError> {
    let started = Instant::now();
    let answer = context.cluster.handle_raft_rpc(rpc, body).await?;
    let histogram = match rpc {
        RaftRpc::Append => &context.metrics.rpc_append,
        RaftRpc::Vote => &context.metrics.rpc_vote,
        RaftRpc::Snapshot => &context.metrics.rpc_snapshot,
    };
    histogram.observe(started.elapsed());
    Ok(([(header::CONTENT_TYPE, "application/json")], answer).into_response())
}

async fn append(State(context): State<Arc<Context>>, body: Bytes) -> Result<Response, ApiError> {
    raft_rpc(&context, RaftRpc::Append, &body).await
}

async fn vote(State(context): State<Arc<Context>>, body: Bytes) -> Result<Response, ApiError> {
    raft_rpc(&context, RaftRpc::Vote, &body).await
}

async fn snapshot(State(context): State<Arc<Context>>, body: Bytes) -> Result<Response, ApiError> {
    raft_rpc(&context, RaftRpc::Snapshot, &body).await
}

async fn hello(State(context): State<Arc<Context>>) -> impl IntoResponse {
    Json(context.cluster.hello())
}

async fn status(State(context): State<Arc<Context>>) -> impl IntoResponse {
    Json(context.cluster.status())
}

async fn write(State(context): State<Arc<Context>>, body: Bytes) -> Result<Json<WriteOutcome>, ApiError> {
    let request: WriteRequest =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(e.to_string()))?;
    // The forwarding master keeps its own deadline; this bound only stops work nobody waits for.
    let deadline = Instant::now() + context.config.request_timeout + Duration::from_secs(1);
    match context.cluster.write_as_leader(request.command, deadline).await {
        Ok(outcome) => Ok(Json(outcome)),
        Err(ClusterError::NoQuorum(why)) => Ok(Json(WriteOutcome::NoQuorum(why))),
        Err(other) => Err(other.into()),
    }
}

async fn read_index(State(context): State<Arc<Context>>) -> Result<Json<ReadIndex>, ApiError> {
    let index = context.cluster.read_index().await?;
    Ok(Json(ReadIndex { index }))
}

async fn take_over(State(context): State<Arc<Context>>) -> Result<StatusCode, ApiError> {
    tracing::info!("the leader is stopping and asked this master to take over");
    context.cluster.take_over().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A membership change forwarded by a follower; the answer carries the leader's verdict.
async fn members(
    State(context): State<Arc<Context>>,
    body: Bytes,
) -> Result<Json<Result<MembersView, String>>, ApiError> {
    let change: MembershipChange =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(Json(context.cluster.change_members(change).await.map_err(|e| e.to_string())))
}
