//! Every failure a client sees is a status code plus `wire::ErrorBody`
//! (`{"error": "...", "status": N}`).

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::cluster::{ClusterError, PeerFailure};
use crate::jarstore::JarStoreError;
use crate::state::Rejection;
use crate::wire::{ErrorBody, NoLeader};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// For a 503 without a leader: when this master may have one again, and what it knows.
    pub no_leader: Option<NoLeader>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), no_leader: None }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = %self.status, "{}", self.message);
        }
        let retry_after_ms = self.no_leader.as_ref().map(|hint| hint.retry_after_ms);
        let body = ErrorBody { error: self.message, status: self.status.as_u16(), no_leader: self.no_leader };
        let Some(retry_after_ms) = retry_after_ms else { return (self.status, Json(body)).into_response() };
        // Retry-After counts whole seconds; clients of ours read the finer retryAfterMs.
        let seconds = retry_after_ms.div_ceil(1000).max(1).to_string();
        (self.status, [(header::RETRY_AFTER, seconds)], Json(body)).into_response()
    }
}

/// The one mapping of cluster errors to HTTP statuses, for clients and for peers alike.
pub(super) fn cluster_status(error: &ClusterError) -> StatusCode {
    match error {
        ClusterError::NoQuorum(_) | ClusterError::NoLeader { .. } => StatusCode::SERVICE_UNAVAILABLE,
        ClusterError::Rejected(Rejection::UnknownApp(_)) => StatusCode::NOT_FOUND,
        ClusterError::Rejected(Rejection::RequestIdReused(_)) => StatusCode::UNPROCESSABLE_ENTITY,
        ClusterError::Rejected(_) => StatusCode::CONFLICT,
        ClusterError::BadRequest(_) => StatusCode::BAD_REQUEST,
        ClusterError::PeerRefused { .. } => StatusCode::BAD_GATEWAY,
        ClusterError::PeerVersion { .. } => StatusCode::CONFLICT,
        ClusterError::StateDir { .. } | ClusterError::Fatal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<ClusterError> for ApiError {
    fn from(error: ClusterError) -> ApiError {
        let mut api_error = ApiError::new(cluster_status(&error), error.to_string());
        if let ClusterError::NoLeader { last_leader, reachable, retry_after_ms, .. } = error {
            api_error.no_leader = Some(NoLeader { retry_after_ms, last_leader, reachable });
        }
        api_error
    }
}

/// A peer route's failure: the status a client would get, and the typed error for the master
/// that called (decoded by `cluster::Peers`).
#[derive(Debug)]
pub(super) struct PeerRouteError(pub ClusterError);

impl From<ClusterError> for PeerRouteError {
    fn from(error: ClusterError) -> PeerRouteError {
        PeerRouteError(error)
    }
}

impl IntoResponse for PeerRouteError {
    fn into_response(self) -> Response {
        let status = cluster_status(&self.0);
        let body = PeerFailure { error: self.0.to_string(), status: status.as_u16(), cause: self.0 };
        (status, Json(body)).into_response()
    }
}

impl From<JarStoreError> for ApiError {
    fn from(error: JarStoreError) -> ApiError {
        let status = match &error {
            JarStoreError::InvalidName { .. } => StatusCode::BAD_REQUEST,
            JarStoreError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            JarStoreError::NotFound(_) => StatusCode::NOT_FOUND,
            JarStoreError::AlreadyExists(_) => StatusCode::CONFLICT,
            JarStoreError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            JarStoreError::Upload(_) => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, error.to_string())
    }
}
