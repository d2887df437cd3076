//! `gearpump-setup --upgrade`: a rolling upgrade of a running cluster, the way etcd's operators
//! upgrade members: one master at a time, followers first and the leader last, each back in the
//! quorum, on the new version and caught up with the leader before the next goes down, so the
//! cluster keeps a quorum (and its clients an answer) throughout.
//!
//! The package does the restart: its maintainer scripts restart a running master on upgrade and
//! nothing else (packaging/deb/postinst, packaging/rpm/postun.sh). A master stopped with SIGTERM
//! hands leadership to an up-to-date follower before it exits (`/peer/take-over`), so the
//! leader's turn costs a hand-over, not an election timeout. Masters of adjacent versions run
//! together meanwhile: the peer protocol carries its version (`wire::PEER_VERSION`).
//!
//! It stops at the first master that does not come back and says which are upgraded already;
//! the cluster then still has its quorum (one master down at most), and the same command run
//! again continues where it stopped (an upgraded master is a no-op for the package manager).

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use crate::wire::{MasterAnswer, MembersView, Role};

use super::inventory::{Inventory, Product, Security};
use super::pki::AdminPki;
use super::plan::{self, Action, NodeFailure, Step};
use super::probe::NodeFacts;
use super::repo::{self, Mode};
use super::run::{admin_credentials, execute, probe_all, run_checked, wait_workers, Http};
use super::ssh::Transport;
use super::SetupError;
use crate::client::Credentials;

const PROBE_TIMEOUT: Duration = Duration::from_secs(60);

/// One master as `GET /api/v1.0/master` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MasterView {
    role: Role,
    version: String,
    applied: u64,
}

/// The cluster as one master sees it: the leader's address and commit index, and each member.
#[derive(Debug, Clone, Default)]
struct ClusterState {
    leader: Option<String>,
    leader_commit: u64,
    members: BTreeMap<String, MasterView>,
}

fn cluster_state(answer: &MasterAnswer) -> ClusterState {
    let mut state = ClusterState::default();
    for master in &answer.master_description.cluster {
        let progress = master.progress.as_ref();
        if master.role == Role::Leader {
            state.leader = Some(master.address.clone());
            state.leader_commit = progress.map_or(0, |p| p.commit_index);
        }
        let view = MasterView {
            role: master.role,
            // a master from before versions were reported says nothing
            version: progress
                .map(|p| p.version.clone())
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| "unknown".to_string()),
            applied: progress.map_or(0, |p| p.applied_index),
        };
        state.members.insert(master.address.clone(), view);
    }
    state
}

/// The version a master's binary prints (`gearpump-master 0.1.0` -> `0.1.0`).
fn binary_version(output: &str) -> Option<String> {
    output.lines().find_map(|l| l.trim().strip_prefix("gearpump-master ")).map(|v| v.trim().to_string())
}

/// What upgrading `product` on a node takes: the repository's upgrade, or the package file.
fn package_actions(inv: &Inventory, facts: &NodeFacts, product: Product) -> Result<Vec<Action>, String> {
    let family = facts.family.ok_or("neither dpkg nor rpm is installed")?;
    let installed = match product {
        Product::Master => facts.installed.as_deref(),
        Product::Worker => facts.worker_installed.as_deref(),
    };
    if installed.is_none() {
        return Err(format!(
            "{} is not installed: --upgrade only upgrades; install with gearpump-setup without --upgrade",
            product.package_name()
        ));
    }
    if let Some(repo) = &inv.repo {
        return Ok(repo::actions(repo, family, product, facts, installed, Mode::Upgrade));
    }
    let package = plan::package_for(inv, facts, product).ok_or_else(|| {
        format!("no {family} {} package for {} among --package", product.package_name(), facts.arch)
    })?;
    let mut actions = Vec::new();
    plan::install_actions(&mut actions, package, family, installed);
    Ok(actions)
}

