//! Issue #10 on loopback: masters speaking TLS with certificates from a cluster CA, clients
//! with bearer tokens and roles, and every bad TLS or token file refused at start with 78.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::certs::{self, write_private, Ca, Secured, TlsPaths};
use common::{free_ports, make_jar, wire, Options, TestCluster, MASTER_BIN};
use gearpump_master::wire::{ErrorBody, MasterAnswer, MembersView, MembershipChange};
use reqwest::multipart;
use serde_json::{json, Value};

const ADMIN: &str = certs::ADMIN_TOKEN;
const SUBMIT: &str = certs::SUBMIT_TOKEN;
const READ: &str = certs::READ_TOKEN;
const SECRET: &str = certs::SECRET;

/// A 3-master cluster with TLS, tokens and a cluster secret; the CA in the returned tempdir.
fn secure_cluster() -> (TestCluster, tempfile::TempDir, Ca) {
    let certs = tempfile::tempdir().expect("cert dir");
    let secured = Secured::write(certs.path());
    let cluster = TestCluster::start(Options {
        extra_conf: secured.conf.clone(),
        client_ca: Some(secured.master.ca.clone()),
        ..Options::default()
    });
    (cluster, certs, secured.ca)
}

async fn call(cluster: &TestCluster, request: reqwest::RequestBuilder, token: Option<&str>) -> (u16, Value) {
    let request = match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    };
    let response = request.send().await.expect("an answer");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    let _ = cluster;
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn submit_form(jar: &Path) -> multipart::Form {
    let bytes = std::fs::read(jar).expect("read jar");
    multipart::Form::new()
        .text("mainClass", "io.x.Main")
        .part("jar", multipart::Part::bytes(bytes).file_name("secure.jar"))
}

