//! `gearpump-master restore` and `gearpump-master recover`: what a stopped master's operator runs
//! (docs/OPERATIONS.md). The storage work is `cluster::offline`; this adds what needs the rest
//! of the master: the jar store (which referenced jars are missing) and the peer transport
//! (whether the old members still answer).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::backup::{Backup, BackupError};
use crate::cluster::offline::{self, OfflineError, OfflineStore, Recovered};
use crate::cluster::peer_protocol::{PeerStatus, STATUS};
use crate::cluster::{PeerAuth, PeerError, Peers};
use crate::config::MasterConfig;
use crate::tls::{MasterNames, NodeTls};

#[derive(Debug, thiserror::Error)]
pub enum OfflineCommandError {
    #[error("cannot read the backup {}: {cause}", .path.display())]
    Read { path: PathBuf, cause: String },
    #[error("the backup {}: {cause}", .path.display())]
    Backup { path: PathBuf, cause: BackupError },
    #[error(transparent)]
    Offline(#[from] OfflineError),
    #[error(transparent)]
    Setup(#[from] super::DaemonError),
    #[error(
        "refusing to recover: these masters of the old membership still answer:\n{}\n  fix: a master \
         that answers may still hold the cluster's majority; stop it for good (systemctl stop \
         gearpump-master, and disable it), or, if you know it will never rejoin this cluster, run \
         again with --yes-i-know",
        .answering.iter().map(|(m, what)| format!("  {m}: {what}")).collect::<Vec<_>>().join("\n")
    )]
    OthersAnswer { answering: Vec<(String, String)> },
}

impl OfflineCommandError {
    /// sysexits: 66 (EX_NOINPUT) for an unreadable backup, 65 (EX_DATAERR) for a damaged one,
    /// 75 (EX_TEMPFAIL) while other masters answer (stop them, then run again), and the storage
    /// and configuration codes of `OfflineError` and `DaemonError`.
    pub fn exit_code(&self) -> u8 {
        match self {
            OfflineCommandError::Read { .. } => 66,
            OfflineCommandError::Backup { cause, .. } => cause.exit_code(),
            OfflineCommandError::Offline(error) => error.exit_code(),
            OfflineCommandError::Setup(error) => u8::try_from(error.exit_code()).unwrap_or(1),
            OfflineCommandError::OthersAnswer { .. } => 75,
        }
    }
}

/// What a restore did.
#[derive(Debug)]
pub struct Restored {
    pub backup: Backup,
    /// The jar store's description and the referenced jars it lacks (or could not check).
    pub jar_store: String,
    pub missing_jars: Vec<(String, String)>,
    pub jars_checked: usize,
}

/// Reads and checks a backup file.
pub fn read_backup(path: &Path) -> Result<(Backup, u64), OfflineCommandError> {
    let bytes = std::fs::read(path)
        .map_err(|e| OfflineCommandError::Read { path: path.to_path_buf(), cause: e.to_string() })?;
    let backup = Backup::decode(&bytes)
        .map_err(|cause| OfflineCommandError::Backup { path: path.to_path_buf(), cause })?;
    Ok((backup, bytes.len() as u64))
}

/// Seeds this master's empty state directory from `from` for a new cluster of the configured
/// masters, then checks the jar store for every jar the state references.
pub async fn restore(from: &Path, config: &MasterConfig) -> Result<Restored, OfflineCommandError> {
    let (backup, _) = read_backup(from)?;
    offline::restore(&backup, &config.state_dir, &config.masters)?;
    let mut referenced: std::collections::BTreeSet<String> =
        backup.master_state.jars.keys().cloned().collect();
    referenced.extend(backup.master_state.apps.values().map(|app| app.jar.key.clone()));
    let mut missing = Vec::new();
    let jar_store = match crate::jarstore::open(&config.jar_store, config.jar_timeout) {
        Ok(store) => {
            for key in &referenced {
                match store.exists(key).await {
                    Ok(true) => {}
                    Ok(false) => missing.push((key.clone(), "missing".to_string())),
                    Err(e) => missing.push((key.clone(), format!("could not check: {e}"))),
                }
            }
            store.describe()
        }
        Err(e) => {
            missing.extend(referenced.iter().map(|key| (key.clone(), format!("could not check: {e}"))));
            format!("{:?}", config.jar_store)
        }
    };
    Ok(Restored { backup, jar_store, missing_jars: missing, jars_checked: referenced.len() })
}

/// `--force-new-cluster`: refuses while the master runs (redb's lock) or, unless `yes_i_know`,
/// while another master of the old membership answers; then rewrites the membership.
pub async fn recover(config: &MasterConfig, yes_i_know: bool) -> Result<Recovered, OfflineCommandError> {
    let store = OfflineStore::open(&config.state_dir)?;
    let me = config.this_master.to_string();
    let others: Vec<String> = store.voters()?.into_iter().filter(|voter| *voter != me).collect();
    if !yes_i_know {
        let answering = probe(config, &others).await?;
        if !answering.is_empty() {
            return Err(OfflineCommandError::OthersAnswer { answering });
        }
    }
    Ok(store.force_new_cluster(&config.this_master)?)
}

/// The masters among `others` that answer on their port, with what they said. A master that
/// accepts the connection but does not answer in time, or refuses our credentials, counts as
/// answering: only a refused connection proves nothing listens there.
async fn probe(
    config: &MasterConfig,
    others: &[String],
) -> Result<Vec<(String, String)>, OfflineCommandError> {
    let secret = config.secret_file.as_deref().map(super::read_secret).transpose()?;
    let tls = match &config.tls {
        Some(files) => {
            let names = MasterNames::new(config.masters.iter().map(|m| m.host.clone()).collect());
            Some(
                NodeTls::load(files, &config.this_master.host, &names)
                    .map_err(super::DaemonError::from)?
                    .client,
            )
        }
        None => None,
    };
    let peers = Peers::with_auth(Duration::from_secs(2), PeerAuth { secret, tls })
        .map_err(|e| super::DaemonError::Serve(format!("cannot build the HTTP client: {e}")))?;
    let asks = others.iter().map(|address| {
        let peers = &peers;
        async move {
            let answer: Result<PeerStatus, PeerError> =
                peers.get(address, STATUS, Duration::from_secs(3)).await;
            match answer {
                Ok(status) => {
                    Some((address.clone(), format!("answers as {} in term {}", status.role, status.term)))
                }
                Err(PeerError::NotDelivered { .. }) => None,
                Err(other) => Some((address.clone(), format!("something answers on its port: {other}"))),
            }
        }
    });
    Ok(futures::future::join_all(asks).await.into_iter().flatten().collect())
}
