//! Gearpump's REST paths under `/api/v1.0/`. Reads are linearizable unless `?stale=true`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;

use super::{ApiError, Context};
pub use crate::cluster::now_ms;
use crate::state::{new_id, validate_id, AppId, Command, CommandResult, RequestId};
use crate::wire::{
    AppDataAnswer, AppDetail, AppList, AppMaster, AppState, ClusterMember, ConfigAnswer, ConfigEntry,
    KillAnswer, MasterAnswer, MasterDescription, MemberProgress, MembersView, MembershipChange,
    PutDataAnswer, Role, IDEMPOTENCY_KEY,
};

/// A write's request id: the client's `Idempotency-Key`, or a fresh one.
pub(super) fn request_id(headers: &HeaderMap) -> Result<RequestId, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else { return Ok(new_id()) };
    let text = value
        .to_str()
        .map_err(|_| ApiError::bad_request("Idempotency-Key must be visible ASCII characters"))?;
    validate_id(text).map_err(|why| ApiError::bad_request(format!("Idempotency-Key: {why}")))?;
    Ok(text.to_string())
}

/// A write's JSON answer with its request id in the `Idempotency-Key` header.
pub(super) fn write_answer<T: Serialize>(id: RequestId, body: T) -> impl IntoResponse {
    ([(IDEMPOTENCY_KEY, id)], Json(body))
}

/// Waits for a linearizable view unless the query says `stale=true`.
pub(super) async fn consistent_read(context: &Context, query: &Option<String>) -> Result<(), ApiError> {
    let stale = query.as_deref().unwrap_or("").split('&').any(|pair| pair == "stale=true" || pair == "stale");
    if !stale {
        context.cluster.read_barrier().await?;
    }
    Ok(())
}

fn parse_app_id(text: &str) -> Result<AppId, ApiError> {
    text.parse().map_err(|_| ApiError::bad_request(format!("application id {text:?} is not a number")))
}

pub(super) async fn version() -> impl IntoResponse {
    format!("gearpump-master {}", crate::wire::PACKAGE_VERSION)
}

pub(super) async fn master(State(context): State<Arc<Context>>) -> Json<MasterAnswer> {
    let statuses = context.cluster.all_statuses().await;
    let me = context.cluster.status();
    let leader_last = statuses
        .iter()
        .filter_map(|(_, _, status)| status.as_ref())
        .find(|status| status.role == Role::Leader)
        .map(|status| status.last_log_index);
    let cluster: Vec<ClusterMember> = statuses
        .iter()
        .map(|(id, address, status)| match status {
            Some(status) => {
                let lag = leader_last.map(|last| last.saturating_sub(status.last_log_index));
                ClusterMember {
                    address: address.clone(),
                    node_id: *id,
                    reachable: true,
                    role: status.role,
                    progress: Some(MemberProgress {
                        term: status.term,
                        commit_index: status.commit_index,
                        applied_index: status.applied_index,
                        last_log_index: status.last_log_index,
                        lag,
                        version: status.version.clone(),
                        protocol: status.protocol,
                    }),
                    healthy: leader_last.is_some()
                        && status.role != Role::Candidate
                        && lag.is_some_and(|lag| lag < 1000),
                }
            }
            None => ClusterMember {
                address: address.clone(),
                node_id: *id,
                reachable: false,
                role: Role::Unreachable,
                progress: None,
                healthy: false,
            },
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
        if context.cluster.is_ready() { me.role.to_string() } else { format!("{} (no quorum)", me.role) };
    Json(MasterAnswer {
        master_description: MasterDescription {
            leader: me.leader,
            this_master: me.address,
            version: crate::wire::PACKAGE_VERSION.to_string(),
            master_status,
            term: me.term,
            cluster,
            alive_for: u64::try_from(context.cluster.uptime().as_millis()).unwrap_or(u64::MAX),
            jar_store: context.jars.describe(),
            jar_store_highly_available: context.jars.is_highly_available(),
            home_directory: context.config.state_dir.display().to_string(),
            bootstrap: context.cluster.bootstrap_state().to_string(),
            applied_index: state_index,
            state_hash,
            warnings,
        },
    })
}

pub(super) async fn app_list(
    State(context): State<Arc<Context>>,
    RawQuery(query): RawQuery,
) -> Result<Json<AppList>, ApiError> {
    consistent_read(&context, &query).await?;
    let app_masters = context.cluster.read(|state| state.apps.values().map(AppMaster::from).collect());
    Ok(Json(AppList { app_masters }))
}

pub(super) async fn config(State(context): State<Arc<Context>>) -> Json<ConfigAnswer> {
    let config = context
        .config
        .effective()
        .into_iter()
        .map(|(key, value, origin)| (key.to_string(), ConfigEntry { value, origin }))
        .collect();
    Json(ConfigAnswer { config, warnings: context.config.warnings.clone() })
}

pub(super) async fn app_detail(
    State(context): State<Arc<Context>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<AppDetail>, ApiError> {
    let id = parse_app_id(&id)?;
    consistent_read(&context, &query).await?;
    let found = context.cluster.read(|state| {
        state.apps.get(&id).map(|app| AppDetail {
            app: AppMaster::from(app),
            data: state.app_data.get(&id).cloned().unwrap_or_default(),
        })
    });
    found.map(Json).ok_or_else(|| ApiError::not_found(format!("application {id} does not exist")))
}

pub(super) async fn kill_app(
    State(context): State<Arc<Context>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let request = request_id(&headers)?;
    let id = parse_app_id(&id)?;
    context.cluster.write_request(request.clone(), Command::KillApp { app_id: id, now_ms: now_ms() }).await?;
    Ok(write_answer(request, KillAnswer { success: true, app_id: id, status: AppState::Terminated }))
}

pub(super) async fn get_app_data(
    State(context): State<Arc<Context>>,
    Path((id, key)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Json<AppDataAnswer>, ApiError> {
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
    Ok(Json(AppDataAnswer { app_id: id, key, value }))
}

pub(super) async fn put_app_data(
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
        CommandResult::Done => Ok(write_answer(request, PutDataAnswer { success: true, app_id: id, key })),
        other => {
            Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("unexpected result {other:?}")))
        }
    }
}

pub(super) async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!("no such endpoint: {}", uri.path()))
}

/// `GET /api/v1.0/master/members`: voters and learners of the Raft membership.
/// `GET /api/v1.0/master/snapshot` (admin): a backup file of the replicated state, read after
/// a read barrier, so it holds every write acknowledged before the request (`gear snapshot save`).
pub(super) async fn snapshot(State(context): State<Arc<Context>>) -> Result<impl IntoResponse, ApiError> {
    context.cluster.read_barrier().await?;
    let backup = context.cluster.backup();
    let name = format!("attachment; filename=\"gearpump-{}.snap\"", backup.origin.applied_index);
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (axum::http::header::CONTENT_DISPOSITION, name),
        ],
        backup.encode(),
    ))
}

pub(super) async fn members(State(context): State<Arc<Context>>) -> Json<MembersView> {
    Json(context.cluster.members_view(false))
}

/// `POST /api/v1.0/master/members` with `{"add": "host:port"}` or `{"remove": "host:port"}`.
/// Adding waits until the new master has caught up as a learner, then makes it a voter.
pub(super) async fn change_members(
    State(context): State<Arc<Context>>,
    body: Bytes,
) -> Result<Json<MembersView>, ApiError> {
    let change: MembershipChange = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "expected {{\"add\": \"host:port\"}} or {{\"remove\": \"host:port\"}}: {e}"
        ))
    })?;
    Ok(Json(context.cluster.change_members(change).await?))
}
