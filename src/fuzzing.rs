//! Entry points of the fuzz targets under `fuzz/` (cargo-fuzz; `scripts/fuzz.sh` runs them).
//! Compiled only with the `fuzzing` feature: nothing here is part of the library's API.
//!
//! Each entry point feeds untrusted bytes to the code that reads them in production, in the
//! way production does, and panics (which libFuzzer records as a crash) when the code answers
//! in a way the project's rules forbid:
//! - `gear_conf`: the master's and the worker's gear.conf loaders. Any text must give a
//!   configuration or an error that names the file; never a panic.
//! - `Server::rest`, `Server::multipart`, `Server::peer`: HTTP requests through the real router
//!   (authorization layer, extractors, handlers) of a one-master cluster in this process, as if
//!   sent from loopback. Bad input must get a 4xx (or a 503 while the cluster is busy), never a
//!   500, and the Raft core must survive every peer message, however malformed.

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use tower::ServiceExt as _;

use crate::api::Context;
use crate::tls::Caller;

/// Loads `data` as a master's and as a worker's gear.conf.
pub fn gear_conf(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let path = Path::new("fuzz/gear.conf");
    if let Err(error) = crate::config::load_str(path, &text, &Default::default()) {
        let message = error.to_string();
        assert!(message.contains("fuzz/gear.conf"), "a config error that does not name its file: {message}");
    }
    if let Err(error) = crate::config::load_worker_str(path, &text) {
        let message = error.to_string();
        assert!(message.contains("fuzz/gear.conf"), "a config error that does not name its file: {message}");
    }
}

/// A one-master cluster in this process and its router; requests are answered one at a time.
pub struct Server {
    runtime: tokio::runtime::Runtime,
    context: Arc<Context>,
    app_ids: Vec<u32>,
    _state: tempfile::TempDir,
    jars: tempfile::TempDir,
}

/// Client routes that take a body or a query, chosen by the first byte of the input.
const REST_ROUTES: &[(Method, &str)] = &[
    (Method::PUT, "/api/v1.0/appmaster/{app}/data/{key}"),
    (Method::POST, "/api/v1.0/master/members"),
    (Method::POST, "/api/v1.0/appmaster/{app}/restart"),
    (Method::DELETE, "/api/v1.0/appmaster/{app}"),
    (Method::GET, "/api/v1.0/appmaster/{app}/log?{query}"),
    (Method::GET, "/api/v1.0/jarstore/download?{query}"),
    (Method::GET, "/api/v1.0/worker/{key}"),
];

/// Peer routes that read a body.
const PEER_ROUTES: &[&str] = &[
    crate::cluster::peer_protocol::RAFT_APPEND,
    crate::cluster::peer_protocol::RAFT_VOTE,
    crate::cluster::peer_protocol::RAFT_SNAPSHOT,
    crate::cluster::peer_protocol::WRITE,
    crate::cluster::peer_protocol::PRE_VOTE,
    crate::cluster::peer_protocol::LEADER_ALIVE,
    crate::cluster::peer_protocol::MEMBERS,
    crate::worker::protocol::HEARTBEAT,
    crate::worker::protocol::HEARTBEAT_FORWARDED,
];

impl Server {
    /// Starts the cluster (its state in a temporary folder, jars in another) and submits two
    /// applications, so routes that name one reach their handler's logic.
    pub fn start() -> Server {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let jars_dir = tempfile::tempdir().expect("a temporary folder");
        let (context, state) = runtime.block_on(async {
            let jars = crate::jarstore::fs::FsJarStore::local(jars_dir.path().to_path_buf());
            // A short request timeout: a fuzzed membership change that waits for a learner that
            // never answers costs one second, not five.
            crate::api::test_support::one_master_context(
                Arc::new(jars),
                "gearpump.master.request-timeout = 1s",
            )
            .await
        });
        let mut server = Server { runtime, context, app_ids: Vec::new(), _state: state, jars: jars_dir };
        for name in ["a.jar", "b.jar"] {
            let body = multipart_body(name, b"PK\x03\x04 not really a jar", "Main");
            let (status, answer) = server.send(Method::POST, "/api/v1.0/master/submitapp", MULTIPART, body);
            assert_eq!(status, StatusCode::OK, "the harness could not submit an application: {answer}");
            let id = serde_json::from_str::<crate::wire::SubmitAnswer>(&answer)
                .map(|answer| answer.app_id)
                .expect("an application id in the answer");
            server.app_ids.push(id);
        }
        server
    }

