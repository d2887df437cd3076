//! The master process: open state, serve, report to systemd, stop cleanly.

mod health;
mod jar_retention;
mod logging;
pub(crate) mod notify;
pub mod offline;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

use crate::api::auth::{Auth, Tokens};
use crate::api::{self, metrics::Metrics, Context};
use crate::cluster::{Cluster, PeerAuth};
use crate::config::{self, MasterConfig, Overrides};
use crate::jarstore;
use crate::tls::{MasterNames, NodeListener, NodeTls};

/// Why the master could not run; the binary maps each to an exit status.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("cannot listen on {address}: {cause}\n  fix: {fix}")]
    Listen { address: String, cause: String, fix: String },
    #[error("cluster secret file {path}: {cause}\n  fix: create it with the same secret on every master (mode 0600, owned by the service user), or remove gearpump.master.secret-file")]
    Secret { path: String, cause: String },
    #[error(transparent)]
    Tokens(#[from] crate::api::auth::TokensError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("{0}\n  fix: check gearpump.jarstore.rootpath and, for hdfs://nameservice/..., the Hadoop configuration (HADOOP_CONF_DIR)")]
    JarStore(String),
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    #[error(transparent)]
    StateDir(#[from] crate::cluster::state_dir::StateDirError),
    #[error("the HTTP server failed: {0}")]
    Serve(String),
    #[error("the Raft core stopped: {0}\n  fix: free the disk or fix the storage error above; restarting the master recovers it from its state directory (systemd does that by itself)")]
    CoreStopped(String),
}

impl DaemonError {
    /// sysexits: 78 for configuration (the jar store's client setup included: it only fails
    /// on configuration, such as a nameservice the Hadoop files do not define), 69 (EX_UNAVAILABLE) when the port or state is unusable.
    pub fn exit_code(&self) -> i32 {
        match self {
            DaemonError::Config(_)
            | DaemonError::Secret { .. }
            | DaemonError::Tokens(_)
            | DaemonError::Tls(_)
            | DaemonError::JarStore(_) => 78,
            // A state directory from a newer version (a downgrade) is the package's
            // configuration; one that cannot be created is the disk's.
            DaemonError::StateDir(crate::cluster::state_dir::StateDirError::Io { .. }) => 69,
            DaemonError::StateDir(_) => 78,
            DaemonError::Listen { .. } | DaemonError::Cluster(_) => 69,
            DaemonError::Serve(_) => 1,
            // EX_TEMPFAIL: a restart is the cure (Restart=on-failure restarts it).
            DaemonError::CoreStopped(_) => 75,
        }
    }
}

fn read_secret(path: &std::path::Path) -> Result<String, DaemonError> {
    let error = |cause: String| DaemonError::Secret { path: path.display().to_string(), cause };
    let secret = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
    let secret = secret.trim().to_string();
    if secret.len() < 16 {
        return Err(error("the secret is shorter than 16 characters".into()));
    }
    Ok(secret)
}

/// Runs the master until SIGTERM/SIGINT: logging (journald or stderr), the port, signals
/// (SIGHUP reloads what can change at run time, from `config_path` and `overrides`), then
/// [`serve`].
pub async fn run(
    config: MasterConfig,
    config_path: Option<PathBuf>,
    overrides: Overrides,
) -> Result<(), DaemonError> {
    let log_control = logging::init(&config.log_level);
    let address = format!("{}:{}", config.bind_host, config.this_master.port);
    let listener = bind(&address, &config).await?;
    serve(config, listener, wait_for_stop(|| reload(&config_path, &overrides, &log_control))).await
}

/// One master on `listener` until `shutdown` completes (or its Raft core stops): state, jar
/// store, cluster, HTTP server, the background tasks and the reports to systemd; then it hands
/// leadership over, lets open requests finish and closes its state. Tests run masters in
/// process with it, each on a listener bound beforehand (so the masters list names ports that
/// are certainly theirs); the process's logging is the caller's.
pub async fn serve(
    mut config: MasterConfig,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), DaemonError> {
    let address = listener.local_addr().map_or_else(|_| config.this_master.to_string(), |a| a.to_string());
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    // First of all, before anything (the local jar store included) writes under it: a state
    // directory from a newer version is refused untouched.
    crate::cluster::state_dir::prepare(&config.state_dir)?;
    let secret = match &config.secret_file {
        Some(path) => Some(read_secret(path)?),
        None => {
            if config.masters.len() > 1 {
                tracing::warn!("no gearpump.master.secret-file: peer RPC is unauthenticated; any host that reaches the master port can join Raft traffic");
            }
            None
        }
    };
    let hosts: Vec<String> = config.masters.iter().map(|m| m.host.clone()).collect();
    let names = MasterNames::new(hosts.clone());
    let tls = match &config.tls {
        Some(files) => Some(NodeTls::load(files, &config.this_master.host, &names)?),
        None => None,
    };
    if let Some(warning) = tls.as_ref().and_then(|tls| tls.expiry_warning.clone()) {
        tracing::warn!("{warning}");
        config.warnings.push(warning);
    }
    let tokens = match &config.tokens_file {
        Some(path) => Some(Tokens::load(path)?),
        None => None,
    };
    if tls.is_none() && tokens.is_none() {
        let warning = "neither gearpump.master.tls nor gearpump.master.auth.tokens-file is configured: \
                       traffic is plain HTTP and any client that reaches the port may submit and kill \
                       applications (membership changes are accepted from loopback only); \
                       gearpump-setup configures both";
        tracing::warn!("{warning}");
        config.warnings.push(warning.into());
    }
    let auth = Auth { tokens, open_health: config.open_health, tls: tls.is_some() };
    let jars = jarstore::open(&config.jar_store, config.jar_timeout)
        .map_err(|e| DaemonError::JarStore(e.to_string()))?;
    if !jars.is_highly_available() {
        tracing::warn!(store = %jars.describe(), "the jar store is local to this master and NOT highly available");
    }

    let peer_auth = PeerAuth { secret: secret.clone(), tls: tls.as_ref().map(|tls| tls.client.clone()) };
    let cluster = Cluster::start(&config, peer_auth).await?;
    tracing::info!(
        master = %config.this_master, node_id = cluster.node_id(), listen = %address,
        masters = %config.masters.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
        "gearpump-master {} started", crate::wire::PACKAGE_VERSION
    );

    let metrics = Arc::new(Metrics::default());
    let workers = Arc::new(crate::scheduler::Registry::new(config.worker_timing));
    let config = Arc::new(config);
    let context = Arc::new(Context {
        cluster: cluster.clone(),
        jars,
        config: config.clone(),
        metrics: metrics.clone(),
        secret,
        auth,
        jar_health: std::sync::RwLock::new(None),
        workers: workers.clone(),
        worker_logs: api::WorkerLogs::new(tls.as_ref())
            .map_err(|e| DaemonError::Serve(format!("the client of workers' log ports: {e}")))?,
    });
    let jar_health = tokio::spawn(probe_jar_store(context.clone()));
    let retention = tokio::spawn(jar_retention::run(context.clone()));
    let (stop_sender, mut stop_receiver) = tokio::sync::watch::channel(false);
    let listener =
        NodeListener::new(listener, tls.as_ref().map(|tls| &tls.server), config.max_connections_per_address)
            .map_err(|e| DaemonError::Listen {
                address: address.clone(),
                cause: e.to_string(),
                fix: "check the port".into(),
            })?;
    let server = tokio::spawn(crate::tls::serve(listener, api::router(context), async move {
        let _ = stop_receiver.wait_for(|stop| *stop).await;
    }));

    let background = [
        tokio::spawn(notify::report(cluster.clone(), config.startup_timeout)),
        tokio::spawn(notify::watchdog(cluster.clone(), config.state_dir.clone())),
        tokio::spawn(count_leader_changes(cluster.clone(), metrics)),
        tokio::spawn(follow_membership(cluster.clone(), names, hosts)),
        retention,
        jar_health,
        tokio::spawn(crate::scheduler::run(cluster.clone(), workers)),
    ];

    // A Raft core stopped by a storage error (a full disk, an I/O error) never starts again in
    // this process: the master would stay up, answering 503 forever (found by the nemesis
    // suite's full-disk fault; systemd's watchdog caught it, other supervisors did not). Exit
    // instead, so whatever supervises the master restarts it from its state directory.
    let core_failure = tokio::select! {
        () = shutdown => None,
        cause = core_stopped(&cluster) => Some(cause),
    };
    if let Some(cause) = &core_failure {
        tracing::error!("the Raft core stopped: {cause}; exiting so that a restart recovers this master");
        notify::stopping("stopping: the Raft core stopped");
    } else {
        notify::stopping("stopping: handing over leadership");
    }
    if core_failure.is_some() {
        // No core, nothing to hand over.
    } else if let Some(successor) = cluster.hand_over_leadership().await {
        tracing::info!(%successor, "handed leadership over before stopping");
        // Give the successor one heartbeat to win, so in-flight forwards find a leader.
        tokio::time::sleep(config.failover_timeout / 5).await;
    }
    let _ = stop_sender.send(true);
    match tokio::time::timeout(Duration::from_secs(5), server).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "HTTP server task failed"),
        Err(_) => tracing::warn!("open connections did not finish within 5 s; closing them"),
    }
    for task in background {
        task.abort();
    }
    cluster.shutdown().await;
    tracing::info!("stopped");
    match core_failure {
        Some(cause) => Err(DaemonError::CoreStopped(cause)),
        None => Ok(()),
    }
}

