//! From the request and the nodes' facts to what must happen on each node: preflight verdicts
//! and a list of actions, computed without touching anything, so `--dry-run` prints exactly what
//! a real run executes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use super::gearconf::{self, OwnedKey};
use super::inventory::{Family, Inventory, JarStore, PackageFile, Product};
use super::pki::{self, NodeSecurity};
use super::probe::{
    NodeFacts, DROP_IN, GEAR_CONF, SECRET_FILE, SERVICE, STATE_DB, STATE_DIR, WORKER_SERVICE,
};
use super::repo;
use super::ssh::shell_quote;

/// The gear.conf the package ships: what a node will have once the package is installed.
pub const SHIPPED_GEAR_CONF: &str = include_str!("../../conf/gear.conf");

/// Where packages are copied to on a node before installing.
pub const REMOTE_PACKAGE_DIR: &str = "/tmp/gearpump-setup";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    Preflight,
    Package,
    GearConf,
    Secret,
    JarStore,
    Start,
    Join,
    Remove,
    Ready,
    Register,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Step::Preflight => "preflight",
            Step::Package => "package",
            Step::GearConf => "gear.conf",
            Step::Secret => "secret",
            Step::JarStore => "jar store",
            Step::Start => "start",
            Step::Join => "join",
            Step::Remove => "remove",
            Step::Ready => "ready",
            Step::Register => "register",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Copy { step: Step, local: PathBuf, remote: String },
    Run { step: Step, what: String, script: String },
    Write { step: Step, path: String, mode: u32, owner: String, content: String, secret: bool, backup: bool },
}

impl Action {
    pub fn step(&self) -> Step {
        match self {
            Action::Copy { step, .. } | Action::Run { step, .. } | Action::Write { step, .. } => *step,
        }
    }

    /// The shell script a Write runs on the node, the content arriving on stdin. The file is
    /// replaced atomically (rename in the same folder), the previous one kept as a dated backup.
    pub fn write_script(path: &str, mode: u32, owner: &str, backup: bool) -> String {
        let backup_line = if backup {
            "if [ -f \"$f\" ]; then cp -p \"$f\" \"$f.bak-$(date -u +%Y%m%dT%H%M%SZ)\"; fi\n"
        } else {
            ""
        };
        format!(
            "set -e\nf={path}\nd=$(dirname \"$f\")\nmkdir -p \"$d\"\ntmp=$(mktemp \"$d/.gearpump-setup.XXXXXX\")\n\
             trap 'rm -f \"$tmp\"' EXIT\ncat >\"$tmp\"\nchown {owner} \"$tmp\"\nchmod {mode:04o} \"$tmp\"\n{backup_line}\
             mv -f \"$tmp\" \"$f\"\ntrap - EXIT\n",
            path = shell_quote(path),
            owner = shell_quote(owner),
        )
    }
}

/// What the plan knows of the running cluster (from the master API).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterView {
    /// host:port of the voters; empty when no cluster runs yet.
    pub voters: Vec<String>,
}

