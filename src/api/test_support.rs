//! What unit tests of the API and the daemon need: a one-master cluster in this process around
//! a jar store of the test's choosing, and a store that hangs.
//! The fuzz targets (feature `fuzzing`) use the cluster too.

// Test support: a failure here is the test's (or the fuzz target's) failure.
#![allow(clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use super::Context;
use crate::jarstore::JarStore;

#[cfg(test)]
pub(crate) use hanging::HangingStore;

/// A started one-master cluster (its state in the returned folder) and a context around `jars`;
/// `extra_conf` is appended to its gear.conf.
pub(crate) async fn one_master_context(
    jars: Arc<dyn JarStore>,
    extra_conf: &str,
) -> (Arc<Context>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = {
        let socket = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        socket.local_addr().expect("address").port()
    };
    let text = format!(
        "gearpump.cluster.masters = [\"127.0.0.1:{port}\"]\ngearpump.master.state-dir = {:?}\n{extra_conf}\n",
        dir.path().display().to_string()
    );
    let config = crate::config::load_str(Path::new("gear.conf"), &text, &Default::default())
        .expect("valid configuration");
    let cluster =
        crate::cluster::Cluster::start(&config, Default::default()).await.expect("a one-master cluster");
    let config_timing = config.worker_timing;
    let context = Arc::new(Context {
        cluster,
        jars,
        config: Arc::new(config),
        metrics: Default::default(),
        secret: None,
        auth: super::auth::Auth::open(),
        jar_health: std::sync::RwLock::new(None),
        workers: Arc::new(crate::scheduler::Registry::new(config_timing)),
        worker_logs: super::worker_routes::WorkerLogs::new(None).expect("an HTTP client"),
    });
    (context, dir)
}

#[cfg(test)]
mod hanging {
    use async_trait::async_trait;

    use crate::jarstore::{ByteStream, JarStore, JarStoreError, StoredJar};

    /// A store whose every call hangs, like HDFS with a stopped NameNode or a dead NFS server.
    pub(crate) struct HangingStore;

    #[async_trait]
    impl JarStore for HangingStore {
        fn describe(&self) -> String {
            "hdfs://hung:8020/jars".into()
        }
        fn is_highly_available(&self) -> bool {
            true
        }
        async fn put(&self, _: &str, _: ByteStream, _: u64) -> Result<StoredJar, JarStoreError> {
            std::future::pending().await
        }
        async fn get(&self, _: &str) -> Result<ByteStream, JarStoreError> {
            std::future::pending().await
        }
        async fn exists(&self, _: &str) -> Result<bool, JarStoreError> {
            std::future::pending().await
        }
        async fn delete(&self, _: &str) -> Result<(), JarStoreError> {
            std::future::pending().await
        }
        async fn list(&self) -> Result<Vec<String>, JarStoreError> {
            std::future::pending().await
        }
        async fn check(&self) -> Result<(), JarStoreError> {
            std::future::pending().await
        }
    }
}
