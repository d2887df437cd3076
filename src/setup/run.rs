//! Executes a setup: probe, preflight, plan, then (unless dry-run) the per-node actions in
//! parallel, the start or the membership changes, and the wait for one leader.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use super::inventory::{Inventory, JarStore, Security};
use super::pki::{self, AdminPki, NodeSecurity};
use super::plan::{self, Action, ClusterView, NodeFailure, NodePlan, Step, WorkerPlan};
use super::probe::{self, NodeFacts, DROP_IN, GEAR_CONF, SECRET_FILE};
use super::repo;
use super::ssh::{Output, Transport};
use super::SetupError;
use crate::client::{masters_table, Credentials, MasterClient};
use crate::wire::{MasterAnswer, MembersView, MembershipChange, Ready, WorkerList};

const PROBE_TIMEOUT: Duration = Duration::from_secs(60);
const COPY_TIMEOUT: Duration = Duration::from_secs(600);
const INSTALL_TIMEOUT: Duration = Duration::from_secs(600);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// A new master's catch-up as a learner may take up to 120 s on the master's side.
const JOIN_TIMEOUT: Duration = Duration::from_secs(150);
/// `systemctl start` of a worker returns at READY (registered); the unit's own start timeout
/// is 120 s.
const WORKER_START_TIMEOUT: Duration = Duration::from_secs(150);

/// Runs `work` for every item on its own thread and returns the results in the items' order.
fn parallel<T: Sync, R: Send>(items: &[T], work: impl Fn(&T) -> R + Sync) -> Vec<R> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = items.iter().map(|item| scope.spawn(|| work(item))).collect();
        handles.into_iter().map(|h| h.join()).collect::<Result<Vec<R>, _>>()
    })
    .unwrap_or_else(|_| std::process::abort())
}

fn files_to_read(inv: &Inventory) -> (Vec<String>, Vec<String>) {
    let mut files = vec![GEAR_CONF.to_string(), SECRET_FILE.to_string()];
    if inv.repo.is_some() {
        files.extend(repo::files_to_read().map(String::from));
    }
    if matches!(inv.security, Security::Secure { .. }) {
        files.extend(
            [
                pki::NODE_CA,
                pki::NODE_CERT,
                pki::NODE_KEY,
                pki::NODE_TOKENS,
                pki::WORKER_CERT,
                pki::WORKER_KEY,
            ]
            .map(String::from),
        );
    }
    let mut units = Vec::new();
    if let JarStore::Nfs { mount, .. } = &inv.jar_store {
        let unit = plan::mount_unit_name(mount);
        files.push(format!("/etc/systemd/system/{unit}"));
        files.push(DROP_IN.to_string());
        units.push(unit);
    }
    (files, units)
}

pub(crate) fn run_checked(
    transport: &dyn Transport,
    node: &str,
    script: &str,
    stdin: &[u8],
    timeout: Duration,
) -> Result<Output, String> {
    let output = transport.run(node, script, stdin, timeout).map_err(|e| e.to_string())?;
    if output.status != 0 {
        return Err(output.cause());
    }
    Ok(output)
}

pub(crate) fn execute(transport: &dyn Transport, node: &str, action: &Action) -> Result<String, String> {
    match action {
        Action::Copy { local, remote, .. } => {
            transport.copy(node, local, remote, COPY_TIMEOUT).map_err(|e| e.to_string())?;
            Ok(format!("copied {} to {remote}", local.display()))
        }
        Action::Run { what, script, step } => {
            let timeout = if *step == Step::Package || *step == Step::JarStore {
                INSTALL_TIMEOUT
            } else {
                COMMAND_TIMEOUT
            };
            run_checked(transport, node, script, &[], timeout).map_err(|cause| format!("{what}: {cause}"))?;
            Ok(what.clone())
        }
        Action::Write { path, mode, owner, content, backup, .. } => {
            let script = Action::write_script(path, *mode, owner, *backup);
            run_checked(transport, node, &script, content.as_bytes(), COMMAND_TIMEOUT)
                .map_err(|cause| format!("writing {path}: {cause}"))?;
            Ok(format!("wrote {path}"))
        }
    }
}

pub(crate) struct Http {
    runtime: tokio::runtime::Runtime,
    /// The cluster CA and the admin token when the cluster is secured.
    credentials: Credentials,
}

