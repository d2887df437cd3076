//! Who may call which client route: bearer tokens with roles, and one table from route to role.
//!
//! Roles are ordered: `read` (lists, status, downloads, logs) < `submit` (submit, kill,
//! restart, application data) < `admin` (membership, and everything). The table `ROUTES` is
//! the one place a route gets its role; a route missing from it needs `admin`, so a route
//! added without a thought is closed rather than open. Peer routes (`/peer/...`) are not
//! decided here: `peer_routes` authenticates masters (certificate and/or cluster secret).
//!
//! Without a tokens file every route is open as before (the daemon warns), except that an
//! admin route — membership — is still only accepted from loopback or from a master that
//! presented a valid node certificate: anyone who reaches the port must not be able to add
//! a voter of their own, which the leader would then stream the Raft log to.
//!
//! Tokens are stored as SHA-256 digests and compared in constant time against every entry;
//! a token never reaches a log line or an error message.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{ApiError, Context};
use crate::tls::Caller;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Read,
    Submit,
    Admin,
}

impl Role {
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "read" => Some(Role::Read),
            "submit" => Some(Role::Submit),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Submit => "submit",
            Role::Admin => "admin",
        }
    }
}

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No token ever (health and metrics, unless `open-health = no`).
    Open,
    /// Health and metrics: open unless `gearpump.master.auth.open-health = no`, then `read`.
    Health,
    /// A token of at least this role.
    Needs(Role),
    /// A worker certificate (the jar a worker runs), or else a token of at least this role.
    WorkerOr(Role),
    /// Master-to-master routes, authenticated by `peer_routes`.
    Peer,
}

/// One row of the table: a method (`None`: any) and a path pattern whose `{}` segments match
/// any one segment and whose trailing `/**` matches the rest.
pub struct Rule {
    pub method: Option<Method>,
    pub path: &'static str,
    pub access: Access,
}

const fn rule(method: Option<Method>, path: &'static str, access: Access) -> Rule {
    Rule { method, path, access }
}

const GET: Option<Method> = Some(Method::GET);
const POST: Option<Method> = Some(Method::POST);
const PUT: Option<Method> = Some(Method::PUT);
const DELETE: Option<Method> = Some(Method::DELETE);
const READ: Access = Access::Needs(Role::Read);
const SUBMIT: Access = Access::Needs(Role::Submit);
const ADMIN: Access = Access::Needs(Role::Admin);

/// Every client route and its role; first match wins, no match means `admin`. The worker
/// routes are listed ahead of their handlers so that they get their intended roles on merge.
pub const ROUTES: &[Rule] = &[
    rule(None, "/peer/**", Access::Peer),
    rule(GET, "/health/live", Access::Health),
    rule(GET, "/health/ready", Access::Health),
    rule(GET, "/metrics", Access::Health),
    rule(GET, "/api/v1.0/version", READ),
    rule(GET, crate::api::openapi::PATH, READ),
    rule(GET, "/api/v1.0/master", READ),
    rule(GET, "/api/v1.0/master/applist", READ),
    rule(GET, "/api/v1.0/master/config", READ),
    rule(GET, "/api/v1.0/master/members", READ),
    rule(POST, "/api/v1.0/master/members", ADMIN),
    rule(GET, "/api/v1.0/master/snapshot", ADMIN),
    rule(POST, "/api/v1.0/master/submitapp", SUBMIT),
    rule(GET, "/api/v1.0/appmaster/{}", READ),
    rule(DELETE, "/api/v1.0/appmaster/{}", SUBMIT),
    rule(GET, "/api/v1.0/appmaster/{}/data/{}", SUBMIT),
    rule(PUT, "/api/v1.0/appmaster/{}/data/{}", SUBMIT),
    rule(POST, "/api/v1.0/appmaster/{}/restart", SUBMIT),
    rule(GET, "/api/v1.0/appmaster/{}/log", READ),
    rule(GET, "/api/v1.0/jarstore/download", Access::WorkerOr(Role::Read)),
    rule(GET, "/api/v1.0/master/workerlist", READ),
    rule(GET, "/api/v1.0/worker/**", READ),
];

