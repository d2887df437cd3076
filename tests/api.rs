//! Hostile and malformed requests against a real single master: each gets a 4xx with a JSON
//! error, and nothing is stored or registered.

mod common;

use std::time::Duration;

use common::{wire, Options, TestCluster};
use gearpump_master::wire::{
    AppDataAnswer, AppDetail, AppList, AppState, ConfigAnswer, ErrorBody, MasterAnswer, SubmitAnswer,
};
use reqwest::multipart;
use serde_json::Value;

async fn single() -> TestCluster {
    let cluster = TestCluster::start(Options {
        masters: 1,
        extra_conf: "gearpump.jarstore.max-size = 64 KiB".into(),
        ..Options::default()
    });
    cluster.wait_until_ready(Duration::from_secs(20)).await;
    cluster
}

async fn upload(
    cluster: &TestCluster,
    file_name: &str,
    bytes: Vec<u8>,
    main_class: Option<&str>,
) -> (u16, Value) {
    let mut form = multipart::Form::new();
    if let Some(main_class) = main_class {
        form = form.text("mainClass", main_class.to_string());
    }
    let form = form.part("jar", multipart::Part::bytes(bytes).file_name(file_name.to_string()));
    cluster.submit_form(0, form).await
}

fn stored_jars(cluster: &TestCluster) -> Vec<String> {
    std::fs::read_dir(cluster.dir.path().join("jars"))
        .expect("jar dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with('.'))
        .collect()
}

fn assert_json_error(status: u16, body: &Value, expected_status: u16, needle: &str) {
    assert_eq!(status, expected_status, "{body}");
    let error = wire::<ErrorBody>(body).error;
    assert!(error.contains(needle), "{error:?} should mention {needle:?}");
}

#[tokio::test]
async fn hostile_jar_names_are_refused() {
    let cluster = single().await;
    for name in ["../../etc/passwd", "a/b.jar", "a\\b.jar", "..", &"x".repeat(300)] {
        let (status, body) = upload(&cluster, name, b"jar".to_vec(), Some("Main")).await;
        assert_json_error(status, &body, 400, "invalid jar name");
    }
    assert!(stored_jars(&cluster).is_empty());
    let (status, body) =
        cluster.get(0, "/api/v1.0/jarstore/download?file=../gear.conf").await.expect("answer");
    assert_json_error(status, &body, 400, "invalid jar name");
}

#[tokio::test]
async fn oversized_uploads_get_413_and_leave_nothing() {
    let cluster = single().await;
    let (status, body) = upload(&cluster, "big.jar", vec![7u8; 200 * 1024], Some("Main")).await;
    assert_eq!(status, 413, "{body}");
    assert!(stored_jars(&cluster).is_empty());
    let partials =
        std::fs::read_dir(cluster.dir.path().join("jars/.partial")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(partials, 0, "no partial upload left behind");
    let (_, list) = cluster.get(0, "/api/v1.0/master/applist").await.expect("list");
    assert_eq!(wire::<AppList>(&list).app_masters.len(), 0);
}

#[tokio::test]
async fn incomplete_forms_are_explained() {
    let cluster = single().await;
    let (status, body) = upload(&cluster, "ok.jar", b"jar".to_vec(), None).await;
    assert_json_error(status, &body, 400, "no `mainClass` field");
    assert!(stored_jars(&cluster).is_empty(), "the jar of a refused submission is removed");
    let form = multipart::Form::new().text("mainClass", "Main");
    assert_eq!(cluster.submit_form(0, form).await.0, 400);
    let response = cluster
        .http
        .post(cluster.url(0, "/api/v1.0/master/submitapp"))
        .header("content-type", "application/json")
        .body("{\"jar\": 1")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.expect("a JSON error");
    assert!(wire::<ErrorBody>(&body).error.contains("multipart"), "{body}");
    let form = multipart::Form::new()
        .text("mainClass", "Main")
        .text("args", "not json")
        .part("jar", multipart::Part::bytes(b"x".to_vec()).file_name("x.jar"));
    assert_eq!(cluster.submit_form(0, form).await.0, 400);
}

#[tokio::test]
async fn unknown_ids_and_paths_are_json_404s() {
    let cluster = single().await;
    let (status, body) = cluster.get(0, "/api/v1.0/appmaster/42").await.expect("answer");
    assert_json_error(status, &body, 404, "application 42 does not exist");
    let (status, body) = cluster.get(0, "/api/v1.0/appmaster/abc").await.expect("answer");
    assert_json_error(status, &body, 400, "not a number");
    let (status, body) = cluster.get(0, "/api/v1.0/nothing-here").await.expect("answer");
    assert_json_error(status, &body, 404, "no such endpoint");
    let response = cluster.http.delete(cluster.url(0, "/api/v1.0/appmaster/42")).send().await.expect("send");
    assert_eq!(response.status().as_u16(), 404);
    let response = cluster
        .http
        .put(cluster.url(0, "/api/v1.0/appmaster/42/data/k"))
        .body("v")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status().as_u16(), 404);
    let (status, body) =
        cluster.get(0, "/api/v1.0/jarstore/download?file=missing.jar").await.expect("answer");
    assert_json_error(status, &body, 404, "not registered");
}

#[tokio::test]
async fn oversized_json_and_peer_garbage_are_refused() {
    let cluster = single().await;
    let (status, body) = upload(&cluster, "a.jar", b"jar".to_vec(), Some("Main")).await;
    assert_eq!(status, 200, "{body}");
    let response = cluster
        .http
        .put(cluster.url(0, "/api/v1.0/appmaster/1/data/big"))
        .body(vec![b'a'; 2 << 20])
        .send()
        .await
        .expect("send");
    assert_eq!(response.status().as_u16(), 413);
    let body: Value = response.json().await.expect("a JSON error");
    assert!(wire::<ErrorBody>(&body).error.contains("limit is 1 MiB"), "{body}");
    let response = cluster
        .http
        .post(cluster.url(0, "/peer/raft/append"))
        .header("content-type", "application/json")
        .body("{not raft}")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status().as_u16(), 400);
    // Still serving after all that.
    assert!(cluster.ready(0).await);
}

