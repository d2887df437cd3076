//! Gearpump's REST paths under `/api/v1.0/`. Reads are linearizable unless `?stale=true`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};

use super::{ApiError, Context};
pub use crate::cluster::now_ms;
use crate::cluster::MembershipChange;
use crate::state::{new_id, validate_id, AppId, AppStatus, Application, Command, CommandResult, RequestId};
use crate::wire::IDEMPOTENCY_KEY;

/// A write's request id: the client's `Idempotency-Key`, or a fresh one.
pub fn request_id(headers: &HeaderMap) -> Result<RequestId, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else { return Ok(new_id()) };
    let text = value
        .to_str()
        .map_err(|_| ApiError::bad_request("Idempotency-Key must be visible ASCII characters"))?;
    validate_id(text).map_err(|why| ApiError::bad_request(format!("Idempotency-Key: {why}")))?;
    Ok(text.to_string())
}

/// A write's JSON answer with its request id in the `Idempotency-Key` header.
pub fn write_answer(id: RequestId, body: Value) -> impl IntoResponse {
    ([(IDEMPOTENCY_KEY, id)], Json(body))
}

/// Waits for a linearizable view unless the query says `stale=true`.
pub async fn consistent_read(context: &Context, query: &Option<String>) -> Result<(), ApiError> {
    let stale = query.as_deref().unwrap_or("").split('&').any(|pair| pair == "stale=true" || pair == "stale");
    if !stale {
        context.cluster.read_barrier().await?;
    }
    Ok(())
}

fn parse_app_id(text: &str) -> Result<AppId, ApiError> {
    text.parse().map_err(|_| ApiError::bad_request(format!("application id {text:?} is not a number")))
}

pub fn status_name(status: AppStatus) -> &'static str {
    match status {
        AppStatus::Pending => "pending",
        AppStatus::Active => "active",
        AppStatus::Succeeded => "succeeded",
        AppStatus::Failed => "failed",
        AppStatus::Terminated => "terminated",
    }
}

/// Gearpump's AppMasterData fields, plus what we replicate beyond them.
fn app_json(app: &Application) -> Value {
    json!({
        "appId": app.id,
        "appName": app.name,
        "status": status_name(app.status),
        "user": app.user,
        "submissionTime": app.submission_time_ms,
        "startTime": app.start_time_ms.unwrap_or(0),
        "finishTime": app.finish_time_ms.unwrap_or(0),
        "mainClass": app.main_class,
        "args": app.args,
        "jar": { "name": app.jar.key, "fileName": app.jar.file_name, "size": app.jar.size, "sha256": app.jar.sha256 },
        "restartPolicy": { "maxRestarts": app.restart_policy.max_restarts },
        "restarts": app.restarts,
        "slots": app.slots,
        "attempts": app.attempts,
    })
}

pub async fn version() -> impl IntoResponse {
    format!("gearpump-master {}", crate::wire::PACKAGE_VERSION)
}

pub async fn master(State(context): State<Arc<Context>>) -> Json<Value> {
    let statuses = context.cluster.all_statuses().await;
    let me = context.cluster.status();
    let leader_last = statuses
        .iter()
        .filter_map(|(_, _, status)| status.as_ref())
        .find(|status| status.role == "leader")
        .map(|status| status.last_log_index);
    let cluster: Vec<Value> = statuses
        .iter()
        .map(|(id, address, status)| match status {
            Some(status) => {
                let lag = leader_last.map(|last| last.saturating_sub(status.last_log_index));
                json!({
                    "address": address, "nodeId": id, "reachable": true, "role": status.role, "term": status.term,
                    "commitIndex": status.commit_index, "appliedIndex": status.applied_index,
                    "lastLogIndex": status.last_log_index, "lag": lag,
                    "version": status.version, "protocol": status.protocol,
                    "healthy": leader_last.is_some() && status.role != "candidate" && lag.is_some_and(|lag| lag < 1000),
                })
            }
            None => json!({ "address": address, "nodeId": id, "reachable": false, "role": "unreachable", "healthy": false }),
        })
        .collect();
    let mut warnings = context.config.warnings.clone();
    if !context.jars.is_highly_available() {
        warnings.push(format!(
            "the jar store {} is local to each master and NOT highly available: an application whose jar is on a lost master cannot be recovered",
            context.jars.describe()
        ));
    }
    let (state_index, state_hash) = context.cluster.applied_hash();
    let master_status =
        if context.cluster.is_ready() { me.role.clone() } else { format!("{} (no quorum)", me.role) };
    Json(json!({
        "masterDescription": {
            "leader": me.leader,
            "thisMaster": me.address,
            "version": crate::wire::PACKAGE_VERSION,
            "masterStatus": master_status,
            "term": me.term,
            "cluster": cluster,
            "aliveFor": u64::try_from(context.cluster.uptime().as_millis()).unwrap_or(u64::MAX),
            "jarStore": context.jars.describe(),
            "jarStoreHighlyAvailable": context.jars.is_highly_available(),
            "homeDirectory": context.config.state_dir.display().to_string(),
            "bootstrap": context.cluster.bootstrap_state().to_string(),
            "appliedIndex": state_index,
            "stateHash": state_hash,
            "warnings": warnings,
        }
    }))
}

