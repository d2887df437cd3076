//! Worker routes: heartbeats (a peer route, forwarded to the leader), Gearpump's `workerlist`
//! and `worker/{id}` (answered from the leader's in-memory table), restart, and the log tail of
//! an attempt, which a master fetches from the worker's own small HTTP port (the worker keeps
//! the log; nothing is pushed, so a log costs nothing until someone reads it).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

use super::client_routes::{consistent_read, now_ms};
use super::error::PeerRouteError;
use super::{ApiError, Context};
use crate::cluster::ClusterError;
use crate::scheduler;
use crate::state::{Command, CommandResult};
use crate::tls::Caller;
use crate::wire::{RestartAnswer, WorkerList, WorkerSummary};
use crate::worker::protocol::{self, Heartbeat, HeartbeatAnswer};

/// `POST /peer/worker/heartbeat/forwarded`: a heartbeat a follower passed on. Answered only by
/// the leader, never forwarded again (a leader that just lost its post says so; the worker
/// retries at its next heartbeat). Only masters reach it; the follower checked the worker's
/// certificate against the heartbeat's host.
pub(super) async fn heartbeat_forwarded(
    State(context): State<Arc<Context>>,
    body: Bytes,
) -> Result<Json<HeartbeatAnswer>, PeerRouteError> {
    let heartbeat: Heartbeat = serde_json::from_slice(&body)
        .map_err(|e| ClusterError::BadRequest(format!("malformed heartbeat: {e}")))?;
    if !context.cluster.leads_with_quorum() {
        return Err(ClusterError::NoQuorum("this master is no longer the leader; try again".into()).into());
    }
    let heartbeat = own_id_only(&context, heartbeat);
    Ok(Json(scheduler::on_heartbeat(&context.cluster, &context.workers, heartbeat).await?))
}

/// Under TLS a heartbeat speaks for the worker whose certificate the connection presented
/// (`peer_routes` lets no other certificate reach this route): the certificate must name the
/// heartbeat's host, and the worker's log server must be on that host (masters send the
/// cluster secret there when they fetch a log).
fn check_worker_caller(
    context: &Context,
    caller: Option<&Caller>,
    heartbeat: &Heartbeat,
) -> Result<(), ApiError> {
    if !context.auth.tls {
        return Ok(());
    }
    let remote = caller.map(|c| c.address.to_string()).unwrap_or_else(|| "unknown".into());
    let refuse = |why: String| {
        tracing::warn!(%remote, host = %heartbeat.host, "refused a worker heartbeat: {why}");
        Err(ApiError::new(StatusCode::FORBIDDEN, why))
    };
    let Some(certificate) = caller.and_then(|c| c.worker.as_ref()) else {
        return refuse("heartbeats need a worker certificate from the cluster CA".into());
    };
    if !certificate.names(&heartbeat.host) {
        return refuse(format!(
            "the worker certificate does not name host {:?}; a worker registers under the name its \
             certificate was issued for (gearpump.hostname)",
            heartbeat.host
        ));
    }
    let log_host = heartbeat.log_address.rsplit_once(':').map(|(host, _)| host.trim_matches(['[', ']']));
    if log_host != Some(heartbeat.host.as_str()) {
        return refuse(format!(
            "the log address {:?} is not on the worker's host {:?}",
            heartbeat.log_address, heartbeat.host
        ));
    }
    Ok(())
}

/// Under TLS, a worker id already bound to another host is not taken over: the heartbeat
/// registers afresh (a new id, nothing assigned yet), so a worker can neither receive another
/// worker's attempts nor report on them (`scheduler::on_heartbeat` only applies reports on the
/// heartbeat's own attempts). A worker whose id is bound to its own host keeps it.
fn own_id_only(context: &Context, mut heartbeat: Heartbeat) -> Heartbeat {
    if !context.auth.tls {
        return heartbeat;
    }
    let Some(id) = heartbeat.worker_id else { return heartbeat };
    match scheduler::host_of(&context.cluster, &context.workers, id) {
        Some(host) if host != heartbeat.host => {
            tracing::warn!(
                worker_id = id, bound_to = %host, claimed_by = %heartbeat.host,
                "a worker claimed another host's worker id; it registers under a new id"
            );
            heartbeat.worker_id = None;
            heartbeat.running.clear();
            heartbeat.exits.clear();
            heartbeat
        }
        _ => heartbeat,
    }
}

