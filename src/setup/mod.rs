//! `gearpump-setup`: turns plain Debian or RPM hosts into a running master cluster over ssh.
//!
//! inventory (validated request) -> probe (read-only facts per node) -> plan (pure: preflight
//! verdicts and per-node actions) -> run (executes the plan, drives membership through the
//! master API, waits for one leader). `--dry-run` stops after the plan and prints it.

pub mod gearconf;
pub mod inventory;
pub mod pki;
pub mod plan;
pub mod probe;
pub mod repo;
pub mod run;
pub mod ssh;
pub mod upgrade;

use plan::NodeFailure;

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{0}")]
    Arguments(String),
    #[error("{}", report(.0))]
    Nodes(Vec<NodeFailure>),
    #[error("{0}")]
    Cluster(String),
    #[error("cannot start the HTTP client: {0}")]
    Runtime(String),
}

/// The per-node failure report: node, step and cause, one per line.
pub fn report(failures: &[NodeFailure]) -> String {
    let width = failures.iter().map(|f| f.node.len()).max().unwrap_or(4).max(4);
    let mut out =
        format!("{} node(s) failed:\n{:<width$}  {:<10} CAUSE\n", distinct_nodes(failures), "NODE", "STEP");
    for f in failures {
        out.push_str(&format!("{:<width$}  {:<10} {}\n", f.node, f.step.to_string(), f.cause));
    }
    out.push_str("Nothing else was changed on these nodes; fix the cause and run the same command again.");
    out
}

fn distinct_nodes(failures: &[NodeFailure]) -> usize {
    let mut nodes: Vec<&str> = failures.iter().map(|f| f.node.as_str()).collect();
    nodes.sort_unstable();
    nodes.dedup();
    nodes.len()
}