#[tokio::test]
async fn app_lifecycle_over_rest() {
    let cluster = single().await;
    let (status, body) = upload(&cluster, "life.jar", b"jar bytes".to_vec(), Some("io.x.Main")).await;
    assert_eq!(status, 200, "{body}");
    let put =
        cluster.http.put(cluster.url(0, "/api/v1.0/appmaster/1/data/START_CLOCK")).body("1234").send().await;
    assert_eq!(put.expect("put").status().as_u16(), 200);
    let (status, data) = cluster.get(0, "/api/v1.0/appmaster/1/data/START_CLOCK").await.expect("get");
    assert_eq!(status, 200, "{data}");
    assert_eq!(wire::<AppDataAnswer>(&data).value, "1234");
    let delete = cluster.http.delete(cluster.url(0, "/api/v1.0/appmaster/1")).send().await.expect("delete");
    assert_eq!(delete.status().as_u16(), 200);
    let (_, app) = cluster.get(0, "/api/v1.0/appmaster/1").await.expect("app");
    let app: AppDetail = wire(&app);
    assert_eq!(app.app.status, AppState::Terminated);
    assert!(app.data.is_empty(), "data is dropped at a terminal status");
    let delete = cluster.http.delete(cluster.url(0, "/api/v1.0/appmaster/1")).send().await.expect("delete");
    assert_eq!(delete.status().as_u16(), 409, "killing a finished application is a conflict");
    let (status, version) = cluster.get(0, "/api/v1.0/version").await.expect("version");
    assert_eq!(status, 200);
    assert!(version.as_str().is_some_and(|v| v.starts_with("gearpump-master")));
    let (status, master) = cluster.get(0, "/api/v1.0/master").await.expect("master");
    assert_eq!(status, 200);
    let description = wire::<MasterAnswer>(&master).master_description;
    assert_eq!(description.master_status, "leader");
    let (status, config) = cluster.get(0, "/api/v1.0/master/config").await.expect("config");
    assert_eq!(status, 200);
    assert!(wire::<ConfigAnswer>(&config).config.contains_key("gearpump.cluster.masters"), "{config}");
    let metrics = cluster
        .http
        .get(cluster.url(0, "/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(metrics.contains("gearpump_master_role{role=\"leader\"} 1"), "{metrics}");
    assert!(metrics.contains("gearpump_master_peer_rpc_seconds_bucket"), "{metrics}");
    // The applied state's hash at its index, the same in the JSON and the metrics.
    let (hash, index) = (description.state_hash, description.applied_index);
    assert!(hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()), "{master}");
    assert!(index > 0, "{master}");
    assert!(
        metrics.contains(&format!("gearpump_master_state_hash_index{{sha256=\"{hash}\"}} {index}")),
        "{metrics}"
    );
}

#[tokio::test]
async fn peer_routes_require_the_cluster_secret_when_configured() {
    let secret_dir = tempfile::tempdir().expect("dir");
    let secret_file = secret_dir.path().join("cluster.secret");
    std::fs::write(&secret_file, "0123456789abcdef0123456789abcdef\n").expect("secret");
    let cluster = TestCluster::start(Options {
        masters: 3,
        extra_conf: format!("gearpump.master.secret-file = \"{}\"", secret_file.display()),
        ..Options::default()
    });
    cluster.wait_until_ready(Duration::from_secs(20)).await;
    let (status, body) = cluster.get(0, "/peer/status").await.expect("answer");
    assert_json_error(status, &body, 401, "cluster secret");
    let response = cluster
        .http
        .get(cluster.url(0, "/peer/status"))
        .header("x-gearpump-cluster-secret", "0123456789abcdef0123456789abcdef")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status().as_u16(), 200);
    let log = std::fs::read_to_string(cluster.log_path(0)).expect("log");
    assert!(log.contains("refused a peer request without the cluster secret"), "{log}");
}

