//! The fence: one tiny helper process per attempt (`gearpump-worker __fence ...`) that kills the
//! attempt's process group when the worker's lease runs out or the worker dies.
//!
//! It is a separate process because the worker itself may be the thing that is frozen: a worker
//! stopped by SIGSTOP, swapped out or stuck cannot kill anything, yet the leader will start a
//! replacement after `worker-loss-timeout`. The worker writes into the lease file the wall-clock
//! time at which it SENT its last heartbeat that a leader with quorum acknowledged; that is no
//! later than when the leader saw it, so the fence fires before the leader's loss timeout ends.

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::{getppid, Pid};

/// Arguments: LEASE_FILE FENCE_MS PGID WORKER_PID. Returns the exit status.
pub fn main(args: &[String]) -> i32 {
    let [lease, fence_ms, pgid, worker] = args else {
        eprintln!(
            "usage: gearpump-worker __fence LEASE_FILE FENCE_MS PGID WORKER_PID (started by the worker)"
        );
        return 2;
    };
    let (Ok(fence_ms), Ok(pgid), Ok(worker)) =
        (fence_ms.parse::<u64>(), pgid.parse::<i32>(), worker.parse::<i32>())
    else {
        eprintln!("gearpump-worker __fence: malformed arguments");
        return 2;
    };
    let group = Pid::from_raw(pgid);
    loop {
        // The attempt ended by itself: nothing left to guard.
        if killpg(group, None).is_err() {
            return 0;
        }
        if getppid().as_raw() != worker {
            let _ = killpg(group, Signal::SIGKILL);
            return 0;
        }
        if lease_age_ms(Path::new(lease)).is_none_or(|age| age > fence_ms) {
            let _ = killpg(group, Signal::SIGKILL);
            return 0;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Milliseconds since the time written in the lease file; `None` when it cannot be read.
fn lease_age_ms(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let sent: u64 = text.trim().parse().ok()?;
    Some(crate::api::now_ms().saturating_sub(sent))
}