async fn term_of(cluster: &TestCluster, index: usize) -> u64 {
    let (_, body) = call(cluster, cluster.http.get(cluster.url(index, "/api/v1.0/master")), Some(READ)).await;
    wire::<MasterAnswer>(&body).master_description.term
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_with_tokens_forms_enforces_roles_and_fails_over() {
    let (mut cluster, certs, _ca) = secure_cluster();
    let leader = cluster.wait_until_ready(Duration::from_secs(30)).await;
    let http = cluster.http.clone();
    let url = |path: &str| cluster.url(0, path);

    // Health stays open; everything else needs a token.
    assert_eq!(call(&cluster, http.get(url("/health/live")), None).await.0, 200);
    let (status, body) = call(&cluster, http.get(url("/api/v1.0/master/applist")), None).await;
    assert_eq!(status, 401, "{body}");
    assert!(wire::<ErrorBody>(&body).error.contains("needs a token"), "{body}");
    let (status, _) =
        call(&cluster, http.get(url("/api/v1.0/master/applist")), Some("not-a-token-at-all-xx")).await;
    assert_eq!(status, 401);
    assert_eq!(call(&cluster, http.get(url("/api/v1.0/master/applist")), Some(READ)).await.0, 200);

    // Submitting: read is too weak, submit may.
    let jar = make_jar(certs.path(), "secure.jar", 1000, 1);
    let submit = || http.post(url("/api/v1.0/master/submitapp")).multipart(submit_form(&jar));
    let (status, body) = call(&cluster, submit(), Some(READ)).await;
    assert_eq!(status, 403, "{body}");
    assert!(wire::<ErrorBody>(&body).error.contains("needs role submit"), "{body}");
    let (status, body) = call(&cluster, submit(), Some(SUBMIT)).await;
    assert_eq!(status, 200, "{body}");

    // Membership: admin only.
    let members =
        || http.post(url("/api/v1.0/master/members")).json(&MembershipChange::Remove(cluster.address(2)));
    assert_eq!(call(&cluster, members(), None).await.0, 401);
    assert_eq!(call(&cluster, members(), Some(SUBMIT)).await.0, 403);
    let bogus = http.post(url("/api/v1.0/master/members")).json(&json!({ "bogus": 1 }));
    assert_eq!(call(&cluster, bogus, Some(ADMIN)).await.0, 400, "an admin gets through to the handler");

    // Peer routes: a client without a master certificate is refused even with a token.
    let (status, _) = call(&cluster, http.post(url("/peer/raft/vote")).json(&json!({})), Some(ADMIN)).await;
    assert_eq!(status, 401);

    // gear with the CA and a token file works; without a token it says so.
    let token_file = certs.path().join("gear-token");
    write_private(&token_file, READ, 0o600);
    let ca = certs.path().join("node-ca.pem");
    let (ok, out, err) = cluster.gear(&[
        "--ca",
        ca.to_str().expect("utf-8"),
        "--token-file",
        token_file.to_str().expect("utf-8"),
        "info",
    ]);
    assert!(ok, "gear info: {out}{err}");
    assert!(out.contains("secure.jar") || out.contains("io.x") || out.contains("APPID"), "{out}");
    let (ok, _, err) = cluster.gear(&["--ca", ca.to_str().expect("utf-8"), "info"]);
    assert!(!ok);
    assert!(err.contains("no token was sent") && err.contains("401"), "{err}");
    let (ok, _, err) = cluster.gear(&["--token-file", token_file.to_str().expect("utf-8"), "info"]);
    assert!(!ok, "plain HTTP against a TLS port fails: {err}");

    // Fail-over as before.
    let before = term_of(&cluster, 0).await;
    cluster.kill(cluster.index_of(&leader));
    let started = Instant::now();
    loop {
        let new_leader = cluster.wait_until_ready(Duration::from_secs(20)).await;
        if new_leader != leader {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no new leader under TLS");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("fail-over under TLS: {:?}", started.elapsed());
    let survivor = (0..3).find(|i| cluster.is_running(*i)).expect("a survivor");
    assert!(term_of(&cluster, survivor).await > before);
    let (status, body) = call(
        &cluster,
        http.post(cluster.url(survivor, "/api/v1.0/master/submitapp")).multipart(submit_form(&jar)),
        Some(SUBMIT),
    )
    .await;
    assert_eq!(status, 200, "a write after fail-over: {body}");

    // Neither the secret nor any token is in any log.
    for index in 0..3 {
        let log = std::fs::read_to_string(cluster.log_path(index)).expect("log");
        for secret in [ADMIN, SUBMIT, READ, SECRET, "not-a-token-at-all-xx"] {
            assert!(!log.contains(secret), "master {index} logged a secret");
        }
    }
}

/// A client certificate from another CA, or from the cluster CA naming no master, is refused
/// at the handshake; the cluster's term does not move.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_and_misnamed_certificates_cannot_reach_the_peer_routes() {
    let (cluster, certs, ca) = secure_cluster();
    cluster.wait_until_ready(Duration::from_secs(30)).await;
    let term = term_of(&cluster, 0).await;
    let ca_file = certs.path().join("node-ca.pem");

    let rogue_ca = Ca::new("rogue CA");
    let foreign = rogue_ca.issue(&["127.0.0.1"]);
    let misnamed = ca.issue(&["evil.example"]);
    for (label, issued) in [("another CA", foreign), ("a name outside the masters list", misnamed)] {
        let client = TlsPaths::write(
            certs.path(),
            "refused",
            &std::fs::read_to_string(&ca_file).expect("CA"),
            &issued,
        )
        .client();
        for index in 0..3 {
            // A vote for a far higher term: had it been delivered, the term would move.
            let vote = json!({ "vote": { "leader_id": { "term": term + 100, "node_id": 99 }, "committed": false }, "last_log_id": null });
            let answer = client.post(cluster.url(index, "/peer/raft/vote")).json(&vote).send().await;
            assert!(answer.is_err(), "{label}: the handshake must fail, got {answer:?}");
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(term_of(&cluster, 0).await, term, "the term moved");
    let log = std::fs::read_to_string(cluster.log_path(0)).expect("log");
    assert!(log.contains("refused a TLS connection"), "the refusal is logged:\n{log}");
    assert!(log.contains("remote=127.0.0.1:"), "with the peer's address:\n{log}");
}

/// Starts a one-master process on `conf` and waits for it to exit; (code, stderr).
fn run_master(dir: &Path, conf: &str) -> (Option<i32>, String) {
    let port = free_ports(1)[0];
    let path = dir.join(format!("bad-{port}.conf"));
    std::fs::write(&path, format!("gearpump.cluster.masters = [\"127.0.0.1:{port}\"]\n{conf}"))
        .expect("conf");
    let mut child = Command::new(MASTER_BIN)
        .arg("--config")
        .arg(&path)
        .arg("--state-dir")
        .arg(dir.join(format!("state-{port}")))
        .env_remove("NOTIFY_SOCKET")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start");
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("output");
            return (None, String::from_utf8_lossy(&output.stderr).into_owned());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().expect("output");
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn bad_tls_and_token_files_exit_78_naming_the_file_and_the_fix() {
    let dir = tempfile::tempdir().expect("dir");
    let ca = Ca::new("cluster CA");
    let other_ca = Ca::new("other CA");
    let good = ca.issue(&["127.0.0.1"]);
    let write = |prefix: &str, ca_pem: &str, issued: &common::certs::Issued| {
        TlsPaths::write(dir.path(), prefix, ca_pem, issued)
    };

    let readable = write("readable", &ca.pem(), &good);
    write_private(&readable.key, &good.key, 0o640);
    let mismatched = write("mismatched", &ca.pem(), &good);
    write_private(&mismatched.key, &ca.issue(&["127.0.0.1"]).key, 0o600);
    let expired = write("expired", &ca.pem(), &ca.issue_valid(&["127.0.0.1"], -30, -1));
    let unsigned = write("unsigned", &ca.pem(), &other_ca.issue(&["127.0.0.1"]));
    let misnamed = write("misnamed", &ca.pem(), &ca.issue(&["elsewhere.example"]));
    let tokens = dir.path().join("tokens");
    write_private(&tokens, &format!("admin {ADMIN}\n"), 0o644);
    let cases = [
        (readable.conf(), readable.key.clone(), "group or others may read it", "chmod 600"),
        (
            mismatched.conf(),
            mismatched.cert.clone(),
            "does not match the key",
            "install the certificate issued for this key",
        ),
        (expired.conf(), expired.cert.clone(), "has expired", "--rotate-certs"),
        (unsigned.conf(), unsigned.cert.clone(), "did not sign this certificate", "fix:"),
        (
            misnamed.conf(),
            misnamed.cert.clone(),
            "does not name this master's host",
            "subject alternative name",
        ),
        (
            format!("gearpump.master.auth.tokens-file = \"{}\"\n", tokens.display()),
            tokens.clone(),
            "lets every user of this machine read the tokens",
            "chmod 640",
        ),
        (
            format!("gearpump.master.tls.ca-file = \"{}\"\n", readable.ca.display()),
            readable.ca.clone(),
            "missing gearpump.master.tls.cert-file",
            "set ca-file, cert-file and key-file together",
        ),
    ];
    for (conf, file, problem, fix) in cases {
        let (code, stderr) = run_master(dir.path(), &conf);
        assert_eq!(code, Some(78), "{problem}: {stderr}");
        if !problem.starts_with("missing") {
            assert!(
                stderr.contains(&file.display().to_string()),
                "{problem}: names {}: {stderr}",
                file.display()
            );
        }
        assert!(stderr.contains(problem) && stderr.contains(fix), "{problem} / {fix}:\n{stderr}");
    }
}

/// A certificate expiring within 30 days: the master starts, and warns at start and in
/// `GET master`.
#[tokio::test]
async fn a_certificate_expiring_soon_is_warned_about() {
    let certs = tempfile::tempdir().expect("dir");
    let ca = Ca::new("cluster CA");
    let tls = TlsPaths::write(certs.path(), "soon", &ca.pem(), &ca.issue_valid(&["127.0.0.1"], -1, 10));
    let cluster = TestCluster::start(Options {
        masters: 1,
        extra_conf: tls.conf(),
        client_ca: Some(tls.ca.clone()),
        ..Options::default()
    });
    cluster.wait_until_ready(Duration::from_secs(20)).await;
    let (status, body) = cluster.get(0, "/api/v1.0/master").await.expect("master");
    assert_eq!(status, 200);
    let warnings = wire::<MasterAnswer>(&body).master_description.warnings.join("\n");
    assert!(warnings.contains("expires within 30 days"), "{warnings}");
    let log = std::fs::read_to_string(cluster.log_path(0)).expect("log");
    assert!(log.contains("expires within 30 days"), "{log}");
}

/// A master added at run time under TLS: its certificate names a host (`localhost`) that the
/// others' masters list lacks, so it is refused until the membership change lists it, then it
/// catches up and votes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_added_at_run_time_is_accepted_once_it_is_a_member() {
    let (cluster, certs, ca) = secure_cluster();
    cluster.wait_until_ready(Duration::from_secs(30)).await;
    let port = free_ports(1)[0];
    let address = format!("localhost:{port}");
    let tls = TlsPaths::write(certs.path(), "added", &ca.pem(), &ca.issue(&["localhost"]));
    let mut masters: Vec<String> = (0..3).map(|i| format!("\"{}\"", cluster.address(i))).collect();
    masters.push(format!("\"{address}\""));
    let conf = certs.path().join("added.conf");
    let tokens = certs.path().join("tokens");
    let secret = certs.path().join("secret");
    std::fs::write(
        &conf,
        format!(
            "gearpump.hostname = \"localhost\"\ngearpump.master.bind-host = \"127.0.0.1\"\n\
             gearpump.cluster.masters = [{}]\ngearpump.jarstore.rootpath = \"file://{}\"\n{}\
             gearpump.master.auth.tokens-file = \"{}\"\ngearpump.master.secret-file = \"{}\"\n",
            masters.join(", "),
            cluster.dir.path().join("jars").display(),
            tls.conf(),
            tokens.display(),
            secret.display()
        ),
    )
    .expect("conf");
    let log = std::fs::File::create(certs.path().join("added.log")).expect("log");
    let mut child = Command::new(MASTER_BIN)
        .arg("--config")
        .arg(&conf)
        .arg("--state-dir")
        .arg(certs.path().join("added-state"))
        .env_remove("NOTIFY_SOCKET")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::from(log))
        .spawn()
        .expect("start the added master");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let before = std::fs::read_to_string(cluster.log_path(0)).expect("log");
    let (status, view) = call(
        &cluster,
        cluster
            .http
            .post(cluster.url(0, "/api/v1.0/master/members"))
            .json(&MembershipChange::Add(address.clone())),
        Some(ADMIN),
    )
    .await;
    let added_log = std::fs::read_to_string(certs.path().join("added.log")).unwrap_or_default();
    assert_eq!(status, 200, "{view}\n{added_log}");
    assert!(wire::<MembersView>(&view).voters.contains(&address), "{view}");
    // Its own calls to the others (status polls) now pass their handshake: it sees all four.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let url = format!("https://localhost:{port}/api/v1.0/master");
        let (_, body) = call(&cluster, cluster.http.get(url), Some(READ)).await;
        let cluster_view = serde_json::from_value::<MasterAnswer>(body.clone())
            .map(|a| a.master_description.cluster)
            .unwrap_or_default();
        if cluster_view.len() == 4 && cluster_view.iter().all(|m| m.reachable) {
            break;
        }
        assert!(Instant::now() < deadline, "the added master does not reach the others: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        before.contains("refused a TLS connection") || added_log.contains("refused"),
        "before the change its calls were refused"
    );
}

/// Reads until the server closes the connection or `within` passes; true when it closed.
fn closed_within(stream: &mut std::net::TcpStream, within: Duration) -> bool {
    use std::io::Read;
    stream.set_read_timeout(Some(within)).expect("timeout");
    let mut buffer = [0u8; 4096];
    let started = Instant::now();
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false
            }
            Err(_) => return true,
        }
        if started.elapsed() > within {
            return false;
        }
    }
}