/// Resolves when the Raft core has stopped by itself, with its cause.
async fn core_stopped(cluster: &Cluster) -> String {
    let mut metrics = cluster.watch_metrics();
    loop {
        if let Err(fatal) = &metrics.borrow().running_state {
            return fatal.to_string();
        }
        if metrics.changed().await.is_err() {
            return "the Raft core ended".into();
        }
    }
}

async fn bind(address: &str, config: &MasterConfig) -> Result<TcpListener, DaemonError> {
    TcpListener::bind(address).await.map_err(|e| {
        let fix = match e.kind() {
            std::io::ErrorKind::AddrInUse => format!(
                "another process uses port {}; stop it (ss -ltnp | grep :{}) or give this master another port in gearpump.cluster.masters",
                config.this_master.port, config.this_master.port
            ),
            std::io::ErrorKind::AddrNotAvailable => format!(
                "{} is not an address of this machine; set gearpump.master.bind-host (e.g. \"0.0.0.0\") or fix gearpump.hostname",
                config.bind_host
            ),
            _ => "check gearpump.master.bind-host and the master's port".into(),
        };
        DaemonError::Listen { address: address.to_string(), cause: e.to_string(), fix }
    })
}

/// Returns on SIGTERM or SIGINT; calls `on_hangup` for each SIGHUP in between (whose default
/// action would kill the process). Both daemons, the master and the worker, stop this way.
pub(crate) async fn wait_for_stop(mut on_hangup: impl FnMut()) {
    let (Ok(mut term), Ok(mut interrupt), Ok(mut hangup)) =
        (signal(SignalKind::terminate()), signal(SignalKind::interrupt()), signal(SignalKind::hangup()))
    else {
        tracing::error!("cannot install signal handlers; stopping on Ctrl-C only");
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: stopping"); return; }
            _ = interrupt.recv() => { tracing::info!("SIGINT: stopping"); return; }
            _ = hangup.recv() => on_hangup(),
        }
    }
}