pub fn run(inv: &Inventory, transport: &dyn Transport, out: &mut dyn Write) -> Result<(), SetupError> {
    let say = |out: &mut dyn Write, text: String| {
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    };
    for warning in &inv.warnings {
        say(out, format!("warning: {warning}"));
    }
    if !inv.removed.is_empty() {
        return Err(SetupError::Arguments("--upgrade changes versions only: run --remove separately".into()));
    }

    // 1. probe the nodes (read-only)
    let facts = probe_all(inv, transport, out)?;
    let mut failures = Vec::new();

    // 2. every master's and worker's actions, checked before anything changes
    let mut master_actions: BTreeMap<String, Vec<Action>> = BTreeMap::new();
    let mut worker_actions: BTreeMap<String, Vec<Action>> = BTreeMap::new();
    for node in &inv.masters {
        let f = &facts[node];
        if !f.is_active() {
            failures.push(NodeFailure {
                node: node.clone(),
                step: Step::Preflight,
                cause: format!(
                    "gearpump-master is {} here: a rolling upgrade needs every master running (start it, or \
                     take it out with --remove, first)",
                    if f.active.is_empty() { "not running" } else { &f.active }
                ),
            });
        }
        match package_actions(inv, f, Product::Master) {
            Ok(actions) => {
                master_actions.insert(node.clone(), actions);
            }
            Err(cause) => failures.push(NodeFailure { node: node.clone(), step: Step::Package, cause }),
        }
    }
    for node in &inv.workers {
        match package_actions(inv, &facts[node], Product::Worker) {
            Ok(actions) => {
                worker_actions.insert(node.clone(), actions);
            }
            Err(cause) => failures.push(NodeFailure { node: node.clone(), step: Step::Package, cause }),
        }
    }
    if !failures.is_empty() {
        return Err(SetupError::Nodes(failures));
    }

    // 3. the running cluster: one leader, every master a voter and reachable
    let http = Http::new(credentials(inv)?)?;
    let answer: MasterAnswer = http.get(inv.master_addresses(), "/api/v1.0/master").map_err(|cause| {
        SetupError::Cluster(format!(
            "no master answers GET /api/v1.0/master: {cause}; a rolling upgrade needs a running cluster"
        ))
    })?;
    let before = cluster_state(&answer);
    let members: MembersView = http
        .get(inv.master_addresses(), "/api/v1.0/master/members")
        .map_err(|cause| SetupError::Cluster(format!("the membership is unavailable: {cause}")))?;
    let voters = members.voters;
    for node in &inv.masters {
        let address = inv.master_address(node);
        let role = before.members.get(&address).map(|m| m.role);
        if !voters.contains(&address) || !matches!(role, Some(Role::Leader | Role::Follower)) {
            let role = role.map_or("not a member", Role::name);
            failures.push(NodeFailure {
                node: node.clone(),
                step: Step::Preflight,
                cause: format!(
                    "{address} is {role} (voters: [{}]): a rolling upgrade starts from a healthy cluster; \
                     run gearpump-setup without --upgrade to repair it first",
                    voters.join(", ")
                ),
            });
        }
    }
    if before.leader.is_none() {
        failures.push(NodeFailure {
            node: "cluster".into(),
            step: Step::Preflight,
            cause: "no leader: a rolling upgrade starts from a cluster with a quorum".into(),
        });
    }
    if !failures.is_empty() {
        return Err(SetupError::Nodes(failures));
    }
    say(out, "before:".into());
    say(out, versions_table(inv, &before));
    if !inv.workers.is_empty() {
        say(out, "workers before:".into());
        for node in &inv.workers {
            let f = &facts[node];
            say(
                out,
                format!(
                    "  {node:<22} gearpump-worker {} ({})",
                    f.worker_installed.as_deref().unwrap_or("not installed"),
                    if f.worker_is_active() { "running" } else { "not running" }
                ),
            );
        }
    }

    if inv.dry_run {
        say(
            out,
            "dry run: nothing is changed; the upgrade would go one master at a time, followers first:".into(),
        );
        for node in upgrade_order(inv, before.leader.as_deref()) {
            let leader = before.leader.as_deref() == Some(inv.master_address(&node).as_str());
            say(
                out,
                format!(
                    "== {node}{}",
                    if leader {
                        " (the leader: last; the package's restart hands leadership over first)"
                    } else {
                        ""
                    }
                ),
            );
            for action in &master_actions[&node] {
                say(out, format!("  [{}] {}", action.step(), describe(action)));
            }
            say(out, "  [ready] wait until it is a voter again, reports the new version and has caught up with the leader".into());
        }
        for node in &inv.workers {
            say(out, format!("== {node} worker (after the masters, one worker at a time)"));
            for action in &worker_actions[node] {
                say(out, format!("  [{}] {}", action.step(), describe(action)));
            }
            say(out, "  [register] wait until the package's restart brought it back (READY: registered) and the leader lists it alive".into());
        }
        return Ok(());
    }

    // 4. one master at a time; the current leader last (asked again before each step, since a
    // restart may have moved leadership)
    let mut done: Vec<String> = Vec::new();
    loop {
        let leader = http
            .get(inv.master_addresses(), "/api/v1.0/master")
            .ok()
            .and_then(|answer| cluster_state(&answer).leader)
            .or_else(|| before.leader.clone());
        let remaining: Vec<String> =
            upgrade_order(inv, leader.as_deref()).into_iter().filter(|n| !done.contains(n)).collect();
        let Some(node) = remaining.first().cloned() else { break };
        let is_leader = leader.as_deref() == Some(inv.master_address(&node).as_str());
        say(
            out,
            format!(
                "{node}: upgrading ({}{})",
                if is_leader { "the leader, " } else { "" },
                before.members.get(&inv.master_address(&node)).map_or("unknown", |m| m.version.as_str())
            ),
        );
        if is_leader {
            say(out, format!("{node}: the package's restart stops it with SIGTERM, which hands leadership to an up-to-date follower first"));
        }
        let stop = |cause: String, step: Step, done: &[String]| {
            let untouched: Vec<&String> = remaining.iter().skip(1).collect();
            SetupError::NodesAfterChanges(vec![NodeFailure {
                node: node.clone(),
                step,
                cause: format!(
                    "{cause}. The upgrade stopped here: upgraded already: [{}]; not touched: [{}]",
                    done.join(", "),
                    untouched.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                ),
            }])
        };
        for action in &master_actions[&node] {
            match execute(transport, &node, action) {
                Ok(line) => say(out, format!("{node}: [{}] {line}", action.step())),
                Err(cause) => return Err(stop(cause, action.step(), &done)),
            }
        }
        let version = run_checked(transport, &node, "gearpump-master --version", &[], PROBE_TIMEOUT)
            .ok()
            .and_then(|o| binary_version(&o.stdout))
            .ok_or_else(|| {
                stop(
                    "gearpump-master --version prints no version after the upgrade".into(),
                    Step::Package,
                    &done,
                )
            })?;
        match wait_back(inv, &http, &node, &version, inv.ready_timeout) {
            Ok(summary) => say(out, format!("{node}: back on {version}: {summary}")),
            Err(cause) => {
                return Err(stop(
                    format!("{cause} (see `journalctl -u gearpump-master` on the node)"),
                    Step::Ready,
                    &done,
                ))
            }
        }
        done.push(node);
    }

    // 5. workers, one at a time, after the masters (a worker heartbeats to the masters, so it
    // goes once they all run the new version); each back and registered before the next, so
    // the attempts a restart stops always have other workers to move to
    let mut worker_lines: Vec<String> = Vec::new();
    for node in &inv.workers {
        let before_unit = worker_unit(transport, node)
            .map_err(|cause| worker_stop(node, Step::Package, cause, &done_workers(&worker_lines)))?;
        say(out, format!("{node}: upgrading gearpump-worker ({})", before_unit.version));
        for action in &worker_actions[node] {
            let line = execute(transport, node, action)
                .map_err(|cause| worker_stop(node, action.step(), cause, &done_workers(&worker_lines)))?;
            say(out, format!("{node}: [{}] {line}", action.step()));
        }
        let line = worker_back(inv, &http, transport, node, &before_unit, out)
            .map_err(|(step, cause)| worker_stop(node, step, cause, &done_workers(&worker_lines)))?;
        say(out, format!("{node}: {line}"));
        worker_lines.push(format!("  {node:<22} {line}"));
    }

    let after = http
        .get(inv.master_addresses(), "/api/v1.0/master")
        .map(|answer| cluster_state(&answer))
        .map_err(|cause| SetupError::Cluster(format!("after the upgrade no master answers: {cause}")))?;
    say(out, "after:".into());
    say(out, versions_table(inv, &after));
    if !worker_lines.is_empty() {
        say(out, "workers after:".into());
        say(out, worker_lines.join("\n"));
    }
    say(
        out,
        format!(
            "Done: {} masters upgraded one at a time{}; leader now {}.",
            done.len(),
            if worker_lines.is_empty() {
                String::new()
            } else {
                format!(", then {} workers", worker_lines.len())
            },
            after.leader.as_deref().unwrap_or("unknown")
        ),
    );
    Ok(())
}

