//! Which keys of a gear.conf mean something to us, which only to Gearpump, and which to nobody
//! (probably a typo, so the warning names the nearest key we know).

use super::keys::KEYS;

/// Every spelling of every key of the table.
fn our_keys() -> impl Iterator<Item = &'static str> {
    KEYS.iter().flat_map(|key| key.all_spellings())
}

const GEARPUMP_0_8_KEYS: &str = include_str!("gearpump_0_8_keys.txt");

/// Gearpump's serializer table is an open map whose keys are class names.
const OPEN_MAPS: &[&str] = &["gearpump.serializers"];

fn gearpump_keys() -> impl Iterator<Item = &'static str> {
    GEARPUMP_0_8_KEYS.lines().filter(|line| !line.is_empty() && !line.starts_with('#'))
}

pub(super) enum KeyKind {
    Ours,
    /// A Gearpump 0.8 key we do not use: accepted quietly, an existing file must load as it is.
    GearpumpOnly,
    Unknown {
        nearest: Option<&'static str>,
    },
}

/// Whether a path of the file is ours to judge: under `gearpump.` (also inside the
/// `gearpump-master { }` and `gearpump-worker { }` overlays), or an Akka/Pekko setting of the
/// master overlay or of the HA guide's `master { }` section. Other top-level sections (`akka`,
/// `pekko`, anything of the operator's) are none of our business.
pub(super) fn is_checked(path: &str) -> bool {
    let path = strip_overlay(path);
    path.starts_with("gearpump.")
        || path.starts_with("gearpump-master.akka.")
        || path.starts_with("gearpump-master.pekko.")
        || path.starts_with("master.akka.")
        || path.starts_with("master.pekko.")
}

/// Per-daemon overlay: `gearpump-master { gearpump.x = ... }` means `gearpump.x` for the master,
/// `gearpump-worker { ... }` the same for a worker.
fn strip_overlay(path: &str) -> &str {
    ["gearpump-master.", "gearpump-worker."]
        .iter()
        .find_map(|overlay| path.strip_prefix(overlay).filter(|p| p.starts_with("gearpump.")))
        .unwrap_or(path)
}

pub(super) fn classify(path: &str) -> KeyKind {
    let path = strip_overlay(path);
    if our_keys().any(|key| key == path) {
        return KeyKind::Ours;
    }
    // Gearpump releases on Pekko spell Gearpump 0.8's Akka settings with `pekko`; and a
    // master's Akka/Pekko tuning that is not fail-over related is Gearpump's, not ours.
    let akka = path.replacen(".pekko.", ".akka.", 1);
    let akka_tuning = !akka.contains("auto-down")
        && (akka.starts_with("gearpump-master.akka.") || akka.starts_with("master.akka."));
    if akka_tuning
        || gearpump_keys().any(|key| key == path || key == akka)
        || OPEN_MAPS.iter().any(|prefix| path.starts_with(prefix))
    {
        return KeyKind::GearpumpOnly;
    }
    let nearest = our_keys()
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
        assert!(matches!(classify("gearpump-master.pekko.loglevel"), KeyKind::GearpumpOnly));
        assert!(matches!(classify("gearpump-master.akka.remote.netty.tcp.port"), KeyKind::GearpumpOnly));
    }

    #[test]
    fn pekko_fail_over_spellings_are_ours_and_their_typos_are_not() {
        for key in [
            "gearpump-master.pekko.cluster.auto-down-unreachable-after",
            "master.pekko.cluster.auto-down-unreachable-after",
        ] {
            assert!(matches!(classify(key), KeyKind::Ours), "{key}");
        }
        match classify("gearpump-master.pekko.cluster.auto-down-unreachable-afer") {
            KeyKind::Unknown { nearest } => {
                assert_eq!(nearest, Some("gearpump-master.pekko.cluster.auto-down-unreachable-after"))
            }
            _ => panic!("a typo must be unknown"),
        }
    }

    #[test]
    fn worker_overlay_keys_are_checked_too() {
        assert!(is_checked("gearpump-worker.gearpump.worker.slotz"));
        assert!(matches!(classify("gearpump-worker.gearpump.worker.slots"), KeyKind::Ours));
        assert!(matches!(classify("gearpump-worker.gearpump.cluster.mastrs"), KeyKind::Unknown { .. }));
        assert!(!is_checked("akka.loglevel"));
    }
}