/// `POST /peer/worker/heartbeat`: from a worker, to any master; followers pass it to the leader.
pub(super) async fn heartbeat(
    State(context): State<Arc<Context>>,
    caller: Option<Extension<ConnectInfo<Caller>>>,
    body: Bytes,
) -> Result<Json<HeartbeatAnswer>, ApiError> {
    let heartbeat: Heartbeat = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("malformed heartbeat: {e}")))?;
    check_worker_caller(&context, caller.as_ref().map(|c| &c.0 .0), &heartbeat)?;
    if context.cluster.leads_with_quorum() {
        let heartbeat = own_id_only(&context, heartbeat);
        return Ok(Json(scheduler::on_heartbeat(&context.cluster, &context.workers, heartbeat).await?));
    }
    let unavailable = |why: String| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, why);
    let Some(leader) = context.cluster.leader_elsewhere() else {
        return Err(unavailable("no leader is elected".into()));
    };
    let answer: HeartbeatAnswer = context
        .cluster
        .call_peer(&leader, protocol::HEARTBEAT_FORWARDED, Some(&heartbeat), context.config.request_timeout)
        .await
        .map_err(ClusterError::from)?;
    Ok(Json(answer))
}

/// The leader's worker table, from this master when it leads, else from the leader.
async fn worker_list(context: &Context) -> Result<WorkerList, ApiError> {
    if context.cluster.leads_with_quorum() {
        context.cluster.read_barrier().await?;
        return Ok(context.cluster.read(|state| context.workers.list(state)));
    }
    let unavailable = |why: String| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, why);
    let Some(leader) = context.cluster.leader_elsewhere() else {
        return Err(unavailable("no leader is elected; only the leader knows the workers".into()));
    };
    Ok(context
        .cluster
        .call_peer::<(), WorkerList>(
            &leader,
            "/api/v1.0/master/workerlist",
            None,
            context.config.request_timeout,
        )
        .await
        .map_err(ClusterError::from)?)
}

/// Refuses (400) an application asking for more slots than the largest live worker has. With
/// no live worker at all the application waits as pending, as in Gearpump.
pub(super) async fn check_slots(context: &Context, slots: u32) -> Result<(), ApiError> {
    let list = worker_list(context).await?;
    let largest =
        list.workers.iter().filter(|w| w.state == crate::wire::WorkerState::Alive).max_by_key(|w| w.slots);
    match largest {
        Some(worker) if slots > worker.slots => Err(ApiError::bad_request(format!(
            "the application asks for {slots} slots but the largest worker (worker {} on {}) has {}; \
             ask for fewer slots or raise gearpump.worker.slots",
            worker.worker_id, worker.host, worker.slots
        ))),
        _ => Ok(()),
    }
}

/// `GET /api/v1.0/master/workerlist`.
pub(super) async fn workerlist(State(context): State<Arc<Context>>) -> Result<Json<WorkerList>, ApiError> {
    Ok(Json(worker_list(&context).await?))
}

/// `GET /api/v1.0/worker/{id}`.
pub(super) async fn worker_detail(
    State(context): State<Arc<Context>>,
    Path(id): Path<String>,
) -> Result<Json<WorkerSummary>, ApiError> {
    let id: u32 =
        id.parse().map_err(|_| ApiError::bad_request(format!("worker id {id:?} is not a number")))?;
    let list = worker_list(&context).await?;
    list.workers
        .into_iter()
        .find(|w| w.worker_id == id)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("worker {id} is not known to the leader")))
}

