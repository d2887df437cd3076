//! A typed HTTP client for the master REST API, used by `gear` (and the installer). It talks to
//! any master and moves on to the next one when a master is down or has no quorum.

pub mod credentials;
pub mod health;

use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::{multipart, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::state::new_id;
use crate::wire::{
    submit_form, AppList, ErrorBody, KillAnswer, MasterAnswer, MembersView, MembershipChange, PutDataAnswer,
    RestartAnswer, SubmitAnswer, WorkerList, IDEMPOTENCY_KEY,
};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no master answered:\n{}", .tried.iter().map(|(m, why)| format!("  {m}: {why}")).collect::<Vec<_>>().join("\n"))]
    NoMasterReachable { tried: Vec<(String, String)> },
    #[error("master {master} refused the request ({status}): {message}")]
    Api { master: String, status: StatusCode, message: String },
    #[error("{path}: {cause}")]
    File { path: String, cause: String },
    #[error("the download of {name} is corrupt: {cause}")]
    Corrupt { name: String, cause: String },
    #[error("cannot build the HTTP client: {0}")]
    Setup(String),
}

pub use credentials::Credentials;

pub struct MasterClient {
    masters: Vec<String>,
    http: reqwest::Client,
    /// How long one master may take to answer a small request before the next is tried.
    attempt_timeout: Duration,
    /// How long to keep going round the masters while none can serve.
    retry_for: Duration,
    scheme: &'static str,
    token: Option<String>,
}

/// A master that has not answered a small request in this long is paused, cut off or
/// overloaded: the next one is asked (writes carry their Idempotency-Key, so this is safe).
/// Five fail-over bounds (400 ms by default): a healthy master answers within one commit, one
/// without a leader answers 503 within milliseconds, so only a silent one costs this much.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// Rounds over the masters stop after this (or the client's timeout, if shorter): long enough
/// to ride out an election, short enough that `gear` reports an outage promptly.
const RETRY_FOR: Duration = Duration::from_secs(10);
/// Pause between rounds when the masters did not say how long to wait.
const ROUND_PAUSE: Duration = Duration::from_millis(100);

/// Whether a request is small (bounded by `attempt_timeout`) or a transfer whose body may take
/// long (bounded by the client's overall timeout only).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Exchange {
    Small,
    Transfer,
}

impl MasterClient {
    pub fn new(masters: Vec<String>, timeout: Duration) -> Result<MasterClient, ClientError> {
        MasterClient::with_credentials(masters, timeout, &Credentials::default())
    }

    /// With a CA, masters are called over `https://` and must present a certificate from it;
    /// with a token, every request carries `Authorization: Bearer`.
    pub fn with_credentials(
        masters: Vec<String>,
        timeout: Duration,
        credentials: &Credentials,
    ) -> Result<MasterClient, ClientError> {
        let mut builder =
            reqwest::Client::builder().connect_timeout(Duration::from_secs(2)).timeout(timeout).no_proxy();
        let scheme = match &credentials.ca_file {
            Some(ca) => {
                builder = builder.use_preconfigured_tls(credentials::tls_config(ca)?).https_only(true);
                "https"
            }
            None => "http",
        };
        let http = builder.build().map_err(|e| ClientError::Setup(e.to_string()))?;
        Ok(MasterClient {
            masters,
            http,
            attempt_timeout: ATTEMPT_TIMEOUT.min(timeout),
            retry_for: RETRY_FOR.min(timeout),
            scheme,
            token: credentials.token.clone(),
        })
    }