fn matches(pattern: &str, path: &str) -> bool {
    let mut pattern = pattern.split('/');
    let mut path = path.split('/');
    loop {
        match (pattern.next(), path.next()) {
            (Some("**"), Some(_)) => return true,
            (Some("{}"), Some(segment)) if !segment.is_empty() => {}
            (Some(expected), Some(segment)) if expected == segment => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// What `method path` needs according to `ROUTES`.
pub fn access_for(method: &Method, path: &str) -> Access {
    ROUTES
        .iter()
        .find(|rule| rule.method.as_ref().is_none_or(|m| m == method) && matches(rule.path, path))
        .map(|rule| rule.access)
        .unwrap_or(ADMIN)
}

#[derive(Debug, thiserror::Error)]
#[error("tokens file {path}: {problem}\n  fix: {fix}")]
pub struct TokensError {
    pub path: String,
    pub problem: String,
    pub fix: String,
}

/// The tokens of `gearpump.master.auth.tokens-file`, as digests.
pub struct Tokens {
    path: PathBuf,
    entries: Vec<([u8; 32], Role)>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({}, {} entries)", self.path.display(), self.entries.len())
    }
}

/// The shortest token we accept: 16 characters of a random token is already 80+ bits.
pub const MIN_TOKEN_LEN: usize = 16;

impl Tokens {
    /// Reads `ROLE TOKEN` lines (`#` starts a comment). The file must not be readable by
    /// others: a token is a password.
    pub fn load(path: &Path) -> Result<Tokens, TokensError> {
        let error = |problem: String, fix: &str| TokensError {
            path: path.display().to_string(),
            problem,
            fix: fix.to_string(),
        };
        let metadata = std::fs::metadata(path).map_err(|e| {
            error(
                e.to_string(),
                "create it (gearpump-setup writes one) or remove gearpump.master.auth.tokens-file",
            )
        })?;
        use std::os::unix::fs::PermissionsExt;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o007 != 0 {
            return Err(error(
                format!("mode {mode:o} lets every user of this machine read the tokens"),
                &format!("chmod 640 {} (owner gearpump, group gearpump)", path.display()),
            ));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| error(e.to_string(), "make it readable by the service user (gearpump)"))?;
        Tokens::parse(path, &text).map_err(|(line, problem)| {
            error(
                format!("line {line}: {problem}"),
                "write one `ROLE TOKEN` per line, ROLE one of admin, submit, read, TOKEN at least 16 visible characters",
            )
        })
    }

    fn parse(path: &Path, text: &str) -> Result<Tokens, (usize, String)> {
        let mut entries = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            let (Some(role), Some(token), None) = (words.next(), words.next(), words.next()) else {
                return Err((number + 1, "expected `ROLE TOKEN`".into()));
            };
            let role = Role::parse(role).ok_or_else(|| (number + 1, format!("unknown role {role:?}")))?;
            if token.len() < MIN_TOKEN_LEN {
                // The token itself is never repeated back.
                return Err((number + 1, format!("the token is shorter than {MIN_TOKEN_LEN} characters")));
            }
            entries.push((digest(token.as_bytes()), role));
        }
        if entries.is_empty() {
            return Err((0, "no token in the file".into()));
        }
        Ok(Tokens { path: path.to_path_buf(), entries })
    }

    /// The role of `token`, looking at every entry so the time taken does not tell which
    /// entry matched, or how much of a token was right.
    pub fn role_of(&self, token: &[u8]) -> Option<Role> {
        let given = digest(token);
        let mut found = None;
        for (entry, role) in &self.entries {
            if bool::from(entry.ct_eq(&given)) {
                found = found.max(Some(*role));
            }
        }
        found
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// How the port decides who is calling.
#[derive(Debug)]
pub struct Auth {
    pub tokens: Option<Tokens>,
    pub open_health: bool,
    /// The port speaks TLS: peer routes need a verified master certificate.
    pub tls: bool,
}

impl Auth {
    /// Everything open (tests of other parts, and a master configured without tokens).
    pub fn open() -> Auth {
        Auth { tokens: None, open_health: true, tls: false }
    }
}

fn refuse(status: StatusCode, message: String) -> Response {
    let mut response = ApiError::new(status, message).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

/// The router layer: finds the route's access in `ROUTES` and lets the request through or
/// answers 401 (no or unknown token) / 403 (a role too weak, or membership from outside).
pub async fn authorize(State(context): State<Arc<Context>>, request: Request, next: Next) -> Response {
    let auth = &context.auth;
    let access = match access_for(request.method(), request.uri().path()) {
        Access::Health if auth.open_health => Access::Open,
        Access::Health => READ,
        other => other,
    };
    let caller = request.extensions().get::<ConnectInfo<Caller>>().map(|info| info.0.clone());
    let needed = match access {
        Access::Needs(role) => role,
        Access::WorkerOr(_) if caller.as_ref().is_some_and(|c| c.worker.is_some()) => {
            return next.run(request).await
        }
        Access::WorkerOr(role) => role,
        Access::Open | Access::Health | Access::Peer => return next.run(request).await,
    };
    let remote = caller.as_ref().map(|c| c.address.to_string()).unwrap_or_else(|| "unknown".into());
    let path = request.uri().path().to_string();
    // A master (verified certificate) reads what it asks the leader for (the worker list)
    // without a token: tokens are for clients, and masters hold none.
    if needed == Role::Read && caller.as_ref().is_some_and(|c| c.node.is_some()) {
        return next.run(request).await;
    }
    let Some(tokens) = &auth.tokens else {
        // No tokens file: open as before, except admin routes, which need the master's own
        // host or a master's certificate.
        if needed == Role::Admin && !caller.as_ref().is_some_and(Caller::is_trusted_without_token) {
            tracing::warn!(%remote, %path, "refused an admin request from outside without a tokens file");
            return refuse(
                StatusCode::FORBIDDEN,
                format!(
                    "{} {path} changes the cluster and is accepted only from a master's own host \
                     (loopback) or with an admin token; configure gearpump.master.auth.tokens-file",
                    request.method()
                ),
            );
        }
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")))
        .map(str::trim);
    let Some(given) = given else {
        tracing::info!(%remote, %path, "refused a request without a bearer token");
        return refuse(
            StatusCode::UNAUTHORIZED,
            format!(
                "{path} needs a token (Authorization: Bearer TOKEN) with role {} or above",
                needed.name()
            ),
        );
    };
    match tokens.role_of(given.as_bytes()) {
        None => {
            tracing::warn!(%remote, %path, "refused a request with an unknown token");
            refuse(StatusCode::UNAUTHORIZED, "the bearer token is not valid for this cluster".into())
        }
        Some(role) if role < needed => {
            tracing::info!(%remote, %path, role = role.name(), needed = needed.name(), "refused: role too weak");
            refuse(
                StatusCode::FORBIDDEN,
                format!(
                    "{} {path} needs role {}; this token has role {}",
                    request.method(),
                    needed.name(),
                    role.name()
                ),
            )
        }
        Some(_) => next.run(request).await,
    }
}

/// Whether `address` is this machine's loopback (IPv4 127/8, ::1, or v4-mapped loopback).
pub fn is_loopback(address: &SocketAddr) -> bool {
    match address.ip() {
        std::net::IpAddr::V4(ip) => ip.is_loopback(),
        std::net::IpAddr::V6(ip) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_gives_each_route_its_role_and_unknown_routes_admin() {
        let cases = [
            (Method::GET, "/health/ready", Access::Health),
            (Method::GET, "/metrics", Access::Health),
            (Method::POST, "/peer/raft/vote", Access::Peer),
            (Method::GET, "/api/v1.0/master/applist", READ),
            (Method::GET, "/api/v1.0/master/members", READ),
            (Method::POST, "/api/v1.0/master/members", ADMIN),
            (Method::POST, "/api/v1.0/master/submitapp", SUBMIT),
            (Method::DELETE, "/api/v1.0/appmaster/7", SUBMIT),
            (Method::GET, "/api/v1.0/appmaster/7", READ),
            (Method::PUT, "/api/v1.0/appmaster/7/data/k", SUBMIT),
            (Method::GET, "/api/v1.0/jarstore/download", Access::WorkerOr(Role::Read)),
            (Method::GET, "/api/v1.0/worker/3", READ),
            (Method::POST, "/api/v1.0/appmaster/7/restart", SUBMIT),
            // Not in the table: closed.
            (Method::POST, "/api/v1.0/master/applist", ADMIN),
            (Method::GET, "/api/v1.0/appmaster//data/k", ADMIN),
            (Method::GET, "/somewhere/else", ADMIN),
        ];
        for (method, path, expected) in cases {
            assert_eq!(access_for(&method, path), expected, "{method} {path}");
        }
    }

    #[test]
    fn tokens_parse_with_roles_and_bad_lines_are_refused_without_echoing_the_token() {
        let path = Path::new("tokens");
        let tokens =
            Tokens::parse(path, "# comment\nadmin aaaaaaaaaaaaaaaaaaaa\n\nread rrrrrrrrrrrrrrrrrrrr\n")
                .expect("valid");
        assert_eq!(tokens.role_of(b"aaaaaaaaaaaaaaaaaaaa"), Some(Role::Admin));
        assert_eq!(tokens.role_of(b"rrrrrrrrrrrrrrrrrrrr"), Some(Role::Read));
        assert_eq!(tokens.role_of(b"aaaaaaaaaaaaaaaaaaa"), None);
        assert_eq!(tokens.role_of(b""), None);
        let (line, why) = Tokens::parse(path, "admin shortsecret\n").expect_err("short");
        assert_eq!(line, 1);
        assert!(!why.contains("shortsecret"), "{why}");
        assert!(Tokens::parse(path, "root xxxxxxxxxxxxxxxxxxxx\n").is_err());
        assert!(Tokens::parse(path, "admin a b\n").is_err());
        assert!(Tokens::parse(path, "# none\n").is_err());
        assert!(!format!("{tokens:?}").contains("aaaa"));
    }

    #[test]
    fn a_tokens_file_readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("tokens");
        std::fs::write(&path, "admin aaaaaaaaaaaaaaaaaaaa\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let error = Tokens::load(&path).expect_err("world-readable");
        assert!(error.to_string().contains("chmod 640"), "{error}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        assert!(Tokens::load(&path).is_ok());
    }
}

/// The layer on a real router: without a tokens file, membership from outside is refused
/// while reads stay open; with one, the role decides.
#[cfg(test)]
mod layer_tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::extract::ConnectInfo;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    use super::{Auth, Tokens};
    use crate::api::test_support::one_master_context;
    use crate::tls::Caller;

    fn request(method: &str, path: &str, from: &str, token: Option<&str>) -> Request<Body> {
        let mut builder =
            Request::builder().method(method).uri(path).header("content-type", "application/json");
        if let Some(token) = token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        let mut request = builder.body(Body::from("{\"remove\": \"127.0.0.1:1\"}")).expect("request");
        let caller = Caller::anonymous(from.parse().expect("address"));
        request.extensions_mut().insert(ConnectInfo(caller));
        request
    }

    async fn status(context: &Arc<crate::api::Context>, request: Request<Body>) -> StatusCode {
        crate::api::router(context.clone()).oneshot(request).await.expect("answer").status()
    }

    #[tokio::test]
    async fn membership_without_a_tokens_file_is_for_loopback_only() {
        let store = Arc::new(crate::api::test_support::HangingStore);
        let (context, _dir) = one_master_context(store, "").await;
        let outside = "10.1.2.3:40000";
        assert_eq!(
            status(&context, request("POST", "/api/v1.0/master/members", outside, None)).await,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            status(&context, request("POST", "/peer/members", outside, None)).await,
            StatusCode::FORBIDDEN
        );
        // From loopback it reaches the handler (which refuses to remove an unknown master).
        let local =
            status(&context, request("POST", "/api/v1.0/master/members", "127.0.0.1:40000", None)).await;
        assert_ne!(local, StatusCode::FORBIDDEN);
        assert_eq!(
            status(&context, request("GET", "/api/v1.0/master/members", outside, None)).await,
            StatusCode::OK
        );
        context.cluster.shutdown().await;
    }

    #[tokio::test]
    async fn with_tokens_the_role_decides_even_on_loopback() {
        let store = Arc::new(crate::api::test_support::HangingStore);
        let (context, _dir) = one_master_context(store, "").await;
        let tokens = Tokens::parse(
            std::path::Path::new("t"),
            "read rrrrrrrrrrrrrrrrrrrr\nadmin aaaaaaaaaaaaaaaaaaaa\n",
        )
        .expect("tokens");
        let context = Arc::new(crate::api::Context {
            cluster: context.cluster.clone(),
            jars: context.jars.clone(),
            config: context.config.clone(),
            metrics: context.metrics.clone(),
            secret: None,
            auth: Auth { tokens: Some(tokens), open_health: false, tls: false },
            jar_health: std::sync::RwLock::new(None),
            workers: context.workers.clone(),
            worker_logs: crate::api::WorkerLogs::new(None).expect("an HTTP client"),
        });
        let local = "127.0.0.1:40000";
        let members = |token| request("POST", "/api/v1.0/master/members", local, token);
        assert_eq!(status(&context, members(None)).await, StatusCode::UNAUTHORIZED);
        assert_eq!(status(&context, members(Some("rrrrrrrrrrrrrrrrrrrr"))).await, StatusCode::FORBIDDEN);
        assert_ne!(status(&context, members(Some("aaaaaaaaaaaaaaaaaaaa"))).await, StatusCode::FORBIDDEN);
        // open-health = no: health needs a read token too.
        assert_eq!(
            status(&context, request("GET", "/health/live", local, None)).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status(&context, request("GET", "/health/live", local, Some("rrrrrrrrrrrrrrrrrrrr"))).await,
            StatusCode::OK
        );
        let response = crate::api::router(context.clone())
            .oneshot(request("GET", "/api/v1.0/master", local, None))
            .await
            .expect("answer");
        assert_eq!(response.headers().get("www-authenticate").and_then(|v| v.to_str().ok()), Some("Bearer"));
        context.cluster.shutdown().await;
    }
}