/// Slow headers, connection floods and huge headers cannot hold the port; nothing a client
/// sends comes back as HTML.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_floods_and_huge_headers_cannot_hold_the_port() {
    use std::io::Write;
    let cluster = TestCluster::start(Options { masters: 1, ..Options::default() });
    cluster.wait_until_ready(Duration::from_secs(20)).await;
    let address = cluster.address(0);

    // Slowloris: a header line every second never completes the request; the port closes it
    // after the 10 s header deadline.
    let slow = {
        let address = address.clone();
        std::thread::spawn(move || {
            let mut stream = std::net::TcpStream::connect(&address).expect("connect");
            stream.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n").expect("write");
            let started = Instant::now();
            for i in 0..20 {
                if stream.write_all(format!("X-Slow-{i}: y\r\n").as_bytes()).is_err() {
                    break;
                }
                if closed_within(&mut stream, Duration::from_secs(1)) {
                    return Some(started.elapsed());
                }
            }
            None
        })
    };

    // A flood from one address: beyond 128 open connections (gearpump.master.max-connections-
    // per-address's default), the next ones are closed at once, and the log names the key.
    let mut held: Vec<std::net::TcpStream> =
        (0..128).map(|_| std::net::TcpStream::connect(&address).expect("connect")).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut extra = std::net::TcpStream::connect(&address).expect("connect");
    assert!(closed_within(&mut extra, Duration::from_secs(3)), "connection 129 from one address was kept");
    let log = std::fs::read_to_string(cluster.log_path(0)).expect("log");
    assert!(
        log.contains("128 are open from this address (gearpump.master.max-connections-per-address)"),
        "{log}"
    );
    held.clear();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(cluster.get(0, "/health/live").await.expect("served again").0, 200);

    // Headers beyond 64 KiB are refused.
    let huge = cluster
        .http
        .get(cluster.url(0, "/health/live"))
        .header("x-huge", "a".repeat(100 * 1024))
        .send()
        .await;
    assert!(huge.map(|r| r.status().as_u16() >= 400).unwrap_or(true), "a 100 KiB header was accepted");

    // A path full of markup comes back as JSON, not HTML, with nosniff.
    let response =
        cluster.http.get(cluster.url(0, "/%3Cscript%3Ealert(1)%3C/script%3E")).send().await.expect("answer");
    assert_eq!(response.status().as_u16(), 404);
    let headers = response.headers().clone();
    assert_eq!(headers.get("content-type").and_then(|v| v.to_str().ok()), Some("application/json"));
    assert_eq!(headers.get("x-content-type-options").and_then(|v| v.to_str().ok()), Some("nosniff"));

    let closed_after =
        tokio::task::spawn_blocking(move || slow.join().expect("slow client")).await.expect("join");
    let closed_after = closed_after.expect("the slow client was never cut off");
    assert!(closed_after < Duration::from_secs(15), "cut off after {closed_after:?}");
    eprintln!("slowloris connection closed after {closed_after:?}");
}