    fn authorized(&self, builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    /// Sends the request built by `build` to each master in turn until one answers with
    /// something other than "unreachable", "no answer in time" or 503; then round again, after
    /// the pause the masters asked for, until `retry_for` is spent — unless every master
    /// refused the connection. A 503 comes at once from a
    /// master without a leader, so a client that starts at a cut-off master reaches the
    /// majority's side within a round trip.
    async fn send<F>(&self, exchange: Exchange, build: F) -> Result<(String, Response), ClientError>
    where
        F: Fn(&reqwest::Client, &str) -> Result<reqwest::RequestBuilder, ClientError>,
    {
        let give_up = Instant::now() + self.retry_for;
        loop {
            let mut tried = Vec::new();
            let mut pause = ROUND_PAUSE;
            // Only a master that is up but without a leader (or slow) may serve soon; when every
            // one refuses the connection, the cluster is down or the addresses are wrong.
            let mut worth_waiting = false;
            for master in &self.masters {
                let base = format!("{}://{master}", self.scheme);
                let mut request = self.authorized(build(&self.http, &base)?);
                if exchange == Exchange::Small {
                    request = request.timeout(self.attempt_timeout);
                }
                match request.send().await {
                    Ok(response) if response.status() == StatusCode::SERVICE_UNAVAILABLE => {
                        let (message, retry_after) = unavailable(response).await;
                        if let Some(retry_after) = retry_after {
                            pause = pause.min(retry_after);
                        }
                        worth_waiting = true;
                        tried.push((master.clone(), message));
                    }
                    Ok(response) => return Ok((master.clone(), response)),
                    Err(e) => {
                        worth_waiting |= !e.is_connect();
                        tried.push((master.clone(), describe_reqwest_error(&e)));
                    }
                }
            }
            if !worth_waiting || Instant::now() + pause >= give_up {
                return Err(ClientError::NoMasterReachable { tried });
            }
            tokio::time::sleep(pause).await;
        }
    }

    /// The answer as `T` (a `wire` type, or `serde_json::Value` for any JSON), or the master's
    /// error message.
    async fn json<T: DeserializeOwned>(
        &self,
        (master, response): (String, Response),
    ) -> Result<T, ClientError> {
        let status = response.status();
        if !status.is_success() {
            return Err(ClientError::Api { master, status, message: error_message(response).await });
        }
        response.json().await.map_err(|e| ClientError::Api {
            master,
            status,
            message: format!("unreadable answer: {e}"),
        })
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let answer = self.send(Exchange::Small, |http, base| Ok(http.get(format!("{base}{path}")))).await?;
        self.json(answer).await
    }

    // Every write carries one Idempotency-Key, the same on each master tried: a master that
    // applied the request but did not answer in time makes the next one answer the same result
    // instead of applying it again.

    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let key = new_id();
        let answer = self
            .send(Exchange::Small, |http, base| {
                Ok(http.delete(format!("{base}{path}")).header(IDEMPOTENCY_KEY, &key))
            })
            .await?;
        self.json(answer).await
    }

    /// Gearpump's SaveAppData: `value` under `key` of application `app_id`.
    pub async fn put_app_data(
        &self,
        app_id: u32,
        key: &str,
        value: &str,
    ) -> Result<PutDataAnswer, ClientError> {
        let path = format!("/api/v1.0/appmaster/{app_id}/data/{}", percent_encode(key));
        let request_key = new_id();
        let answer = self
            .send(Exchange::Small, |http, base| {
                Ok(http
                    .put(format!("{base}{path}"))
                    .header(IDEMPOTENCY_KEY, &request_key)
                    .body(value.to_string()))
            })
            .await?;
        self.json(answer).await
    }

