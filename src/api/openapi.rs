//! The REST API as an OpenAPI 3.1 document, served at `GET /api/v1.0/openapi.json`.
//!
//! The bodies' schemas are derived from the `wire` types the handlers answer with, so they
//! cannot drift from what the server sends. Each route is described once below (its
//! parameters, body and answers); who may call it is not written here but taken from
//! `auth::ROUTES`, the table the server enforces (the `x-gearpump-access` field, a `bearer`
//! security requirement and the 401/403 answers). A unit test holds the described routes equal
//! to the router's table (`super::client_routes`), and another `docs/openapi.json` equal to
//! this document (`UPDATE_OPENAPI=1 cargo test --lib openapi` rewrites it).

#![allow(dead_code)] // the functions below exist only to carry their `#[utoipa::path]`

use std::sync::OnceLock;

use axum::http::{header, Method};
use axum::response::IntoResponse;
use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, PathItem, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

use super::auth::{self, Access};
use crate::wire::{
    AppDataAnswer, AppDetail, AppList, ConfigAnswer, ErrorBody, KillAnswer, Live, MasterAnswer,
    MemberProgress, MembersView, MembershipChange, NoLeader, PutDataAnswer, Ready, RestartAnswer,
    SubmitAnswer, SubmitForm, WorkerList, WorkerSummary,
};

/// The path the document is served at.
pub const PATH: &str = "/api/v1.0/openapi.json";

/// Bytes (a jar, a backup file).
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
struct Binary(Vec<u8>);

#[derive(OpenApi)]
#[openapi(
    info(
        title = "gearpump-master REST API",
        version = "1.0",
        description = "Apache Gearpump's client REST API as a gearpump-master cluster serves it. \
            Every master answers; reads are linearizable unless `?stale=true`. Writes may carry an \
            `Idempotency-Key` header: a retry with the same key is applied once and answered with \
            the first result. Errors are `ErrorBody` with the HTTP status."
    ),
    paths(
        version, master, app_list, config, snapshot, members, change_members, app_detail, kill_app,
        get_app_data, put_app_data, download, workerlist, worker_detail, restart_app, app_log,
        submit_app, openapi_json, health_live, health_ready, metrics,
    ),
    // Schemas only a `schema_with` refers to, which utoipa does not collect by itself.
    components(schemas(ErrorBody, NoLeader, MemberProgress)),
    modifiers(&AccessFromAuth),
)]
struct ApiDoc;

/// The `?stale=true` of linearizable reads.
const STALE: &str = "`true`: answer from this master's state without a read barrier (faster, \
    possibly behind the leader)";

#[utoipa::path(get, path = "/api/v1.0/version", tag = "master",
    responses(
        (status = 200, description = "`gearpump-master VERSION`", body = String, content_type = "text/plain"),
    ))]
fn version() {}

#[utoipa::path(get, path = "/api/v1.0/master", tag = "master",
    responses((status = 200, description = "This master and every master's Raft view", body = MasterAnswer)))]
fn master() {}

#[utoipa::path(get, path = "/api/v1.0/master/applist", tag = "applications",
    params(("stale" = Option<bool>, Query, description = STALE)),
    responses(
        (status = 200, description = "Every application", body = AppList),
        (status = 503, description = "No leader or no quorum", body = ErrorBody),
    ))]
fn app_list() {}

#[utoipa::path(get, path = "/api/v1.0/master/config", tag = "master",
    responses((status = 200, description = "The effective configuration", body = ConfigAnswer)))]
fn config() {}

#[utoipa::path(get, path = "/api/v1.0/master/snapshot", tag = "master",
    responses(
        (status = 200, description = "A backup file of the replicated state (`gear snapshot save`)",
            body = Binary, content_type = "application/octet-stream"),
        (status = 503, description = "No leader or no quorum", body = ErrorBody),
    ))]
fn snapshot() {}

#[utoipa::path(get, path = "/api/v1.0/master/members", tag = "master",
    responses((status = 200, description = "The Raft voters and learners", body = MembersView)))]
fn members() {}

#[utoipa::path(post, path = "/api/v1.0/master/members", tag = "master",
    request_body(
        content = MembershipChange,
        description = "`{\"add\": \"host:port\"}` or `{\"remove\": \"host:port\"}`"
    ),
    responses(
        (status = 200, description = "The membership after the change", body = MembersView),
        (status = 400, description = "A malformed body, or a change Raft refuses", body = ErrorBody),
        (status = 502, description = "The new master does not answer as a master of this cluster",
            body = ErrorBody),
        (status = 503, description = "No leader or no quorum", body = ErrorBody),
    ))]
fn change_members() {}

