//! Names of the REST protocol that both sides spell: the server (`api`), the client library
//! (`client`, and through it `gear` and `gearpump-setup`) and the tests read them from here.

/// The request header that makes a write safe to retry: every request with the same key is
/// applied once and answered with the first result (see `state::Proposal`). The answer to every
/// write carries it back, so a client that sent none learns the id to retry with.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