    pub async fn post_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let key = new_id();
        let answer = self
            .send(Exchange::Small, |http, base| {
                Ok(http.post(format!("{base}{path}")).header(IDEMPOTENCY_KEY, &key).json(body))
            })
            .await?;
        self.json(answer).await
    }

    /// `GET /api/v1.0/master`.
    pub async fn master(&self) -> Result<MasterAnswer, ClientError> {
        self.get("/api/v1.0/master").await
    }

    /// `GET /api/v1.0/master/applist`.
    pub async fn app_list(&self) -> Result<AppList, ClientError> {
        self.get("/api/v1.0/master/applist").await
    }

    /// `DELETE /api/v1.0/appmaster/{id}`.
    pub async fn kill(&self, app_id: u32) -> Result<KillAnswer, ClientError> {
        self.delete(&format!("/api/v1.0/appmaster/{app_id}")).await
    }

    /// `POST /api/v1.0/master/members`: adds or removes a master.
    pub async fn change_members(&self, change: &MembershipChange) -> Result<MembersView, ClientError> {
        self.post_json("/api/v1.0/master/members", change).await
    }

    /// `GET /api/v1.0/master/workerlist`.
    pub async fn workers(&self) -> Result<WorkerList, ClientError> {
        self.get("/api/v1.0/master/workerlist").await
    }

    /// `POST /api/v1.0/appmaster/{id}/restart` (its body is JSON `null`).
    pub async fn restart(&self, app_id: u32) -> Result<RestartAnswer, ClientError> {
        self.post_json(&format!("/api/v1.0/appmaster/{app_id}/restart"), &()).await
    }

    /// The tail of an attempt's log (the last attempt when `attempt` is `None`).
    pub async fn log(&self, app_id: u32, attempt: Option<u32>, tail: u64) -> Result<String, ClientError> {
        let mut path = format!("/api/v1.0/appmaster/{app_id}/log?tail={tail}");
        if let Some(attempt) = attempt {
            path.push_str(&format!("&attempt={attempt}"));
        }
        let (master, response) =
            self.send(Exchange::Transfer, |http, base| Ok(http.get(format!("{base}{path}")))).await?;
        let status = response.status();
        if !status.is_success() {
            return Err(ClientError::Api { master, status, message: error_message(response).await });
        }
        response.text().await.map_err(|e| ClientError::Api { master, status, message: e.to_string() })
    }

    /// Streams the jar from disk (reopened for each master tried) and registers the application.
    pub async fn submit(
        &self,
        jar: &Path,
        main_class: &str,
        args: &[String],
        name_prefix: Option<&str>,
        user: &str,
    ) -> Result<SubmitAnswer, ClientError> {
        self.submit_with_slots(jar, main_class, args, name_prefix, user, None).await
    }

    /// `submit`, asking for `slots` on a worker (default 1).
    pub async fn submit_with_slots(
        &self,
        jar: &Path,
        main_class: &str,
        args: &[String],
        name_prefix: Option<&str>,
        user: &str,
        slots: Option<u32>,
    ) -> Result<SubmitAnswer, ClientError> {
        let file_error =
            |e: std::io::Error| ClientError::File { path: jar.display().to_string(), cause: e.to_string() };
        let metadata = std::fs::metadata(jar).map_err(file_error)?;
        if !metadata.is_file() {
            return Err(ClientError::File {
                path: jar.display().to_string(),
                cause: "not a regular file".into(),
            });
        }
        let file_name = jar.file_name().and_then(|n| n.to_str()).unwrap_or("application.jar").to_string();
        let args_json = serde_json::to_string(args).unwrap_or_else(|_| "[]".into());
        let key = new_id();
        let mut tried = Vec::new();
        for master in &self.masters {
            let file = tokio::fs::File::open(jar).await.map_err(file_error)?;
            let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024);
            let part =
                multipart::Part::stream_with_length(reqwest::Body::wrap_stream(stream), metadata.len())
                    .file_name(file_name.clone())
                    .mime_str("application/java-archive")
                    .map_err(|e| ClientError::Setup(e.to_string()))?;
            let mut form = multipart::Form::new()
                .text(submit_form::MAIN_CLASS, main_class.to_string())
                .text(submit_form::ARGS, args_json.clone())
                .text(submit_form::USER, user.to_string());
            if let Some(prefix) = name_prefix {
                form = form.text(submit_form::NAME_PREFIX, prefix.to_string());
            }
            if let Some(slots) = slots {
                form = form.text(submit_form::SLOTS, slots.to_string());
            }
            let form = form.part(submit_form::JAR, part);
            let url = format!("{}://{master}/api/v1.0/master/submitapp", self.scheme);
            match self
                .authorized(self.http.post(url))
                .header(IDEMPOTENCY_KEY, &key)
                .multipart(form)
                .send()
                .await
            {
                Ok(response) if response.status() == StatusCode::SERVICE_UNAVAILABLE => {
                    tried.push((master.clone(), error_message(response).await));
                }
                Ok(response) => return self.json((master.clone(), response)).await,
                Err(e) => tried.push((master.clone(), describe_reqwest_error(&e))),
            }
        }
        Err(ClientError::NoMasterReachable { tried })
    }

    /// `GET /api/v1.0/master/snapshot`: a backup file, checked (header, length, SHA-256) before
    /// it is returned, so a transfer cut short is an error here and never a file on disk.
    pub async fn snapshot(&self) -> Result<(Vec<u8>, crate::backup::Backup), ClientError> {
        let path = "/api/v1.0/master/snapshot";
        let (master, response) =
            self.send(Exchange::Transfer, |http, base| Ok(http.get(format!("{base}{path}")))).await?;
        let status = response.status();
        if !status.is_success() {
            return Err(ClientError::Api { master, status, message: error_message(response).await });
        }
        let bytes = response.bytes().await.map_err(|e| ClientError::Corrupt {
            name: "the snapshot".into(),
            cause: format!("transfer from {master} aborted: {e}"),
        })?;
        let backup = crate::backup::Backup::decode(&bytes).map_err(|e| ClientError::Corrupt {
            name: format!("the snapshot from {master}"),
            cause: e.to_string(),
        })?;
        Ok((bytes.to_vec(), backup))
    }

    /// Downloads a jar to `output`, verifying the SHA-256 the master announces.
    pub async fn download(&self, name: &str, output: &Path) -> Result<u64, ClientError> {
        let path = format!("/api/v1.0/jarstore/download?file={}", percent_encode(name));
        let (master, response) =
            self.send(Exchange::Transfer, |http, base| Ok(http.get(format!("{base}{path}")))).await?;
        let status = response.status();
        if !status.is_success() {
            return Err(ClientError::Api { master, status, message: error_message(response).await });
        }
        let expected =
            response.headers().get("x-gearpump-sha256").and_then(|v| v.to_str().ok()).map(str::to_string);
        let file_error = |e: std::io::Error| ClientError::File {
            path: output.display().to_string(),
            cause: e.to_string(),
        };
        let mut file = tokio::fs::File::create(output).await.map_err(file_error)?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| ClientError::Corrupt {
                name: name.into(),
                cause: format!("transfer aborted: {e}"),
            })?;
            hasher.update(&chunk);
            size += chunk.len() as u64;
            file.write_all(&chunk).await.map_err(file_error)?;
        }
        file.flush().await.map_err(file_error)?;
        let digest = hex::encode(hasher.finalize());
        if let Some(expected) = expected {
            if expected != digest {
                return Err(ClientError::Corrupt {
                    name: name.into(),
                    cause: format!("SHA-256 {digest}, expected {expected}"),
                });
            }
        }
        Ok(size)
    }
}

