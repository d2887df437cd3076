//! Every failure a client sees is a status code plus `{"error": "...", "status": N}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::cluster::{ClusterError, PeerFailure};
use crate::jarstore::JarStoreError;
use crate::state::Rejection;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into() }
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
        let body = json!({ "error": self.message, "status": self.status.as_u16() });
        (self.status, Json(body)).into_response()
    }
}

/// The one mapping of cluster errors to HTTP statuses, for clients and for peers alike.
pub fn cluster_status(error: &ClusterError) -> StatusCode {
    match error {
        ClusterError::NoQuorum(_) => StatusCode::SERVICE_UNAVAILABLE,
        ClusterError::Rejected(Rejection::UnknownApp(_)) => StatusCode::NOT_FOUND,
        ClusterError::Rejected(Rejection::RequestIdReused(_)) => StatusCode::UNPROCESSABLE_ENTITY,
        ClusterError::Rejected(_) => StatusCode::CONFLICT,
        ClusterError::BadRequest(_) => StatusCode::BAD_REQUEST,
        ClusterError::PeerRefused { .. } => StatusCode::BAD_GATEWAY,
        ClusterError::StateDir { .. } | ClusterError::Fatal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<ClusterError> for ApiError {
    fn from(error: ClusterError) -> ApiError {
        ApiError::new(cluster_status(&error), error.to_string())
    }
}

/// A peer route's failure: the status a client would get, and the typed error for the master
/// that called (decoded by `cluster::Peers`).
#[derive(Debug)]
pub struct PeerRouteError(pub ClusterError);

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
