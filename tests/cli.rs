//! The binaries' edges: configuration errors exit 78 with a message that names the file, line,
//! key and fix; `--check-config` prints the effective configuration; `gear` explains bad input.

mod common;

use std::path::Path;
use std::process::Command;

use common::{GEAR_BIN, MASTER_BIN};

fn run_master_with(conf_text: &str, extra: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let conf = dir.path().join("gear.conf");
    std::fs::write(&conf, conf_text).expect("write conf");
    run_master(&conf, extra, dir.path())
}

fn run_master(conf: &Path, extra: &[&str], dir: &Path) -> (i32, String, String) {
    let output = Command::new(MASTER_BIN)
        .arg("--config")
        .arg(conf)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(extra)
        .output()
        .expect("run gearpump-master");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn assert_config_error(conf_text: &str, extra: &[&str], expected: &[&str]) {
    let (code, _, stderr) = run_master_with(conf_text, extra);
    assert_eq!(code, 78, "exit code for:\n{conf_text}\nstderr: {stderr}");
    for needle in expected {
        assert!(stderr.contains(needle), "missing {needle:?} in:\n{stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn malformed_hocon() {
    assert_config_error(
        "gearpump {\n  cluster.masters = [\"127.0.0.1:3000\"\n",
        &["--check-config"],
        &["gear.conf:", "configuration error", "fix:"],
    );
}

#[test]
fn empty_masters_list() {
    assert_config_error(
        "gearpump.cluster.masters = []\n",
        &["--check-config"],
        &["gear.conf:1:1:", "the list of masters is empty"],
    );
}

#[test]
fn malformed_and_duplicate_masters() {
    assert_config_error(
        "gearpump.cluster.masters = [\"127.0.0.1\"]\n",
        &["--check-config"],
        &["entry 1 \"127.0.0.1\" is malformed: expected HOST:PORT"],
    );
    assert_config_error(
        "gearpump.cluster.masters = [\"a:1\", \"a:1\"]\n",
        &["--check-config"],
        &["a:1 is listed twice"],
    );
}

#[test]
fn this_master_not_listed() {
    assert_config_error(
        "gearpump.cluster.masters = [\"node1:3000\", \"node2:3000\"]\n",
        &["-ip", "node9", "-port", "3000", "--check-config"],
        &[
            "this master (node9:3000, from -ip) is not in the masters list [node1:3000, node2:3000]",
            "gearpump.cluster.masters",
        ],
    );
}

#[test]
fn unknown_jar_store_scheme() {
    assert_config_error(
        "gearpump.jarstore.rootpath = \"s3://bucket/jars\"\n",
        &["--check-config"],
        &["gear.conf:1:1:", "unknown jar store scheme \"s3\"", "hdfs://"],
    );
}

#[test]
fn bad_durations() {
    assert_config_error(
        "gearpump.master.failover-timeout = fast\n",
        &["--check-config"],
        &["not a duration"],
    );
    assert_config_error(
        "master.akka.cluster.auto-down-unreachable-after = 1ms\n",
        &["--check-config"],
        &["master.akka.cluster.auto-down-unreachable-after", "out of range"],
    );
}

#[test]
fn unreadable_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (code, _, stderr) = run_master(&dir.path().join("missing.conf"), &[], dir.path());
    assert_eq!(code, 78, "{stderr}");
    assert!(stderr.contains("missing.conf: cannot read the configuration file"), "{stderr}");
}

#[test]
fn check_config_prints_effective_values_and_origins() {
    let (code, stdout, stderr) = run_master_with(
        "gearpump.hostname = \"127.0.0.1\"\ngearpump.cluster.masters = [\"127.0.0.1:3000\"]\ngearpump.master.failover-timout = 1s\n",
        &["--check-config"],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("(valid)"), "{stdout}");
    assert!(stdout.contains("gearpump.cluster.masters") && stdout.contains("gear.conf:2"), "{stdout}");
    assert!(stdout.contains("did you mean gearpump.master.failover-timeout?"), "{stdout}");
}

#[test]
fn gearpump_08_gear_conf_passes_check_config() {
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gearpump-0.8-gear.conf");
    let dir = tempfile::tempdir().expect("temp dir");
    let (code, stdout, stderr) = run_master(&conf, &["--check-config"], dir.path());
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("127.0.0.1:3000"), "{stdout}");
}

#[test]
fn wrong_flags_are_explained() {
    let output = Command::new(MASTER_BIN).args(["-port", "notaport"]).output().expect("run");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("invalid value 'notaport'"));
}

#[test]
fn port_in_use_is_explained() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (code, _, stderr) =
        run_master_with(&format!("gearpump.cluster.masters = [\"127.0.0.1:{port}\"]\n"), &[]);
    assert_eq!(code, 69, "{stderr}");
    assert!(stderr.contains("another process uses port"), "{stderr}");
}

#[test]
fn gear_reports_unreachable_masters_and_bad_arguments() {
    let port = common::free_ports(1)[0];
    let output = Command::new(GEAR_BIN)
        .args(["--master", &format!("127.0.0.1:{port}"), "info"])
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no master answered") && stderr.contains("connection refused"), "{stderr}");

    let output = Command::new(GEAR_BIN).args(["--master", "nohostport", "info"]).output().expect("run");
    assert!(String::from_utf8_lossy(&output.stderr).contains("--master \"nohostport\""));

    let output = Command::new(GEAR_BIN)
        .args(["--master", "127.0.0.1:1", "app", "-jar", "/nonexistent.jar", "Main"])
        .output()
        .expect("run");
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent.jar"), "names the file");
}

#[test]
fn shipped_gear_conf_is_valid_without_warnings() {
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/gear.conf");
    let dir = tempfile::tempdir().expect("temp dir");
    let (code, stdout, stderr) = run_master(&conf, &["--check-config"], dir.path());
    assert_eq!(code, 0, "{stderr}");
    assert!(!stdout.contains("warning:"), "{stdout}");
}

/// The case: a jar store URI with a port that is not a number passed `--check-config`,
/// then the master stopped at start with exit 1, so systemd restarted it in a loop. Both are a
/// configuration error (78) now, naming the file, line, column and key.
#[test]
fn a_bad_jar_store_uri_fails_check_config_and_start_with_78() {
    let port = common::free_ports(1)[0];
    let conf = format!(
        "gearpump.cluster.masters = [\"127.0.0.1:{port}\"]\ngearpump.jarstore.rootpath = \"hdfs://nn:http/x\"\n"
    );
    for extra in [&["--check-config"][..], &[][..]] {
        assert_config_error(
            &conf,
            extra,
            &["gear.conf:2:1: gearpump.jarstore.rootpath:", "\"http\" is not a port number", "fix:"],
        );
    }
}

/// Gearpump's releases on Pekko spell the fail-over bound with `pekko`: it is read, not ignored.
#[test]
fn pekko_fail_over_bound_is_read() {
    let (code, stdout, stderr) = run_master_with(
        "gearpump.cluster.masters = [\"127.0.0.1:3000\"]\ngearpump-master.pekko.cluster.auto-down-unreachable-after = 300ms\n",
        &["--check-config"],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("gearpump.master.failover-timeout")
            && stdout.contains("300ms")
            && stdout.contains("gearpump-master.pekko.cluster.auto-down-unreachable-after"),
        "{stdout}"
    );
}