/// `POST /api/v1.0/appmaster/{id}/restart`: stops the live attempt and places a new one
/// (not counted against the restart policy).
pub(super) async fn restart_app(
    State(context): State<Arc<Context>>,
    Path(id): Path<String>,
) -> Result<Json<RestartAnswer>, ApiError> {
    let id: u32 =
        id.parse().map_err(|_| ApiError::bad_request(format!("application id {id:?} is not a number")))?;
    let result = context.cluster.write(Command::RestartApp { app_id: id, now_ms: now_ms() }).await?;
    let restarted = matches!(result, CommandResult::Restarted { .. });
    Ok(Json(RestartAnswer { success: true, app_id: id, restarted }))
}

fn query_value<'a>(query: &'a Option<String>, name: &str) -> Option<&'a str> {
    query.as_deref()?.split('&').find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

/// How a master reads application logs from workers' log ports. With TLS: HTTPS, presenting
/// this master's certificate (the worker admits masters only) and trusting only a worker
/// certificate that names the worker's host — never the cluster secret, which must not travel
/// to whatever answers at a log address. Without TLS: plain HTTP with the secret, as the
/// worker asks then.
pub struct WorkerLogs {
    http: reqwest::Client,
    tls: bool,
}

impl WorkerLogs {
    pub fn new(tls: Option<&crate::tls::NodeTls>) -> reqwest::Result<WorkerLogs> {
        let builder = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10));
        let builder = match tls {
            Some(tls) => builder.use_preconfigured_tls(tls.worker_logs.clone()).https_only(true),
            None => builder,
        };
        Ok(WorkerLogs { http: builder.build()?, tls: tls.is_some() })
    }

    fn get(&self, address: &str, path_and_query: &str, secret: Option<&str>) -> reqwest::RequestBuilder {
        if self.tls {
            return self.http.get(format!("https://{address}{path_and_query}"));
        }
        let request = self.http.get(format!("http://{address}{path_and_query}"));
        match secret {
            Some(secret) => request.header(crate::cluster::SECRET_HEADER, secret),
            None => request,
        }
    }
}

/// `GET /api/v1.0/appmaster/{id}/log?attempt=N&tail=BYTES`: the attempt's log, from its worker
/// (default: the last attempt, the last 64 KiB).
pub(super) async fn app_log(
    State(context): State<Arc<Context>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let id: u32 =
        id.parse().map_err(|_| ApiError::bad_request(format!("application id {id:?} is not a number")))?;
    let wanted = match query_value(&query, "attempt") {
        Some(text) => Some(
            text.parse::<u32>()
                .map_err(|_| ApiError::bad_request(format!("attempt {text:?} is not a number")))?,
        ),
        None => None,
    };
    let tail = match query_value(&query, "tail") {
        Some(text) => text.parse::<u64>().map_err(|_| ApiError::bad_request("tail must be a byte count"))?,
        None => 64 << 10,
    };
    consistent_read(&context, &query).await?;
    let found = context.cluster.read(|state| {
        let app = state.apps.get(&id)?;
        let attempt = match wanted {
            Some(n) => app.attempts.iter().find(|a| a.attempt == n),
            None => app.attempts.last(),
        }?;
        Some((attempt.attempt, attempt.log_address.clone()))
    });
    let Some((attempt, address)) = found else {
        return Err(ApiError::not_found(format!("application {id} has no such attempt")));
    };
    let Some(address) = address else {
        return Err(ApiError::not_found(format!("attempt {attempt} of application {id} never started")));
    };
    let request = context.worker_logs.get(
        &address,
        &format!("{}?app={id}&attempt={attempt}&tail={tail}", protocol::WORKER_LOG),
        context.secret.as_deref(),
    );
    let response = request.send().await.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!("the worker at {address} holding the log is not answering: {e}"),
        )
    })?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(ApiError::new(StatusCode::BAD_GATEWAY, format!("worker {address}: {text}")));
    }
    Ok(([(axum::http::header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}