    /// One client request: the first byte picks the route, the second the application, the
    /// rest up to a NUL is the path's free part (a key or a query), and the remainder the body.
    pub fn rest(&self, data: &[u8]) {
        let Some((&route, rest)) = data.split_first() else { return };
        let Some((&app, rest)) = rest.split_first() else { return };
        let (method, template) = &REST_ROUTES[usize::from(route) % REST_ROUTES.len()];
        let split = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        let (free, body) = (&rest[..split], rest.get(split + 1..).unwrap_or_default());
        let app = self.app_ids.get(usize::from(app) % 3).copied().unwrap_or(9_999);
        let free: String =
            percent_encoding::percent_encode(free, percent_encoding::NON_ALPHANUMERIC).to_string();
        let query = String::from_utf8_lossy(&rest[..split]).replace(['#', ' '], "");
        let uri =
            template.replace("{app}", &app.to_string()).replace("{key}", &free).replace("{query}", &query);
        if uri.parse::<axum::http::Uri>().is_err() {
            return;
        }
        self.check(method.clone(), &uri, "application/json", body.to_vec());
    }

    /// One upload: `data` is the body of a multipart request with a fixed boundary. A refused
    /// upload must leave no jar behind in the store.
    pub fn multipart(&self, data: &[u8]) {
        let before = self.stored_jars();
        let status = self.check(Method::POST, "/api/v1.0/master/submitapp", MULTIPART, data.to_vec());
        if !status.is_success() {
            let after = self.stored_jars();
            assert!(
                after <= before,
                "a refused upload ({status}) left a jar in the store: {before} -> {after}"
            );
        }
    }

    /// Files in the store, partial uploads included (they live in a folder of the root).
    fn stored_jars(&self) -> usize {
        let count = |dir: &Path| {
            std::fs::read_dir(dir)
                .map(|entries| entries.filter(|e| e.as_ref().is_ok_and(|e| e.path().is_file())).count())
                .unwrap_or(0)
        };
        let root = self.jars.path();
        count(root)
            + std::fs::read_dir(root).map_or(0, |entries| {
                entries.filter_map(Result::ok).filter(|e| e.path().is_dir()).map(|e| count(&e.path())).sum()
            })
    }

    /// One peer message: the first byte picks the route, the rest is the body. The Raft core must
    /// still run afterwards.
    pub fn peer(&self, data: &[u8]) {
        let Some((&route, body)) = data.split_first() else { return };
        let path = PEER_ROUTES[usize::from(route) % PEER_ROUTES.len()];
        self.check(Method::POST, path, "application/json", body.to_vec());
        assert!(self.context.cluster.core_is_running(), "a peer message to {path} stopped the Raft core");
    }

    fn check(&self, method: Method, uri: &str, content_type: &str, body: Vec<u8>) -> StatusCode {
        let (status, answer) = self.send(method.clone(), uri, content_type, body);
        assert!(
            status != StatusCode::INTERNAL_SERVER_ERROR,
            "{method} {uri} answered 500 to bad input: {answer}"
        );
        status
    }

    fn send(&self, method: Method, uri: &str, content_type: &str, body: Vec<u8>) -> (StatusCode, String) {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", content_type)
            .body(Body::from(body))
            .expect("a request");
        let caller = Caller::anonymous(([127, 0, 0, 1], 40_000).into());
        request.extensions_mut().insert(ConnectInfo(caller));
        let router = crate::api::router(self.context.clone());
        self.runtime.block_on(async {
            let response = router.oneshot(request).await.expect("the router is infallible");
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap_or_default();
            (status, String::from_utf8_lossy(&bytes).into_owned())
        })
    }
}

const BOUNDARY: &str = "fuzzboundary";
const MULTIPART: &str = "multipart/form-data; boundary=fuzzboundary";

/// A well-formed submission, also the seed the multipart corpus starts from.
pub fn multipart_body(file_name: &str, jar: &[u8], main_class: &str) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"jar\"; filename=\"{file_name}\"\r\n\
             Content-Type: application/java-archive\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(jar);
    body.extend_from_slice(
        format!(
            "\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"mainClass\"\r\n\r\n{main_class}\r\n--{BOUNDARY}--\r\n"
        )
        .as_bytes(),
    );
    body
}
