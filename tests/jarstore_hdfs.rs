//! The jar store contract against a real HDFS (MiniDFSCluster started by
//! scripts/hdfs-minicluster.sh), plus what only HDFS has: NameNode-HA nameservice URIs, and HDFS
//! stopped in the middle of an upload and of a download, then restarted. Without java or Maven
//! Central these tests fail: they never skip.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::jarstore_suite::{self as suite, MIB};
use common::minihdfs::MiniHdfs;
use futures::StreamExt;
use gearpump_master::jarstore::hdfs::{HdfsJarStore, HdfsOptions};
use gearpump_master::jarstore::{JarStore, JarStoreError};

/// Short enough for the test to be quick, long enough for a loaded 2-core machine.
const OP_TIMEOUT: Duration = Duration::from_secs(10);

fn options(op_timeout: Duration) -> HdfsOptions {
    HdfsOptions { op_timeout, ..HdfsOptions::default() }
}

/// The jar store error for an unreachable store, with the store named in it.
fn assert_unavailable(result: Result<impl Sized, JarStoreError>, store: &str, what: &str) -> String {
    match result {
        Err(e @ JarStoreError::Unavailable { .. }) => {
            let message = e.to_string();
            assert!(message.contains(store), "{what}: the error must name the store {store}: {message}");
            message
        }
        Err(e) => panic!("{what}: expected the store to be reported unavailable, got: {e}"),
        Ok(_) => panic!("{what}: succeeded although HDFS is down"),
    }
}