/// A worker's unit as the node reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct WorkerUnit {
    /// VERSION-RELEASE of the installed gearpump-worker ("" when none).
    version: String,
    /// The service's main process (0 when none runs).
    pid: u64,
    active: bool,
}

const WORKER_UNIT_SCRIPT: &str = "export LC_ALL=C
if command -v dpkg-query >/dev/null 2>&1; then
  echo \"version=$(dpkg-query -W -f='${Status} ${Version}' gearpump-worker 2>/dev/null | sed -n 's/^install ok installed //p')\"
else
  echo \"version=$(rpm -q --qf '%{VERSION}-%{RELEASE}' gearpump-worker 2>/dev/null | grep -v 'not installed')\"
fi
echo \"pid=$(systemctl show -p MainPID --value gearpump-worker.service 2>/dev/null)\"
echo \"active=$(systemctl is-active gearpump-worker.service 2>/dev/null)\"
";

fn parse_worker_unit(output: &str) -> WorkerUnit {
    let mut unit = WorkerUnit::default();
    for line in output.lines() {
        match line.split_once('=') {
            Some(("version", v)) => unit.version = v.trim().to_string(),
            Some(("pid", v)) => unit.pid = v.trim().parse().unwrap_or(0),
            Some(("active", v)) => unit.active = v.trim() == "active",
            _ => {}
        }
    }
    unit
}