impl ClusterView {
    pub fn exists(&self) -> bool {
        !self.voters.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePlan {
    pub node: String,
    /// host:port in the masters list.
    pub address: String,
    pub actions: Vec<Action>,
    /// A running master whose configuration changed in a way only a restart applies.
    pub restart: bool,
    /// Needs `systemctl start` (not running now).
    pub start: bool,
    /// Not yet a voter of a running cluster: must be added through the API once started.
    pub join: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFailure {
    pub node: String,
    pub step: Step,
    pub cause: String,
}

/// Systemd's path escaping (`systemd-escape --path`), for the mount unit's name.
pub fn mount_unit_name(path: &str) -> String {
    let trimmed = path.trim_matches('/');
    let mut out = String::new();
    for (i, b) in trimmed.bytes().enumerate() {
        match b {
            b'/' => out.push('-'),
            b'.' if i == 0 => out.push_str("\\x2e"),
            b if b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b':' => out.push(b as char),
            b => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    if out.is_empty() {
        out.push('-');
    }
    format!("{out}.mount")
}

pub fn mount_unit(export: &str, mount: &str, options: &str) -> String {
    format!(
        "# Written by gearpump-setup: the NFS jar store of gearpump-master, mounted at the same\n\
         # path on every master. gearpump-master requires it (RequiresMountsFor= in its drop-in).\n\
         [Unit]\n\
         Description=Gearpump jar store (NFS {export})\n\
         Wants=network-online.target\n\
         After=network-online.target\n\
         \n\
         [Mount]\n\
         What={export}\n\
         Where={mount}\n\
         Type=nfs\n\
         Options={options}\n\
         TimeoutSec=60\n\
         \n\
         [Install]\n\
         WantedBy=remote-fs.target\n"
    )
}

pub fn drop_in(mount: &str) -> String {
    format!(
        "# Written by gearpump-setup: never start without the NFS jar store, and let the sandboxed\n\
         # service (ProtectSystem=strict) write to it.\n\
         [Unit]\n\
         RequiresMountsFor={mount}\n\
         \n\
         [Service]\n\
         ReadWritePaths={mount}\n"
    )
}

/// The package of `product` a node takes, by family and architecture (an `all` package fits
/// any).
pub fn package_for<'a>(inv: &'a Inventory, facts: &NodeFacts, product: Product) -> Option<&'a PackageFile> {
    let family = facts.family?;
    let mut ours = inv.packages.iter().filter(|p| p.product == product && p.family == family);
    ours.clone().find(|p| p.arch == facts.arch).or_else(|| ours.find(|p| p.arch == "all"))
}

fn is_loopback(address: &str) -> bool {
    address.starts_with("127.") || address == "::1"
}

/// Preflight verdicts from every node's facts: errors per node, and warnings.
pub fn preflight(inv: &Inventory, facts: &BTreeMap<String, NodeFacts>) -> (Vec<NodeFailure>, Vec<String>) {
    let mut failures = Vec::new();
    let mut warnings = Vec::new();
    let fail = |failures: &mut Vec<NodeFailure>, node: &str, cause: String| {
        failures.push(NodeFailure { node: node.to_string(), step: Step::Preflight, cause })
    };
    for node in &inv.masters {
        let Some(f) = facts.get(node) else { continue };
        let Some(family) = f.family else {
            fail(
                &mut failures,
                node,
                "neither dpkg nor rpm is installed: not a Debian or RPM-based host".into(),
            );
            continue;
        };
        let wanted = package_for(inv, f, Product::Master);
        match (&f.installed, wanted) {
            // installed by name from the repository: the node's package manager says what it lacks
            _ if inv.repo.is_some() => {}
            (None, None) => fail(
                &mut failures,
                node,
                format!(
                    "gearpump-master is not installed and no {family} package for {} was given (have: {})",
                    f.arch,
                    describe_packages(&inv.packages)
                ),
            ),
            (Some(have), None) if !inv.packages.is_empty() => warnings.push(format!(
                "{node}: keeps gearpump-master {have}: no {family} package for {} among the packages given",
                f.arch
            )),
            _ => {}
        }
        if let Some(listener) = &f.listener {
            if !f.is_active() {
                fail(
                    &mut failures,
                    node,
                    format!("port {} is in use by another program: {listener}", inv.port),
                );
            }
        }
        check_masters_resolve(inv, node, f, &mut failures);
        if f.ntp_synchronized != "yes" {
            warnings.push(format!(
                "{node}: the clock is not NTP-synchronized ({}): log times will disagree between masters",
                if f.ntp_synchronized.is_empty() { "unknown" } else { &f.ntp_synchronized }
            ));
        }
    }
    for node in inv.worker_only() {
        let Some(f) = facts.get(node) else { continue };
        if f.family.is_none() {
            fail(
                &mut failures,
                node,
                "neither dpkg nor rpm is installed: not a Debian or RPM-based host".into(),
            );
            continue;
        }
        check_masters_resolve(inv, node, f, &mut failures);
    }
    for node in &inv.workers {
        let Some(f) = facts.get(node) else { continue };
        let Some(family) = f.family else { continue };
        if f.worker_installed.is_none()
            && package_for(inv, f, Product::Worker).is_none()
            && inv.repo.is_none()
        {
            fail(
                &mut failures,
                node,
                format!(
                    "gearpump-worker is not installed and no {family} gearpump-worker package for {} was \
                     given (have: {}; scripts/build-packages.sh builds it)",
                    f.arch,
                    describe_packages(&inv.packages)
                ),
            );
        }
    }
    (failures, warnings)
}

/// A node must reach every master by the name gear.conf gives it.
fn check_masters_resolve(inv: &Inventory, node: &str, f: &NodeFacts, failures: &mut Vec<NodeFailure>) {
    for name in &inv.masters {
        let cause = match f.resolved.get(name) {
            None => format!("{name} does not resolve on {node}: add it to DNS or /etc/hosts of every node"),
            Some(address) if is_loopback(address) => format!(
                "{name} resolves to the loopback address {address} on {node}, which the other \
                 nodes cannot reach: map it to the node's network address in /etc/hosts"
            ),
            Some(_) => continue,
        };
        failures.push(NodeFailure { node: node.to_string(), step: Step::Preflight, cause });
    }
}

fn describe_packages(packages: &[PackageFile]) -> String {
    if packages.is_empty() {
        return "none".into();
    }
    packages
        .iter()
        .map(|p| {
            p.path
                .file_name()
                .map_or_else(|| p.path.display().to_string(), |n| n.to_string_lossy().into_owned())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn install_script(family: Family, remote: &str) -> String {
    match family {
        // force-confold: a gear.conf this tool (or the operator) wrote is kept on upgrades
        Family::Deb => format!(
            "DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o Dpkg::Options::=--force-confold {r} && rm -f {r}",
            r = shell_quote(remote)
        ),
        Family::Rpm => format!(
            "if command -v dnf >/dev/null 2>&1; then dnf install -y {r}; elif command -v yum >/dev/null 2>&1; \
             then yum install -y {r}; else rpm -U --replacepkgs {r}; fi && rm -f {r}",
            r = shell_quote(remote)
        ),
    }
}

fn nfs_client_script(family: Family) -> String {
    match family {
        Family::Deb => "DEBIAN_FRONTEND=noninteractive apt-get install -y -q nfs-common".into(),
        Family::Rpm => "if command -v dnf >/dev/null 2>&1; then dnf install -y nfs-utils; else yum install -y nfs-utils; fi".into(),
    }
}

/// The gear.conf keys this node gets.
pub(crate) fn owned_keys(inv: &Inventory, node: &str, secure: bool) -> Vec<OwnedKey> {
    let mut keys = vec![
        OwnedKey::new(gearconf::HOSTNAME, gearconf::quoted(node)),
        OwnedKey::new(gearconf::MASTERS, gearconf::quoted_list(&inv.master_addresses())),
        OwnedKey::new(gearconf::JAR_ROOT, gearconf::quoted(&inv.jar_store.root_path())),
        OwnedKey::new(gearconf::SECRET_FILE, gearconf::quoted(SECRET_FILE)),
    ];
    if let Some(timeout) = &inv.failover_timeout {
        keys.push(OwnedKey::new(gearconf::FAILOVER, timeout.clone()));
    }
    if secure && inv.masters.iter().any(|m| m == node) {
        keys.push(OwnedKey::new(gearconf::TLS_CA_FILE, gearconf::quoted(pki::NODE_CA)));
        keys.push(OwnedKey::new(gearconf::TLS_CERT_FILE, gearconf::quoted(pki::NODE_CERT)));
        keys.push(OwnedKey::new(gearconf::TLS_KEY_FILE, gearconf::quoted(pki::NODE_KEY)));
        keys.push(OwnedKey::new(gearconf::TOKENS_FILE, gearconf::quoted(pki::NODE_TOKENS)));
    }
    // A worker's own certificate: a master certificate on the same node is no worker's.
    if secure && inv.workers.iter().any(|w| w == node) {
        keys.push(OwnedKey::new(gearconf::WORKER_TLS_CA_FILE, gearconf::quoted(pki::NODE_CA)));
        keys.push(OwnedKey::new(gearconf::WORKER_TLS_CERT_FILE, gearconf::quoted(pki::WORKER_CERT)));
        keys.push(OwnedKey::new(gearconf::WORKER_TLS_KEY_FILE, gearconf::quoted(pki::WORKER_KEY)));
    }
    keys
}

/// The actions that bring one master node to the requested state.
pub fn plan_node(
    inv: &Inventory,
    node: &str,
    facts: &NodeFacts,
    secret: &str,
    security: Option<&NodeSecurity>,
    cluster: &ClusterView,
) -> Result<NodePlan, NodeFailure> {
    let failure = |step: Step, cause: String| NodeFailure { node: node.to_string(), step, cause };
    let family =
        facts.family.ok_or_else(|| failure(Step::Preflight, "neither dpkg nor rpm is installed".into()))?;
    let mut actions = Vec::new();
    let mut restart = false;

    // 1. package: install when missing or of another version than the one given (by name from
    // the repository: when missing)
    if let Some(repo) = &inv.repo {
        let installed = facts.installed.as_deref();
        actions.extend(repo::actions(repo, family, Product::Master, facts, installed, repo::Mode::Install));
    } else if let Some(package) = package_for(inv, facts, Product::Master) {
        install_actions(&mut actions, package, family, facts.installed.as_deref());
    } else if facts.installed.is_none() {
        return Err(failure(
            Step::Package,
            format!(
                "gearpump-master is not installed and no {family} package for {} was given (have: {})",
                facts.arch,
                describe_packages(&inv.packages)
            ),
        ));
    }

    // 2. gear.conf: only the owned keys change; 3. the cluster secret
    let config = config_actions(inv, node, facts, secret, security.is_some())?;
    // The masters list only seeds a fresh master (a running cluster's membership lives in its
    // Raft log), so a running master needs no restart for it; every other key does.
    restart |= facts.is_active() && (config.secret_changed || config.other_key_changed);
    actions.extend(config.actions);

    // 3b. TLS files and client tokens (the key and tokens readable by the service only)
    if let Some(security) = security {
        let files = [
            (pki::NODE_CA, &security.ca_pem, 0o644, "root:root", false),
            (pki::NODE_CERT, &security.cert_pem, 0o644, "root:root", false),
            (pki::NODE_KEY, &security.key_pem, 0o600, "gearpump:gearpump", true),
            (pki::NODE_TOKENS, &security.tokens, 0o640, "root:gearpump", true),
        ];
        restart |= write_changed(&mut actions, facts, &files) && facts.is_active();
    }

    // 4. the NFS jar store: client, mount unit, drop-in
    if let JarStore::Nfs { export, options, mount } = &inv.jar_store {
        if !facts.nfs_client {
            actions.push(Action::Run {
                step: Step::JarStore,
                what: "install the NFS client".into(),
                script: nfs_client_script(family),
            });
        }
        let unit = mount_unit_name(mount);
        let unit_path = format!("/etc/systemd/system/{unit}");
        let mut changed = false;
        for (path, content) in
            [(unit_path, mount_unit(export, mount, options)), (DROP_IN.to_string(), drop_in(mount))]
        {
            if facts.file(&path) != Some(content.as_str()) {
                changed = true;
                actions.push(Action::Write {
                    step: Step::JarStore,
                    path,
                    mode: 0o644,
                    owner: "root:root".into(),
                    content,
                    secret: false,
                    backup: false,
                });
            }
        }
        let enabled = facts.unit_enabled.get(&unit).map(String::as_str) == Some("enabled");
        if changed || !enabled {
            restart |= facts.is_active();
            actions.push(Action::Run {
                step: Step::JarStore,
                what: format!("enable and mount {unit}"),
                script: format!(
                    "mkdir -p {m} && systemctl daemon-reload && systemctl enable --now {u}",
                    m = shell_quote(mount),
                    u = shell_quote(&unit)
                ),
            });
        }
    }

    let address = inv.master_address(node);
    let join = cluster.exists() && !cluster.voters.contains(&address);
    let start = !facts.is_active();
    // A master that must join a running cluster starts on an EMPTY state directory: it then asks
    // the masters list, finds the cluster and waits to be added. On a directory of an earlier
    // cluster (a master lost with the majority, before `recover --force-new-cluster` on the
    // survivor) it would resume its old membership instead, and two such masters could elect a
    // leader of their own next to the running cluster. Setup cannot tell that case from a master
    // that only ever waited to be added, so both are refused with the way out; the second loses
    // nothing by it. (The packaged unit's sandbox fixes the directory: StateDirectory=gearpump.)
    if join && start && facts.state_db {
        return Err(failure(
            Step::Join,
            format!(
                "{address} is not a member of the running cluster [{voters}], and {STATE_DIR} holds the \
                 state of an earlier start ({STATE_DB}): started on it, this master would follow its old \
                 membership instead of joining. If it belonged to a cluster that lost its majority, or only \
                 waited to be added before, move the directory aside on {node} and run again: \
                 mv {STATE_DIR} {STATE_DIR}.old-$(date +%s) && install -d -o gearpump -g gearpump -m 0750 \
                 {STATE_DIR}",
                voters = cluster.voters.join(", "),
            ),
        ));
    }
    if facts.enabled != "enabled" {
        actions.push(Action::Run {
            step: Step::Start,
            what: "enable the service".into(),
            script: format!("systemctl enable {SERVICE}"),
        });
    }
    Ok(NodePlan { node: node.to_string(), address, actions, restart: restart && !start, start, join })
}

/// Writes each `(path, content, mode, owner, secret)` whose content on the node differs; true
/// when any does.
fn write_changed(
    actions: &mut Vec<Action>,
    facts: &NodeFacts,
    files: &[(&str, &String, u32, &str, bool)],
) -> bool {
    let mut changed = false;
    for (path, content, mode, owner, secret) in files {
        if facts.file(path) != Some(content.as_str()) {
            changed = true;
            actions.push(Action::Write {
                step: Step::Secret,
                path: (*path).into(),
                mode: *mode,
                owner: (*owner).into(),
                content: (*content).clone(),
                secret: *secret,
                backup: false,
            });
        }
    }
    changed
}

/// Copy, then install `package` unless `installed` is its version already.
pub(crate) fn install_actions(
    actions: &mut Vec<Action>,
    package: &PackageFile,
    family: Family,
    installed: Option<&str>,
) {
    if installed == Some(package.version.as_str()) {
        return;
    }
    let file_name = package.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let remote = format!("{REMOTE_PACKAGE_DIR}/{file_name}");
    actions.push(Action::Run {
        step: Step::Package,
        what: "make the upload folder".into(),
        script: format!("mkdir -p {REMOTE_PACKAGE_DIR} && chmod 1777 {REMOTE_PACKAGE_DIR}"),
    });
    actions.push(Action::Copy { step: Step::Package, local: package.path.clone(), remote: remote.clone() });
    actions.push(Action::Run {
        step: Step::Package,
        what: format!(
            "install {} {} (was {})",
            package.product.package_name(),
            package.version,
            installed.unwrap_or("not installed")
        ),
        script: install_script(family, &remote),
    });
}

/// The gear.conf and cluster secret writes a node needs (masters and workers share both).
struct ConfigActions {
    actions: Vec<Action>,
    /// A key other than the masters list changes.
    other_key_changed: bool,
    masters_changed: bool,
    secret_changed: bool,
}

fn config_actions(
    inv: &Inventory,
    node: &str,
    facts: &NodeFacts,
    secret: &str,
    secure: bool,
) -> Result<ConfigActions, NodeFailure> {
    let failure = |step: Step, cause: String| NodeFailure { node: node.to_string(), step, cause };
    let mut config = ConfigActions {
        actions: Vec::new(),
        other_key_changed: false,
        masters_changed: false,
        secret_changed: false,
    };
    let current = facts.file(GEAR_CONF);
    let base = current.unwrap_or(SHIPPED_GEAR_CONF);
    let rewrite = gearconf::rewrite(base, &owned_keys(inv, node, secure));
    // A master checks it as a master (it must be in the masters list); a worker-only node as
    // the worker reads it.
    let is_master = inv.masters.iter().any(|m| m == node);
    let load = |text: &str| {
        let path = std::path::Path::new(GEAR_CONF);
        if is_master {
            crate::config::load_str(path, text, &Default::default()).map(drop)
        } else {
            crate::config::load_worker_str(path, text).map(drop)
        }
    };
    if let Err(e) = load(&rewrite.text) {
        // Tell a file that was unparsable before this tool touched it from a rewrite gone wrong.
        let cause = match current.map(load) {
            Some(Err(before @ crate::config::ConfigError::Syntax { .. })) => format!(
                "the node's {GEAR_CONF} does not parse as it is: {before}; fix it (or move it away to start \
                 from the shipped one) and run again"
            ),
            _ => format!("the rewritten gear.conf would not load: {e}"),
        };
        return Err(failure(Step::GearConf, cause));
    }
    if current != Some(rewrite.text.as_str()) {
        config.other_key_changed = rewrite.changes.keys().any(|k| k != gearconf::MASTERS.name);
        config.masters_changed = rewrite.changes.keys().any(|k| k == gearconf::MASTERS.name);
        config.actions.push(Action::Write {
            step: Step::GearConf,
            path: GEAR_CONF.into(),
            mode: 0o644,
            owner: "root:root".into(),
            content: rewrite.text,
            secret: false,
            // also on a first install: the previous file is then the package's own
            backup: true,
        });
    }
    let secret_line = format!("{secret}\n");
    if facts.file(SECRET_FILE) != Some(secret_line.as_str()) {
        config.secret_changed = true;
        config.actions.push(Action::Write {
            step: Step::Secret,
            path: SECRET_FILE.into(),
            mode: 0o600,
            owner: "gearpump:gearpump".into(),
            content: secret_line,
            secret: true,
            backup: false,
        });
    }
    Ok(config)
}

/// What a worker node needs: its package, and (unless it is a master too, whose plan writes
/// them) gear.conf and the secret; started or restarted after the masters are READY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerPlan {
    pub node: String,
    pub actions: Vec<Action>,
    /// Needs `systemctl start` (not running now).
    pub start: bool,
    /// Running, but gear.conf, the secret or its certificate changes: restarted. A stopping
    /// worker kills its attempts and reports them stopped, so the masters restart them (on
    /// another worker, or on this one once it is back); setup restarts workers one at a time.
    pub restart: bool,
}

/// `security`: the worker's certificate (`CertKind::Worker`) and the CA, unless `--insecure`.
pub fn plan_worker(
    inv: &Inventory,
    node: &str,
    facts: &NodeFacts,
    secret: &str,
    security: Option<&NodeSecurity>,
) -> Result<WorkerPlan, NodeFailure> {
    let failure = |step: Step, cause: String| NodeFailure { node: node.to_string(), step, cause };
    let family =
        facts.family.ok_or_else(|| failure(Step::Preflight, "neither dpkg nor rpm is installed".into()))?;
    let mut actions = Vec::new();
    if let Some(repo) = &inv.repo {
        let installed = facts.worker_installed.as_deref();
        actions.extend(repo::actions(repo, family, Product::Worker, facts, installed, repo::Mode::Install));
    } else if let Some(package) = package_for(inv, facts, Product::Worker) {
        install_actions(&mut actions, package, family, facts.worker_installed.as_deref());
    } else if facts.worker_installed.is_none() {
        return Err(failure(
            Step::Package,
            format!(
                "gearpump-worker is not installed and no {family} gearpump-worker package for {} was given \
                 (have: {})",
                facts.arch,
                describe_packages(&inv.packages)
            ),
        ));
    }
    // The worker reads every key it uses (masters list included) only when it starts.
    let config = config_actions(inv, node, facts, secret, security.is_some())?;
    let mut changed = config.secret_changed || config.other_key_changed || config.masters_changed;
    let is_master = inv.masters.iter().any(|m| m == node);
    if !is_master {
        actions.extend(config.actions);
    }
    // Its certificate and key; the CA too unless the master's plan on this node writes it.
    if let Some(security) = security {
        let mut files = vec![
            (pki::WORKER_CERT, &security.cert_pem, 0o644, "root:root", false),
            (pki::WORKER_KEY, &security.key_pem, 0o600, "gearpump:gearpump", true),
        ];
        if !is_master {
            files.insert(0, (pki::NODE_CA, &security.ca_pem, 0o644, "root:root", false));
        }
        changed |= write_changed(&mut actions, facts, &files);
    }
    if facts.worker_enabled != "enabled" {
        actions.push(Action::Run {
            step: Step::Start,
            what: "enable the worker service".into(),
            script: format!("systemctl enable {WORKER_SERVICE}"),
        });
    }
    let start = !facts.worker_is_active();
    Ok(WorkerPlan { node: node.to_string(), actions, start, restart: changed && !start })
}

/// Starts or restarts a worker and waits for READY, which it sends once a leader registered
/// it (the masters are READY by then).
pub fn worker_start_script(restart: bool) -> String {
    let verb = if restart { "restart" } else { "start" };
    format!("systemctl reset-failed {WORKER_SERVICE} 2>/dev/null; systemctl {verb} {WORKER_SERVICE}")
}

/// Renders a worker's plan for `--dry-run`.
pub fn render_worker(plan: &WorkerPlan, facts: &NodeFacts) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "== {} worker (gearpump-worker {}; service {})",
        plan.node,
        facts.worker_installed.as_deref().unwrap_or("not installed"),
        if facts.worker_active.is_empty() { "unknown" } else { &facts.worker_active }
    );
    render_actions(&mut out, &plan.node, &plan.actions);
    if plan.start || plan.restart {
        let _ = writeln!(
            out,
            "  [start] once the masters are READY, {} and wait until READY (registered):",
            if plan.restart { "restart (its applications move to other workers)" } else { "start" }
        );
        let _ = writeln!(out, "      $ {}", worker_start_script(plan.restart));
        let _ = writeln!(
            out,
            "  [register] wait until GET /api/v1.0/master/workerlist lists host {} alive",
            plan.node
        );
    }
    if plan.actions.is_empty() && !plan.start && !plan.restart {
        let _ = writeln!(out, "  nothing to change");
    }
    out
}

fn render_actions(out: &mut String, node: &str, actions: &[Action]) {
    for action in actions {
        match action {
            Action::Copy { step, local, remote } => {
                let _ = writeln!(out, "  [{step}] scp {} {node}:{remote}", local.display());
            }
            Action::Run { step, what, script } => {
                let _ = writeln!(out, "  [{step}] {what}:");
                for line in script.lines() {
                    let _ = writeln!(out, "      $ {line}");
                }
            }
            Action::Write { step, path, mode, owner, content, secret, backup } => {
                let _ = writeln!(
                    out,
                    "  [{step}] write {path} (mode {mode:04o}, owner {owner}{})",
                    if *backup { ", previous file kept as a dated .bak" } else { "" }
                );
                if *secret {
                    let what = if path == SECRET_FILE { "the cluster secret" } else { "private" };
                    let _ =
                        writeln!(out, "      | <{what}, {} characters, not shown>", content.trim_end().len());
                } else {
                    for line in content.lines() {
                        let _ = writeln!(out, "      | {line}");
                    }
                }
            }
        }
    }
}

/// The command that starts a master without waiting for READY (Type=notify would block until
/// a quorum exists, which needs the other masters started too, or this one added).
pub fn start_script() -> String {
    format!("systemctl reset-failed {SERVICE} 2>/dev/null; systemctl start --no-block {SERVICE}")
}

/// Restarts a member of a running cluster. Unlike a start, this waits for READY: the other
/// masters are up, so READY comes as soon as this one is back in the quorum, and the next master
/// must not go down before that.
pub fn restart_script() -> String {
    format!("systemctl reset-failed {SERVICE} 2>/dev/null; systemctl restart {SERVICE}")
}

pub fn stop_script() -> String {
    format!("systemctl disable --now {SERVICE}")
}

/// Renders a node's plan for `--dry-run`: every command and every file's content.
pub fn render(plan: &NodePlan, facts: &NodeFacts, cluster: &ClusterView) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "== {} ({} {}; gearpump-master {}; service {})",
        plan.node,
        facts.family.map_or_else(|| "?".to_string(), |f| f.to_string()),
        facts.arch,
        facts.installed.as_deref().unwrap_or("not installed"),
        if facts.active.is_empty() { "unknown" } else { &facts.active }
    );
    render_actions(&mut out, &plan.node, &plan.actions);
    if plan.restart {
        let _ = writeln!(out, "  [start] restart (one master at a time), then wait until READY:");
        let _ = writeln!(out, "      $ {}", restart_script());
    } else if plan.start {
        let _ = writeln!(out, "  [start] start without waiting for READY:");
        let _ = writeln!(out, "      $ {}", start_script());
    }
    if plan.join {
        let _ = writeln!(
            out,
            "  [join] POST /api/v1.0/master/members {{\"add\": \"{}\"}} to the running cluster ({})",
            plan.address,
            cluster.voters.join(", ")
        );
    }
    if plan.actions.is_empty() && !plan.start && !plan.restart && !plan.join {
        let _ = writeln!(out, "  nothing to change");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::SetupArgs;
    use crate::setup::inventory;
    use clap::Parser;

    fn inv(line: &str) -> Inventory {
        let args = SetupArgs::try_parse_from(line.split_whitespace()).expect("args");
        let mut inv = inventory::from_args(&args, std::path::Path::new("/nonexistent")).expect("valid");
        inv.packages = vec![
            PackageFile {
                path: "target/packages/gearpump-master_0.1.0-1_amd64.deb".into(),
                product: Product::Master,
                family: Family::Deb,
                arch: "amd64".into(),
                version: "0.1.0-1".into(),
            },
            PackageFile {
                path: "target/packages/gearpump-worker_0.1.0-1_amd64.deb".into(),
                product: Product::Worker,
                family: Family::Deb,
                arch: "amd64".into(),
                version: "0.1.0-1".into(),
            },
        ];
        inv
    }

    fn plain_node(names: &[&str]) -> NodeFacts {
        NodeFacts {
            family: Some(Family::Deb),
            arch: "amd64".into(),
            active: "inactive".into(),
            enabled: "enabled".into(),
            ntp_synchronized: "yes".into(),
            resolved: names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.to_string(), format!("10.0.0.{}", i + 11)))
                .collect(),
            ..Default::default()
        }
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn escapes_mount_unit_names_like_systemd() {
        assert_eq!(mount_unit_name("/mnt/gearpump-jars"), "mnt-gearpump\\x2djars.mount");
        assert_eq!(mount_unit_name("/srv/jars/"), "srv-jars.mount");
        assert_eq!(mount_unit_name("/var/lib/a b"), "var-lib-a\\x20b.mount");
    }

    #[test]
    fn fresh_node_gets_package_config_secret_and_nfs() {
        let inv =
            inv("gearpump-setup --masters node1,node2,node3 --nfs filer:/export/gp --failover-timeout 2s");
        let facts = plain_node(&["node1", "node2", "node3"]);
        let plan = plan_node(&inv, "node2", &facts, SECRET, None, &ClusterView::default()).expect("plan");
        let steps: Vec<Step> = plan.actions.iter().map(Action::step).collect();
        assert_eq!(
            steps,
            [
                Step::Package,
                Step::Package,
                Step::Package,
                Step::GearConf,
                Step::Secret,
                Step::JarStore,
                Step::JarStore,
                Step::JarStore,
                Step::JarStore
            ]
        );
        assert!(plan.start && !plan.join && !plan.restart);
        let Some(Action::Write { content, backup, .. }) =
            plan.actions.iter().find(|a| a.step() == Step::GearConf)
        else {
            panic!("no gear.conf write")
        };
        assert!(backup);
        assert!(content.contains("hostname = \"node2\""));
        assert!(content.contains("masters = [\"node1:3000\", \"node2:3000\", \"node3:3000\"]"));
        assert!(content.contains("rootpath = \"file:///mnt/gearpump-jars\""));
        assert!(content.contains("failover-timeout = 2s"));
        let rendered = render(&plan, &facts, &ClusterView::default());
        assert!(rendered.contains("apt-get install -y -q -o Dpkg::Options::=--force-confold /tmp/gearpump-setup/gearpump-master_0.1.0-1_amd64.deb"));
        assert!(rendered.contains("| RequiresMountsFor=/mnt/gearpump-jars"));
        assert!(rendered.contains("| Where=/mnt/gearpump-jars"));
        assert!(rendered.contains("systemctl start --no-block gearpump-master.service"));
        assert!(!rendered.contains(SECRET), "the secret must never be printed");
    }

    #[test]
    fn configured_node_plans_nothing() {
        let inv = inv("gearpump-setup --masters node1,node2,node3 --jar-store hdfs://nn:9000/jars");
        let mut facts = plain_node(&["node1", "node2", "node3"]);
        let first = plan_node(&inv, "node1", &facts, SECRET, None, &ClusterView::default()).expect("plan");
        for action in &first.actions {
            if let Action::Write { path, content, .. } = action {
                facts.files.insert(path.clone(), Some(content.clone()));
            }
        }
        facts.installed = Some("0.1.0-1".into());
        facts.active = "active".into();
        let cluster = ClusterView { voters: inv.master_addresses() };
        let again = plan_node(&inv, "node1", &facts, SECRET, None, &cluster).expect("plan");
        assert_eq!(again.actions, []);
        assert!(!again.start && !again.join && !again.restart);
        assert!(render(&again, &facts, &cluster).contains("nothing to change"));
    }

    #[test]
    fn a_secured_node_gets_tls_files_and_tokens_privately_and_a_re_run_keeps_them() {
        let inv = inv("gearpump-setup --masters node1,node2,node3 --jar-store hdfs://nn:9000/jars");
        let dir = tempfile::tempdir().expect("dir");
        let pki = crate::setup::pki::AdminPki::load_or_create(dir.path(), true).expect("pki");
        let security =
            pki.for_node("node1", super::super::pki::CertKind::Master, None, false).expect("issue");
        let mut facts = plain_node(&["node1", "node2", "node3"]);
        let first =
            plan_node(&inv, "node1", &facts, SECRET, Some(&security), &ClusterView::default()).expect("plan");
        let writes: Vec<(String, u32, String, bool)> = first
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Write { path, mode, owner, secret, .. } => {
                    Some((path.clone(), *mode, owner.clone(), *secret))
                }
                _ => None,
            })
            .collect();
        for expected in [
            (pki::NODE_KEY, 0o600, "gearpump:gearpump", true),
            (pki::NODE_TOKENS, 0o640, "root:gearpump", true),
            (pki::NODE_CERT, 0o644, "root:root", false),
            (pki::NODE_CA, 0o644, "root:root", false),
        ] {
            let found =
                writes.iter().find(|w| w.0 == expected.0).unwrap_or_else(|| panic!("{} written", expected.0));
            assert_eq!(
                (found.1, found.2.as_str(), found.3),
                (expected.1, expected.2, expected.3),
                "{}",
                expected.0
            );
        }
        let Some(Action::Write { content: conf, .. }) =
            first.actions.iter().find(|a| a.step() == Step::GearConf)
        else {
            panic!("no gear.conf")
        };
        let config = crate::config::load_str(std::path::Path::new("gear.conf"), conf, &Default::default())
            .expect("loads");
        assert_eq!(
            config.tls.as_ref().map(|t| t.key_file.display().to_string()),
            Some(pki::NODE_KEY.to_string())
        );
        assert_eq!(config.tokens_file.as_deref(), Some(std::path::Path::new(pki::NODE_TOKENS)));
        let rendered = render(&first, &facts, &ClusterView::default());
        assert!(!rendered.contains(&pki.admin_token) && !rendered.contains("PRIVATE KEY"), "{rendered}");