fn reload(config_path: &Option<PathBuf>, overrides: &Overrides, log_control: &logging::LogControl) {
    match config::load(config_path.as_deref(), overrides) {
        Err(e) => tracing::error!("SIGHUP: the configuration is invalid, nothing changed:\n{e}"),
        Ok(fresh) => {
            match log_control.set_level(&fresh.log_level) {
                Ok(()) => tracing::info!(level = %fresh.log_level, "SIGHUP: log level applied"),
                Err(e) => tracing::warn!("SIGHUP: could not change the log level: {e}"),
            }
            tracing::info!(
                "SIGHUP: other settings (masters, ports, timeouts, jar store) take effect after a restart"
            );
        }
    }
}

/// Keeps the names a peer certificate may carry in step with the Raft membership, so a master
/// added at run time is accepted by the others before their gear.conf lists it.
async fn follow_membership(cluster: Arc<Cluster>, names: MasterNames, configured: Vec<String>) {
    let mut watch = cluster.watch_metrics();
    loop {
        let mut hosts = configured.clone();
        let members: Vec<String> = watch
            .borrow_and_update()
            .membership_config
            .nodes()
            .filter_map(|(_, node)| config::HostPort::parse(&node.addr).ok().map(|hp| hp.host))
            .collect();
        for host in members {
            if !hosts.contains(&host) {
                hosts.push(host);
            }
        }
        names.set(hosts);
        if watch.changed().await.is_err() {
            return;
        }
    }
}