fn worker_unit(transport: &dyn Transport, node: &str) -> Result<WorkerUnit, String> {
    run_checked(transport, node, WORKER_UNIT_SCRIPT, &[], PROBE_TIMEOUT).map(|o| parse_worker_unit(&o.stdout))
}

/// What a worker's package step should have led to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum WorkerExpect {
    /// A new version and the worker ran: the package's postinst restarted it, and `systemctl
    /// restart` of the Type=notify unit returns at READY, which the worker sends once a leader
    /// registered it. So: a new main process, active, and listed alive.
    Restarted,
    /// The same version (a re-run): nothing restarted; it should still be listed alive.
    Unchanged,
    /// It was not running: the package does not start it, nor does an upgrade.
    NotRunning,
}

fn worker_expect(before: &WorkerUnit, after_version: &str) -> WorkerExpect {
    if !before.active {
        WorkerExpect::NotRunning
    } else if after_version == before.version {
        WorkerExpect::Unchanged
    } else {
        WorkerExpect::Restarted
    }
}

/// Waits until an upgraded worker is back: on the new version, restarted when it had to be,
/// and listed alive by the leader. Returns the line for the report.
fn worker_back(
    inv: &Inventory,
    http: &Http,
    transport: &dyn Transport,
    node: &str,
    before: &WorkerUnit,
    out: &mut dyn Write,
) -> Result<String, (Step, String)> {
    let deadline = Instant::now() + inv.ready_timeout;
    let mut now = worker_unit(transport, node).map_err(|cause| (Step::Package, cause))?;
    let expect = worker_expect(before, &now.version);
    if expect == WorkerExpect::NotRunning {
        return Ok(format!("gearpump-worker {} (not running: left stopped, as before)", now.version));
    }
    // The restart returned at READY already; this only waits out a slow one.
    while expect == WorkerExpect::Restarted && !(now.active && now.pid != 0 && now.pid != before.pid) {
        if Instant::now() >= deadline {
            return Err((
                Step::Start,
                format!(
                    "gearpump-worker {} did not come back within {} s (active: {}, main process {} as before \
                     the upgrade: {}); see `journalctl -u gearpump-worker` on the node",
                    now.version,
                    inv.ready_timeout.as_secs(),
                    now.active,
                    now.pid,
                    now.pid == before.pid
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
        now = worker_unit(transport, node).map_err(|cause| (Step::Start, cause))?;
    }
    let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(5));
    let ids = wait_workers(inv, http, std::slice::from_ref(&node.to_string()), left, out).map_err(|e| {
        let cause = match e {
            SetupError::NodesAfterChanges(failures) => failures.into_iter().next().map(|f| f.cause),
            _ => None,
        };
        (Step::Register, cause.unwrap_or_else(|| "the leader does not list it alive".into()))
    })?;
    let id = ids.get(node).map_or_else(|| "?".to_string(), u64::to_string);
    Ok(match expect {
        WorkerExpect::Restarted => format!(
            "gearpump-worker {} (was {}), restarted and registered again as worker {id}, alive",
            now.version, before.version
        ),
        _ => format!("gearpump-worker {} (unchanged), worker {id}, alive", now.version),
    })
}

fn done_workers(lines: &[String]) -> Vec<String> {
    lines.iter().filter_map(|l| l.split_whitespace().next().map(str::to_string)).collect()
}

/// The failure that stops the upgrade at a worker: the masters are done, and which workers are.
fn worker_stop(node: &str, step: Step, cause: String, done: &[String]) -> SetupError {
    SetupError::NodesAfterChanges(vec![NodeFailure {
        node: node.to_string(),
        step,
        cause: format!(
            "{cause}. The upgrade stopped here: every master is upgraded; workers upgraded already: [{}]; \
             the same command continues from here",
            done.join(", ")
        ),
    }])
}

/// The admin's credentials for a secured cluster: loaded, never created (an upgrade talks to a
/// cluster this tool installed).
fn credentials(inv: &Inventory) -> Result<Credentials, SetupError> {
    match &inv.security {
        Security::Insecure => Ok(Credentials::default()),
        Security::Secure { pki_dir, .. } => {
            if !pki_dir.join("ca.pem").is_file() {
                return Err(SetupError::Arguments(format!(
                    "--upgrade of a secured cluster needs the admin's CA and token from its installation in {} \
                     (give --pki-dir DIR where gearpump-setup put them, or --insecure for a cluster without TLS)",
                    pki_dir.display()
                )));
            }
            let pki = AdminPki::load_or_create(pki_dir, false).map_err(SetupError::Cluster)?;
            Ok(admin_credentials(&pki))
        }
    }
}

/// Followers in the order given, the leader last.
fn upgrade_order(inv: &Inventory, leader: Option<&str>) -> Vec<String> {
    let is_leader = |node: &String| leader == Some(inv.master_address(node).as_str());
    let mut order: Vec<String> = inv.masters.iter().filter(|n| !is_leader(n)).cloned().collect();
    order.extend(inv.masters.iter().filter(|n| is_leader(n)).cloned());
    order
}

fn describe(action: &Action) -> String {
    match action {
        Action::Copy { local, remote, .. } => format!("scp {} {remote}", local.display()),
        Action::Run { what, .. } => what.clone(),
        Action::Write { path, .. } => format!("write {path}"),
    }
}

fn versions_table(inv: &Inventory, state: &ClusterState) -> String {
    let mut text = format!("  {:<22} {:<12} VERSION", "MASTER", "ROLE");
    for node in &inv.masters {
        let address = inv.master_address(node);
        let (role, version) = state
            .members
            .get(&address)
            .map_or(("unreachable", "unknown"), |m| (m.role.name(), m.version.as_str()));
        text.push_str(&format!("\n  {address:<22} {role:<12} {version}"));
    }
    text
}

/// Waits until `node` answers again as a voter with a leader, reports `version`, and has applied
/// what the leader had committed when it first answered. The summary says how it came back.
fn wait_back(
    inv: &Inventory,
    http: &Http,
    node: &str,
    version: &str,
    timeout: Duration,
) -> Result<String, String> {
    let address = inv.master_address(node);
    let deadline = Instant::now() + timeout;
    let mut target: Option<u64> = None;
    loop {
        let problem = match http.get::<MasterAnswer>(vec![address.clone()], "/api/v1.0/master") {
            Err(cause) => format!("it does not answer: {}", cause.replace('\n', " ")),
            Ok(answer) => {
                let state = cluster_state(&answer);
                let me = state.members.get(&address).cloned();
                let reported = &answer.master_description.version;
                let status = &answer.master_description.master_status;
                match (me, &state.leader) {
                    _ if reported.as_str() != version => {
                        format!("it reports version {reported}, its binary is {version}")
                    }
                    (_, None) => format!("it has no leader ({status})"),
                    (None, _) => "it does not list itself as a member".into(),
                    (Some(me), Some(leader)) if !matches!(me.role, Role::Leader | Role::Follower) => {
                        format!("it is {} (leader {leader})", me.role)
                    }
                    (Some(me), Some(leader)) => {
                        let wanted = *target.get_or_insert(state.leader_commit);
                        if me.applied < wanted {
                            format!("it has applied {} of the leader's {wanted}", me.applied)
                        } else {
                            match http.get::<MembersView>(vec![address.clone()], "/api/v1.0/master/members") {
                                Ok(members) if members.voters.contains(&address) => {
                                    return Ok(format!(
                                        "{}, leader {leader}, applied index {} (caught up with {wanted})",
                                        me.role, me.applied
                                    ))
                                }
                                Ok(_) => "it is not a voter".into(),
                                Err(cause) => format!("its membership is unavailable: {cause}"),
                            }
                        }
                    }
                }
            }
        };
        if Instant::now() >= deadline {
            return Err(format!("did not come back within {} s: {problem}", timeout.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::SetupArgs;
    use crate::setup::inventory::{self, Family};
    use clap::Parser;

    /// `--upgrade --package` of a 0.2.0 .deb on node1..node3 (the folder keeps the file).
    fn upgrade_inventory() -> (Inventory, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("dir");
        let package = dir.path().join("gearpump-master_0.2.0-1_amd64.deb");
        std::fs::write(&package, b"x").expect("write");
        let line = format!(
            "gearpump-setup --masters node1,node2,node3 --upgrade --package {} --insecure",
            package.display()
        );
        let args = SetupArgs::try_parse_from(line.split_whitespace()).expect("args");
        (inventory::from_args(&args, std::path::Path::new("/nonexistent")).expect("valid"), dir)
    }

    #[test]
    fn followers_go_first_and_the_leader_last() {
        let (inv, _dir) = upgrade_inventory();
        assert_eq!(upgrade_order(&inv, Some("node1:3000")), ["node2", "node3", "node1"]);
        assert_eq!(upgrade_order(&inv, Some("node3:3000")), ["node1", "node2", "node3"]);
        assert_eq!(upgrade_order(&inv, None), ["node1", "node2", "node3"]);
    }

    #[test]
    fn upgrade_needs_a_version_to_go_to() {
        let args = SetupArgs::try_parse_from("gearpump-setup --masters a,b,c --upgrade".split_whitespace())
            .expect("args");
        let error = inventory::from_args(&args, std::path::Path::new("/nonexistent")).expect_err("no source");
        assert!(error.to_string().contains("--upgrade needs the version to upgrade to"), "{error}");
    }

    #[test]
    fn reads_roles_versions_and_the_leaders_commit_index() {
        use crate::wire::{ClusterMember, MasterDescription, MemberProgress};
        let member = |address: &str, role: Role, progress: Option<(u64, u64, &str)>| ClusterMember {
            address: address.into(),
            node_id: 1,
            reachable: progress.is_some(),
            role,
            progress: progress.map(|(commit_index, applied_index, version)| MemberProgress {
                term: 1,
                commit_index,
                applied_index,
                last_log_index: applied_index,
                lag: Some(0),
                version: version.into(),
                protocol: Some(1),
            }),
            healthy: progress.is_some(),
        };
        let answer = MasterAnswer {
            master_description: MasterDescription {
                leader: Some("node2:3000".into()),
                this_master: "node1:3000".into(),
                version: "0.1.0".into(),
                master_status: "follower".into(),
                term: 1,
                cluster: vec![
                    member("node1:3000", Role::Follower, Some((40, 40, "0.1.0"))),
                    member("node2:3000", Role::Leader, Some((42, 42, "0.2.0"))),
                    member("node3:3000", Role::Unreachable, None),
                ],
                alive_for: 0,
                jar_store: String::new(),
                jar_store_highly_available: true,
                home_directory: String::new(),
                bootstrap: String::new(),
                applied_index: 40,
                state_hash: String::new(),
                warnings: Vec::new(),
            },
        };
        let state = cluster_state(&answer);
        assert_eq!(state.leader.as_deref(), Some("node2:3000"));
        assert_eq!(state.leader_commit, 42);
        assert_eq!(
            state.members["node1:3000"],
            MasterView { role: Role::Follower, version: "0.1.0".into(), applied: 40 }
        );
        assert_eq!(state.members["node3:3000"].version, "unknown");
        assert_eq!(
            binary_version("gearpump-master 0.1.0+upgradetest1\n").as_deref(),
            Some("0.1.0+upgradetest1")
        );
        assert_eq!(binary_version("bash: gearpump-master: not found"), None);
    }

    #[test]
    fn a_worker_is_expected_back_only_when_its_version_changed_and_it_ran() {
        let output = "version=0.1.0-1\npid=4242\nactive=active\n";
        let before = parse_worker_unit(output);
        assert_eq!(before, WorkerUnit { version: "0.1.0-1".into(), pid: 4242, active: true });
        assert_eq!(worker_expect(&before, "0.2.0-1"), WorkerExpect::Restarted);
        assert_eq!(worker_expect(&before, "0.1.0-1"), WorkerExpect::Unchanged, "a second --upgrade");
        let stopped = parse_worker_unit("version=0.1.0-1\npid=0\nactive=inactive\n");
        assert!(!stopped.active && stopped.pid == 0);
        assert_eq!(worker_expect(&stopped, "0.2.0-1"), WorkerExpect::NotRunning);
        assert_eq!(parse_worker_unit("garbage"), WorkerUnit::default());
        assert_eq!(done_workers(&["  node4                  gearpump-worker 0.2.0-1".into()]), ["node4"]);
        let stop = worker_stop("node5", Step::Register, "not alive".into(), &["node4".into()]).to_string();
        assert!(stop.contains("node5  register   not alive. The upgrade stopped here: every master is upgraded; workers upgraded already: [node4]"), "{stop}");
    }

    #[test]
    fn only_installed_packages_are_upgraded() {
        let (inv, _dir) = upgrade_inventory();
        let mut facts = NodeFacts { family: Some(Family::Deb), arch: "amd64".into(), ..Default::default() };
        let missing = package_actions(&inv, &facts, Product::Master).expect_err("not installed");
        assert!(missing.contains("--upgrade only upgrades"), "{missing}");
        facts.installed = Some("0.1.0-1".into());
        let actions = package_actions(&inv, &facts, Product::Master).expect("upgrade");
        assert!(
            matches!(actions.last(), Some(Action::Run { what, .. }) if what == "install gearpump-master 0.2.0-1 (was 0.1.0-1)"),
            "{actions:?}"
        );
        facts.installed = Some("0.2.0-1".into());
        assert!(package_actions(&inv, &facts, Product::Master).expect("no-op").is_empty());
    }
}