#[utoipa::path(get, path = "/api/v1.0/appmaster/{id}", tag = "applications",
    params(
        ("id" = u32, Path, description = "Application id"),
        ("stale" = Option<bool>, Query, description = STALE),
    ),
    responses(
        (status = 200, description = "The application and its data", body = AppDetail),
        (status = 400, description = "The id is not a number", body = ErrorBody),
        (status = 404, description = "No such application", body = ErrorBody),
        (status = 503, description = "No leader or no quorum", body = ErrorBody),
    ))]
fn app_detail() {}

#[utoipa::path(delete, path = "/api/v1.0/appmaster/{id}", tag = "applications",
    params(("id" = u32, Path, description = "Application id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes the write safe to retry")),
    responses(
        (status = 200, description = "Killed", body = KillAnswer),
        (status = 400, description = "The id is not a number", body = ErrorBody),
        (status = 404, description = "No such application", body = ErrorBody),
        (status = 409, description = "The state refuses the change", body = ErrorBody),
        (status = 422, description = "The Idempotency-Key was used for another request", body = ErrorBody),
        (status = 503, description = "No leader or no quorum", body = ErrorBody),
    ))]
fn kill_app() {}

#[utoipa::path(get, path = "/api/v1.0/appmaster/{id}/data/{key}", tag = "applications",
    params(
        ("id" = u32, Path, description = "Application id"),
        ("key" = String, Path, description = "Data key"),
        ("stale" = Option<bool>, Query, description = STALE)),
    responses(
        (status = 200, description = "The value saved under the key", body = AppDataAnswer),
        (status = 400, description = "The id is not a number", body = ErrorBody),
        (status = 404, description = "No such application, or no data under the key", body = ErrorBody),
        (status = 503, description = "No leader or no quorum", body = ErrorBody),
    ))]
fn get_app_data() {}

#[utoipa::path(put, path = "/api/v1.0/appmaster/{id}/data/{key}", tag = "applications",
    params(
        ("id" = u32, Path, description = "Application id"),
        ("key" = String, Path, description = "Data key, 1 to 255 bytes"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes the write safe to retry")),
    request_body(
        content = String,
        content_type = "text/plain",
        description = "The value, UTF-8, up to 1 MiB"
    ),
    responses(
        (status = 200, description = "Saved", body = PutDataAnswer),
        (status = 400, description = "A bad id, key or value", body = ErrorBody),
        (status = 404, description = "No such application", body = ErrorBody),
        (status = 413, description = "The value is over 1 MiB", body = ErrorBody),
        (status = 503, description = "No leader or no quorum", body = ErrorBody),
    ))]
fn put_app_data() {}

#[utoipa::path(get, path = "/api/v1.0/jarstore/download", tag = "jars",
    params(
        ("file" = String, Query, description = "The jar's name in the store (`jar.name` of an application)"),
        ("stale" = Option<bool>, Query, description = STALE)),
    responses(
        (status = 200, description = "The jar, checked against its SHA-256 as it streams (also in the \
            `x-gearpump-sha256` header)", body = Binary, content_type = "application/java-archive"),
        (status = 400, description = "No or a malformed `file`", body = ErrorBody),
        (status = 404, description = "No such jar", body = ErrorBody),
        (status = 503, description = "No leader, no quorum, or the jar store is unavailable",
            body = ErrorBody),
    ))]
fn download() {}

#[utoipa::path(get, path = "/api/v1.0/master/workerlist", tag = "workers",
    responses(
        (status = 200, description = "The leader's worker table", body = WorkerList),
        (status = 503, description = "No leader", body = ErrorBody),
    ))]
fn workerlist() {}

#[utoipa::path(get, path = "/api/v1.0/worker/{id}", tag = "workers",
    params(("id" = u32, Path, description = "Worker id")),
    responses(
        (status = 200, description = "One worker as the leader sees it", body = WorkerSummary),
        (status = 400, description = "The id is not a number", body = ErrorBody),
        (status = 404, description = "The leader does not know the worker", body = ErrorBody),
        (status = 503, description = "No leader", body = ErrorBody),
    ))]
fn worker_detail() {}

#[utoipa::path(post, path = "/api/v1.0/appmaster/{id}/restart", tag = "applications",
    params(("id" = u32, Path, description = "Application id")),
    responses(
        (status = 200, description = "The live attempt is stopped and a new one placed",
            body = RestartAnswer),
        (status = 400, description = "The id is not a number", body = ErrorBody),
        (status = 404, description = "No such application", body = ErrorBody),
        (status = 409, description = "The application has ended", body = ErrorBody),
        (status = 503, description = "No leader or no quorum", body = ErrorBody),
    ))]