async fn partials_left(hdfs_uri: &str, store: &HdfsJarStore) -> Vec<String> {
    let client = hdfs_native::ClientBuilder::new().with_url(hdfs_uri).build().expect("hdfs-native client");
    match client.list_status(&store.partial_dir(), false).await {
        Ok(entries) => entries.into_iter().map(|e| e.path).collect(),
        Err(hdfs_native::HdfsError::FileNotFound(_)) => Vec::new(),
        Err(e) => panic!("listing {}: {e}", store.partial_dir()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hdfs_jar_store_against_a_real_hdfs() {
    let mut hdfs = tokio::task::block_in_place(MiniHdfs::start);
    let root = format!("{}/gearpump/jars", hdfs.uri());
    let store =
        Arc::new(HdfsJarStore::with_options(&root, options(OP_TIMEOUT)).expect("building the HDFS store"));
    assert_eq!(store.describe(), root);
    assert!(store.is_highly_available());

    suite::run_all(store.as_ref()).await;
    // The cancelled upload's partial file is removed by a background task: allow it a moment.
    let deadline = Instant::now() + 2 * OP_TIMEOUT;
    loop {
        let left = partials_left(hdfs.uri(), &store).await;
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "failed uploads left partial files behind: {left:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    nameservice_uri_fails_over_to_the_live_namenode(&hdfs).await;
    hdfs_stopped_during_an_upload(&mut hdfs, store).await;
}

/// `hdfs://nameservice/path` with the NameNodes from hdfs-site.xml: the first one listed is
/// down, so every call also exercises failover to the second.
async fn nameservice_uri_fails_over_to_the_live_namenode(hdfs: &MiniHdfs) {
    let conf = tempfile::tempdir().expect("temp dir for hdfs-site.xml");
    let dead = common::free_ports(1)[0];
    let site = format!(
        "<?xml version=\"1.0\"?>\n<configuration>\n\
         <property><name>dfs.nameservices</name><value>gpns</value></property>\n\
         <property><name>dfs.ha.namenodes.gpns</name><value>nn1,nn2</value></property>\n\
         <property><name>dfs.namenode.rpc-address.gpns.nn1</name><value>127.0.0.1:{dead}</value></property>\n\
         <property><name>dfs.namenode.rpc-address.gpns.nn2</name><value>127.0.0.1:{}</value></property>\n\
         </configuration>\n",
        hdfs.port()
    );
    std::fs::write(conf.path().join("hdfs-site.xml"), site).expect("writing hdfs-site.xml");
    let ha_options = HdfsOptions { hadoop_conf_dir: Some(conf.path().to_path_buf()), ..options(OP_TIMEOUT) };
    let store = HdfsJarStore::with_options("hdfs://gpns/gearpump/ha-jars", ha_options.clone())
        .expect("a nameservice URI with its NameNodes configured");
    suite::check_passes(&store).await;
    let data = suite::pattern(3 * MIB as usize + 5, 77);
    let stored = suite::put_bytes(&store, "ha.jar", &data, 100_000, 16 * MIB)
        .await
        .expect("put through a nameservice");
    assert_eq!(stored.sha256, suite::sha256_hex(&data));
    assert!(suite::get_bytes(&store, "ha.jar").await == data, "content read back through the nameservice");
    assert_eq!(suite::list(&store).await, vec!["ha.jar".to_string()]);

    // The same store seen through the NameNode's own address: one namespace.
    let direct = HdfsJarStore::with_options(&format!("{}/gearpump/ha-jars", hdfs.uri()), options(OP_TIMEOUT))
        .expect("direct store");
    assert!(suite::exists(&direct, "ha.jar").await);

    match HdfsJarStore::with_options("hdfs://unknownns/jars", ha_options) {
        Err(e) => {
            let message = e.to_string();
            assert!(
                message.contains("dfs.ha.namenodes.unknownns"),
                "the error must say what to configure: {message}"
            );
            assert!(message.contains("hdfs://unknownns/jars"), "the error must name the store: {message}");
        }
        Ok(_) => panic!("a nameservice that is not configured was accepted"),
    }
}

/// HDFS stopped while a jar streams in: the upload fails within a bound, naming the store;
/// other operations fail within a bound too; once HDFS is back the same store works again.
async fn hdfs_stopped_during_an_upload(hdfs: &mut MiniHdfs, store: Arc<HdfsJarStore>) {
    let root = store.describe();
    // A download left half-read across the stop: the rest of it must fail, not hang or end
    // quietly short.
    let (body, _) = suite::generated_stream(64 * MIB, 4, None);
    store.put("half-read.jar", body, 64 * MIB).await.expect("put before the stop");
    let mut download = store.get("half-read.jar").await.expect("get before the stop");
    let first = download.next().await.expect("a first chunk").expect("a first chunk");
    assert!(!first.is_empty());

    let progress = Arc::new(AtomicU64::new(0));
    let (body, _) = suite::generated_stream(4096 * MIB, 5, Some(progress.clone()));
    let upload = {
        let store = store.clone();
        tokio::spawn(async move { store.put("interrupted.jar", body, 8192 * MIB).await })
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while progress.load(Ordering::SeqCst) < 48 * MIB {
        assert!(!upload.is_finished(), "the upload ended before HDFS was stopped");
        assert!(Instant::now() < deadline, "the upload made no progress: {}", hdfs.log_tail());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Measured from the start of the stop: the DataNode may go (and fail the write) before the
    // NameNode has finished stopping.
    let stopped = Instant::now();
    tokio::task::block_in_place(|| hdfs.stop());
    eprintln!("HDFS stopped after {} MiB of the upload", progress.load(Ordering::SeqCst) / MIB);

    // A write to a dead DataNode or NameNode fails within OP_TIMEOUT (the partial file is
    // removed in the background); the rest is for the stop itself on a loaded machine.
    let bound = OP_TIMEOUT + Duration::from_secs(10);
    let result = tokio::time::timeout(bound + Duration::from_secs(30), upload)
        .await
        .unwrap_or_else(|_| {
            panic!("the upload was still running {:?} after HDFS stopped", bound + Duration::from_secs(30))
        })
        .expect("the upload task panicked");
    let failed_after = stopped.elapsed();
    let message = assert_unavailable(result, &root, "upload while HDFS stops");
    eprintln!("upload failed {failed_after:.1?} after HDFS stopped: {message}");
    assert!(
        failed_after < bound,
        "the upload failed only {failed_after:?} after HDFS stopped (bound {bound:?})"
    );

    // Concurrently: each is bounded on its own, and the test need not wait for them in turn.
    let (exists, list, check, get) = tokio::join!(
        timed(async { store.exists("interrupted.jar").await.map(|_| ()) }),
        timed(async { store.list().await.map(|_| ()) }),
        timed(store.check()),
        timed(async { store.get("suite-at-limit.jar").await.map(|_| ()) }),
    );
    for (what, (elapsed, result)) in [("exists", exists), ("list", list), ("check", check), ("get", get)] {
        let message = assert_unavailable(result, &root, what);
        eprintln!("{what} with HDFS down failed in {elapsed:.1?}: {message}");
        assert!(elapsed < OP_TIMEOUT + Duration::from_secs(5), "{what} took {elapsed:?} with HDFS down");
    }

    let (elapsed, outcome) = timed(async {
        let mut read = first.len() as u64;
        while let Some(chunk) = download.next().await {
            match chunk {
                Ok(chunk) => read += chunk.len() as u64,
                Err(e) => return Err(e),
            }
        }
        Ok(read)
    })
    .await;
    match outcome {
        Err(e) => {
            let message = e.to_string();
            assert!(message.contains(&root), "the read error must name the store: {message}");
            eprintln!("the half-read download failed {elapsed:.1?} later: {message}");
        }
        Ok(read) => panic!("the download ended without an error after {read} of {} bytes", 64 * MIB),
    }
    assert!(elapsed < OP_TIMEOUT + Duration::from_secs(5), "the half-read download took {elapsed:?} to fail");

    tokio::task::block_in_place(|| hdfs.start_again());

    // The same store, the same client: the retry succeeds.
    let size = 64 * MIB;
    let (body, generated) = suite::generated_stream(size, 6, None);
    let stored =
        store.put("interrupted.jar", body, 8192 * MIB).await.expect("the retry after HDFS came back");
    assert_eq!(stored.size, size);
    assert_eq!(stored.sha256, generated.sha256_hex());
    let (read, sha) = suite::drain(store.get("interrupted.jar").await.expect("get after the retry")).await;
    assert_eq!((read, sha), (size, stored.sha256.clone()), "the retried jar reads back whole");
    // Jars stored before the stop are all still there, partial uploads are still hidden.
    let listed = suite::list(store.as_ref()).await;
    for key in ["interrupted.jar", "suite-round-trip-3.jar", "suite-at-limit.jar", "suite-in-flight.jar"] {
        assert!(listed.contains(&key.to_string()), "{key} missing after the restart: {listed:?}");
    }
    assert!(listed.iter().all(|k| !k.starts_with('.')), "list shows hidden files: {listed:?}");
    let round_trip = suite::get_bytes(store.as_ref(), "suite-round-trip-3.jar").await;
    assert!(round_trip == suite::pattern(MIB as usize + 17, 4), "a jar stored before the restart changed");
    suite::check_passes(store.as_ref()).await;
}

async fn timed<T>(op: impl std::future::Future<Output = T>) -> (Duration, T) {
    let started = Instant::now();
    let result = op.await;
    (started.elapsed(), result)
}

/// No HDFS at all at the address: every operation fails within a bound with the store named.
#[tokio::test]
async fn unreachable_namenode_fails_within_a_bound() {
    let op_timeout = Duration::from_secs(3);
    let root = format!("hdfs://127.0.0.1:{}/gearpump/jars", common::free_ports(1)[0]);
    let store = HdfsJarStore::with_options(&root, options(op_timeout)).expect("building needs no NameNode");
    // Concurrently, each bounded on its own.
    let (check, exists, list, get, delete, put) = tokio::join!(
        timed(store.check()),
        timed(async { store.exists("a.jar").await.map(|_| ()) }),
        timed(async { store.list().await.map(|_| ()) }),
        timed(async { store.get("a.jar").await.map(|_| ()) }),
        timed(store.delete("a.jar")),
        timed(async { suite::put_bytes(&store, "a.jar", b"jar", 3, MIB).await.map(|_| ()) }),
    );
    let checks = [
        ("check", check),
        ("exists", exists),
        ("list", list),
        ("get", get),
        ("delete", delete),
        ("put", put),
    ];
    for (what, (elapsed, result)) in checks {
        let bound = op_timeout + Duration::from_secs(4);
        let message = assert_unavailable(result, &root, what);
        assert!(
            message.contains("refus"),
            "{what}: the cause should say the NameNode refuses connections: {message}"
        );
        assert!(elapsed < bound, "{what} took {elapsed:?} (bound {bound:?})");
        eprintln!("{what}: {elapsed:.1?}: {message}");
    }
}