/// A 503's message and, when the master said so, how soon it may serve again.
async fn unavailable(response: Response) -> (String, Option<Duration>) {
    let text = response.text().await.unwrap_or_default();
    match serde_json::from_str::<ErrorBody>(&text) {
        Ok(body) => (body.error, body.no_leader.map(|hint| Duration::from_millis(hint.retry_after_ms))),
        Err(_) => (text, None),
    }
}

async fn error_message(response: Response) -> String {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    match serde_json::from_str::<ErrorBody>(&text) {
        Ok(body) => body.error,
        Err(_) if text.is_empty() => status.to_string(),
        Err(_) => text,
    }
}

fn describe_reqwest_error(error: &reqwest::Error) -> String {
    // The TLS reason (unknown issuer, wrong name) is in the source chain.
    let mut cause = String::new();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        cause = inner.to_string();
        source = inner.source();
    }
    if error.is_connect() && !cause.is_empty() && !cause.contains("refused") {
        format!("cannot connect: {cause}")
    } else if error.is_connect() {
        "connection refused or unreachable".into()
    } else if error.is_timeout() {
        "timed out".into()
    } else {
        error.to_string()
    }
}

/// RFC 3986 unreserved characters stay as they are; everything else is %-escaped.
const QUERY_VALUE: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

fn percent_encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, QUERY_VALUE).to_string()
}

/// An optional value as a table cell: "-" when absent.
pub fn cell<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_string(), |value| value.to_string())
}

/// The masters table of `GET /api/v1.0/master`, as `gear masters` and `gearpump-setup` print it.
pub fn masters_table(answer: &MasterAnswer) -> String {
    let description = &answer.master_description;
    let mut out = format!(
        "{:<22} {:<12} {:>5} {:>13} {:>6} HEALTHY\n",
        "MASTER", "ROLE", "TERM", "COMMIT INDEX", "LAG"
    );
    for master in &description.cluster {
        let progress = master.progress.as_ref();
        out.push_str(&format!(
            "{:<22} {:<12} {:>5} {:>13} {:>6} {}\n",
            master.address,
            master.role.name(),
            cell(progress.map(|p| p.term)),
            cell(progress.map(|p| p.commit_index)),
            cell(progress.and_then(|p| p.lag)),
            if master.healthy { "yes" } else { "no" }
        ));
    }
    out.push_str(&format!(
        "leader: {}    jar store: {}\n",
        cell(description.leader.as_deref()),
        description.jar_store
    ));
    for warning in &description.warnings {
        out.push_str(&format!("warning: {warning}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::percent_encode;

    #[test]
    fn jar_names_are_escaped_except_unreserved_characters() {
        assert_eq!(percent_encode("1-a_b.c~d.jar"), "1-a_b.c~d.jar");
        assert_eq!(percent_encode("a b/é+.jar"), "a%20b%2F%C3%A9%2B.jar");
    }
}
