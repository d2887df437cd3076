//! The watchdog's definition of healthy: the Raft core answers, and the state directory takes
//! writes. (The runtime answering is implied: this code runs on it.)

use std::path::Path;
use std::time::Duration;

use crate::cluster::Cluster;

pub(super) async fn check(cluster: &Cluster, state_dir: &Path, bound: Duration) -> Result<(), String> {
    if !cluster.core_is_running() {
        return Err("the Raft core has stopped".into());
    }
    match tokio::time::timeout(bound, cluster.core_responds()).await {
        Ok(true) => {}
        Ok(false) => return Err("the Raft core refused a request".into()),
        Err(_) => return Err(format!("the Raft core did not answer within {bound:?}")),
    }
    let probe = state_dir.join(".watchdog-probe");
    let write = tokio::fs::write(&probe, b"ok");
    match tokio::time::timeout(bound, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("the state directory {} is not writable: {e}", state_dir.display())),
        Err(_) => Err(format!("writing to the state directory {} hangs", state_dir.display())),
    }
}
