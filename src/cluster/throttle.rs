//! At most one warning a second for a condition that may repeat many times a second (a stalled
//! election loop, slow log commits, late AppendEntries), with a count of those left unsaid.

use std::time::{Duration, Instant};

#[derive(Default)]
pub(super) struct Throttle {
    last: Option<Instant>,
    skipped: u32,
}

impl Throttle {
    /// Once a second: `Some(occurrences left unsaid since the last warning)`, and the warning is
    /// due now; otherwise `None`, and this occurrence is counted.
    pub(super) fn due(&mut self) -> Option<u32> {
        if self.last.is_some_and(|at| at.elapsed() < Duration::from_secs(1)) {
            self.skipped += 1;
            return None;
        }
        self.last = Some(Instant::now());
        Some(std::mem::take(&mut self.skipped))
    }
}

#[cfg(test)]
mod tests {
    use super::Throttle;

    #[test]
    fn one_warning_a_second_with_the_count_left_unsaid() {
        let mut throttle = Throttle::default();
        assert_eq!(throttle.due(), Some(0));
        assert_eq!(throttle.due(), None);
        assert_eq!(throttle.due(), None);
        throttle.last = throttle.last.and_then(|at| at.checked_sub(std::time::Duration::from_secs(2)));
        assert_eq!(throttle.due(), Some(2));
    }
}
