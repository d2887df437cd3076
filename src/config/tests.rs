use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

fn load_text(text: &str) -> Result<MasterConfig, ConfigError> {
    load_str(Path::new("gear.conf"), text, &Overrides::default())
}

fn load_as(text: &str, ip: &str, port: u16) -> Result<MasterConfig, ConfigError> {
    let overrides = Overrides { ip: Some(ip.into()), port: Some(port), state_dir: None };
    load_str(Path::new("gear.conf"), text, &overrides)
}

fn error_text(text: &str) -> String {
    match load_text(text) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(error) => error.to_string(),
    }
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

const THREE: &str = r#"
gearpump {
  hostname = "node2"
  cluster {
    masters = ["node1:3000", "node2:3000", "node3:3000"]
  }
  jarstore.rootpath = "file:///mnt/jars"
}
"#;

#[test]
fn three_masters_find_their_own_entry_from_hostname() {
    let config = load_text(THREE).expect("valid");
    assert_eq!(config.masters.len(), 3);
    assert_eq!(config.this_master.to_string(), "node2:3000");
    assert_eq!(config.bind_host, "node2");
    assert_eq!(config.jar_store, JarStoreRoot::Shared("/mnt/jars".into()));
    assert_eq!(config.failover_timeout, DEFAULT_FAILOVER);
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
}

#[test]
fn flags_pick_the_entry_and_win_over_hostname() {
    let config = load_as(THREE, "node3", 3000).expect("valid");
    assert_eq!(config.this_master.to_string(), "node3:3000");
    assert_eq!(config.origins["this master"], Origin::Flag("-ip/-port"));
}

#[test]
fn gearpump_0_8_shipped_gear_conf_loads_as_it_is() {
    let config =
        load(Some(&fixture("gearpump-0.8-gear.conf")), &Overrides::default()).expect("Gearpump's file loads");
    assert_eq!(config.this_master.to_string(), "127.0.0.1:3000");
    // Its relative "jarstore/" lands under the state directory.
    assert_eq!(config.jar_store, JarStoreRoot::Local(PathBuf::from("/var/lib/gearpump/jarstore/")));
    // auto-down-unreachable-after = 15s is a ceiling we are well within.
    assert_eq!(config.failover_timeout, DEFAULT_FAILOVER);
    assert!(config.warnings.iter().all(|w| !w.contains("unknown key")), "{:?}", config.warnings);
}

#[test]
fn gearpump_0_8_geardefault_parses_and_only_its_empty_masters_list_is_refused() {
    let error = load(Some(&fixture("gearpump-0.8-geardefault.conf")), &Overrides::default())
        .expect_err("masters = []");
    let text = error.to_string();
    assert!(text.contains("gearpump.cluster.masters: the list of masters is empty"), "{text}");
    assert!(text.contains("gearpump-0.8-geardefault.conf:21:"), "{text}");
}

#[test]
fn malformed_hocon_names_file_line_and_column() {
    let text = error_text("gearpump {\n  hostname = \"node1\"\n  cluster { masters = [\"a:1\" }\n}\n");
    assert!(text.starts_with("gear.conf:3:"), "{text}");
    assert!(text.contains("fix:"), "{text}");
}

