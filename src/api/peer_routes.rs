//! Routes only masters call: Raft RPCs, bootstrap hello, status, forwarded writes and reads.
//! With TLS, only a connection whose certificate (verified at the handshake against the cluster
//! CA) names a master may call them; with a cluster secret configured, a request without it is
//! refused too (with TLS the secret is a second factor that no longer travels in clear text).
//! A forwarded membership change with neither is accepted from loopback only. The worker
//! heartbeat is the exception: under TLS it takes a worker certificate instead.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::error::PeerRouteError;
use super::{ApiError, Context};
use crate::cluster::peer_protocol::{self as protocol, ReadIndex, WriteOutcome, WriteRequest};
use crate::cluster::{
    check_peer_version, ClusterError, LeaderAlive, LeaderAliveAnswer, MembersView, MembershipChange,
    PreVoteAnswer, PreVoteRequest, RaftRpc, SECRET_HEADER,
};
use crate::tls::Caller;
use crate::wire::PEER_VERSION;

pub(super) fn router(context: Arc<Context>) -> Router<Arc<Context>> {
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
        .route(protocol::PRE_VOTE, post(pre_vote))
        .route(protocol::LEADER_ALIVE, post(leader_alive))
        .route(crate::worker::protocol::HEARTBEAT, post(super::worker_routes::heartbeat))
        .route(crate::worker::protocol::HEARTBEAT_FORWARDED, post(super::worker_routes::heartbeat_forwarded))
        .layer(middleware::from_fn_with_state(context, require_peer))
}

async fn require_peer(State(context): State<Arc<Context>>, request: Request, next: Next) -> Response {
    let caller = request.extensions().get::<ConnectInfo<Caller>>().map(|info| info.0.clone());
    let remote = caller.as_ref().map(|c| c.address.to_string()).unwrap_or_else(|| "unknown".into());
    // A worker certificate opens the one route workers call (`worker_routes::heartbeat` then
    // checks that the worker speaks for itself); every other peer route needs a master.
    let worker_heartbeat = request.uri().path() == crate::worker::protocol::HEARTBEAT
        && caller.as_ref().is_some_and(|c| c.worker.is_some());
    if context.auth.tls && caller.as_ref().and_then(|c| c.node.as_ref()).is_none() && !worker_heartbeat {
        tracing::warn!(%remote, path = %request.uri().path(), "refused a peer request without a master certificate");
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "peer routes need a master certificate from the cluster CA",
        )
        .into_response();
    }
    if context.secret.is_none()
        && !context.auth.tls
        && request.uri().path() == protocol::MEMBERS
        && !caller.as_ref().is_some_and(|c| crate::api::auth::is_loopback(&c.address))
    {
        tracing::warn!(%remote, "refused a membership change from an unauthenticated peer");
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "membership changes between masters need TLS or a cluster secret (gearpump.master.tls, gearpump.master.secret-file)",
        )
        .into_response();
    }
    if let Some(secret) = &context.secret {
        let given = request.headers().get(SECRET_HEADER).map(|v| v.as_bytes()).unwrap_or_default();
        if !constant_time_eq(given, secret.as_bytes()) {
            tracing::warn!(%remote, path = %request.uri().path(), "refused a peer request without the cluster secret");
            return ApiError::new(StatusCode::UNAUTHORIZED, "peer request without a valid cluster secret")
                .into_response();
        }
    }
    // After the caller is known to be a master: the version it speaks.
    if let Err(error) = check_peer_version(request.headers().get(PEER_VERSION).map(|v| v.as_bytes())) {
        tracing::warn!(%remote, path = %request.uri().path(), %error, "refused a peer request");
        return PeerRouteError(error).into_response();
    }
    next.run(request).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(a.ct_eq(b))
}

fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, PeerRouteError> {
    serde_json::from_slice(body).map_err(|e| PeerRouteError(ClusterError::BadRequest(e.to_string())))
}

