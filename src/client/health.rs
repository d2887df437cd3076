//! `gear health`: is the cluster one cluster? Every listed master is asked itself (never
//! through another, unlike the rest of the client, which moves on to whichever master answers),
//! and the answers are judged together: every master ready, all naming the same leader in the
//! same term, exactly one of them leading — and, when asked, all at one applied state (index and
//! hash) and all on one package version.
//!
//! The judgement, [`judge`], is a pure function of the answers so that it has one home: the
//! Rust test harnesses wait for "an agreed leader" through it, and the container testbed through
//! `gear health --wait`, instead of each reading JSON its own way.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde::de::DeserializeOwned;

use super::{cell, describe_reqwest_error, error_message, MasterClient};
use crate::wire::{ClusterHealth, MasterAnswer, MasterHealth, Ready, Role};

/// What besides one agreed leader makes a cluster healthy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expect {
    /// Every master has applied the same index and holds the same state hash (a quiet cluster
    /// converged; under steady writes the indexes differ for a moment).
    pub same_state: bool,
    /// Every master runs this package version.
    pub version: Option<String>,
}

/// One master's answers, before they are judged.
impl MasterHealth {
    /// What `/health/ready` answered (its body comes with the 503 of a master that is not
    /// ready too), or why it did not.
    pub fn from_ready(address: &str, answer: Result<Ready, String>) -> MasterHealth {
        let mut health = MasterHealth {
            address: address.to_string(),
            error: None,
            ready: false,
            role: None,
            leader: None,
            term: None,
            applied_index: None,
            state_hash: None,
            version: None,
            state_error: None,
        };
        match answer {
            Ok(ready) => {
                health.ready = ready.ready;
                health.role = Some(ready.role);
                health.leader = ready.leader;
                health.term = Some(ready.term);
            }
            Err(error) => health.error = Some(error),
        }
        health
    }

    fn add_state(&mut self, answer: Result<MasterAnswer, String>) {
        match answer {
            Ok(answer) => {
                let description = answer.master_description;
                self.applied_index = Some(description.applied_index);
                self.state_hash = Some(description.state_hash);
                self.version = Some(description.version);
            }
            Err(error) => self.state_error = Some(error),
        }
    }
}

/// The verdict on the masters' answers. `healthy` is true exactly when `problems` is empty.
pub fn judge(masters: Vec<MasterHealth>, expect: &Expect) -> ClusterHealth {
    let mut problems = Vec::new();
    for master in &masters {
        match (&master.error, master.ready) {
            (Some(error), _) => problems.push(format!("{} did not answer: {error}", master.address)),
            (None, false) => problems.push(format!(
                "{} is not ready (role {}, leader {})",
                master.address,
                master.role.map_or("-", Role::name),
                master.leader.as_deref().unwrap_or("none")
            )),
            (None, true) => {}
        }
    }
    let answered: Vec<&MasterHealth> = masters.iter().filter(|m| m.error.is_none()).collect();

    let leaders = group(&answered, |m| m.leader.clone().unwrap_or_else(|| "none".into()));
    let terms = group(&answered, |m| m.term.map_or_else(|| "-".into(), |t| t.to_string()));
    if leaders.len() > 1 {
        problems.push(format!("the masters name different leaders: {}", describe(&leaders)));
    }
    if terms.len() > 1 {
        problems.push(format!("the masters are in different terms: {}", describe(&terms)));
    }
    let leading: Vec<&str> =
        answered.iter().filter(|m| m.role == Some(Role::Leader)).map(|m| m.address.as_str()).collect();
    if !answered.is_empty() && leading.len() != 1 {
        problems.push(match leading.as_slice() {
            [] => "no master says it leads".to_string(),
            many => format!("{} masters say they lead: {}", many.len(), many.join(", ")),
        });
    }
    if expect.same_state {
        for master in answered.iter().filter(|m| m.state_error.is_some()) {
            problems.push(format!(
                "{} did not tell its applied state: {}",
                master.address,
                master.state_error.as_deref().unwrap_or_default()
            ));
        }
        let states = group(&answered, |m| match (m.applied_index, &m.state_hash) {
            (Some(index), Some(hash)) => format!("index {index} hash {hash}"),
            _ => "unknown".into(),
        });
        if states.len() > 1 {
            problems.push(format!("the masters are not at one applied state: {}", describe(&states)));
        }
    }
    if let Some(version) = &expect.version {
        for master in &answered {
            if master.version.as_deref() != Some(version.as_str()) {
                problems.push(format!(
                    "{} runs version {}, not {version}",
                    master.address,
                    master.version.as_deref().or(master.state_error.as_deref()).unwrap_or("unknown")
                ));
            }
        }
    }

    let agreed = |groups: &BTreeMap<String, Vec<&str>>| {
        (groups.len() == 1 && answered.len() == masters.len())
            .then(|| groups.keys().next().cloned())
            .flatten()
    };
    let leader = agreed(&leaders).filter(|l| l != "none");
    let term = agreed(&terms).and_then(|t| t.parse().ok());
    ClusterHealth { healthy: problems.is_empty(), leader, term, problems, masters }
}

