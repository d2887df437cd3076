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
    /// Failures found before anything was changed (probe, preflight, plan).
    #[error("{}", report(.0, false))]
    Nodes(Vec<NodeFailure>),
    /// Failures once changes had begun: some steps ran on some nodes.
    #[error("{}", report(.0, true))]
    NodesAfterChanges(Vec<NodeFailure>),
    #[error("{0}")]
    Cluster(String),
    #[error("cannot start the HTTP client: {0}")]
    Runtime(String),
}

/// The per-node failure report: node, step and cause, one per line. `changed`: the run had
/// begun changing nodes (each change is printed as `NODE: [step] ...` before the report).
pub fn report(failures: &[NodeFailure], changed: bool) -> String {
    let width = failures.iter().map(|f| f.node.len()).max().unwrap_or(4).max(4);
    let mut out =
        format!("{} node(s) failed:\n{:<width$}  {:<10} CAUSE\n", distinct_nodes(failures), "NODE", "STEP");
    for f in failures {
        out.push_str(&format!("{:<width$}  {:<10} {}\n", f.node, f.step.to_string(), f.cause));
    }
    // Only a failure before the first change may claim that nothing changed. Either way a
    // re-run is safe: it probes again and does only what is missing.
    if !changed {
        out.push_str("Nothing was changed on any node; fix the cause and run the same command again.");
    } else {
        out.push_str(
            "What ran on a node before its failure is listed above (NODE: [step] ...); each cause says what \
             it left. Running the same command again once the cause is fixed is safe: it does only what is \
             still missing.",
        );
    }
    out
}

fn distinct_nodes(failures: &[NodeFailure]) -> usize {
    let mut nodes: Vec<&str> = failures.iter().map(|f| f.node.as_str()).collect();
    nodes.sort_unstable();
    nodes.dedup();
    nodes.len()
}

#[cfg(test)]
mod tests {
    use super::plan::Step;
    use super::*;

    fn failure(node: &str, step: Step) -> NodeFailure {
        NodeFailure { node: node.into(), step, cause: "x".into() }
    }

    #[test]
    fn the_report_claims_nothing_changed_only_before_any_change() {
        let before = report(&[failure("node1", Step::Preflight), failure("node2", Step::GearConf)], false);
        assert!(before.starts_with("2 node(s) failed:"), "{before}");
        assert!(before
            .ends_with("Nothing was changed on any node; fix the cause and run the same command again."));
        let after = report(&[failure("node1", Step::Package)], true);
        assert!(!after.contains("Nothing was changed"), "{after}");
        assert!(after.contains("What ran on a node before its failure is listed above"), "{after}");
        assert!(after.ends_with("it does only what is still missing."), "{after}");
    }
}
