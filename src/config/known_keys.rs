//! Which keys of a gear.conf mean something to us, which only to Gearpump, and which to nobody
//! (probably a typo, so the warning names the nearest key we know).

/// Keys this master reads (besides the failover aliases, which are listed in `mod.rs`).
pub const OUR_KEYS: &[&str] = &[
    "gearpump.hostname",
    "gearpump.cluster.masters",
    "gearpump.jarstore.rootpath",
    "gearpump.jarstore.rootPath",
    "gearpump.jarstore.max-size",
    "gearpump.jarstore.retention",
    "gearpump.jarstore.timeout",
    "gearpump.application.total-retries",
    "gearpump.master.state-dir",
    "gearpump.master.bind-host",
    "gearpump.master.failover-timeout",
    "gearpump.master.request-timeout",
    "gearpump.master.startup-timeout",
    "gearpump.master.snapshot-every",
    "gearpump.master.log-keep",
    "gearpump.master.secret-file",
    "gearpump.master.log-level",
    "gearpump-master.akka.cluster.auto-down-unreachable-after",
    "master.akka.cluster.auto-down-unreachable-after",
];

const GEARPUMP_0_8_KEYS: &str = include_str!("gearpump_0_8_keys.txt");

/// Gearpump's serializer table is an open map whose keys are class names.
const OPEN_MAPS: &[&str] = &["gearpump.serializers"];

fn gearpump_keys() -> impl Iterator<Item = &'static str> {
    GEARPUMP_0_8_KEYS.lines().filter(|line| !line.is_empty() && !line.starts_with('#'))
}

pub enum KeyKind {
    Ours,
    /// A Gearpump 0.8 key we do not use: accepted quietly, an existing file must load as it is.
    GearpumpOnly,
    Unknown {
        nearest: Option<&'static str>,
    },
}

pub fn classify(path: &str) -> KeyKind {
    // Per-daemon overlay: `gearpump-master { gearpump.x = ... }` means `gearpump.x` for the master.
    let path = path.strip_prefix("gearpump-master.").filter(|p| p.starts_with("gearpump.")).unwrap_or(path);
    if OUR_KEYS.contains(&path) || super::workers::WORKER_KEYS.contains(&path) {
        return KeyKind::Ours;
    }
    if gearpump_keys().any(|key| key == path) || OPEN_MAPS.iter().any(|prefix| path.starts_with(prefix)) {
        return KeyKind::GearpumpOnly;
    }
    let nearest = OUR_KEYS
        .iter()
        .copied()
        .chain(gearpump_keys())
        .map(|key| (edit_distance(path, key), key))
        .filter(|(distance, _)| *distance <= 4)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, key)| key);
    KeyKind::Unknown { nearest }
}

/// Levenshtein distance; keys are short, so the quadratic table is fine.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typo_gets_nearest_key() {
        match classify("gearpump.cluster.mastrs") {
            KeyKind::Unknown { nearest } => assert_eq!(nearest, Some("gearpump.cluster.masters")),
            _ => panic!("a typo must be unknown"),
        }
    }

    #[test]
    fn gearpump_keys_are_quietly_accepted() {
        assert!(matches!(
            classify("gearpump.worker.executor-share-same-jvm-as-worker"),
            KeyKind::GearpumpOnly
        ));
        // Read by gearpump-worker now.
        assert!(matches!(classify("gearpump.worker.slots"), KeyKind::Ours));
        assert!(matches!(classify("gearpump.hostname"), KeyKind::Ours));
        assert!(matches!(classify("gearpump-master.gearpump.hostname"), KeyKind::Ours));
    }
}
