//! Applications: Gearpump's `appMasters` list and one application's detail, the answers of
//! submit, kill, restart and the application data routes, and the submit form's field names.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::state::{AppId, AppStatus, Application, Attempt};

/// An application's status as Gearpump's REST API spells it (lowercase).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AppState {
    Pending,
    Active,
    Succeeded,
    Failed,
    Terminated,
}

impl AppState {
    /// The status's name on the wire (a unit test holds it equal to serde's spelling).
    pub fn name(self) -> &'static str {
        match self {
            AppState::Pending => "pending",
            AppState::Active => "active",
            AppState::Succeeded => "succeeded",
            AppState::Failed => "failed",
            AppState::Terminated => "terminated",
        }
    }
}

impl From<AppStatus> for AppState {
    fn from(status: AppStatus) -> AppState {
        match status {
            AppStatus::Pending => AppState::Pending,
            AppStatus::Active => AppState::Active,
            AppStatus::Succeeded => AppState::Succeeded,
            AppStatus::Failed => AppState::Failed,
            AppStatus::Terminated => AppState::Terminated,
        }
    }
}

/// Gearpump's AppMasterData fields, plus what this cluster replicates beyond them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppMaster {
    pub app_id: AppId,
    pub app_name: String,
    pub status: AppState,
    pub user: String,
    /// Milliseconds since the epoch; `startTime` and `finishTime` are 0 until then.
    pub submission_time: u64,
    pub start_time: u64,
    pub finish_time: u64,
    pub main_class: String,
    pub args: Vec<String>,
    pub jar: AppJar,
    pub restart_policy: AppRestartPolicy,
    pub restarts: u32,
    pub slots: u32,
    /// Every run on a worker, oldest first; only the last can be live.
    pub attempts: Vec<Attempt>,
}

impl From<&Application> for AppMaster {
    fn from(app: &Application) -> AppMaster {
        AppMaster {
            app_id: app.id,
            app_name: app.name.clone(),
            status: app.status.into(),
            user: app.user.clone(),
            submission_time: app.submission_time_ms,
            start_time: app.start_time_ms.unwrap_or(0),
            finish_time: app.finish_time_ms.unwrap_or(0),
            main_class: app.main_class.clone(),
            args: app.args.clone(),
            jar: AppJar {
                name: app.jar.key.clone(),
                file_name: app.jar.file_name.clone(),
                size: app.jar.size,
                sha256: app.jar.sha256.clone(),
            },
            restart_policy: AppRestartPolicy { max_restarts: app.restart_policy.max_restarts },
            restarts: app.restarts,
            slots: app.slots,
            attempts: app.attempts.clone(),
        }
    }
}

/// The application's jar: its key in the jar store (`name`, what `jarstore/download?file=`
/// takes), the file name it was uploaded as, its size and SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppJar {
    pub name: String,
    pub file_name: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppRestartPolicy {
    pub max_restarts: u32,
}

/// `GET /api/v1.0/master/applist`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppList {
    pub app_masters: Vec<AppMaster>,
}

/// `GET /api/v1.0/appmaster/{id}`: the application and its data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AppDetail {
    #[serde(flatten)]
    pub app: AppMaster,
    /// The application's saved data (`PUT /api/v1.0/appmaster/{id}/data/{key}`).
    pub data: BTreeMap<String, String>,
}

/// `DELETE /api/v1.0/appmaster/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KillAnswer {
    pub success: bool,
    pub app_id: AppId,
    /// Always `terminated`.
    pub status: AppState,
}

/// `GET /api/v1.0/appmaster/{id}/data/{key}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppDataAnswer {
    pub app_id: AppId,
    pub key: String,
    pub value: String,
}

/// `PUT /api/v1.0/appmaster/{id}/data/{key}` (the body is the value, as UTF-8 text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PutDataAnswer {
    pub success: bool,
    pub app_id: AppId,
    pub key: String,
}

/// `POST /api/v1.0/appmaster/{id}/restart`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestartAnswer {
    pub success: bool,
    pub app_id: AppId,
    /// False when no attempt was live (the application was already waiting for a worker).
    pub restarted: bool,
}

/// `POST /api/v1.0/master/submitapp`: the new application and its stored jar (a repeated
/// request with the same `Idempotency-Key` answers the first submission's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubmitAnswer {
    pub success: bool,
    pub app_id: AppId,
    /// The jar's key in the jar store.
    pub jar: String,
    pub sha256: String,
    pub size: u64,
}

/// The multipart form of `POST /api/v1.0/master/submitapp` (for the OpenAPI document: the
/// server reads the parts one by one, by the names in `submit_form`).
#[derive(Debug, Clone, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // only its schema is used
pub struct SubmitForm {
    /// The application's jar (the file part; its file name is kept).
    #[schema(value_type = String, format = Binary)]
    jar: Vec<u8>,
    main_class: String,
    /// A JSON array of strings.
    args: Option<String>,
    name_prefix: Option<String>,
    /// Default `anonymous`.
    user: Option<String>,
    /// Slots on one worker, default 1.
    slots: Option<u32>,
}

/// The part names of the submit form, for the server that reads them and the client that
/// writes them (`SubmitForm` documents them; a unit test of `api::openapi` keeps both equal).
pub mod submit_form {
    pub const JAR: &str = "jar";
    pub const MAIN_CLASS: &str = "mainClass";
    pub const ARGS: &str = "args";
    pub const NAME_PREFIX: &str = "namePrefix";
    pub const USER: &str = "user";
    pub const SLOTS: &str = "slots";
    /// Every part, in the order of `SubmitForm`.
    pub const ALL: [&str; 6] = [JAR, MAIN_CLASS, ARGS, NAME_PREFIX, USER, SLOTS];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_state_names_are_serdes_names() {
        use AppState::*;
        for state in [Pending, Active, Succeeded, Failed, Terminated] {
            assert_eq!(serde_json::to_value(state).expect("serialize"), state.name());
        }
    }
}