#[test]
fn empty_duplicate_and_malformed_masters_are_explained() {
    let empty = error_text("gearpump.cluster.masters = []");
    assert!(
        empty.contains("gear.conf:1:1: gearpump.cluster.masters: the list of masters is empty"),
        "{empty}"
    );
    let duplicate = error_text(r#"gearpump.cluster.masters = ["a:1", "a:1"]"#);
    assert!(duplicate.contains("a:1 is listed twice"), "{duplicate}");
    let malformed = error_text(r#"gearpump.cluster.masters = ["node1"]"#);
    assert!(malformed.contains("entry 1 \"node1\" is malformed: expected HOST:PORT"), "{malformed}");
    let bad_port = error_text(r#"gearpump.cluster.masters = ["node1:99999"]"#);
    assert!(bad_port.contains("port \"99999\" is not a number from 1 to 65535"), "{bad_port}");
    let not_a_list = error_text(r#"gearpump.cluster.masters = "node1:3000""#);
    assert!(not_a_list.contains("expected a list"), "{not_a_list}");
}

#[test]
fn a_master_not_in_the_list_is_told_which_key_to_change() {
    let text = error_text(
        "gearpump.hostname = \"node9\"\ngearpump.cluster.masters = [\"node1:3000\", \"node2:3000\"]\n",
    );
    assert!(text.contains("this master (node9:<any port>, from gearpump.hostname) is not in the masters list [node1:3000, node2:3000]"), "{text}");
    assert!(text.contains("gear.conf:2:1:"), "{text}");
    assert!(text.contains("fix: add this master's host:port to gearpump.cluster.masters"), "{text}");
    let by_flag = load_as(THREE, "node1", 4000).expect_err("port not listed").to_string();
    assert!(by_flag.contains("this master (node1:4000, from -ip)"), "{by_flag}");
}

/// Found by fuzzing (fuzz/fuzz_targets/gear_conf.rs): this error alone did not say where the
/// masters list it complains about is.
#[test]
fn two_masters_on_this_host_without_a_port_name_the_file_and_line() {
    let text = error_text(
        "gearpump.hostname = \"node1\"\ngearpump.cluster.masters = [\"node1:3000\", \"node1:3001\"]\n",
    );
    assert!(text.contains("several masters in [node1:3000, node1:3001] are on host node1"), "{text}");
    assert!(text.contains("gear.conf:2:1:"), "{text}");
    assert!(text.contains("fix: start this master with -port PORT"), "{text}");
}

#[test]
fn several_masters_on_one_host_need_a_port() {
    let text = error_text(r#"gearpump.cluster.masters = ["127.0.0.1:3000", "127.0.0.1:3001"]"#);
    assert!(text.contains("start this master with -port PORT"), "{text}");
    let chosen =
        load_as(r#"gearpump.cluster.masters = ["127.0.0.1:3000", "127.0.0.1:3001"]"#, "127.0.0.1", 3001);
    assert_eq!(chosen.expect("valid").this_master.port, 3001);
}

#[test]
fn jar_store_schemes() {
    let root =
        |value: &str| load_text(&format!("gearpump.jarstore.rootpath = \"{value}\"")).map(|c| c.jar_store);
    assert_eq!(
        root("hdfs://nn:9000/g/jars").expect("hdfs"),
        JarStoreRoot::Hdfs("hdfs://nn:9000/g/jars".into())
    );
    assert_eq!(root("hdfs://ns1/g/").expect("nameservice"), JarStoreRoot::Hdfs("hdfs://ns1/g/".into()));
    assert_eq!(root("/srv/jars").expect("absolute"), JarStoreRoot::Local("/srv/jars".into()));
    let unknown = root("s3://bucket/jars").expect_err("unknown scheme").to_string();
    assert!(unknown.contains("unknown jar store scheme \"s3\""), "{unknown}");
    assert!(root("file://relative").is_err());
    assert!(root("hdfs:///no-namenode").is_err());
}

#[test]
fn camel_case_root_path_is_accepted_with_a_note() {
    let config = load_text(r#"gearpump.jarstore.rootPath = "file:///nfs/jars""#).expect("valid");
    assert_eq!(config.jar_store, JarStoreRoot::Shared("/nfs/jars".into()));
    assert!(config.warnings.iter().any(|w| w.contains("rootPath")), "{:?}", config.warnings);
}

#[test]
fn local_store_with_several_masters_warns_that_it_is_not_ha() {
    let config = load_as(r#"gearpump.cluster.masters = ["a:1", "b:1"]"#, "a", 1).expect("valid");
    assert!(config.warnings.iter().any(|w| w.contains("cannot be recovered")), "{:?}", config.warnings);
}

#[test]
fn failover_keys_and_ranges() {
    let explicit = load_text("gearpump.master.failover-timeout = 2s").expect("valid");
    assert_eq!(explicit.failover_timeout, Duration::from_secs(2));
    let guide = load_text("master.akka.cluster.auto-down-unreachable-after = 250ms").expect("valid");
    assert_eq!(guide.failover_timeout, Duration::from_millis(250));
    let ceiling = load_text("gearpump-master.akka.cluster.auto-down-unreachable-after = 15s").expect("valid");
    assert_eq!(ceiling.failover_timeout, DEFAULT_FAILOVER);
    let off = load_text("gearpump-master.akka.cluster.auto-down-unreachable-after = off").expect("valid");
    assert_eq!(off.failover_timeout, DEFAULT_FAILOVER);
    let bad = error_text("gearpump.master.failover-timeout = soon");
    assert!(bad.contains("gearpump.master.failover-timeout: not a duration"), "{bad}");
    let range = error_text("gearpump.master.failover-timeout = 5ms");
    assert!(range.contains("out of range") && range.contains("200ms"), "{range}");
}

#[test]
fn unreadable_file_is_an_error_not_an_empty_config() {
    let error = load(Some(Path::new("/nonexistent/gear.conf")), &Overrides::default()).expect_err("missing");
    assert!(error.to_string().contains("/nonexistent/gear.conf: cannot read"), "{error}");
    assert_eq!(error.exit_code(), 78);
}

#[test]
fn unknown_keys_get_a_warning_with_the_nearest_key() {
    let config = load_text("gearpump.master.failover-timout = 1s").expect("valid");
    assert!(
        config.warnings.iter().any(|w| w.contains(
            "unknown key gearpump.master.failover-timout (did you mean gearpump.master.failover-timeout?)"
        )),
        "{:?}",
        config.warnings
    );
}

#[test]
fn env_substitution_and_overlay() {
    std::env::set_var("GEARPUMP_TEST_HOST_9", "node3");
    let text = r#"
        gearpump.cluster.masters = ["node1:3000", "node3:3000"]
        gearpump.hostname = ${?GEARPUMP_TEST_HOST_9}
        gearpump-master { gearpump.master.request-timeout = 9s }
    "#;
    let config = load_text(text).expect("valid");
    assert_eq!(config.this_master.to_string(), "node3:3000");
    assert_eq!(config.request_timeout, Duration::from_secs(9));
}

#[test]
fn sizes_and_numbers() {
    let config = load_text("gearpump.jarstore.max-size = 1 MiB").expect("valid");
    assert_eq!(config.jar_max_size, 1 << 20);
    let explained = config.explain();
    let line = explained.lines().find(|line| line.trim_start().starts_with("gearpump.jarstore.max-size "));
    assert!(line.is_some_and(|line| line.contains(" = 1048576 bytes")), "{explained}");
    assert!(error_text("gearpump.jarstore.max-size = lots").contains("expected a size"));
    assert!(error_text("gearpump.master.snapshot-every = 1").contains("out of range"));
}

#[test]
fn check_config_output_names_origins() {
    let config = load_text(THREE).expect("valid");
    let explained = config.explain();
    assert!(explained.contains("gearpump.cluster.masters"), "{explained}");
    assert!(explained.contains("# gear.conf:5 (gearpump.cluster.masters)"), "{explained}");
    assert!(explained.contains("built-in default"), "{explained}");
}

const README_START: &str =
    "<!-- gear.conf keys: generated from src/config/keys.rs; `UPDATE_README=1 cargo test --lib readme_key_table` rewrites it -->\n";
const README_END: &str = "<!-- end of gear.conf keys -->";

/// The README's key table is the key table rendered; CI (cargo test) fails when it is stale.
#[test]
fn readme_key_table_is_generated_from_the_key_table() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&path).expect("README.md");
    let start = readme.find(README_START).expect("README.md lacks the start marker of the key table")
        + README_START.len();
    let end =
        start + readme[start..].find(README_END).expect("README.md lacks the end marker of the key table");
    let expected = key_table_markdown();
    if readme[start..end] != expected {
        if std::env::var_os("UPDATE_README").is_some() {
            std::fs::write(&path, format!("{}{expected}{}", &readme[..start], &readme[end..]))
                .expect("write");
            return;
        }
        panic!(
            "README.md's key table is stale: run `UPDATE_README=1 cargo test --lib readme_key_table` \
             and commit README.md. Expected:\n{expected}"
        );
    }
}

#[test]
fn pekko_spellings_of_the_fail_over_ceiling_are_read() {
    for key in [
        "gearpump-master.pekko.cluster.auto-down-unreachable-after",
        "master.pekko.cluster.auto-down-unreachable-after",
    ] {
        let config = load_text(&format!("{key} = 300ms")).expect("valid");
        assert_eq!(config.failover_timeout, Duration::from_millis(300), "{key}");
        assert!(config.warnings.is_empty(), "{key}: {:?}", config.warnings);
        let bad = error_text(&format!("{key} = soon"));
        assert!(bad.contains(&format!("gear.conf:1:1: {key}: not a duration")), "{bad}");
    }
    let nested = load_text("gearpump-master { pekko { cluster { auto-down-unreachable-after = 250ms } } }");
    assert_eq!(nested.expect("valid").failover_timeout, Duration::from_millis(250));
}

#[test]
fn a_bad_jar_store_uri_is_a_configuration_error_at_load() {
    for (uri, problem) in [
        ("hdfs://nn:http/x", "\"http\" is not a port number"),
        ("hdfs://nn:0/x", "\"0\" is not a port number"),
        ("hdfs://u@nn:9000/x", "user names in the URI are not supported"),
        ("hdfs://nn/a/../b", "contains '.' or '..'"),
        ("hdfs://:9000/x", "has a port but no host"),
    ] {
        let error =
            load_text(&format!("gearpump.hostname = \"127.0.0.1\"\ngearpump.jarstore.rootpath = \"{uri}\""))
                .expect_err(uri);
        let text = error.to_string();
        assert!(text.starts_with("gear.conf:2:1: gearpump.jarstore.rootpath: "), "{text}");
        assert!(text.contains(problem), "{uri}: {text}");
        assert_eq!(error.exit_code(), 78);
    }
}

#[test]
fn unknown_keys_inside_the_daemon_overlays_are_warned_about() {
    let config = load_text(
        "gearpump-master { gearpump.master.request-timout = 9s }\ngearpump-worker { gearpump.cluster.mastrs = [] }\n",
    )
    .expect("valid");
    for expected in [
        "unknown key gearpump-master.gearpump.master.request-timout (did you mean gearpump.master.request-timeout?)",
        "unknown key gearpump-worker.gearpump.cluster.mastrs (did you mean gearpump.cluster.masters?)",
    ] {
        assert!(config.warnings.iter().any(|w| w.contains(expected)), "{expected}: {:?}", config.warnings);
    }
}

/// Every key of the table loads with its default, and a value of the wrong type is refused with
/// FILE:LINE:COL and the key's name: no key is validated later than at load.
#[test]
fn every_key_of_the_table_is_validated_at_load() {
    let defaults = load_text("").expect("built-in defaults");
    assert_eq!(
        defaults.effective().len(),
        keys::KEYS.len(),
        "one row per key but the ceiling, plus this master"
    );
    for key in keys::KEYS {
        let bad = match key.kind {
            keys::Kind::Text { .. }
            | keys::Kind::FreeText
            | keys::Kind::Choice { .. }
            | keys::Kind::JarRoot => "[1, 2]",
            keys::Kind::Masters => "\"node1:3000\"",
            _ => "\"soon\"",
        };
        let text = error_text(&format!("\n{} = {bad}\n", key.name));
        assert!(text.starts_with(&format!("gear.conf:2:1: {}: ", key.name)), "{text}");
    }
}

/// Half a TLS setup (master or worker) is refused at the line of the first TLS key set.
#[test]
fn part_of_the_tls_files_names_the_file_and_line() {
    let text = error_text(
        "gearpump.cluster.masters = [\"127.0.0.1:3000\"]\ngearpump.master.tls.cert-file = \"/c.pem\"\n",
    );
    assert!(text.starts_with("gear.conf:2:1: gearpump.master.tls.cert-file: "), "{text}");
    assert!(text.contains("missing gearpump.master.tls.ca-file, gearpump.master.tls.key-file"), "{text}");
    let worker = "gearpump.cluster.masters = [\"127.0.0.1:3000\"]\ngearpump-worker {\n  gearpump.worker.tls.key-file = \"/k.pem\"\n}\n";
    let text = super::workers::load_worker_str(Path::new("gear.conf"), worker)
        .expect_err("half a worker TLS setup")
        .to_string();
    assert!(text.starts_with("gear.conf:3:3: gearpump-worker.gearpump.worker.tls.key-file: "), "{text}");
}
