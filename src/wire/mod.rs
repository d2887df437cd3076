//! The REST API's vocabulary, spelled once: every request and answer body of the client routes
//! as a serde type, the headers and versions both sides name, and the masters' Raft `Role`.
//! The server (`api`) builds its answers from these types, the client library (`client`, and
//! through it `gear` and `gearpump-setup`) and the tests read them back into the same types,
//! and the OpenAPI document (`api::openapi`, `GET /api/v1.0/openapi.json`) is derived from them,
//! so a field renamed here is renamed everywhere at once.
//!
//! Answers are read leniently: unknown fields are ignored, so a client still reads the answer of
//! a master one version ahead that added a field. Nothing here uses `deny_unknown_fields`.
//!
//! The peer protocol (`cluster::peer_protocol`) and the worker heartbeats (`worker::protocol`)
//! are not the public API and keep their own types; a REST answer may re-use one of them.

mod apps;
mod master;
mod workers;

pub use apps::*;
pub use master::*;
pub use workers::*;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The request header that makes a write safe to retry: every request with the same key is
/// applied once and answered with the first result (see `state::Proposal`). The answer to every
/// write carries it back, so a client that sent none learns the id to retry with.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// This build's version: the package's (scripts/build-packages.sh --version sets
/// GEARPUMP_VERSION for the build, so a package and the binaries in it agree), else Cargo.toml's.
/// `GET /api/v1.0/master` reports it per master, which is how a rolling upgrade sees it done.
pub const PACKAGE_VERSION: &str = match option_env!("GEARPUMP_VERSION") {
    Some(version) => version,
    None => env!("CARGO_PKG_VERSION"),
};

/// The header every master-to-master request carries: `PROTOCOL PACKAGE`, the sender's peer
/// protocol version and package version (`1 0.1.0`). Masters of adjacent protocol versions run
/// together during a rolling upgrade; others are refused (`cluster::peers::check_peer_version`).
pub const PEER_VERSION: &str = "x-gearpump-peer-version";

/// The peer protocol's version: raised by one whenever what masters say to each other (routes,
/// bodies, Raft RPCs) changes in a way the previous version does not understand. A new version
/// must still speak to the previous one, so a cluster can be upgraded one master at a time.
pub const PEER_PROTOCOL_VERSION: u32 = 1;

/// A master's Raft role, as `GET /api/v1.0/master`, `/health/ready` and the masters among
/// themselves report it: lowercase (`"leader"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Leader,
    Follower,
    Candidate,
    Learner,
    Shutdown,
    /// Not a Raft state: in `GET /api/v1.0/master`'s cluster list, a master that did not
    /// answer this one (its other fields are then absent).
    Unreachable,
}

impl Role {
    /// The roles a running master can be in (every one but `Unreachable`).
    pub const RAFT: [Role; 5] =
        [Role::Leader, Role::Follower, Role::Candidate, Role::Learner, Role::Shutdown];

    /// The role's name on the wire (a unit test holds it equal to serde's spelling).
    pub fn name(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::Candidate => "candidate",
            Role::Learner => "learner",
            Role::Shutdown => "shutdown",
            Role::Unreachable => "unreachable",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Every failure a client sees: the HTTP status again in the body, and a message that says
/// what went wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
    pub status: u16,
    /// Only in a 503 from a master without a leader.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = fields_or_none::<NoLeader>)]
    pub no_leader: Option<NoLeader>,
}

/// What a master without a leader knows: when it may have one again (also in the
/// `Retry-After` header, in whole seconds) and which masters it last heard from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NoLeader {
    pub retry_after_ms: u64,
    pub last_leader: Option<String>,
    pub reachable: Vec<String>,
}

/// The schema of a flattened `Option<T>`: `T`'s fields, or none of them. (utoipa would offer
/// `null` instead, which the object that holds the fields never is.)
fn fields_or_none<T: ToSchema>() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{AnyOfBuilder, ObjectBuilder, Schema};
    Schema::AnyOf(
        AnyOfBuilder::new()
            .item(utoipa::openapi::Ref::from_schema_name(T::name()))
            .item(ObjectBuilder::new())
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_are_serdes_names() {
        for role in Role::RAFT.into_iter().chain([Role::Unreachable]) {
            assert_eq!(serde_json::to_value(role).expect("serialize"), role.name());
            assert_eq!(serde_json::from_value::<Role>(role.name().into()).expect("parse"), role);
        }
    }

    #[test]
    fn worker_state_names_are_serdes_names() {
        for state in [WorkerState::Alive, WorkerState::Unreachable, WorkerState::Lost] {
            assert_eq!(serde_json::to_value(state).expect("serialize"), state.name());
            assert_eq!(serde_json::from_value::<WorkerState>(state.name().into()).expect("parse"), state);
        }
        assert_eq!(format!("{:<7}|", WorkerState::Lost), "lost   |", "gear's table pads it");
    }

    #[test]
    fn the_no_leader_hint_is_flattened_and_optional() {
        let plain = ErrorBody { error: "no".into(), status: 404, no_leader: None };
        let text = serde_json::to_string(&plain).expect("serialize");
        assert_eq!(text, r#"{"error":"no","status":404}"#);
        assert_eq!(serde_json::from_str::<ErrorBody>(&text).expect("parse"), plain);
        let hint = NoLeader { retry_after_ms: 300, last_leader: None, reachable: vec!["a:1".into()] };
        let busy = ErrorBody { error: "later".into(), status: 503, no_leader: Some(hint) };
        let text = serde_json::to_string(&busy).expect("serialize");
        assert_eq!(
            text,
            r#"{"error":"later","status":503,"retryAfterMs":300,"lastLeader":null,"reachable":["a:1"]}"#
        );
        assert_eq!(serde_json::from_str::<ErrorBody>(&text).expect("parse"), busy);
    }
}
