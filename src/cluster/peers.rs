//! The peer transport: every master-to-master call goes through `Peers`, the way etcd's
//! `rafthttp` is the one place its members talk. One HTTP client, one place that adds the
//! cluster secret, and one classification of what went wrong, which is what callers need to
//! decide whether a retry is safe:
//!
//! - `NotDelivered`: the connection was never made, so the peer cannot have acted on it.
//! - `NoAnswer`: the request may have been received and acted on; only a retry that the peer
//!   can recognise as the same request (a write's request id) is safe.
//! - `Refused`: the peer answered with an error of its own. Peer routes send the `ClusterError`
//!   itself (see `api::peer_routes`), so a follower hands its client the leader's verdict with
//!   the status the leader would have given — a failed membership change is a 503 or a 400
//!   wherever the client sent it.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::ClusterError;
use crate::wire::{PACKAGE_VERSION, PEER_PROTOCOL_VERSION, PEER_VERSION};

/// The header carrying the cluster secret on every peer request.
pub const SECRET_HEADER: &str = "x-gearpump-cluster-secret";

/// The `PEER_VERSION` header this master sends: `PROTOCOL PACKAGE`.
pub fn peer_version_header() -> String {
    format!("{PEER_PROTOCOL_VERSION} {PACKAGE_VERSION}")
}

/// The receiving side's check of a peer request's `PEER_VERSION` header: the same or an
/// adjacent protocol version is accepted (a rolling upgrade runs two versions side by side),
/// any other is refused with both versions named. No header is protocol 0: a master from
/// before the header existed, or a worker (its heartbeat shares the peer routes), both of which
/// version 1 still serves.
pub fn check_peer_version(header: Option<&[u8]>) -> Result<(), ClusterError> {
    let (theirs, their_package) = match header {
        None => (0, "older than 0.2".to_string()),
        Some(raw) => {
            let text = std::str::from_utf8(raw).unwrap_or_default().trim();
            let (protocol, package) = text.split_once(' ').unwrap_or((text, ""));
            let protocol = protocol.parse::<u32>().map_err(|_| {
                let shown: String = text.chars().take(60).collect();
                ClusterError::BadRequest(format!(
                    "the {PEER_VERSION} header {shown:?} is not \"PROTOCOL PACKAGE\" (e.g. \"1 0.1.0\")"
                ))
            })?;
            (protocol, package.chars().take(60).collect())
        }
    };
    if theirs.abs_diff(PEER_PROTOCOL_VERSION) <= 1 {
        return Ok(());
    }
    Err(ClusterError::PeerVersion {
        ours: PEER_PROTOCOL_VERSION,
        our_package: PACKAGE_VERSION.to_string(),
        theirs,
        their_package,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("master {address} is not reachable: {cause}")]
    NotDelivered { address: String, cause: String },
    #[error("master {address} did not answer (the outcome is unknown): {cause}")]
    NoAnswer { address: String, cause: String },
    #[error("{0}")]
    Refused(ClusterError),
}

impl From<PeerError> for ClusterError {
    /// For callers that only need to know "try again later": a peer that did not answer is a
    /// cluster without a usable quorum for now.
    fn from(error: PeerError) -> ClusterError {
        match error {
            PeerError::Refused(error) => error,
            other => ClusterError::NoQuorum(other.to_string()),
        }
    }
}

/// The body of every error a peer route answers: the text and status a client would see, and
/// the typed error for the calling master.
#[derive(Debug, Serialize, Deserialize)]
pub struct PeerFailure {
    pub error: String,
    pub status: u16,
    pub cause: ClusterError,
}

/// How this master proves itself to the others: the cluster secret header and/or, with TLS,
/// its node certificate (the client side of `tls::NodeTls`).
#[derive(Clone, Default)]
pub struct PeerAuth {
    pub secret: Option<String>,
    pub tls: Option<rustls::ClientConfig>,
}

#[derive(Clone)]
pub struct Peers {
    http: reqwest::Client,
    secret: Option<String>,
    scheme: &'static str,
}

impl Peers {
    /// `connect_timeout` bounds only the TCP connect: a peer that does not accept within it is
    /// treated as down (the fail-over bound, at most a second).
    pub fn new(connect_timeout: Duration, secret: Option<String>) -> reqwest::Result<Peers> {
        Peers::with_auth(connect_timeout, PeerAuth { secret, tls: None })
    }

    /// With TLS, every call is `https://` with this master's certificate as client certificate,
    /// and the callee must present a certificate from the cluster CA naming the address dialled.
    pub fn with_auth(connect_timeout: Duration, auth: PeerAuth) -> reqwest::Result<Peers> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .no_proxy();
        let scheme = match auth.tls {
            Some(tls) => {
                builder = builder.use_preconfigured_tls(tls).https_only(true);
                "https"
            }
            None => "http",
        };
        Ok(Peers { http: builder.build()?, secret: auth.secret, scheme })
    }

    pub async fn get<Resp: DeserializeOwned>(
        &self,
        address: &str,
        path: &str,
        timeout: Duration,
    ) -> Result<Resp, PeerError> {
        self.exchange(address, self.http.get(format!("{}://{address}{path}", self.scheme)), timeout).await
    }

    pub async fn post<Req: Serialize + ?Sized, Resp: DeserializeOwned>(
        &self,
        address: &str,
        path: &str,
        body: &Req,
        timeout: Duration,
    ) -> Result<Resp, PeerError> {
        let builder = self.http.post(format!("{}://{address}{path}", self.scheme)).json(body);
        self.exchange(address, builder, timeout).await
    }

    async fn exchange<Resp: DeserializeOwned>(
        &self,
        address: &str,
        builder: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Result<Resp, PeerError> {
        let mut builder = builder.timeout(timeout.max(Duration::from_millis(1)));
        builder = builder.header(PEER_VERSION, peer_version_header());
        if let Some(secret) = &self.secret {
            builder = builder.header(SECRET_HEADER, secret);
        }
        let no_answer = |cause: String| PeerError::NoAnswer { address: address.to_string(), cause };
        let response = builder.send().await.map_err(|e| {
            if e.is_connect() {
                PeerError::NotDelivered { address: address.to_string(), cause: e.to_string() }
            } else if e.is_timeout() {
                no_answer(format!("no answer within {} ms", timeout.as_millis()))
            } else {
                no_answer(e.to_string())
            }
        })?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| no_answer(format!("answer cut off: {e}")))?;
        if status.is_success() {
            let body: &[u8] = if body.is_empty() { b"null" } else { &body };
            return serde_json::from_slice(body).map_err(|e| no_answer(format!("unreadable answer: {e}")));
        }
        // A route's typed failure; anything else (the secret check, a body limit, an unknown
        // route from another version) is the peer refusing the call itself.
        Err(PeerError::Refused(match serde_json::from_slice::<PeerFailure>(&body) {
            Ok(failure) => failure.cause,
            // A client route's plain 503 (a forwarded worker call): unavailable wherever it
            // came from.
            Err(_) if status == reqwest::StatusCode::SERVICE_UNAVAILABLE => ClusterError::NoQuorum(format!(
                "master {address}: {}",
                String::from_utf8_lossy(&body).chars().take(300).collect::<String>()
            )),
            Err(_) => ClusterError::PeerRefused {
                address: address.to_string(),
                status: status.as_u16(),
                message: String::from_utf8_lossy(&body).chars().take(300).collect(),
            },
        }))
    }
}
