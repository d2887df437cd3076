//! Liveness, readiness and metrics endpoints.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;

use super::{Context, JarProbe};
use crate::jarstore::JarStore;
use crate::wire::{JarStoreReport, Live, Ready};

/// Alive: the runtime answers and the Raft core has not stopped.
pub(super) async fn live(State(context): State<Arc<Context>>) -> impl IntoResponse {
    if context.cluster.core_is_running() {
        (StatusCode::OK, Json(Live { live: true, error: None }))
    } else {
        let error = Some("the Raft core stopped".to_string());
        (StatusCode::SERVICE_UNAVAILABLE, Json(Live { live: false, error }))
    }
}

/// Ready: in a quorum with a known leader. The jar store's state is reported too: a master
/// whose store is down still holds the quorum, but operators must see why uploads fail.
/// The store's state is the background probe's last answer with its age, never a probe made
/// here: a readiness check must answer at once even when HDFS or an NFS mount hangs.
pub(super) async fn ready(State(context): State<Arc<Context>>) -> impl IntoResponse {
    let status = context.cluster.status();
    let ready = context.cluster.is_ready();
    let probe = context.jar_health.read().ok().and_then(|probe| probe.clone());
    let body = Ready {
        ready,
        role: status.role,
        term: status.term,
        leader: status.leader,
        bootstrap: context.cluster.bootstrap_state().to_string(),
        jar_store: jar_store_report(&*context.jars, probe.as_ref()),
    };
    let code = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(body))
}

/// `ok` is null until the first probe finishes; `probeAgeMs` says how old the answer is.
fn jar_store_report(jars: &dyn JarStore, probe: Option<&JarProbe>) -> JarStoreReport {
    JarStoreReport {
        store: jars.describe(),
        ha: jars.is_highly_available(),
        ok: probe.map(|probe| probe.result.is_ok()),
        error: probe.and_then(|probe| probe.result.as_ref().err().cloned()),
        probe_age_ms: probe.map(|probe| u64::try_from(probe.at.elapsed().as_millis()).unwrap_or(u64::MAX)),
    }
}

pub(super) async fn metrics(State(context): State<Arc<Context>>) -> impl IntoResponse {
    let text = context.metrics.render(&context.cluster);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::api::test_support::{one_master_context, HangingStore};

    #[tokio::test]
    async fn ready_answers_from_the_cached_probe_when_the_store_hangs() {
        let (context, _dir) = one_master_context(Arc::new(HangingStore), "").await;
        *context.jar_health.write().expect("lock") = Some(JarProbe {
            result: Err("no answer from HDFS within 10 s".into()),
            at: Instant::now() - Duration::from_secs(7),
        });
        let cluster = context.cluster.clone();

        let started = Instant::now();
        // Generous bound for a loaded 2-core machine; the answer itself takes microseconds.
        let answer = tokio::time::timeout(Duration::from_secs(2), ready(State(context)))
            .await
            .expect("/health/ready must not wait for the jar store");
        let elapsed = started.elapsed();
        let response = answer.into_response();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
        let body: Ready = serde_json::from_slice(&body).expect("JSON");
        eprintln!("/health/ready answered in {elapsed:?} with a hanging store");
        let store = &body.jar_store;
        assert_eq!(store.ok, Some(false), "{body:?}");
        assert_eq!(store.error.as_deref(), Some("no answer from HDFS within 10 s"), "{body:?}");
        assert!(store.probe_age_ms.is_some_and(|age| age >= 7000), "{body:?}");
        cluster.shutdown().await;
    }

    #[test]
    fn before_the_first_probe_the_store_state_is_unknown() {
        let report = jar_store_report(&HangingStore, None);
        let text = serde_json::to_value(&report).expect("serialize");
        assert_eq!(text["ok"], serde_json::Value::Null, "{text}");
        assert_eq!(text["probeAgeMs"], serde_json::Value::Null, "{text}");
        assert_eq!(report.store, "hdfs://hung:8020/jars");
    }
}