        for action in &first.actions {
            if let Action::Write { path, content, .. } = action {
                facts.files.insert(path.clone(), Some(content.clone()));
            }
        }
        facts.installed = Some("0.1.0-1".into());
        facts.active = "active".into();
        let current = (
            facts.file(pki::NODE_CA).expect("ca"),
            facts.file(pki::NODE_CERT).expect("cert"),
            facts.file(pki::NODE_KEY).expect("key"),
        );
        let kept =
            pki.for_node("node1", super::super::pki::CertKind::Master, Some(current), false).expect("keep");
        let cluster = ClusterView { voters: inv.master_addresses() };
        let again = plan_node(&inv, "node1", &facts, SECRET, Some(&kept), &cluster).expect("plan");
        assert_eq!(again.actions, [], "a re-run keeps certificates and tokens");
        let rotated =
            pki.for_node("node1", super::super::pki::CertKind::Master, Some(current), true).expect("rotate");
        let rotation = plan_node(&inv, "node1", &facts, SECRET, Some(&rotated), &cluster).expect("plan");
        assert_eq!(rotation.actions.len(), 2, "new certificate and key: {:?}", rotation.actions);
        assert!(rotation.restart, "a running master restarts to use them");
    }

    #[test]
    fn a_longer_list_joins_new_nodes_and_does_not_restart_old_ones() {
        let three = inv("gearpump-setup --masters node1,node2,node3");
        let five = inv("gearpump-setup --masters node1,node2,node3,node4,node5");
        let mut old = plain_node(&["node1", "node2", "node3", "node4", "node5"]);
        let first = plan_node(&three, "node1", &old, SECRET, None, &ClusterView::default()).expect("plan");
        for action in &first.actions {
            if let Action::Write { path, content, .. } = action {
                old.files.insert(path.clone(), Some(content.clone()));
            }
        }
        old.installed = Some("0.1.0-1".into());
        old.active = "active".into();
        let cluster = ClusterView { voters: three.master_addresses() };
        let plan = plan_node(&five, "node1", &old, SECRET, None, &cluster).expect("plan");
        assert_eq!(plan.actions.len(), 1, "only gear.conf's masters list changes");
        assert!(!plan.restart && !plan.join && !plan.start);
        let new = plain_node(&["node1", "node2", "node3", "node4", "node5"]);
        let plan = plan_node(&five, "node4", &new, SECRET, None, &cluster).expect("plan");
        assert!(plan.start && plan.join);
        assert!(render(&plan, &new, &cluster).contains(
            "[join] POST /api/v1.0/master/members {\"add\": \"node4:3000\"} to the running cluster (node1:3000"
        ));
    }

    #[test]
    fn after_a_forced_recovery_wiped_masters_join_the_survivor_and_old_state_is_refused() {
        // node1 runs alone after `recover --force-new-cluster`; its gear.conf (written by an
        // earlier setup) still lists all three. node2 and node3 are installed and configured the
        // same way, stopped, their state directories moved aside.
        let inv = inv("gearpump-setup --masters node1,node2,node3 --jar-store hdfs://nn:9000/jars");
        // a node as the first setup left it: its own gear.conf and the secret, the package installed
        let configured = |node: &str| {
            let mut facts = plain_node(&["node1", "node2", "node3"]);
            let first = plan_node(&inv, node, &facts, SECRET, None, &ClusterView::default()).expect("plan");
            for action in &first.actions {
                if let Action::Write { path, content, .. } = action {
                    facts.files.insert(path.clone(), Some(content.clone()));
                }
            }
            facts.installed = Some("0.1.0-1".into());
            facts
        };
        let survivor = ClusterView { voters: vec!["node1:3000".into()] };
        let mut running = configured("node1");
        running.active = "active".into();
        running.state_db = true;
        let plan = plan_node(&inv, "node1", &running, SECRET, None, &survivor).expect("plan");
        assert!(plan.actions.is_empty() && !plan.start && !plan.join && !plan.restart, "{plan:?}");
        for node in ["node2", "node3"] {
            let facts = configured(node);
            let plan = plan_node(&inv, node, &facts, SECRET, None, &survivor).expect("plan");
            assert!(plan.actions.is_empty(), "nothing to rewrite: {:?}", plan.actions);
            assert!(plan.start && plan.join && !plan.restart, "{plan:?}");
            assert!(render(&plan, &facts, &survivor).contains(&format!(
                "[join] POST /api/v1.0/master/members {{\"add\": \"{node}:3000\"}} to the running cluster (node1:3000)"
            )));
        }
        // the same node with its old state directory: refused, with the way out
        let mut stale = configured("node2");
        stale.state_db = true;
        let failure = plan_node(&inv, "node2", &stale, SECRET, None, &survivor).expect_err("old state");
        assert_eq!(failure.step, Step::Join);
        assert!(
            failure.cause.starts_with(
                "node2:3000 is not a member of the running cluster [node1:3000], and /var/lib/gearpump holds"
            ),
            "{}",
            failure.cause
        );
        assert!(failure.cause.contains("mv /var/lib/gearpump /var/lib/gearpump.old-$(date +%s)"));
        // a state directory is no obstacle where the node needs no join: a member, or a new cluster
        assert!(plan_node(&inv, "node2", &stale, SECRET, None, &ClusterView::default()).is_ok());
        let all = ClusterView { voters: inv.master_addresses() };
        assert!(plan_node(&inv, "node2", &stale, SECRET, None, &all).is_ok());
    }

    #[test]
    fn a_broken_gear_conf_is_blamed_on_the_node() {
        let inv = inv("gearpump-setup --masters node1,node2,node3");
        let mut facts = plain_node(&["node1", "node2", "node3"]);
        facts
            .files
            .insert(GEAR_CONF.into(), Some("gearpump {\n  cluster.masters = [ \"node1:3000\"\n".into()));
        let failure =
            plan_node(&inv, "node1", &facts, SECRET, None, &ClusterView::default()).expect_err("broken");
        assert_eq!(failure.step, Step::GearConf);
        assert!(
            failure.cause.starts_with(
                "the node's /etc/gearpump/gear.conf does not parse as it is: /etc/gearpump/gear.conf:3:"
            ),
            "{}",
            failure.cause
        );
    }

    #[test]
    fn preflight_names_node_and_cause() {
        let inv = inv("gearpump-setup --masters node1,node2,node3");
        let mut facts = BTreeMap::new();
        let mut bad = plain_node(&["node1", "node2", "node3"]);
        bad.resolved.insert("node2".into(), "127.0.1.1".into());
        bad.resolved.remove("node3");
        bad.listener = Some("LISTEN 0 128 *:3000 users:((\"java\",pid=7))".into());
        bad.ntp_synchronized = "no".into();
        facts.insert("node2".to_string(), bad);
        let mut rpm = plain_node(&["node1", "node2", "node3"]);
        rpm.family = Some(Family::Rpm);
        facts.insert("node3".to_string(), rpm);
        let (failures, warnings) = preflight(&inv, &facts);
        let text: Vec<String> =
            failures.iter().map(|f| format!("{} {}: {}", f.node, f.step, f.cause)).collect();
        assert!(text.iter().any(|t| t.starts_with("node2 preflight: port 3000 is in use")), "{text:?}");
        assert!(text.iter().any(|t| t.contains("node2 resolves to the loopback address 127.0.1.1 on node2")));
        assert!(text.iter().any(|t| t.contains("node3 does not resolve on node2")));
        assert!(text
            .iter()
            .any(|t| t.starts_with("node3 preflight: gearpump-master is not installed and no rpm package")));
        assert!(warnings.iter().any(|w| w.contains("NTP")));
    }

    #[test]
    fn a_worker_node_gets_its_package_config_and_secret_and_a_master_node_only_the_package() {
        let inv = inv("gearpump-setup --masters node1,node2,node3 --workers node3,node4 --insecure");
        let facts = plain_node(&["node1", "node2", "node3"]);
        let plan = plan_worker(&inv, "node4", &facts, SECRET, None).expect("plan");
        let steps: Vec<Step> = plan.actions.iter().map(Action::step).collect();
        assert_eq!(
            steps,
            [Step::Package, Step::Package, Step::Package, Step::GearConf, Step::Secret, Step::Start]
        );
        assert!(plan.start && !plan.restart);
        let rendered = render_worker(&plan, &facts);
        assert!(rendered.contains("/tmp/gearpump-setup/gearpump-worker_0.1.0-1_amd64.deb"), "{rendered}");
        assert!(rendered.contains("install gearpump-worker 0.1.0-1 (was not installed)"));
        assert!(rendered.contains("|   hostname = \"node4\""));
        assert!(rendered.contains("$ systemctl reset-failed gearpump-worker.service 2>/dev/null; systemctl start gearpump-worker.service"));
        assert!(rendered.contains("workerlist lists host node4 alive"));
        assert!(!rendered.contains(SECRET), "the secret must never be printed");
        // node3 is a master too: its master plan writes gear.conf and the secret, once
        let plan = plan_worker(&inv, "node3", &facts, SECRET, None).expect("plan");
        let steps: Vec<Step> = plan.actions.iter().map(Action::step).collect();
        assert_eq!(steps, [Step::Package, Step::Package, Step::Package, Step::Start]);
        let master = plan_node(&inv, "node3", &facts, SECRET, None, &ClusterView::default()).expect("plan");
        assert!(!master
            .actions
            .iter()
            .any(|a| matches!(a, Action::Run { what, .. } if what.contains("gearpump-worker"))));
    }

    #[test]
    fn a_configured_worker_plans_nothing_and_restarts_for_a_new_masters_list() {
        let inv3 = inv("gearpump-setup --masters node1,node2,node3 --workers node4 --insecure");
        let mut facts = plain_node(&["node1", "node2", "node3", "node4", "node5"]);
        let first = plan_worker(&inv3, "node4", &facts, SECRET, None).expect("plan");
        for action in &first.actions {
            if let Action::Write { path, content, .. } = action {
                facts.files.insert(path.clone(), Some(content.clone()));
            }
        }
        facts.worker_installed = Some("0.1.0-1".into());
        facts.worker_active = "active".into();
        facts.worker_enabled = "enabled".into();
        let again = plan_worker(&inv3, "node4", &facts, SECRET, None).expect("plan");
        assert_eq!(again.actions, []);
        assert!(!again.start && !again.restart);
        assert!(render_worker(&again, &facts).contains("nothing to change"));
        // the worker heartbeats to the masters list it read at start: a new list needs a restart
        let inv5 = inv("gearpump-setup --masters node1,node2,node3,node5 --workers node4 --insecure");
        let plan = plan_worker(&inv5, "node4", &facts, SECRET, None).expect("plan");
        assert!(plan.restart && !plan.start);
        assert_eq!(plan.actions.len(), 1, "only gear.conf changes");
        assert!(render_worker(&plan, &facts).contains("systemctl restart gearpump-worker.service"));
    }

    #[test]
    fn a_secured_worker_gets_its_worker_certificate_and_a_new_one_restarts_it() {
        let dir = tempfile::tempdir().expect("dir");
        let pki = crate::setup::pki::AdminPki::load_or_create(dir.path(), true).expect("pki");
        let inv = inv("gearpump-setup --masters node1,node2,node3 --workers node3,node4");
        let mut facts = plain_node(&["node1", "node2", "node3", "node4"]);
        let worker = pki.for_node("node4", pki::CertKind::Worker, None, false).expect("worker cert");
        let plan = plan_worker(&inv, "node4", &facts, SECRET, Some(&worker)).expect("plan");
        let written: Vec<(&str, u32, &str)> = plan
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Write { path, mode, owner, .. } => Some((path.as_str(), *mode, owner.as_str())),
                _ => None,
            })
            .collect();
        for expected in [
            (pki::NODE_CA, 0o644, "root:root"),
            (pki::WORKER_CERT, 0o644, "root:root"),
            (pki::WORKER_KEY, 0o600, "gearpump:gearpump"),
        ] {
            assert!(written.contains(&expected), "{expected:?} in {written:?}");
        }
        // A worker-only node: the worker's TLS keys, no master certificate, no tokens.
        assert!(!written.iter().any(|(path, ..)| *path == pki::NODE_CERT || *path == pki::NODE_TOKENS));
        let conf = plan
            .actions
            .iter()
            .find_map(|a| match a {
                Action::Write { path, content, .. } if path == GEAR_CONF => Some(content.clone()),
                _ => None,
            })
            .expect("gear.conf");
        let config = crate::config::load_worker_str(std::path::Path::new(GEAR_CONF), &conf).expect("loads");
        let tls = config.tls.expect("gearpump.worker.tls");
        assert_eq!(tls.cert_file, std::path::Path::new(pki::WORKER_CERT));
        assert!(!conf.contains(pki::NODE_CERT), "{conf}");
        let rendered = render_worker(&plan, &facts);
        assert!(!rendered.contains(&worker.key_pem), "a key must never be printed");
        // Applied and running: nothing to do; a rotated certificate restarts the worker.
        for action in &plan.actions {
            if let Action::Write { path, content, .. } = action {
                facts.files.insert(path.clone(), Some(content.clone()));
            }
        }
        facts.worker_installed = Some("0.1.0-1".into());
        facts.worker_active = "active".into();
        facts.worker_enabled = "enabled".into();
        assert_eq!(plan_worker(&inv, "node4", &facts, SECRET, Some(&worker)).expect("plan").actions, []);
        let rotated = pki.for_node("node4", pki::CertKind::Worker, None, true).expect("rotated");
        let plan = plan_worker(&inv, "node4", &facts, SECRET, Some(&rotated)).expect("plan");
        assert!(plan.restart && !plan.start);
        // node3 runs a master too: its master plan writes the CA, the worker plan only its own pair.
        let plan = plan_worker(&inv, "node3", &facts, SECRET, Some(&worker)).expect("plan");
        assert!(!plan
            .actions
            .iter()
            .any(|a| matches!(a, Action::Write { path, .. } if path == pki::NODE_CA)));
    }

    #[test]
    fn a_worker_without_a_worker_package_fails_preflight() {
        let mut inv = inv("gearpump-setup --masters node1 --workers node2 --insecure");
        inv.packages.retain(|p| p.product == Product::Master);
        let mut facts = BTreeMap::new();
        facts.insert("node1".to_string(), plain_node(&["node1"]));
        facts.insert("node2".to_string(), plain_node(&[]));
        let (failures, _) = preflight(&inv, &facts);
        let text: Vec<String> =
            failures.iter().map(|f| format!("{} {}: {}", f.node, f.step, f.cause)).collect();
        assert!(
            text.iter().any(|t| t.starts_with("node2 preflight: node1 does not resolve on node2")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t.starts_with("node2 preflight: gearpump-worker is not installed and no deb")),
            "{text:?}"
        );
    }
}
