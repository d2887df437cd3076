//! The leader's periodic sweep of the jar store (see `jarstore::retention` for what goes).

use std::sync::Arc;
use std::time::Duration;

use crate::api::Context;
use crate::cluster::ClusterError;
use crate::jarstore::retention::{self, Removal};
use crate::state::Command;

/// How often the leader looks; retention is measured in days, so this need not be frequent.
fn sweep_interval(retention: Duration) -> Duration {
    (retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(3600))
}

pub(super) async fn run(context: Arc<Context>) {
    let interval = sweep_interval(context.config.jar_retention);
    loop {
        tokio::time::sleep(interval).await;
        if context.cluster.status().role != crate::wire::Role::Leader {
            continue;
        }
        if let Err(e) = sweep(&context).await {
            tracing::warn!("jar retention sweep stopped early: {e}");
        }
    }
}

async fn sweep(context: &Context) -> Result<(), String> {
    context.cluster.read_barrier().await.map_err(|e| e.to_string())?;
    let stored = context.jars.list().await.map_err(|e| e.to_string())?;
    let now = crate::api::now_ms();
    let removals =
        context.cluster.read(|state| retention::plan(state, &stored, now, context.config.jar_retention));
    for removal in removals {
        match removal {
            Removal::Registered { key } => {
                // Forget first: if the forget is refused (the jar came back into use), nothing
                // was deleted; if the delete then fails, the next sweep finds an orphan.
                match context.cluster.write(Command::ForgetJar { key: key.clone() }).await {
                    Ok(_) => {}
                    Err(ClusterError::Rejected(why)) => {
                        tracing::info!(jar = %key, "kept: {why}");
                        continue;
                    }
                    Err(e) => return Err(e.to_string()),
                }
                context.jars.delete(&key).await.map_err(|e| e.to_string())?;
                tracing::info!(jar = %key, "removed an unused jar after the retention period");
            }
            Removal::Orphan { key } => {
                context.jars.delete(&key).await.map_err(|e| e.to_string())?;
                tracing::info!(jar = %key, "removed a jar no application ever registered");
            }
        }
    }
    Ok(())
}
