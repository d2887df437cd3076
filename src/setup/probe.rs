//! What a node looks like before anything changes: one read-only script per node whose output
//! is parsed into `NodeFacts`. The preflight checks and the plan are computed from these facts.

use std::collections::BTreeMap;

use super::inventory::Family;
use super::ssh::shell_quote;

pub const GEAR_CONF: &str = "/etc/gearpump/gear.conf";
pub const SECRET_FILE: &str = "/etc/gearpump/cluster.secret";
pub const SERVICE: &str = "gearpump-master.service";
pub const WORKER_SERVICE: &str = "gearpump-worker.service";
/// The packages' state directory (gearpump.master.state-dir as shipped) and the Raft database
/// a master keeps in it once it has started.
pub const STATE_DIR: &str = "/var/lib/gearpump";
pub const STATE_DB: &str = "raft.redb";
pub const DROP_IN: &str = "/etc/systemd/system/gearpump-master.service.d/50-gearpump-setup-jarstore.conf";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeFacts {
    pub family: Option<Family>,
    pub arch: String,
    /// VERSION-RELEASE of the installed gearpump-master, if any.
    pub installed: Option<String>,
    pub active: String,
    pub enabled: String,
    /// VERSION-RELEASE of the installed gearpump-worker, if any.
    pub worker_installed: Option<String>,
    pub worker_active: String,
    pub worker_enabled: String,
    /// The line `ss` prints for a listener on the master port, if one exists.
    pub listener: Option<String>,
    pub ntp_synchronized: String,
    /// name -> address as this node resolves it (absent: does not resolve).
    pub resolved: BTreeMap<String, String>,
    pub has_bash: bool,
    pub nfs_client: bool,
    /// The master's state directory holds a Raft database: it started on this node before and
    /// remembers a membership (or waited, uninitialized, to be added).
    pub state_db: bool,
    /// unit name -> `systemctl is-enabled` of the units the plan may enable.
    pub unit_enabled: BTreeMap<String, String>,
    /// Files the plan may rewrite: path -> content (None: absent).
    pub files: BTreeMap<String, Option<String>>,
}

impl NodeFacts {
    pub fn file(&self, path: &str) -> Option<&str> {
        self.files.get(path).and_then(|c| c.as_deref())
    }

    pub fn is_active(&self) -> bool {
        is_running(&self.active)
    }

    pub fn worker_is_active(&self) -> bool {
        is_running(&self.worker_active)
    }
}

fn is_running(state: &str) -> bool {
    state == "active" || state == "activating" || state == "reloading"
}

impl NodeFacts {}

/// Normalizes `uname -m` to Debian's spelling, as package names are normalized.
pub fn normalize_arch(machine: &str) -> String {
    match machine {
        "x86_64" => "amd64".into(),
        "aarch64" => "arm64".into(),
        other => other.into(),
    }
}

/// The read-only probe. Every value goes into a `key=value` line; file contents are base64 so
/// that any byte survives the trip.
pub fn probe_script(port: u16, names: &[String], files: &[String], units: &[String]) -> String {
    let words = |items: &[String]| items.iter().map(|n| shell_quote(n)).collect::<Vec<_>>().join(" ");
    format!(
        r#"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export LC_ALL=C
echo "arch=$(uname -m)"
if command -v dpkg-query >/dev/null 2>&1; then
  echo family=deb
  echo "installed=$(dpkg-query -W -f='${{Status}} ${{Version}}' gearpump-master 2>/dev/null | sed -n 's/^install ok installed //p')"
  echo "worker_installed=$(dpkg-query -W -f='${{Status}} ${{Version}}' gearpump-worker 2>/dev/null | sed -n 's/^install ok installed //p')"
elif command -v rpm >/dev/null 2>&1; then
  echo family=rpm
  echo "installed=$(rpm -q --qf '%{{VERSION}}-%{{RELEASE}}' gearpump-master 2>/dev/null | grep -v 'not installed')"
  echo "worker_installed=$(rpm -q --qf '%{{VERSION}}-%{{RELEASE}}' gearpump-worker 2>/dev/null | grep -v 'not installed')"
else
  echo family=
fi
echo "active=$(systemctl is-active {service} 2>/dev/null)"
echo "enabled=$(systemctl is-enabled {service} 2>/dev/null)"
echo "worker_active=$(systemctl is-active {worker_service} 2>/dev/null)"
echo "worker_enabled=$(systemctl is-enabled {worker_service} 2>/dev/null)"
if command -v ss >/dev/null 2>&1; then
  echo "listener=$(ss -Htlnp 'sport = :{port}' 2>/dev/null | head -n 1 | tr -s ' ')"
else
  echo "listener=?"
fi
echo "ntp=$(timedatectl show -p NTPSynchronized --value 2>/dev/null || echo unknown)"
for n in {names}; do
  a=$(getent hosts "$n" 2>/dev/null | awk 'NR == 1 {{ print $1 }}')
  echo "resolve.$n=$a"
done
command -v bash >/dev/null 2>&1 && echo bash=yes
[ -e {state_db} ] && echo state_db=yes
if command -v mount.nfs >/dev/null 2>&1 || [ -x /sbin/mount.nfs ] || [ -x /usr/sbin/mount.nfs ]; then echo nfs=yes; fi
for u in {units}; do echo "unit.$u=$(systemctl is-enabled "$u" 2>/dev/null)"; done
for f in {files}; do
  if [ -f "$f" ]; then
    echo "file.begin=$f"
    base64 <"$f"
    echo "file.end=$f"
  fi
done
"#,
        service = SERVICE,
        worker_service = WORKER_SERVICE,
        state_db = shell_quote(&format!("{STATE_DIR}/{STATE_DB}")),
        port = port,
        names = words(names),
        units = words(units),
        files = words(files),
    )
}

