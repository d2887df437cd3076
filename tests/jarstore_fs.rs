//! The jar store contract (the same suite HDFS passes) for a master-local folder and for a
//! shared `file://` folder, plus what only a file system does: a missing mount, a full disk.

mod common;

use common::jarstore_suite;
use gearpump_master::jarstore::fs::FsJarStore;
use gearpump_master::jarstore::{JarStore, JarStoreError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_folder_passes_the_suite() {
    let dir = tempfile::tempdir().expect("dir");
    let store = FsJarStore::local(dir.path().join("jars"));
    assert!(!store.is_highly_available());
    jarstore_suite::run_all(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_folder_passes_the_suite() {
    let dir = tempfile::tempdir().expect("dir");
    let store = FsJarStore::shared(dir.path().to_path_buf());
    assert!(store.is_highly_available());
    jarstore_suite::run_all(&store).await;
}

/// Also part of the suite; on its own so it runs without the suite's 256 MiB upload.
#[tokio::test]
async fn a_stored_jar_is_never_overwritten() {
    let dir = tempfile::tempdir().expect("dir");
    jarstore_suite::existing_jar_is_never_overwritten(&FsJarStore::shared(dir.path().to_path_buf())).await;
    jarstore_suite::existing_jar_is_never_overwritten(&FsJarStore::local(dir.path().join("local"))).await;
}

#[tokio::test]
async fn a_missing_shared_folder_is_reported_not_created() {
    let dir = tempfile::tempdir().expect("dir");
    let root = dir.path().join("not-mounted");
    let store = FsJarStore::shared(root.clone());
    let error = store.check().await.expect_err("missing mount");
    assert!(error.to_string().contains("is the shared file system mounted?"), "{error}");
    let upload = jarstore_suite::put_bytes(&store, "a.jar", b"jar", 2, 1 << 20).await;
    assert!(matches!(upload, Err(JarStoreError::Unavailable { .. })), "{upload:?}");
    assert!(!root.exists(), "the store must not create the mount point");
}
