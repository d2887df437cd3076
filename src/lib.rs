//! gearpump-master: Apache Gearpump's high-availability master cluster on Raft.
//!
//! Three or five masters replicate the cluster state (applications, ids, per-application data,
//! jar references) with openraft over HTTP, store it in redb (fsynced before any answer), and
//! keep jar bytes in a shared store (NFS or HDFS). Any master accepts any request; followers
//! forward writes to the leader, each under a request id so a retry is applied once.
//!
//! Modules, from the process down (ARCHITECTURE.md draws the data paths):
//! - [`daemon`]: one master process (config, cluster, jar store, HTTP server, systemd).
//! - [`api`]: the HTTP server: Gearpump's REST paths, peer routes, health, metrics.
//! - [`cluster`]: everything openraft, and the one peer transport (`cluster::Peers`).
//! - [`jarstore`]: local, `file://` and `hdfs://` jar stores.
//! - [`state`]: the replicated state and its pure `apply`.
//! - [`config`]: gear.conf loading and validation.
//! - [`client`], [`wire`]: the REST client used by `gear` and `gearpump-setup`, and the names
//!   both sides share.
//! - [`setup`]: the `gearpump-setup` installer.
//! - [`tls`]: rustls on the master's port and between masters; `api::auth` holds tokens and roles.

pub mod api;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod config;
pub mod daemon;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod jarstore;
pub mod scheduler;
pub mod setup;
pub mod state;
pub mod tls;
pub mod wire;
pub mod worker;