pub fn parse_probe(output: &str, files: &[String]) -> Result<NodeFacts, String> {
    let mut facts = NodeFacts::default();
    for f in files {
        facts.files.insert(f.clone(), None);
    }
    let mut lines = output.lines();
    let mut saw_family = false;
    while let Some(line) = lines.next() {
        let Some((key, value)) = line.split_once('=') else { continue };
        match key {
            "arch" => facts.arch = normalize_arch(value.trim()),
            "family" => {
                saw_family = true;
                facts.family = match value {
                    "deb" => Some(Family::Deb),
                    "rpm" => Some(Family::Rpm),
                    _ => None,
                }
            }
            "installed" => facts.installed = Some(value.trim().to_string()).filter(|v| !v.is_empty()),
            "active" => facts.active = value.trim().to_string(),
            "enabled" => facts.enabled = value.trim().to_string(),
            "worker_installed" => {
                facts.worker_installed = Some(value.trim().to_string()).filter(|v| !v.is_empty())
            }
            "worker_active" => facts.worker_active = value.trim().to_string(),
            "worker_enabled" => facts.worker_enabled = value.trim().to_string(),
            "listener" => {
                facts.listener = Some(value.trim().to_string()).filter(|v| !v.is_empty() && v != "?")
            }
            "ntp" => facts.ntp_synchronized = value.trim().to_string(),
            "bash" => facts.has_bash = true,
            "state_db" => facts.state_db = true,
            "nfs" => facts.nfs_client = true,
            "file.begin" => {
                let mut encoded = String::new();
                for body in lines.by_ref() {
                    if body == format!("file.end={value}") {
                        break;
                    }
                    encoded.push_str(body.trim());
                }
                let bytes = base64_decode(&encoded).ok_or_else(|| format!("{value}: unreadable copy"))?;
                facts.files.insert(value.to_string(), Some(String::from_utf8_lossy(&bytes).into_owned()));
            }
            other => {
                if let Some(name) = other.strip_prefix("resolve.") {
                    if !value.trim().is_empty() {
                        facts.resolved.insert(name.to_string(), value.trim().to_string());
                    }
                } else if let Some(unit) = other.strip_prefix("unit.") {
                    facts.unit_enabled.insert(unit.to_string(), value.trim().to_string());
                }
            }
        }
    }
    if !saw_family {
        return Err("the probe printed nothing recognizable (is the login shell a POSIX shell?)".into());
    }
    Ok(facts)
}

/// Standard base64 as coreutils' `base64` writes it: padded, wrapped at 76 columns.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let clean: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(clean).ok()
}

/// Second round, once every node's resolutions are known: can this node open a TCP connection
/// to each address the others resolve to? A refused connection still proves the route.
pub fn reach_script(addresses: &[String], port: u16) -> String {
    let list = addresses.iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" ");
    format!(
        r#"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export LC_ALL=C
for a in {list}; do
  if ! command -v bash >/dev/null 2>&1 || ! command -v timeout >/dev/null 2>&1; then echo "reach.$a=skip"; continue; fi
  err=$(timeout 3 bash -c ": </dev/tcp/$a/{port}" 2>&1)
  rc=$?
  if [ $rc -eq 0 ] || printf '%s' "$err" | grep -qi refused; then echo "reach.$a=ok"; else echo "reach.$a=fail"; fi
done
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_probe() {
        let output = "arch=x86_64\nfamily=deb\ninstalled=0.1.0-1\nworker_installed=0.1.0-1\nactive=inactive\nenabled=enabled\nworker_active=active\n\
            listener=\nntp=no\nresolve.node1=10.0.0.11\nresolve.node2=\nbash=yes\nstate_db=yes\nunit.x.mount=\n\
            file.begin=/etc/gearpump/gear.conf\naGVsbG8K\nfile.end=/etc/gearpump/gear.conf\n";
        let files = vec![GEAR_CONF.to_string(), SECRET_FILE.to_string()];
        let facts = parse_probe(output, &files).expect("parses");
        assert_eq!(facts.arch, "amd64");
        assert_eq!(facts.family, Some(Family::Deb));
        assert_eq!(facts.installed.as_deref(), Some("0.1.0-1"));
        assert_eq!(facts.listener, None);
        assert_eq!(facts.worker_installed.as_deref(), Some("0.1.0-1"));
        assert!(facts.worker_is_active() && !facts.is_active());
        assert_eq!(facts.resolved.get("node1").map(String::as_str), Some("10.0.0.11"));
        assert!(!facts.resolved.contains_key("node2"));
        assert_eq!(facts.file(GEAR_CONF), Some("hello\n"));
        assert_eq!(facts.file(SECRET_FILE), None);
        assert!(facts.has_bash && !facts.nfs_client && facts.state_db);
    }

    #[test]
    fn base64_round_trips_what_coreutils_writes() {
        assert_eq!(base64_decode("aGVsbG8K").as_deref(), Some(&b"hello\n"[..]));
        assert_eq!(base64_decode("YQ==").as_deref(), Some(&b"a"[..]));
        assert_eq!(base64_decode("YWI=").as_deref(), Some(&b"ab"[..]));
        assert_eq!(base64_decode("Y"), None);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse_probe("Welcome to the machine\n", &[]).is_err());
    }
}