#[tokio::test]
async fn unused_jars_are_removed_after_retention_and_live_ones_never() {
    let cluster = TestCluster::start(Options {
        masters: 1,
        extra_conf: "gearpump.jarstore.retention = 2s".into(),
        ..Options::default()
    });
    cluster.wait_until_ready(Duration::from_secs(20)).await;
    let (_, live) = upload(&cluster, "live.jar", b"live".to_vec(), Some("Main")).await;
    let (_, done) = upload(&cluster, "done.jar", b"done".to_vec(), Some("Main")).await;
    let (live, done): (SubmitAnswer, SubmitAnswer) = (wire(&live), wire(&done));
    let done_id = done.app_id;
    let kill = cluster.http.delete(cluster.url(0, &format!("/api/v1.0/appmaster/{done_id}"))).send().await;
    assert_eq!(kill.expect("kill").status().as_u16(), 200);
    // An orphan: in the store, never registered, dated long ago by its key.
    std::fs::write(cluster.dir.path().join("jars/1000-orphan.jar"), b"orphan").expect("orphan");

    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let jars = stored_jars(&cluster);
        let done_gone = !jars.contains(&done.jar);
        if done_gone && !jars.contains(&"1000-orphan.jar".to_string()) {
            assert!(jars.contains(&live.jar), "the live app's jar stays");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "sweep did not run: {jars:?}\n{}", cluster.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let path = format!("/api/v1.0/jarstore/download?file={}", done.jar);
    assert_eq!(cluster.get(0, &path).await.expect("answer").0, 404, "the removed jar is forgotten too");
    let path = format!("/api/v1.0/jarstore/download?file={}", live.jar);
    assert_eq!(cluster.get(0, &path).await.expect("answer").0, 200);
}

/// A client retrying with its `Idempotency-Key` gets the first answer, not a second
/// application; the same key with a different request is refused with 422; a bad key is a 400.
#[tokio::test]
async fn idempotency_keys_make_retries_safe() {
    let cluster = single().await;
    let form = |main_class: &str| {
        multipart::Form::new()
            .text("mainClass", main_class.to_string())
            .part("jar", multipart::Part::bytes(vec![1u8; 512]).file_name("idem.jar"))
    };
    let send = |key: &'static str, main_class: &str| {
        cluster
            .http
            .post(cluster.url(0, "/api/v1.0/master/submitapp"))
            .header("Idempotency-Key", key)
            .multipart(form(main_class))
            .send()
    };
    let first = send("client-retry-1", "io.x.Main").await.expect("submit");
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["idempotency-key"], "client-retry-1");
    let first: SubmitAnswer = first.json().await.expect("json");
    let again: SubmitAnswer =
        send("client-retry-1", "io.x.Main").await.expect("submit").json().await.expect("json");
    assert_eq!(again.app_id, first.app_id, "{again:?}");
    assert_eq!(again.jar, first.jar, "the answer names the first upload's jar: {again:?}");
    let (_, list) = cluster.get(0, "/api/v1.0/master/applist").await.expect("applist");
    assert_eq!(wire::<AppList>(&list).app_masters.len(), 1, "{list}");
    // The repeated upload is not left behind in the store.
    assert_eq!(stored_jars(&cluster).len(), 1, "{:?}", stored_jars(&cluster));

    let other = send("client-retry-1", "io.x.Other").await.expect("submit");
    assert_eq!(other.status(), 422);
    let body: Value = other.json().await.expect("json");
    assert_json_error(422, &body, 422, "Idempotency-Key");

    let bad = send("has a space", "io.x.Main").await.expect("submit");
    assert_eq!(bad.status(), 400);

    // A write without a key gets one assigned and learns it.
    let put =
        cluster.http.put(cluster.url(0, "/api/v1.0/appmaster/1/data/k")).body("v").send().await.expect("put");
    assert_eq!(put.status(), 200);
    assert_eq!(put.headers()["idempotency-key"].len(), 32);
}

/// The document a master serves is the one the code generates (and `api::openapi`'s unit tests
/// hold that to the router and to docs/openapi.json).
#[tokio::test]
async fn the_served_openapi_document_is_the_generated_one() {
    let cluster = single().await;
    let (status, served) = cluster.get(0, gearpump_master::api::openapi::PATH).await.expect("answer");
    assert_eq!(status, 200, "{served}");
    let generated: Value =
        serde_json::from_str(&gearpump_master::api::openapi::document_json()).expect("generated JSON");
    assert_eq!(served, generated);
    assert!(served["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "not OpenAPI 3");
}
