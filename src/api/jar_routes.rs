//! Jar upload (`submitapp`) and download. Jar bytes stream between the client and the store;
//! only the jar's name, size and SHA-256 go through Raft.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::multipart::{Field, MultipartRejection};
use axum::extract::{Multipart, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::client_routes::{consistent_read, now_ms, request_id, write_answer};
use super::{ApiError, Context};
use crate::jarstore::verify::VerifyingStream;
use crate::jarstore::{name, ByteStream, JarStoreError, StoredJar};
use crate::state::{Command, CommandResult, JarRef, NewApplication, RestartPolicy};
use crate::wire::{submit_form, SubmitAnswer};

/// Text fields of the form are small; a larger one is refused rather than buffered.
const MAX_FIELD_BYTES: usize = 64 * 1024;

fn multipart_error(e: impl std::fmt::Display, status: StatusCode) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            status,
            format!("the upload is larger than allowed (gearpump.jarstore.max-size): {e}"),
        );
    }
    ApiError::bad_request(format!("malformed multipart upload: {e}"))
}

/// Streams one multipart part into the store. The part borrows the request, so it is pumped
/// through a small channel into the store's 'static stream, which also gives back-pressure.
async fn store_jar(context: &Context, mut field: Field<'_>, key: String) -> Result<StoredJar, ApiError> {
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let body: ByteStream = Box::pin(futures::stream::unfold(receiver, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    let jars = context.jars.clone();
    let max_size = context.config.jar_max_size;
    let put = tokio::spawn(async move { jars.put(&key, body, max_size).await });
    let mut too_large = false;
    loop {
        match field.chunk().await {
            Ok(Some(chunk)) => {
                if sender.send(Ok(chunk)).await.is_err() {
                    break; // the store stopped reading: its own error says why
                }
            }
            Ok(None) => break,
            Err(e) => {
                too_large = e.status() == StatusCode::PAYLOAD_TOO_LARGE;
                let _ = sender.send(Err(std::io::Error::other(e.body_text()))).await;
                break;
            }
        }
    }
    drop(sender);
    let stored = put
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("upload task failed: {e}")))?;
    match stored {
        Ok(stored) => Ok(stored),
        Err(JarStoreError::Upload(_)) if too_large => {
            Err(JarStoreError::TooLarge { limit: context.config.jar_max_size }.into())
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /api/v1.0/master/submitapp`: multipart with a `jar` file part and the text parts
/// `mainClass` (required), `args` (a JSON array of strings), `namePrefix`, `user`.
pub(super) async fn submit_app(
    State(context): State<Arc<Context>>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let request = request_id(&headers)?;
    let mut multipart = multipart.map_err(|e| multipart_error(e.body_text(), e.status()))?;
    let mut jar: Option<(StoredJar, String)> = None;
    let mut fields: HashMap<String, String> = HashMap::new();
    let outcome = async {
        while let Some(field) =
            multipart.next_field().await.map_err(|e| multipart_error(e.body_text(), e.status()))?
        {
            let field_name = field.name().unwrap_or_default().to_string();
            if field_name == submit_form::JAR {
                if jar.is_some() {
                    return Err(ApiError::bad_request("the upload has more than one `jar` part"));
                }
                let file_name = field.file_name().unwrap_or("application.jar").to_string();
                let key = name::new_key(&file_name, now_ms())?;
                let stored = store_jar(&context, field, key).await?;
                jar = Some((stored, file_name));
            } else {
                let text = read_small_field(field).await?;
                fields.insert(field_name, text);
            }
        }
        Ok(())
    }
    .await;
    if let Err(error) = outcome {
        if let Some((stored, _)) = &jar {
            let _ = context.jars.delete(&stored.key).await;
        }
        return Err(error);
    }
    let Some((stored, file_name)) = jar else {
        return Err(ApiError::bad_request("the upload has no `jar` file part"));
    };
    let application = match new_application(&context, &fields, &stored, file_name) {
        Ok(application) => application,
        Err(error) => {
            let _ = context.jars.delete(&stored.key).await;
            return Err(error);
        }
    };
    if application.slots > 1 {
        if let Err(error) = super::worker_routes::check_slots(&context, application.slots).await {
            let _ = context.jars.delete(&stored.key).await;
            return Err(error);
        }
    }
    let started = std::time::Instant::now();
    let command = Command::SubmitApp { app: application, now_ms: now_ms() };
    let written = context.cluster.write_request(request.clone(), command).await;
    context.metrics.client_writes.observe(started.elapsed());
    // On failure the jar stays: the write may still commit, and the retention sweep removes
    // jars no application ever referenced.
    match written.inspect_err(|_| {
        context.metrics.client_write_errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    })? {
        CommandResult::Submitted { app_id } => {
            // A repeated request (same Idempotency-Key) answers the first submission's
            // application, whose jar is the first upload; this upload then belongs to nobody.
            let recorded = context.cluster.read(|state| state.apps.get(&app_id).map(|app| app.jar.clone()));
            let jar = match recorded {
                Some(first) if first.key != stored.key => {
                    tracing::info!(app_id, request = %request, "repeated submission answered with its first result");
                    let _ = context.jars.delete(&stored.key).await;
                    first
                }
                _ => {
                    tracing::info!(app_id, jar = %stored.key, size = stored.size, "application submitted");
                    JarRef {
                        key: stored.key,
                        file_name: String::new(),
                        size: stored.size,
                        sha256: stored.sha256,
                    }
                }
            };
            let answer =
                SubmitAnswer { success: true, app_id, jar: jar.key, sha256: jar.sha256, size: jar.size };
            Ok(write_answer(request, answer))
        }
        other => {
            Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("unexpected result {other:?}")))
        }
    }
}

async fn read_small_field(mut field: Field<'_>) -> Result<String, ApiError> {
    let field_name = field.name().unwrap_or_default().to_string();
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(|e| multipart_error(e.body_text(), e.status()))? {
        if bytes.len() + chunk.len() > MAX_FIELD_BYTES {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("form field {field_name:?} is over 64 KiB"),
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes)
        .map_err(|_| ApiError::bad_request(format!("form field {field_name:?} is not UTF-8")))
}

fn new_application(
    context: &Context,
    fields: &HashMap<String, String>,
    stored: &StoredJar,
    file_name: String,
) -> Result<NewApplication, ApiError> {
    let main_class = fields
        .get(submit_form::MAIN_CLASS)
        .or_else(|| fields.get("main_class"))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::bad_request("the upload has no `mainClass` field"))?;
    let args: Vec<String> = match fields.get(submit_form::ARGS).map(|s| s.trim()).filter(|s| !s.is_empty()) {
        Some(text) => serde_json::from_str(text)
            .map_err(|e| ApiError::bad_request(format!("`args` must be a JSON array of strings: {e}")))?,
        None => Vec::new(),
    };
    Ok(NewApplication {
        name_prefix: fields.get(submit_form::NAME_PREFIX).filter(|s| !s.is_empty()).cloned(),
        user: fields.get(submit_form::USER).cloned().unwrap_or_else(|| "anonymous".into()),
        main_class,
        args,
        jar: JarRef { key: stored.key.clone(), file_name, size: stored.size, sha256: stored.sha256.clone() },
        restart_policy: RestartPolicy { max_restarts: context.config.total_retries },
        slots: parse_slots(fields.get(submit_form::SLOTS))?,
    })
}

/// The `slots` form field (default 1).
fn parse_slots(field: Option<&String>) -> Result<u32, ApiError> {
    match field.map(|s| s.trim()).filter(|s| !s.is_empty()) {
        Some(text) => text.parse::<u32>().ok().filter(|n| *n >= 1).ok_or_else(|| {
            ApiError::bad_request(format!("`slots` must be a whole number ≥ 1, not {text:?}"))
        }),
        None => Ok(1),
    }
}

/// `GET /api/v1.0/jarstore/download?file=NAME`: the stored bytes, checked against the
/// replicated SHA-256 as they stream (a mismatch aborts the transfer).
pub(super) async fn download(
    State(context): State<Arc<Context>>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let query_text = query.clone().unwrap_or_default();
    let file = query_text
        .split('&')
        .find_map(|pair| pair.strip_prefix("file="))
        .ok_or_else(|| ApiError::bad_request("missing ?file=NAME"))?;
    let file = percent_decode(file)?;
    name::validate(&file)?;
    consistent_read(&context, &query).await?;
    let record = context.cluster.read(|state| state.jars.get(&file).cloned());
    let record = record.ok_or_else(|| ApiError::not_found(format!("jar {file:?} is not registered")))?;
    let stream = context.jars.get(&file).await?;
    let verified = VerifyingStream::new(stream, &file, record.size, &record.sha256);
    Ok((
        [
            (header::CONTENT_TYPE, "application/java-archive".to_string()),
            (header::CONTENT_LENGTH, record.size.to_string()),
            (header::HeaderName::from_static("x-gearpump-sha256"), record.sha256.clone()),
        ],
        Body::from_stream(verified),
    )
        .into_response())
}

/// A query value: `+` is a space, `%XX` a byte; a `%` without two hex digits is refused rather
/// than passed on literally.
fn percent_decode(text: &str) -> Result<String, ApiError> {
    let well_formed = text.match_indices('%').all(|(at, _)| {
        text.as_bytes().get(at + 1..at + 3).is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    });
    if !well_formed {
        return Err(ApiError::bad_request("malformed %-escape in ?file="));
    }
    let spaced = text.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|decoded| decoded.into_owned())
        .map_err(|_| ApiError::bad_request("?file= is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn query_values_are_decoded_and_malformed_escapes_refused() {
        assert_eq!(percent_decode("a%20b+c%2B.jar").expect("valid"), "a b c+.jar");
        assert_eq!(percent_decode("%C3%A9.jar").expect("valid"), "é.jar");
        for bad in ["a%2", "a%zz.jar", "%", "%FF.jar"] {
            assert!(percent_decode(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
