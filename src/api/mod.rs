//! The HTTP server on the master's port: Gearpump's client REST paths, the peer routes Raft
//! uses, health checks and metrics.

pub mod auth;
mod client_routes;
mod error;
mod health;
mod jar_routes;
pub mod metrics;
mod peer_routes;
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod test_support;
mod worker_routes;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

use crate::cluster::Cluster;
use crate::config::MasterConfig;
use crate::jarstore::JarStore;
pub use client_routes::now_ms;
pub use error::ApiError;
pub use worker_routes::WorkerLogs;

/// JSON bodies of client requests; anything larger is a mistake or an attack.
const CLIENT_BODY_LIMIT: usize = 1 << 20;
/// Raft batches and snapshots between masters.
const PEER_BODY_LIMIT: usize = 64 << 20;

/// What every handler can reach.
pub struct Context {
    pub cluster: Arc<Cluster>,
    pub jars: Arc<dyn JarStore>,
    pub config: Arc<MasterConfig>,
    pub metrics: Arc<metrics::Metrics>,
    pub secret: Option<String>,
    /// Client tokens and roles, checked by the `auth::authorize` layer.
    pub auth: auth::Auth,
    /// The jar store's last health probe (`None` before the first), refreshed in the
    /// background (`daemon::probe_jar_store`) so `/health/ready` never waits on a slow store.
    pub jar_health: std::sync::RwLock<Option<JarProbe>>,
    /// The leader's worker table (empty on followers).
    pub workers: Arc<crate::scheduler::Registry>,
    /// Reads application logs from the workers' log ports.
    pub worker_logs: worker_routes::WorkerLogs,
}

/// One background probe of the jar store: its outcome and when it finished, so readiness can
/// say how old the news is (a store that hangs shows up as a probe that keeps getting older).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JarProbe {
    pub result: Result<(), String>,
    pub at: std::time::Instant,
}

pub fn router(context: Arc<Context>) -> Router {
    let upload_limit =
        usize::try_from(context.config.jar_max_size).unwrap_or(usize::MAX).saturating_add(1 << 20);
    let client = Router::new()
        .route("/api/v1.0/version", get(client_routes::version))
        .route("/api/v1.0/master", get(client_routes::master))
        .route("/api/v1.0/master/applist", get(client_routes::app_list))
        .route("/api/v1.0/master/config", get(client_routes::config))
        .route("/api/v1.0/master/snapshot", get(client_routes::snapshot))
        .route("/api/v1.0/master/members", get(client_routes::members).post(client_routes::change_members))
        .route("/api/v1.0/appmaster/{id}", get(client_routes::app_detail).delete(client_routes::kill_app))
        .route(
            "/api/v1.0/appmaster/{id}/data/{key}",
            get(client_routes::get_app_data).put(client_routes::put_app_data),
        )
        .route("/api/v1.0/jarstore/download", get(jar_routes::download))
        .route("/api/v1.0/master/workerlist", get(worker_routes::workerlist))
        .route("/api/v1.0/worker/{id}", get(worker_routes::worker_detail))
        .route("/api/v1.0/appmaster/{id}/restart", post(worker_routes::restart_app))
        .route("/api/v1.0/appmaster/{id}/log", get(worker_routes::app_log))
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/metrics", get(health::metrics))
        .layer(DefaultBodyLimit::max(CLIENT_BODY_LIMIT));
    let upload = Router::new()
        .route("/api/v1.0/master/submitapp", post(jar_routes::submit_app))
        .layer(DefaultBodyLimit::max(upload_limit));
    let peer = peer_routes::router(context.clone()).layer(DefaultBodyLimit::max(PEER_BODY_LIMIT));
    // One layer in front of every route: `auth::ROUTES` says what each needs.
    let authorize = axum::middleware::from_fn_with_state(context.clone(), auth::authorize);
    client
        .merge(upload)
        .merge(peer)
        .fallback(client_routes::not_found)
        .layer(authorize)
        .layer(axum::middleware::map_response(no_sniff))
        .with_state(context)
}

/// Every answer is JSON, plain text or a jar, never HTML; this keeps a browser from guessing
/// otherwise about one that echoes a request's path.
async fn no_sniff(mut response: axum::response::Response) -> axum::response::Response {
    response
        .headers_mut()
        .insert(axum::http::header::X_CONTENT_TYPE_OPTIONS, axum::http::HeaderValue::from_static("nosniff"));
    response
}
