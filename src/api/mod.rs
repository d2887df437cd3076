//! The HTTP server on the master's port: Gearpump's client REST paths, the peer routes Raft
//! uses, health checks and metrics.

pub mod auth;
mod client_routes;
mod error;
mod health;
mod jar_routes;
pub mod metrics;
pub mod openapi;
mod peer_routes;
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod test_support;
mod worker_routes;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodFilter, MethodRouter};
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

/// One client route: its method and path (axum's `{param}` syntax, as OpenAPI writes it), its
/// handler, and which body limit it gets.
#[cfg_attr(not(test), allow(dead_code))] // `method` is read by the OpenAPI check
pub(crate) struct Route {
    pub method: Method,
    pub path: &'static str,
    handler: MethodRouter<Arc<Context>>,
    upload: bool,
}

/// The route serves `handler` for exactly the `method` it is listed with.
fn route<H: Handler<T, Arc<Context>>, T: 'static>(method: Method, path: &'static str, handler: H) -> Route {
    // The table below lists only methods a filter exists for (not CONNECT): a property of this
    // file, checked by every test that builds the router, not of anything a client sends.
    #[allow(clippy::expect_used)]
    let filter = MethodFilter::try_from(method.clone()).expect("a method axum can route");
    Route { method, path, handler: axum::routing::on(filter, handler), upload: false }
}

/// Every client route, in the one table the router is built from and the OpenAPI document is
/// checked against (`openapi`'s tests). Who may call each is `auth::ROUTES`'s business.
pub(crate) fn client_routes(upload_limit: usize) -> Vec<Route> {
    use Method as M;
    let mut submit = route(M::POST, "/api/v1.0/master/submitapp", jar_routes::submit_app);
    submit.handler = submit.handler.layer(DefaultBodyLimit::max(upload_limit));
    submit.upload = true;
    vec![
        route(M::GET, "/api/v1.0/version", client_routes::version),
        route(M::GET, "/api/v1.0/master", client_routes::master),
        route(M::GET, "/api/v1.0/master/applist", client_routes::app_list),
        route(M::GET, "/api/v1.0/master/config", client_routes::config),
        route(M::GET, "/api/v1.0/master/snapshot", client_routes::snapshot),
        route(M::GET, "/api/v1.0/master/members", client_routes::members),
        route(M::POST, "/api/v1.0/master/members", client_routes::change_members),
        route(M::GET, "/api/v1.0/appmaster/{id}", client_routes::app_detail),
        route(M::DELETE, "/api/v1.0/appmaster/{id}", client_routes::kill_app),
        route(M::GET, "/api/v1.0/appmaster/{id}/data/{key}", client_routes::get_app_data),
        route(M::PUT, "/api/v1.0/appmaster/{id}/data/{key}", client_routes::put_app_data),
        route(M::GET, "/api/v1.0/jarstore/download", jar_routes::download),
        route(M::GET, "/api/v1.0/master/workerlist", worker_routes::workerlist),
        route(M::GET, "/api/v1.0/worker/{id}", worker_routes::worker_detail),
        route(M::POST, "/api/v1.0/appmaster/{id}/restart", worker_routes::restart_app),
        route(M::GET, "/api/v1.0/appmaster/{id}/log", worker_routes::app_log),
        route(M::GET, openapi::PATH, openapi::serve),
        route(M::GET, "/health/live", health::live),
        route(M::GET, "/health/ready", health::ready),
        route(M::GET, "/metrics", health::metrics),
        submit,
    ]
}

pub fn router(context: Arc<Context>) -> Router {
    let upload_limit =
        usize::try_from(context.config.jar_max_size).unwrap_or(usize::MAX).saturating_add(1 << 20);
    // Two routers for two body limits; axum merges two methods on one path into one route.
    let (mut client, mut upload) = (Router::new(), Router::new());
    for route in client_routes(upload_limit) {
        if route.upload {
            upload = upload.route(route.path, route.handler);
        } else {
            client = client.route(route.path, route.handler);
        }
    }
    let client = client.layer(DefaultBodyLimit::max(CLIENT_BODY_LIMIT));
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