impl Http {
    pub(crate) fn new(credentials: Credentials) -> Result<Http, SetupError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| SetupError::Runtime(e.to_string()))?;
        Ok(Http { runtime, credentials })
    }

    fn client(&self, masters: Vec<String>, timeout: Duration) -> Result<MasterClient, String> {
        MasterClient::with_credentials(masters, timeout, &self.credentials).map_err(|e| e.to_string())
    }

    /// A read; a cluster that still speaks plain HTTP (installed before TLS) is read over it.
    pub(crate) fn get<T: DeserializeOwned>(&self, masters: Vec<String>, path: &str) -> Result<T, String> {
        let client = self.client(masters.clone(), Duration::from_secs(5))?;
        match self.runtime.block_on(client.get(path)) {
            Ok(answer) => Ok(answer),
            Err(secure) if self.credentials.ca_file.is_some() => {
                let plain = MasterClient::new(masters, Duration::from_secs(5)).map_err(|e| e.to_string())?;
                self.runtime.block_on(plain.get(path)).map_err(|_| secure.to_string())
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// `POST /api/v1.0/master/members`: the voters afterwards.
    fn change_members(
        &self,
        masters: Vec<String>,
        change: &MembershipChange,
        timeout: Duration,
    ) -> Result<Vec<String>, String> {
        let client = self.client(masters, timeout)?;
        let view = self.runtime.block_on(client.change_members(change)).map_err(|e| e.to_string())?;
        Ok(view.voters)
    }
}

/// Probes every node (read-only) in parallel; any unreachable node but one to be removed stops
/// the run before anything changes.
pub(crate) fn probe_all(
    inv: &Inventory,
    transport: &dyn Transport,
    out: &mut dyn Write,
) -> Result<BTreeMap<String, NodeFacts>, SetupError> {
    let nodes = inv.all_nodes();
    let (files, units) = files_to_read(inv);
    let script = probe::probe_script(inv.port, &inv.masters, &files, &units);
    let _ = writeln!(out, "preflight: probing {} node(s) over ssh", nodes.len());
    let probed = parallel(&nodes, |node| {
        run_checked(transport, node, &script, &[], PROBE_TIMEOUT)
            .and_then(|o| probe::parse_probe(&o.stdout, &files))
    });
    let mut facts: BTreeMap<String, NodeFacts> = BTreeMap::new();
    let mut failures = Vec::new();
    for (node, result) in nodes.iter().zip(probed) {
        match result {
            Ok(f) => {
                facts.insert(node.clone(), f);
            }
            Err(cause) if inv.removed.contains(node) => {
                let _ = writeln!(out, "warning: {node} (to be removed) is unreachable: {cause}; it is taken out of the membership only");
            }
            Err(cause) => failures.push(NodeFailure { node: node.clone(), step: Step::Preflight, cause }),
        }
    }
    if !failures.is_empty() {
        return Err(SetupError::Nodes(failures));
    }
    Ok(facts)
}

/// How this tool calls the masters of a secured cluster: the admin's token and the cluster CA.
pub(crate) fn admin_credentials(pki: &AdminPki) -> Credentials {
    Credentials {
        token: Some(pki.admin_token.clone()),
        token_source: Some(pki.dir.join("admin.token").display().to_string()),
        ca_file: Some(pki.dir.join("ca.pem")),
        masters: None,
    }
}

/// The whole installation. Output goes to `out`; the error carries the per-node report.
pub fn run(inv: &Inventory, transport: &dyn Transport, out: &mut dyn Write) -> Result<(), SetupError> {
    if inv.upgrade {
        return super::upgrade::run(inv, transport, out);
    }
    let say = |out: &mut dyn Write, text: String| {
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    };
    for warning in &inv.warnings {
        say(out, format!("warning: {warning}"));
    }

    // 1. probe every node, read-only
    let facts = probe_all(inv, transport, out)?;

    // 2. preflight verdicts, then whether the nodes reach each other
    let (mut failures, warnings) = plan::preflight(inv, &facts);
    for warning in warnings {
        say(out, format!("warning: {warning}"));
    }
    // masters reach each other; workers reach every master
    let reaching: Vec<String> = inv.masters.iter().chain(inv.worker_only()).cloned().collect();
    if failures.is_empty() {
        let reach = parallel(&reaching, |node| {
            let f = &facts[node];
            let targets: Vec<(String, String)> = inv
                .masters
                .iter()
                .filter(|m| *m != node)
                .filter_map(|m| f.resolved.get(m).map(|a| (m.clone(), a.clone())))
                .collect();
            let addresses: Vec<String> = targets.iter().map(|(_, a)| a.clone()).collect();
            let answer =
                run_checked(transport, node, &probe::reach_script(&addresses, inv.port), &[], PROBE_TIMEOUT);
            (targets, answer)
        });
        for (node, (targets, answer)) in reaching.iter().zip(reach) {
            match answer {
                Err(cause) => failures.push(NodeFailure { node: node.clone(), step: Step::Preflight, cause }),
                Ok(output) => {
                    for (name, address) in targets {
                        if output.stdout.lines().any(|l| l == format!("reach.{address}=fail")) {
                            failures.push(NodeFailure {
                                node: node.clone(),
                                step: Step::Preflight,
                                cause: format!("cannot reach {name} ({address}) on port {}: a firewall or route in the way", inv.port),
                            });
                        }
                    }
                }
            }
        }
    }
    if !failures.is_empty() {
        return Err(SetupError::Nodes(failures));
    }

    // 3a. the admin's CA and tokens (created on the first run; a dry run keeps them in memory)
    let admin_pki = match &inv.security {
        Security::Secure { pki_dir, .. } => {
            Some(AdminPki::load_or_create(pki_dir, !inv.dry_run).map_err(SetupError::Cluster)?)
        }
        Security::Insecure => None,
    };
    let credentials = admin_pki.as_ref().map(admin_credentials).unwrap_or_default();
    // A dry run keeps a new CA in memory only; its client cannot read a file never written.
    let http = Http::new(if inv.dry_run && admin_pki.as_ref().is_some_and(|p| p.created) {
        Credentials::default()
    } else {
        credentials
    })?;

    // 3. the cluster secret: the one the nodes already share, else a new one
    let mut secrets: Vec<String> = inv
        .masters
        .iter()
        .filter_map(|n| facts[n].file(SECRET_FILE))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    secrets.sort();
    secrets.dedup();
    let secret = match secrets.as_slice() {
        [] => hex::encode(rand::random::<[u8; 32]>()),
        [one] => one.clone(),
        _ => {
            let holders: Vec<String> =
                inv.masters.iter().filter(|n| facts[*n].file(SECRET_FILE).is_some()).cloned().collect();
            return Err(SetupError::Cluster(format!(
                "the nodes hold different cluster secrets in {SECRET_FILE} ({}): remove the wrong ones, \
                 then run again",
                holders.join(", ")
            )));
        }
    };

    // 4. the running cluster, if any
    let active: Vec<String> = inv
        .all_nodes()
        .iter()
        .filter(|n| facts.get(*n).is_some_and(NodeFacts::is_active))
        .map(|n| inv.master_address(n))
        .collect();
    let cluster = if active.is_empty() {
        ClusterView::default()
    } else {
        match http.get::<MembersView>(active.clone(), "/api/v1.0/master/members") {
            Ok(answer) => ClusterView { voters: answer.voters },
            Err(cause) => {
                say(out, format!("warning: masters run on {} but none answers with a membership ({cause}); treating the cluster as forming", active.join(", ")));
                ClusterView::default()
            }
        }
    };
    if cluster.exists() {
        let wanted: Vec<String> = inv.master_addresses();
        let removed: Vec<String> = inv.removed.iter().map(|r| inv.master_address(r)).collect();
        // A member left out of --masters is most likely a typo or a stale command line; taking
        // it out silently could cost the quorum, and keeping it would never match the request.
        let unlisted: Vec<&String> =
            cluster.voters.iter().filter(|v| !wanted.contains(v) && !removed.contains(v)).collect();
        if !unlisted.is_empty() {
            let names: Vec<String> = unlisted.iter().map(|v| v.to_string()).collect();
            return Err(SetupError::Arguments(format!(
                "{} of the running cluster {} not in --masters: list {}, or take {} out with --remove",
                names.join(", "),
                if names.len() == 1 { "is" } else { "are" },
                if names.len() == 1 { "it" } else { "them" },
                if names.len() == 1 { "it" } else { "them" },
            )));
        }
        if !cluster.voters.iter().any(|v| wanted.contains(v)) {
            return Err(SetupError::Cluster(format!(
                "none of --masters is a member of the running cluster [{}]: refusing to build a second cluster next to it",
                cluster.voters.join(", ")
            )));
        }
    }

    // 5. the plan (with each node's certificate: kept, or issued now)
    let rotate = matches!(inv.security, Security::Secure { rotate: true, .. });
    // A node's certificate of `kind`: its current one when still good, else a new one;
    // Ok(None) under --insecure.
    let security = |node: &String, kind: pki::CertKind| -> Result<Option<NodeSecurity>, NodeFailure> {
        let Some(pki) = &admin_pki else { return Ok(None) };
        let (cert, key) = match kind {
            pki::CertKind::Master => (pki::NODE_CERT, pki::NODE_KEY),
            pki::CertKind::Worker => (pki::WORKER_CERT, pki::WORKER_KEY),
        };
        let f = &facts[node];
        let current = match (f.file(pki::NODE_CA), f.file(cert), f.file(key)) {
            (Some(ca), Some(cert), Some(key)) => Some((ca, cert, key)),
            _ => None,
        };
        pki.for_node(node, kind, current, rotate).map(Some).map_err(|cause| NodeFailure {
            node: node.clone(),
            step: Step::Secret,
            cause,
        })
    };
    let mut plans: Vec<NodePlan> = Vec::new();
    for node in &inv.masters {
        let planned = security(node, pki::CertKind::Master).and_then(|security| {
            plan::plan_node(inv, node, &facts[node], &secret, security.as_ref(), &cluster)
        });
        match planned {
            Ok(p) => plans.push(p),
            Err(f) => failures.push(f),
        }
    }
    let mut worker_plans: Vec<WorkerPlan> = Vec::new();
    for node in &inv.workers {
        let planned = security(node, pki::CertKind::Worker)
            .and_then(|security| plan::plan_worker(inv, node, &facts[node], &secret, security.as_ref()));
        match planned {
            Ok(p) => worker_plans.push(p),
            Err(f) => failures.push(f),
        }
    }
    if !failures.is_empty() {
        return Err(SetupError::Nodes(failures));
    }
    let to_remove: Vec<&String> =
        inv.removed.iter().filter(|r| cluster.voters.contains(&inv.master_address(r))).collect();
    let to_stop: Vec<&String> = inv
        .removed
        .iter()
        .filter(|r| facts.get(*r).is_some_and(|f| f.is_active() || f.enabled == "enabled"))
        .collect();

    if inv.dry_run {
        say(out, "dry run: nothing is changed; this is what a run would do:".into());
        for p in &plans {
            let _ = write!(out, "{}", plan::render(p, &facts[&p.node], &cluster));
        }
        for node in &inv.removed {
            say(out, format!("== {node} (to be removed)"));
            if to_remove.contains(&node) {
                say(
                    out,
                    format!(
                        "  [remove] POST /api/v1.0/master/members {{\"remove\": \"{}\"}}",
                        inv.master_address(node)
                    ),
                );
            }
            if to_stop.contains(&node) {
                say(
                    out,
                    format!("  [remove] stop and disable the service:\n      $ {}", plan::stop_script()),
                );
            }
            if !to_remove.contains(&node) && !to_stop.contains(&node) {
                say(out, "  nothing to change".into());
            }
        }
        for p in &worker_plans {
            let _ = write!(out, "{}", plan::render_worker(p, &facts[&p.node]));
        }
        say(out, format!("== cluster\n  wait until all {} masters are READY with one leader, then print the masters table", inv.masters.len()));
        if !worker_plans.is_empty() {
            say(
                out,
                format!(
                    "  then start the workers and wait until the leader lists {} alive",
                    inv.workers.join(", ")
                ),
            );
        }
        return Ok(());
    }

    // 6. packages, gear.conf, secret, jar store: every node in parallel (a node that is master
    // and worker: the master's actions, then the worker's)
    let mut changes = 0usize;
    let mut busy: Vec<(String, Vec<&Action>)> = Vec::new();
    for (node, actions) in plans
        .iter()
        .map(|p| (&p.node, &p.actions))
        .chain(worker_plans.iter().map(|p| (&p.node, &p.actions)))
        .filter(|(_, actions)| !actions.is_empty())
    {
        match busy.iter_mut().find(|(n, _)| n == node) {
            Some((_, list)) => list.extend(actions),
            None => busy.push((node.clone(), actions.iter().collect())),
        }
    }
    if !busy.is_empty() {
        say(
            out,
            format!("configuring {}", busy.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")),
        );
    }
    let results = parallel(&busy, |(node, actions)| {
        let mut log = Vec::new();
        for action in actions {
            match execute(transport, node, action) {
                Ok(line) => log.push(format!("{node}: [{}] {line}", action.step())),
                Err(cause) => {
                    return (log, Some(NodeFailure { node: node.clone(), step: action.step(), cause }))
                }
            }
        }
        (log, None)
    });
    for (log, failure) in results {
        changes += log.len();
        for line in log {
            say(out, line);
        }
        failures.extend(failure);
    }
    if !failures.is_empty() {
        say(out, "no master or worker was started or restarted because of these failures".into());
        return Err(SetupError::NodesAfterChanges(failures));
    }

    // 7. start: all at once for a new cluster (the quorum forms only with a majority up), and
    // stopped members of a running one. Masters that join a running cluster start in step 8,
    // one at a time.
    let starting: Vec<&NodePlan> = plans.iter().filter(|p| p.start && !p.join).collect();
    if !starting.is_empty() {
        say(
            out,
            format!("starting {}", starting.iter().map(|p| p.node.as_str()).collect::<Vec<_>>().join(", ")),
        );
        let started = parallel(&starting, |p| {
            run_checked(transport, &p.node, &plan::start_script(), &[], COMMAND_TIMEOUT)
        });
        for (p, result) in starting.iter().zip(started) {
            changes += 1;
            if let Err(cause) = result {
                failures.push(NodeFailure { node: p.node.clone(), step: Step::Start, cause });
            }
        }
    }
    if !failures.is_empty() {
        return Err(SetupError::NodesAfterChanges(failures));
    }
    // a running master whose settings changed: one at a time, so the quorum stays
    for p in plans.iter().filter(|p| p.restart) {
        say(out, format!("{}: restarting to apply the new settings", p.node));
        changes += 1;
        run_checked(transport, &p.node, &plan::restart_script(), &[], COMMAND_TIMEOUT).map_err(|cause| {
            SetupError::NodesAfterChanges(vec![NodeFailure {
                node: p.node.clone(),
                step: Step::Start,
                cause,
            }])
        })?;
        wait_ready(inv, &http, std::slice::from_ref(&p.node), inv.ready_timeout, out)?;
    }

    // 8. membership: add the new masters (learner, then voter), then take out the removed ones.
    // Each joining master starts only once the one before it is a member. An empty master asks
    // the masters list: any initialized peer makes it wait to be added, but a quorum of
    // uninitialized peers that answer makes it form a cluster. Two empty masters started together
    // (both wiped after a majority was lost, say) could so form a second cluster if the running
    // one's answer were late; one at a time, every peer that answers is a member already.
    let mut members: Vec<String> = cluster.voters.clone();
    for p in plans.iter().filter(|p| p.join) {
        let address = inv.master_address(&p.node);
        if p.start {
            say(out, format!("{}: starting (it finds the running cluster and waits to be added)", p.node));
            changes += 1;
            run_checked(transport, &p.node, &plan::start_script(), &[], COMMAND_TIMEOUT).map_err(
                |cause| {
                    SetupError::NodesAfterChanges(vec![NodeFailure {
                        node: p.node.clone(),
                        step: Step::Start,
                        cause,
                    }])
                },
            )?;
        }
        say(
            out,
            format!("{}: adding {address} to the cluster (learner first, voter once caught up)", p.node),
        );
        members = http
            .change_members(members.clone(), &MembershipChange::Add(address), JOIN_TIMEOUT)
            .map_err(|cause| {
                SetupError::NodesAfterChanges(vec![NodeFailure {
                    node: p.node.clone(),
                    step: Step::Join,
                    cause,
                }])
            })?;
        changes += 1;
    }
    for node in &to_remove {
        let address = inv.master_address(node);
        say(out, format!("{node}: removing {address} from the cluster"));
        let remaining: Vec<String> = members.iter().filter(|m| **m != address).cloned().collect();
        members = http.change_members(remaining, &MembershipChange::Remove(address), JOIN_TIMEOUT).map_err(
            |cause| {
                SetupError::NodesAfterChanges(vec![NodeFailure {
                    node: (*node).clone(),
                    step: Step::Remove,
                    cause,
                }])
            },
        )?;
        changes += 1;
    }
    for node in &to_stop {
        say(out, format!("{node}: stopping and disabling gearpump-master"));
        changes += 1;
        if let Err(cause) = run_checked(transport, node, &plan::stop_script(), &[], COMMAND_TIMEOUT) {
            say(out, format!("warning: {node}: could not stop the removed master: {cause}"));
        }
    }

    // 9. every master READY, one leader, the membership as asked
    wait_ready(inv, &http, &inv.masters, inv.ready_timeout, out)?;
    match http.get::<MasterAnswer>(inv.master_addresses(), "/api/v1.0/master") {
        Ok(answer) => {
            let _ = write!(out, "{}", masters_table(&answer));
        }
        Err(cause) => say(out, format!("warning: the masters table is unavailable: {cause}")),
    }

    // 10. workers, once the masters are READY: start (or restart), then registered and alive
    let moving: Vec<&WorkerPlan> = worker_plans.iter().filter(|p| p.start || p.restart).collect();
    if !moving.is_empty() {
        say(
            out,
            format!(
                "starting workers {} (each returns once a leader registered it)",
                moving.iter().map(|p| p.node.as_str()).collect::<Vec<_>>().join(", ")
            ),
        );
        // Fresh starts in parallel; restarts one at a time, each back (registered) before the
        // next, so the attempts a restart stops always have other workers to move to.
        let start = |p: &&WorkerPlan| {
            run_checked(transport, &p.node, &plan::worker_start_script(p.restart), &[], WORKER_START_TIMEOUT)
        };
        let (restarts, starts): (Vec<&WorkerPlan>, Vec<&WorkerPlan>) =
            moving.into_iter().partition(|p| p.restart);
        let mut started = parallel(&starts, start);
        started.extend(restarts.iter().map(start));
        let moving: Vec<&WorkerPlan> = starts.into_iter().chain(restarts).collect();
        for (p, result) in moving.iter().zip(started) {
            changes += 1;
            if let Err(cause) = result {
                failures.push(NodeFailure {
                    node: p.node.clone(),
                    step: Step::Start,
                    cause: format!(
                        "{} (see `journalctl -u gearpump-worker` on the node)",
                        cause.replace('\n', " ")
                    ),
                });
            }
        }
        if !failures.is_empty() {
            return Err(SetupError::NodesAfterChanges(failures));
        }
    }
    if !inv.workers.is_empty() {
        let table = wait_workers(inv, &http, &inv.workers, inv.ready_timeout, out)?;
        for (node, id) in &table {
            say(out, format!("worker {node}: registered as worker {id}, alive"));
        }
    }
    let workers =
        if inv.workers.is_empty() { String::new() } else { format!(", {} workers alive", inv.workers.len()) };
    if let Some(pki) = &admin_pki {
        match pki.write_client_conf(&inv.master_addresses()) {
            Ok(conf) => say(
                out,
                format!(
                    "TLS and tokens are on. The admin's copies are in {}: ca.pem (cluster CA), ca-key.pem \
                     (keep it safe), admin.token, submit.token (give this one to those who submit), and \
                     client.conf, which gear reads as ~/.config/gearpump/client.conf{}",
                    pki.dir.display(),
                    if conf.parent().and_then(|d| d.file_name()).is_some_and(|n| n == "gearpump") {
                        String::new()
                    } else {
                        format!(
                            " (elsewhere: copy it there, or use gear --ca {} --token-file {})",
                            pki.dir.join("ca.pem").display(),
                            pki.dir.join("admin.token").display()
                        )
                    }
                ),
            ),
            Err(cause) => say(out, format!("warning: could not write the client configuration: {cause}")),
        }
    } else {
        say(out, "warning: --insecure: no TLS and no client tokens on this cluster".into());
    }
    if changes == 0 {
        say(
            out,
            format!(
                "Nothing changed: all {} masters{} were already installed, configured and running.",
                inv.masters.len(),
                if inv.workers.is_empty() {
                    String::new()
                } else {
                    format!(" and {} workers", inv.workers.len())
                }
            ),
        );
    } else {
        say(
            out,
            format!(
                "Done: {changes} change(s); {} masters READY with one leader{workers}.",
                inv.masters.len()
            ),
        );
    }
    Ok(())
}

/// Waits until the leader's worker list shows every one of `workers` (by its host name, which
/// setup wrote as gearpump.hostname) alive; returns node -> worker id.
pub(crate) fn wait_workers(
    inv: &Inventory,
    http: &Http,
    workers: &[String],
    timeout: Duration,
    out: &mut dyn Write,
) -> Result<BTreeMap<String, u64>, SetupError> {
    let deadline = Instant::now() + timeout;
    let _ = writeln!(
        out,
        "waiting until the leader lists {} alive (up to {} s)",
        workers.join(", "),
        timeout.as_secs()
    );
    loop {
        let answer = http.get::<WorkerList>(inv.master_addresses(), "/api/v1.0/master/workerlist");
        let mut alive: BTreeMap<String, u64> = BTreeMap::new();
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        if let Ok(list) = &answer {
            for w in &list.workers {
                if w.state == crate::wire::WorkerState::Alive {
                    alive.insert(w.host.clone(), u64::from(w.worker_id));
                }
                seen.insert(w.host.clone(), w.state.to_string());
            }
        }
        let missing: Vec<&String> = workers.iter().filter(|w| !alive.contains_key(*w)).collect();
        if missing.is_empty() {
            return Ok(workers.iter().filter_map(|w| alive.get(w).map(|id| (w.clone(), *id))).collect());
        }
        if Instant::now() >= deadline {
            let failures = missing
                .into_iter()
                .map(|node| NodeFailure {
                    node: node.clone(),
                    step: Step::Register,
                    cause: match (&answer, seen.get(node)) {
                        (Err(cause), _) => format!("the masters do not list workers: {}", cause.replace('\n', " ")),
                        (Ok(_), Some(state)) => format!(
                            "the leader lists it as {state}, not alive (see `journalctl -u gearpump-worker` on the node)"
                        ),
                        (Ok(_), None) => "the leader does not list it: it never registered (see `journalctl -u \
                                          gearpump-worker` on the node)"
                            .into(),
                    },
                })
                .collect();
            return Err(SetupError::NodesAfterChanges(failures));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Waits until every listed master answers READY, all name the same leader, and the membership's
/// voters are exactly the requested masters.
fn wait_ready(
    inv: &Inventory,
    http: &Http,
    nodes: &[String],
    timeout: Duration,
    out: &mut dyn Write,
) -> Result<(), SetupError> {
    let deadline = Instant::now() + timeout;
    let _ = writeln!(
        out,
        "waiting until {} READY with one leader (up to {} s)",
        nodes.join(", "),
        timeout.as_secs()
    );
    let mut wanted = inv.master_addresses();
    wanted.sort();
    loop {
        let mut problems: Vec<NodeFailure> = Vec::new();
        let mut leaders: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for node in nodes {
            match http.get::<Ready>(vec![inv.master_address(node)], "/health/ready") {
                Ok(answer) => {
                    // "null": the name this table has always used for "no leader known"
                    let leader = answer.leader.unwrap_or_else(|| "null".to_string());
                    leaders.entry(leader).or_default().push(node.clone());
                }
                Err(cause) => problems.push(NodeFailure { node: node.clone(), step: Step::Ready, cause }),
            }
        }
        if problems.is_empty() && leaders.len() > 1 {
            problems.push(NodeFailure {
                node: nodes.join(","),
                step: Step::Ready,
                cause: format!("the masters name different leaders: {leaders:?}"),
            });
        }
        if problems.is_empty() && nodes.len() == inv.masters.len() {
            match http.get::<MembersView>(inv.master_addresses(), "/api/v1.0/master/members") {
                Ok(answer) => {
                    let mut voters = answer.voters;
                    voters.sort();
                    if voters != wanted {
                        problems.push(NodeFailure {
                            node: "cluster".into(),
                            step: Step::Ready,
                            cause: format!(
                                "voters are [{}], expected [{}]",
                                voters.join(", "),
                                wanted.join(", ")
                            ),
                        });
                    }
                }
                Err(cause) => problems.push(NodeFailure { node: "cluster".into(), step: Step::Ready, cause }),
            }
        }
        if problems.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            for p in &mut problems {
                p.cause = format!(
                    "{} (see `journalctl -u gearpump-master` on the node)",
                    p.cause.replace('\n', " ")
                );
            }
            return Err(SetupError::NodesAfterChanges(problems));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Mutex;

    use clap::Parser;

    use super::*;
    use crate::cli::SetupArgs;
    use crate::setup::inventory;
    use crate::setup::ssh::TransportError;

    /// Answers the probes like three plain Debian nodes; node3 optionally unreachable.
    struct FakeNodes {
        calls: Mutex<Vec<String>>,
        down: Option<&'static str>,
    }

    impl Transport for FakeNodes {
        fn run(
            &self,
            node: &str,
            script: &str,
            _stdin: &[u8],
            _t: Duration,
        ) -> Result<Output, TransportError> {
            if self.down == Some(node) {
                return Err(TransportError::Connect {
                    node: node.into(),
                    cause: "ssh: connect to host node3 port 22: Connection timed out".into(),
                });
            }
            let kind = if script.contains("getent hosts") {
                "probe"
            } else if script.contains("/dev/tcp") {
                "reach"
            } else {
                "change"
            };
            self.calls.lock().map(|mut c| c.push(format!("{node} {kind}"))).ok();
            let stdout = match kind {
                "probe" => "arch=x86_64\nfamily=deb\ninstalled=\nactive=inactive\nenabled=\nlistener=\nntp=yes\n\
                            resolve.node1=10.0.0.11\nresolve.node2=10.0.0.12\nresolve.node3=10.0.0.13\nbash=yes\n"
                    .to_string(),
                "reach" => "reach.10.0.0.11=ok\nreach.10.0.0.12=ok\nreach.10.0.0.13=ok\n".to_string(),
                _ => String::new(),
            };
            Ok(Output { status: 0, stdout, stderr: String::new() })
        }

        fn copy(&self, node: &str, _l: &Path, _r: &str, _t: Duration) -> Result<(), TransportError> {
            self.calls.lock().map(|mut c| c.push(format!("{node} copy"))).ok();
            Ok(())
        }
    }

    fn inventory(line: &str) -> Inventory {
        let args = SetupArgs::try_parse_from(line.split_whitespace()).expect("args");
        let mut inv = inventory::from_args(&args, Path::new("/nonexistent")).expect("valid");
        inv.packages = vec![
            inventory::PackageFile {
                path: "gearpump-master_0.1.0-1_amd64.deb".into(),
                product: inventory::Product::Master,
                family: inventory::Family::Deb,
                arch: "amd64".into(),
                version: "0.1.0-1".into(),
            },
            inventory::PackageFile {
                path: "gearpump-worker_0.1.0-1_amd64.deb".into(),
                product: inventory::Product::Worker,
                family: inventory::Family::Deb,
                arch: "amd64".into(),
                version: "0.1.0-1".into(),
            },
        ];
        inv
    }

    #[test]
    fn dry_run_only_reads_and_prints_every_node() {
        let inv =
            inventory("gearpump-setup --masters node1,node2,node3 --jar-store hdfs://nn:9000/jars --dry-run");
        let nodes = FakeNodes { calls: Mutex::new(Vec::new()), down: None };
        let mut out = Vec::new();
        run(&inv, &nodes, &mut out).expect("dry run succeeds");
        let text = String::from_utf8_lossy(&out);
        let calls = nodes.calls.lock().map(|c| c.clone()).unwrap_or_default();
        assert!(calls.iter().all(|c| c.ends_with(" probe") || c.ends_with(" reach")), "{calls:?}");
        for node in ["node1", "node2", "node3"] {
            assert!(text.contains(&format!(
                "== {node} (deb amd64; gearpump-master not installed; service inactive)"
            )));
            assert!(text.contains(&format!("|   hostname = \"{node}\"")));
        }
        assert!(text.contains("|     jarstore {") || text.contains("rootpath = \"hdfs://nn:9000/jars\""));
        assert!(text.contains(
            "$ systemctl reset-failed gearpump-master.service 2>/dev/null; systemctl start --no-block"
        ));
    }

    #[test]
    fn dry_run_with_workers_plans_the_worker_nodes_after_the_masters() {
        let inv = inventory(
            "gearpump-setup --masters node1,node2,node3 --workers node3,node4 --insecure --dry-run",
        );
        let nodes = FakeNodes { calls: Mutex::new(Vec::new()), down: None };
        let mut out = Vec::new();
        run(&inv, &nodes, &mut out).expect("dry run succeeds");
        let text = String::from_utf8_lossy(&out);
        let calls = nodes.calls.lock().map(|c| c.clone()).unwrap_or_default();
        assert!(calls.iter().all(|c| c.ends_with(" probe") || c.ends_with(" reach")), "{calls:?}");
        assert!(calls.contains(&"node4 probe".to_string()) && calls.contains(&"node4 reach".to_string()));
        let node4 =
            text.find("== node4 worker (gearpump-worker not installed; service unknown)").expect(&text);
        let node3 = text.find("== node3 worker").expect("node3's worker plan");
        assert!(text.find("== node3 (deb amd64").is_some_and(|master| master < node3 && node3 < node4));
        assert!(text[node4..].contains("|   hostname = \"node4\""));
        assert!(
            !text[node3..node4].contains("write /etc/gearpump/gear.conf"),
            "node3's master plan writes it"
        );
        assert!(text.contains("then start the workers and wait until the leader lists node3, node4 alive"));
    }

    #[test]
    fn an_unreachable_worker_node_stops_the_run_before_any_change() {
        let inv = inventory("gearpump-setup --masters node1,node2 --workers node3 --insecure");
        let nodes = FakeNodes { calls: Mutex::new(Vec::new()), down: Some("node3") };
        let mut out = Vec::new();
        let report = run(&inv, &nodes, &mut out).expect_err("node3 is down").to_string();
        assert!(report.contains("node3  preflight  ssh to node3 failed"), "{report}");
        let calls = nodes.calls.lock().map(|c| c.clone()).unwrap_or_default();
        assert!(calls.iter().all(|c| c.ends_with(" probe")), "{calls:?}");
    }

    #[test]
    fn an_unreachable_node_stops_the_run_before_any_change() {
        let inv = inventory("gearpump-setup --masters node1,node2,node3");
        let nodes = FakeNodes { calls: Mutex::new(Vec::new()), down: Some("node3") };
        let mut out = Vec::new();
        let error = run(&inv, &nodes, &mut out).expect_err("node3 is down");
        let report = error.to_string();
        assert!(report.contains("node3  preflight  ssh to node3 failed: ssh: connect to host node3 port 22: Connection timed out"), "{report}");
        let calls = nodes.calls.lock().map(|c| c.clone()).unwrap_or_default();
        assert!(calls.iter().all(|c| c.ends_with(" probe")), "{calls:?}");
    }
}