fn restart_app() {}

#[utoipa::path(get, path = "/api/v1.0/appmaster/{id}/log", tag = "applications",
    params(("id" = u32, Path, description = "Application id"),
        ("attempt" = Option<u32>, Query, description = "Attempt number (default: the last)"),
        ("tail" = Option<u64>, Query, description = "Bytes from the end (default 65536)"),
        ("stale" = Option<bool>, Query, description = STALE)),
    responses(
        (status = 200, description = "The end of the attempt's log, from its worker", body = String,
            content_type = "text/plain"),
        (status = 400, description = "A malformed id, attempt or tail", body = ErrorBody),
        (status = 404, description = "No such application or attempt, or it never started", body = ErrorBody),
        (status = 502, description = "The worker holding the log does not answer", body = ErrorBody),
        (status = 503, description = "No leader or no quorum", body = ErrorBody),
    ))]
fn app_log() {}

#[utoipa::path(post, path = "/api/v1.0/master/submitapp", tag = "applications",
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes the submission safe to retry")),
    request_body(content = SubmitForm, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "Stored and registered", body = SubmitAnswer),
        (status = 400, description = "A malformed form, or more slots than any worker has", body = ErrorBody),
        (status = 409, description = "The jar exists already", body = ErrorBody),
        (status = 413, description = "The jar is larger than gearpump.jarstore.max-size", body = ErrorBody),
        (status = 503, description = "No leader, no quorum, or the jar store is unavailable",
            body = ErrorBody),
    ))]
fn submit_app() {}

#[utoipa::path(get, path = "/api/v1.0/openapi.json", tag = "master",
    responses((status = 200, description = "This document", body = Object)))]
fn openapi_json() {}

#[utoipa::path(get, path = "/health/live", tag = "health",
    responses(
        (status = 200, description = "The Raft core runs", body = Live),
        (status = 503, description = "The Raft core stopped", body = Live),
    ))]
fn health_live() {}

#[utoipa::path(get, path = "/health/ready", tag = "health",
    responses(
        (status = 200, description = "In a quorum with a known leader", body = Ready),
        (status = 503, description = "Not ready", body = Ready),
    ))]
fn health_ready() {}

#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text format", body = String,
        content_type = "text/plain; version=0.0.4")))]
fn metrics() {}

/// Writes into every operation who may call it, from `auth::ROUTES`.
struct AccessFromAuth;

/// The security scheme's name in the document.
const BEARER: &str = "bearer";

impl Modify for AccessFromAuth {
    fn modify(&self, document: &mut Document) {
        let components = document.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        for (path, item) in document.paths.paths.iter_mut() {
            for (method, operation) in operations(item) {
                let access = auth::access_for(&method, path);
                let (needs, token) = match access {
                    Access::Open => ("open".to_string(), false),
                    Access::Health => {
                        ("open (role read when gearpump.master.auth.open-health = no)".to_string(), false)
                    }
                    Access::Needs(role) => (format!("role {}", role.name()), true),
                    Access::WorkerOr(role) => {
                        (format!("a worker certificate, or role {}", role.name()), true)
                    }
                    Access::Peer => ("masters only".to_string(), false),
                };
                operation
                    .extensions
                    .get_or_insert_with(Default::default)
                    .merge(ExtensionsBuilder::new().add("x-gearpump-access", needs.clone()).build());
                let text = format!("Needs: {needs}.");
                operation.description = Some(match operation.description.take() {
                    Some(description) => format!("{description}\n\n{text}"),
                    None => text,
                });
                if token {
                    operation.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
                    let refused = [
                        ("401", "No token, or one the master does not know"),
                        ("403", "The token's role is not enough"),
                    ];
                    for (status, description) in refused {
                        let response = ResponseBuilder::new()
                            .description(description)
                            .content(
                                "application/json",
                                utoipa::openapi::ContentBuilder::new()
                                    .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                                        "ErrorBody",
                                    ))))
                                    .build(),
                            )
                            .build();
                        operation.responses.responses.insert(status.to_string(), RefOr::T(response));
                    }
                }
            }
        }
    }
}

/// The operations of a path item with their methods (the methods the router uses).
fn operations(item: &mut PathItem) -> Vec<(Method, &mut utoipa::openapi::path::Operation)> {
    [
        (Method::GET, item.get.as_mut()),
        (Method::PUT, item.put.as_mut()),
        (Method::POST, item.post.as_mut()),
        (Method::DELETE, item.delete.as_mut()),
        (Method::OPTIONS, item.options.as_mut()),
        (Method::HEAD, item.head.as_mut()),
        (Method::PATCH, item.patch.as_mut()),
        (Method::TRACE, item.trace.as_mut()),
    ]
    .into_iter()
    .filter_map(|(method, operation)| operation.map(|operation| (method, operation)))
    .collect()
}