async fn count_leader_changes(cluster: Arc<Cluster>, metrics: Arc<Metrics>) {
    let mut watch = cluster.watch_metrics();
    let mut last = None;
    loop {
        let leader = watch.borrow_and_update().current_leader;
        if leader.is_some() && leader != last {
            if last.is_some() {
                metrics.leader_changes.fetch_add(1, Ordering::Relaxed);
                tracing::info!(leader = ?leader, "leader changed");
            }
            last = leader;
        }
        if watch.changed().await.is_err() {
            return; // the Raft core stopped
        }
    }
}

/// Probes the jar store every few seconds for `/health/ready`; logs when its health changes.
/// The quorum does not depend on the store: uploads fail with the logged reason meanwhile.
/// A probe that does not finish within `gearpump.jarstore.timeout` counts as a failure, so a
/// hung store (a dead NFS server) is reported instead of leaving the last good answer standing;
/// no second probe starts while that one hangs (each would hold a blocking thread), so the
/// answer's age keeps growing until the store answers again.
async fn probe_jar_store(context: Arc<Context>) {
    let bound = context.config.jar_timeout;
    loop {
        let jars = context.jars.clone();
        let mut check = tokio::spawn(async move { jars.check().await.map_err(|e| e.to_string()) });
        let (result, hung) = match tokio::time::timeout(bound, &mut check).await {
            Ok(Ok(result)) => (result, false),
            Ok(Err(failed)) => (Err(format!("the jar store health probe failed: {failed}")), false),
            Err(_) => (
                Err(format!(
                    "jar store {} is unavailable: the health probe got no answer within {bound:?} \
                     (gearpump.jarstore.timeout)",
                    context.jars.describe()
                )),
                true,
            ),
        };
        let previous = context.jar_health.read().ok().and_then(|h| h.as_ref().map(|p| p.result.clone()));
        if previous.as_ref() != Some(&result) {
            match &result {
                Ok(()) => tracing::info!(store = %context.jars.describe(), "jar store is available"),
                Err(e) => tracing::error!("{e}"),
            }
        }
        if let Ok(mut health) = context.jar_health.write() {
            *health = Some(api::JarProbe { result, at: std::time::Instant::now() });
        }
        if hung {
            let _ = check.await;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use crate::api::test_support::{one_master_context, HangingStore};

    /// A store that never answers is reported as failing within the store timeout (it was
    /// never reported: the probe loop hung on it with the last answer, or none, standing).
    #[tokio::test]
    async fn a_hanging_store_is_reported_within_the_store_timeout() {
        let (context, _dir) =
            one_master_context(Arc::new(HangingStore), "gearpump.jarstore.timeout = 200ms").await;
        let probe = tokio::spawn(super::probe_jar_store(context.clone()));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let error = loop {
            let health = context.jar_health.read().expect("lock").clone();
            if let Some(probe) = health {
                break probe.result.expect_err("a hanging store is not healthy");
            }
            assert!(std::time::Instant::now() < deadline, "the probe never reported the hanging store");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(error.contains("no answer within 200ms (gearpump.jarstore.timeout)"), "{error}");
        probe.abort();
        context.cluster.shutdown().await;
    }
}