async fn raft_rpc(context: &Context, rpc: RaftRpc, body: &[u8]) -> Result<Response, PeerRouteError> {
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

async fn append(State(context): State<Arc<Context>>, body: Bytes) -> Result<Response, PeerRouteError> {
    raft_rpc(&context, RaftRpc::Append, &body).await
}

async fn vote(State(context): State<Arc<Context>>, body: Bytes) -> Result<Response, PeerRouteError> {
    raft_rpc(&context, RaftRpc::Vote, &body).await
}

async fn snapshot(State(context): State<Arc<Context>>, body: Bytes) -> Result<Response, PeerRouteError> {
    raft_rpc(&context, RaftRpc::Snapshot, &body).await
}

async fn hello(State(context): State<Arc<Context>>) -> impl IntoResponse {
    Json(context.cluster.hello())
}

async fn status(State(context): State<Arc<Context>>) -> impl IntoResponse {
    Json(context.cluster.status())
}

async fn write(
    State(context): State<Arc<Context>>,
    body: Bytes,
) -> Result<Json<WriteOutcome>, PeerRouteError> {
    let request: WriteRequest = decode(&body)?;
    // The forwarding master keeps its own deadline; this bound only stops work nobody waits for.
    let deadline = Instant::now() + context.config.request_timeout + Duration::from_secs(1);
    Ok(Json(context.cluster.write_as_leader(request.proposal, deadline).await?))
}

async fn read_index(State(context): State<Arc<Context>>) -> Result<Json<ReadIndex>, PeerRouteError> {
    let index = context.cluster.read_index().await?;
    Ok(Json(ReadIndex { index }))
}

async fn take_over(State(context): State<Arc<Context>>) -> Result<Json<()>, PeerRouteError> {
    tracing::info!("the leader is stopping and asked this master to take over");
    context.cluster.take_over().await?;
    Ok(Json(()))
}

async fn pre_vote(
    State(context): State<Arc<Context>>,
    body: Bytes,
) -> Result<Json<PreVoteAnswer>, PeerRouteError> {
    let request: PreVoteRequest = decode(&body)?;
    Ok(Json(context.cluster.pre_vote(&request)))
}

async fn leader_alive(
    State(context): State<Arc<Context>>,
    body: Bytes,
) -> Result<Json<LeaderAliveAnswer>, PeerRouteError> {
    let beacon: LeaderAlive = decode(&body)?;
    Ok(Json(context.cluster.leader_alive(&beacon)))
}

/// A membership change forwarded by a follower; a failure carries the leader's typed error.
async fn members(
    State(context): State<Arc<Context>>,
    body: Bytes,
) -> Result<Json<MembersView>, PeerRouteError> {
    let change: MembershipChange = decode(&body)?;
    Ok(Json(context.cluster.change_members(change).await?))
}

/// The peer transport end to end over real HTTP: a typed failure on one master reaches the
/// master that called with its type, so the caller answers its client with the same status.
#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::http::StatusCode;
    use axum::routing::post;
    use axum::{Json, Router};

    use std::sync::Arc;

    use axum::extract::ConnectInfo;

    use super::{protocol, PeerRouteError, PEER_VERSION};
    use crate::api::error::cluster_status;
    use crate::api::test_support::HangingStore;
    use crate::cluster::{ClusterError, PeerError, PeerFailure, Peers};
    use crate::state::Rejection;
    use crate::tls::Caller;

    async fn serve(router: Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        tokio::spawn(async move { axum::serve(listener, router).await });
        address
    }

    fn failing(error: ClusterError) -> Router {
        Router::new().route("/peer/x", post(move || async move { Err::<Json<()>, _>(PeerRouteError(error)) }))
    }

    #[tokio::test]
    async fn typed_failures_keep_their_type_and_status_across_a_forward() {
        let peers = Peers::new(Duration::from_secs(1), None).expect("client");
        let cases = [
            ClusterError::NoQuorum("catch-up timed out".into()),
            ClusterError::BadRequest("the last master".into()),
            ClusterError::Rejected(Rejection::UnknownApp(7)),
            ClusterError::Rejected(Rejection::RequestIdReused("r".into())),
        ];
        for error in cases {
            let expected = cluster_status(&error);
            let address = serve(failing(error.clone())).await;
            let answer: Result<(), PeerError> =
                peers.post(&address, "/peer/x", &(), Duration::from_secs(5)).await;
            let Err(PeerError::Refused(received)) = answer else { panic!("{error:?}: got {answer:?}") };
            assert_eq!(cluster_status(&received), expected, "{error:?} became {received:?}");
            assert_eq!(received.to_string(), error.to_string());
        }
        assert_eq!(cluster_status(&ClusterError::NoQuorum(String::new())), StatusCode::SERVICE_UNAVAILABLE);
    }

    /// A peer request through the real router (its `require_peer` layer) with this version
    /// header, from loopback: the status and the body.
    async fn peer_status_with(version: Option<&str>) -> (StatusCode, serde_json::Value) {
        use tower::ServiceExt;
        let (context, _dir) = crate::api::test_support::one_master_context(Arc::new(HangingStore), "").await;
        let mut builder = axum::http::Request::builder().method("GET").uri(protocol::STATUS);
        if let Some(version) = version {
            builder = builder.header(PEER_VERSION, version);
        }
        let mut request = builder.body(axum::body::Body::empty()).expect("request");
        let caller = Caller::anonymous("127.0.0.1:4000".parse().expect("address"));
        request.extensions_mut().insert(ConnectInfo(caller));
        let response = crate::api::router(context).oneshot(request).await.expect("answer");
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
        (status, serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null))
    }

    /// A leader's beacon (`cluster::election`, point 5) is counted as contact only when it
    /// carries the vote this master holds: not an older term's, not a candidate's (uncommitted).
    #[tokio::test]
    async fn a_leaders_beacon_counts_only_with_the_vote_this_master_holds() {
        use openraft::Vote;
        use tower::ServiceExt;

        use crate::cluster::{LeaderAlive, LeaderAliveAnswer};
        let (context, _dir) = crate::api::test_support::one_master_context(Arc::new(HangingStore), "").await;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while context.cluster.status().role != crate::wire::Role::Leader {
            assert!(std::time::Instant::now() < deadline, "the one master did not become leader");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (term, me) = (context.cluster.status().term, context.cluster.node_id());
        let beacon = |vote: Vote<crate::cluster::NodeId>| LeaderAlive { vote };
        let cases = [
            (beacon(Vote::new_committed(term, me)), true),
            (beacon(Vote::new_committed(term.saturating_sub(1), me)), false),
            (beacon(Vote::new_committed(term + 1, me)), false),
            (beacon(Vote::new(term, me)), false),
        ];
        for (sent, counted) in cases {
            let mut request = axum::http::Request::builder()
                .method("POST")
                .uri(protocol::LEADER_ALIVE)
                .body(axum::body::Body::from(serde_json::to_vec(&sent).expect("JSON")))
                .expect("request");
            let caller = Caller::anonymous("127.0.0.1:4000".parse().expect("address"));
            request.extensions_mut().insert(ConnectInfo(caller));
            let response = crate::api::router(context.clone()).oneshot(request).await.expect("answer");
            assert_eq!(response.status(), StatusCode::OK, "{sent:?}");
            let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
            let answer: LeaderAliveAnswer = serde_json::from_slice(&body).expect("an answer");
            assert_eq!(answer.counted, counted, "{sent:?}");
        }
    }

    #[tokio::test]
    async fn a_peer_of_a_far_protocol_version_is_refused_naming_both_versions() {
        use crate::wire::{PACKAGE_VERSION, PEER_PROTOCOL_VERSION};
        // What this master's own transport sends, an adjacent version and no header (a master
        // from before the header, or a worker's heartbeat) are served.
        let adjacent = format!("{} 0.0.9", PEER_PROTOCOL_VERSION + 1);
        for version in [Some(crate::cluster::peer_version_header()), Some(adjacent), None] {
            let (status, body) = peer_status_with(version.as_deref()).await;
            assert_eq!(status, StatusCode::OK, "{version:?}: {body}");
            assert_eq!(body["version"], PACKAGE_VERSION);
            assert_eq!(body["protocol"], PEER_PROTOCOL_VERSION);
        }
        let far = PEER_PROTOCOL_VERSION + 5;
        let (status, body) = peer_status_with(Some(&format!("{far} 9.0.0"))).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        let failure: PeerFailure = serde_json::from_value(body).expect("a typed peer failure");
        assert!(
            matches!(&failure.cause, ClusterError::PeerVersion { ours, theirs, their_package, .. }
                if *ours == PEER_PROTOCOL_VERSION && *theirs == far && their_package == "9.0.0"),
            "{failure:?}"
        );
        let message = failure.error;
        assert!(
            message.contains(&format!("peer protocol version {far} (gearpump-master 9.0.0)")),
            "{message}"
        );
        assert!(
            message.contains(&format!("version {PEER_PROTOCOL_VERSION} (gearpump-master {PACKAGE_VERSION})")),
            "{message}"
        );
        assert!(message.contains("upgrade one version at a time"), "{message}");
        let (status, body) = peer_status_with(Some("one")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(body["error"].as_str().is_some_and(|e| e.contains("is not \"PROTOCOL PACKAGE\"")), "{body}");
    }

    #[tokio::test]
    async fn undelivered_unanswered_and_refused_calls_are_told_apart() {
        let peers = Peers::new(Duration::from_secs(1), Some("s".repeat(16))).expect("client");
        // Nothing listens: never delivered, safe to send elsewhere.
        let closed = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("address").to_string()
        };
        let answer: Result<(), _> = peers.post(&closed, "/peer/x", &(), Duration::from_secs(1)).await;
        assert!(matches!(answer, Err(PeerError::NotDelivered { .. })), "{answer:?}");
        // Received, never answered: the outcome is unknown.
        let slow = serve(Router::new().route(
            "/peer/x",
            post(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Json(())
            }),
        ))
        .await;
        let answer: Result<(), _> = peers.post(&slow, "/peer/x", &(), Duration::from_millis(200)).await;
        assert!(matches!(answer, Err(PeerError::NoAnswer { .. })), "{answer:?}");
        // A refusal that is not a route's typed failure (the secret check, an unknown route).
        let plain = serve(Router::new()).await;
        let answer: Result<(), _> = peers.post(&plain, "/peer/x", &(), Duration::from_secs(1)).await;
        assert!(
            matches!(answer, Err(PeerError::Refused(ClusterError::PeerRefused { status: 404, .. }))),
            "{answer:?}"
        );
    }
}