/// The document, built once.
pub fn document() -> &'static Document {
    static DOCUMENT: OnceLock<Document> = OnceLock::new();
    DOCUMENT.get_or_init(ApiDoc::openapi)
}

/// The document as pretty JSON with sorted keys, the same text on every build of the same code
/// (utoipa keeps extensions in a hash map).
pub fn document_json() -> String {
    // Serializing utoipa's own types cannot fail (they hold strings, maps and JSON values).
    let value = serde_json::to_value(document()).unwrap_or_default();
    serde_json::to_string_pretty(&value).unwrap_or_default()
}

/// `GET /api/v1.0/openapi.json`.
pub async fn serve() -> impl IntoResponse {
    static TEXT: OnceLock<String> = OnceLock::new();
    ([(header::CONTENT_TYPE, "application/json")], TEXT.get_or_init(document_json).as_str())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn documented() -> BTreeSet<(String, String)> {
        let mut document = document().clone();
        let mut pairs = BTreeSet::new();
        for (path, item) in document.paths.paths.iter_mut() {
            for (method, _) in operations(item) {
                pairs.insert((method.to_string(), path.clone()));
            }
        }
        pairs
    }

    #[test]
    fn every_route_is_documented_and_every_documented_route_exists() {
        let routed: BTreeSet<(String, String)> = crate::api::client_routes(1)
            .into_iter()
            .map(|r| (r.method.to_string(), r.path.to_string()))
            .collect();
        let documented = documented();
        let undocumented: Vec<_> = routed.difference(&documented).collect();
        let unrouted: Vec<_> = documented.difference(&routed).collect();
        assert!(
            undocumented.is_empty() && unrouted.is_empty(),
            "routes without a description in api/openapi.rs: {undocumented:?}; \
             described routes the router does not serve: {unrouted:?}"
        );
    }

    #[test]
    fn the_document_is_openapi_3_json_with_every_schema() {
        let value: serde_json::Value = serde_json::from_str(&document_json()).expect("valid JSON");
        let version = value["openapi"].as_str().expect("an openapi field");
        assert!(version.starts_with("3."), "openapi {version}");
        // Every `$ref` names a schema the document holds.
        let schemas = value["components"]["schemas"].as_object().expect("schemas");
        let mut refs = Vec::new();
        collect_refs(&value, &mut refs);
        for reference in refs {
            let name = reference.strip_prefix("#/components/schemas/").expect("a schema reference");
            assert!(schemas.contains_key(name), "{reference} is not in the document");
        }
    }

    fn collect_refs(value: &serde_json::Value, refs: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, inner) in map {
                    match inner {
                        serde_json::Value::String(target) if key == "$ref" => refs.push(target.clone()),
                        _ => collect_refs(inner, refs),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|inner| collect_refs(inner, refs)),
            _ => {}
        }
    }

    #[test]
    fn access_comes_from_the_auth_table() {
        let value = serde_json::to_value(document()).expect("serialize");
        let operation = |path: &str, method: &str| value["paths"][path][method].clone();
        assert_eq!(operation("/api/v1.0/master/members", "post")["x-gearpump-access"], "role admin");
        assert_eq!(operation("/api/v1.0/master/applist", "get")["x-gearpump-access"], "role read");
        assert_eq!(operation(PATH, "get")["x-gearpump-access"], "role read");
        assert!(operation("/api/v1.0/master/submitapp", "post")["responses"]["403"].is_object());
        assert!(operation("/health/live", "get")["responses"]["401"].is_null());
    }

    #[test]
    fn the_submit_form_parts_are_the_documented_ones() {
        let value = serde_json::to_value(document()).expect("serialize");
        let properties =
            value["components"]["schemas"]["SubmitForm"]["properties"].as_object().expect("parts");
        let documented: BTreeSet<&str> = properties.keys().map(String::as_str).collect();
        let read: BTreeSet<&str> = crate::wire::submit_form::ALL.into_iter().collect();
        assert_eq!(documented, read);
    }

    /// `docs/openapi.json` is this document; `UPDATE_OPENAPI=1` rewrites it.
    #[test]
    fn the_checked_in_document_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json");
        let current = format!("{}\n", document_json());
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            std::fs::write(&path, &current).expect("write docs/openapi.json");
            return;
        }
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            checked_in == current,
            "docs/openapi.json is not the API this code serves: run `UPDATE_OPENAPI=1 cargo test --lib \
             openapi` and commit the file"
        );
    }
}