pub async fn app_list(
    State(context): State<Arc<Context>>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    consistent_read(&context, &query).await?;
    let apps: Vec<Value> = context.cluster.read(|state| state.apps.values().map(app_json).collect());
    Ok(Json(json!({ "appMasters": apps })))
}

pub async fn config(State(context): State<Arc<Context>>) -> Json<Value> {
    let values: serde_json::Map<String, Value> = context
        .config
        .effective()
        .into_iter()
        .map(|(key, value, origin)| (key.to_string(), json!({ "value": value, "origin": origin })))
        .collect();
    Json(json!({ "config": values, "warnings": context.config.warnings }))
}

pub async fn app_detail(
    State(context): State<Arc<Context>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let id = parse_app_id(&id)?;
    consistent_read(&context, &query).await?;
    let found = context.cluster.read(|state| {
        state.apps.get(&id).map(|app| {
            let mut value = app_json(app);
            value["data"] = json!(state.app_data.get(&id).cloned().unwrap_or_default());
            value
        })
    });
    found.map(Json).ok_or_else(|| ApiError::not_found(format!("application {id} does not exist")))
}

pub async fn kill_app(
    State(context): State<Arc<Context>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let request = request_id(&headers)?;
    let id = parse_app_id(&id)?;
    context.cluster.write_request(request.clone(), Command::KillApp { app_id: id, now_ms: now_ms() }).await?;
    Ok(write_answer(request, json!({ "success": true, "appId": id, "status": "terminated" })))
}

pub async fn get_app_data(
    State(context): State<Arc<Context>>,
    Path((id, key)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let id = parse_app_id(&id)?;
    consistent_read(&context, &query).await?;
    let value = context.cluster.read(|state| {
        if !state.apps.contains_key(&id) {
            return Err(ApiError::not_found(format!("application {id} does not exist")));
        }
        state
            .app_data
            .get(&id)
            .and_then(|data| data.get(&key).cloned())
            .ok_or_else(|| ApiError::not_found(format!("application {id} has no data under {key:?}")))
    })?;
    Ok(Json(json!({ "appId": id, "key": key, "value": value })))
}

pub async fn put_app_data(
    State(context): State<Arc<Context>>,
    Path((id, key)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let request = request_id(&headers)?;
    let body = body.map_err(|e| {
        ApiError::new(e.status(), format!("request body refused (the limit is 1 MiB): {}", e.body_text()))
    })?;
    let id = parse_app_id(&id)?;
    if key.is_empty() || key.len() > 255 {
        return Err(ApiError::bad_request("the data key must be 1 to 255 bytes"));
    }
    let value = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::bad_request("the value must be UTF-8 text"))?;
    let command = Command::PutAppData { app_id: id, key: key.clone(), value };
    match context.cluster.write_request(request.clone(), command).await? {
        CommandResult::Done => Ok(write_answer(request, json!({ "success": true, "appId": id, "key": key }))),
        other => {
            Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("unexpected result {other:?}")))
        }
    }
}

pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!("no such endpoint: {}", uri.path()))
}

/// `GET /api/v1.0/master/members`: voters and learners of the Raft membership.
/// `GET /api/v1.0/master/snapshot` (admin): a backup file of the replicated state, read after
/// a read barrier, so it holds every write acknowledged before the request (`gear snapshot save`).
pub async fn snapshot(State(context): State<Arc<Context>>) -> Result<impl IntoResponse, ApiError> {
    context.cluster.read_barrier().await?;
    let backup = context.cluster.backup();
    let name = format!("attachment; filename=\"gearpump-{}.snap\"", backup.applied_index);
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (axum::http::header::CONTENT_DISPOSITION, name),
        ],
        backup.encode(),
    ))
}

pub async fn members(State(context): State<Arc<Context>>) -> Json<Value> {
    Json(json!(context.cluster.members_view(false)))
}

/// `POST /api/v1.0/master/members` with `{"add": "host:port"}` or `{"remove": "host:port"}`.
/// Adding waits until the new master has caught up as a learner, then makes it a voter.
pub async fn change_members(
    State(context): State<Arc<Context>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let change: MembershipChange = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "expected {{\"add\": \"host:port\"}} or {{\"remove\": \"host:port\"}}: {e}"
        ))
    })?;
    let view = context.cluster.change_members(change).await?;
    Ok(Json(json!(view)))
}
