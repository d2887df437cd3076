//! Names of the REST protocol that both sides spell: the server (`api`), the client library
//! (`client`, and through it `gear` and `gearpump-setup`) and the tests read them from here.

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