/// A backup holds every application's data: admin only. `recover` asks the old members over
/// mutual TLS with the cluster secret, so masters that run are seen running and it refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_are_for_admins_and_recover_sees_the_tls_masters_that_answer() {
    let (mut cluster, _certs, _ca) = secure_cluster();
    cluster.wait_until_ready(Duration::from_secs(30)).await;
    let snapshot = || cluster.http.get(cluster.url(1, "/api/v1.0/master/snapshot"));
    assert_eq!(call(&cluster, snapshot(), Some(SUBMIT)).await.0, 403);
    let response = snapshot().bearer_auth(ADMIN).send().await.expect("snapshot");
    assert_eq!(response.status().as_u16(), 200);
    let bytes = response.bytes().await.expect("body");
    let backup = gearpump_master::backup::Backup::decode(&bytes).expect("a valid backup");
    assert_eq!(backup.origin.voters.len(), 3, "{:?}", backup.origin.voters);

    cluster.kill(0);
    let output = Command::new(MASTER_BIN)
        .args(["recover", "--force-new-cluster", "--config"])
        .arg(&cluster.conf)
        .args(["--ip", "127.0.0.1", "--port", &cluster.ports[0].to_string(), "--state-dir"])
        .arg(cluster.state_dir(0))
        .output()
        .expect("run recover");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(75), "{stderr}");
    for index in 1..3 {
        assert!(stderr.contains(&format!("{}: answers as", cluster.address(index))), "{stderr}");
    }
}