/// The masters' addresses grouped by what `key` says of each.
fn group<'a>(
    masters: &[&'a MasterHealth],
    key: impl Fn(&MasterHealth) -> String,
) -> BTreeMap<String, Vec<&'a str>> {
    let mut groups: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for master in masters {
        groups.entry(key(master)).or_default().push(master.address.as_str());
    }
    groups
}

fn describe(groups: &BTreeMap<String, Vec<&str>>) -> String {
    groups.iter().map(|(value, by)| format!("{value} (by {})", by.join(", "))).collect::<Vec<_>>().join("; ")
}

impl MasterClient {
    /// Asks every master for its own view and judges the answers; with `wait`, asks again every
    /// 250 ms until the cluster is healthy or `wait` has passed, and returns the last verdict.
    pub async fn health(&self, expect: &Expect, wait: Duration) -> ClusterHealth {
        let give_up = Instant::now() + wait;
        loop {
            let answers = futures::future::join_all(self.masters.iter().map(|m| self.master_health(m)));
            let verdict = judge(answers.await, expect);
            if verdict.healthy || Instant::now() >= give_up {
                return verdict;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn master_health(&self, master: &str) -> MasterHealth {
        let mut health = MasterHealth::from_ready(master, self.ready_of(master).await);
        if health.error.is_none() {
            // Needs the read role: without a token this is a `stateError`, which matters only
            // when the state or the version is to be judged.
            health.add_state(self.description_of(master).await);
        }
        health
    }

    /// `/health/ready` of this master only; its 503 carries the same body.
    async fn ready_of(&self, master: &str) -> Result<Ready, String> {
        self.get_from(master, "/health/ready", |status| status == StatusCode::SERVICE_UNAVAILABLE).await
    }

    /// `GET /api/v1.0/master` of this master only.
    async fn description_of(&self, master: &str) -> Result<MasterAnswer, String> {
        self.get_from(master, "/api/v1.0/master", |_| false).await
    }

    /// `path` of this one master, never another (unlike `MasterClient::get`), read as `T` when
    /// the status is a success or `also_read` accepts it; otherwise why not.
    async fn get_from<T: DeserializeOwned>(
        &self,
        master: &str,
        path: &str,
        also_read: impl Fn(StatusCode) -> bool,
    ) -> Result<T, String> {
        let url = format!("{}://{master}{path}", self.scheme);
        let response = self
            .authorized(self.http.get(url))
            .timeout(self.attempt_timeout)
            .send()
            .await
            .map_err(|e| describe_reqwest_error(&e))?;
        let status = response.status();
        if !status.is_success() && !also_read(status) {
            return Err(format!("{status}: {}", error_message(response).await));
        }
        response.json::<T>().await.map_err(|e| format!("unreadable answer ({status}): {e}"))
    }
}

/// The human form of a verdict, as `gear health` prints it.
pub fn health_table(health: &ClusterHealth) -> String {
    let mut out = format!(
        "{:<22} {:<5} {:<10} {:>5} {:<22} {:>8} {:<16} VERSION\n",
        "MASTER", "READY", "ROLE", "TERM", "LEADER", "APPLIED", "STATE HASH"
    );
    for m in &health.masters {
        out.push_str(&format!(
            "{:<22} {:<5} {:<10} {:>5} {:<22} {:>8} {:<16} {}\n",
            m.address,
            if m.ready { "yes" } else { "no" },
            cell(m.role),
            cell(m.term),
            cell(m.leader.as_deref()),
            cell(m.applied_index),
            cell(m.state_hash.as_ref().map(|h| h.chars().take(16).collect::<String>())),
            cell(m.version.as_deref()),
        ));
    }
    if health.healthy {
        out.push_str(&format!(
            "healthy: {} masters agree that {} leads in term {}\n",
            health.masters.len(),
            cell(health.leader.as_deref()),
            cell(health.term)
        ));
    } else {
        for problem in &health.problems {
            out.push_str(&format!("problem: {problem}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{judge, Expect, MasterHealth};
    use crate::wire::Role;

    fn master(address: &str, role: Role, leader: &str, term: u64) -> MasterHealth {
        let mut m = MasterHealth::from_ready(address, Err(String::new()));
        m.error = None;
        m.ready = true;
        m.role = Some(role);
        m.leader = Some(leader.into());
        m.term = Some(term);
        m.applied_index = Some(7);
        m.state_hash = Some("abc".into());
        m.version = Some("1.0".into());
        m
    }

    fn three() -> Vec<MasterHealth> {
        vec![
            master("a:1", Role::Leader, "a:1", 4),
            master("b:1", Role::Follower, "a:1", 4),
            master("c:1", Role::Follower, "a:1", 4),
        ]
    }

    #[test]
    fn one_agreed_leader_is_healthy() {
        let verdict = judge(three(), &Expect { same_state: true, version: Some("1.0".into()) });
        assert!(verdict.healthy, "{:?}", verdict.problems);
        assert_eq!((verdict.leader.as_deref(), verdict.term), (Some("a:1"), Some(4)));
    }

    #[test]
    fn each_disagreement_is_named_with_the_masters_concerned() {
        let mut masters = three();
        masters[2].leader = Some("c:1".into());
        masters[2].role = Some(Role::Leader);
        masters[2].term = Some(5);
        let verdict = judge(masters, &Expect::default());
        assert!(!verdict.healthy);
        assert_eq!((verdict.leader, verdict.term), (None, None));
        let text = verdict.problems.join("\n");
        assert!(text.contains("different leaders: a:1 (by a:1, b:1); c:1 (by c:1)"), "{text}");
        assert!(text.contains("different terms: 4 (by a:1, b:1); 5 (by c:1)"), "{text}");
        assert!(text.contains("2 masters say they lead: a:1, c:1"), "{text}");
    }

    #[test]
    fn a_silent_or_unready_master_makes_it_unhealthy_and_leaves_no_agreed_leader() {
        let mut masters = three();
        masters[1] = MasterHealth::from_ready("b:1", Err("connection refused".into()));
        let verdict = judge(masters, &Expect::default());
        assert_eq!(verdict.problems, vec!["b:1 did not answer: connection refused".to_string()]);
        assert_eq!(verdict.leader, None);

        let mut masters = three();
        masters[2].ready = false;
        masters[2].role = Some(Role::Candidate);
        masters[2].leader = None;
        let verdict = judge(masters, &Expect::default());
        assert!(verdict.problems[0].contains("c:1 is not ready (role candidate, leader none)"));
    }

    #[test]
    fn state_and_version_are_judged_only_when_asked() {
        let mut masters = three();
        masters[1].applied_index = Some(6);
        masters[2].version = Some("0.9".into());
        assert!(judge(masters.clone(), &Expect::default()).healthy);
        let verdict = judge(masters, &Expect { same_state: true, version: Some("1.0".into()) });
        let text = verdict.problems.join("\n");
        assert!(
            text.contains(
                "not at one applied state: index 6 hash abc (by b:1); index 7 hash abc (by a:1, c:1)"
            ),
            "{text}"
        );
        assert!(text.contains("c:1 runs version 0.9, not 1.0"), "{text}");
    }
}
