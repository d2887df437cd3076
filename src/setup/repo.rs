//! Installing by name from the organisation's signed package repository (`--repo URL
//! --repo-key FILE`; scripts/build-repo.sh makes one), the way Debian's and RPM distributions'
//! users install: the node gets an APT source (deb822, `Signed-By:` the repository's own key, so
//! that key vouches for this repository only) or a yum/dnf `.repo` with gpgcheck and
//! repo_gpgcheck, then `apt-get install gearpump-master` by name. A repository whose signature
//! does not verify is refused by the node's package manager; the script says so in one line with
//! apt's own words and the fix, which becomes that node's line in the failure report.

use std::path::Path;

use super::inventory::{Family, Product};
use super::plan::{Action, Step};
use super::probe::NodeFacts;
use super::ssh::shell_quote;

pub const APT_SOURCES: &str = "/etc/apt/sources.list.d/gearpump.sources";
/// Binary OpenPGP keyring, the form apt's `Signed-By:` reads under any name.
pub const APT_KEYRING: &str = "/usr/share/keyrings/gearpump-archive-keyring.gpg";
pub const YUM_REPO: &str = "/etc/yum.repos.d/gearpump.repo";
/// ASCII-armored, the form `rpm --import` and dnf's `gpgkey=` read.
pub const RPM_KEY: &str = "/etc/pki/rpm-gpg/RPM-GPG-KEY-gearpump";
/// The suite and component scripts/build-repo.sh writes.
const SUITE: &str = "stable";
const COMPONENT: &str = "main";

/// A validated `--repo URL --repo-key FILE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repo {
    /// Without a trailing '/'.
    pub url: String,
    /// The public key as OpenPGP packets (binary), whatever form the file had.
    pub key: Vec<u8>,
}

/// Whether a node installs what is missing or upgrades what is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Install,
    Upgrade,
}

/// The files a probe reads so a re-run writes only what changed.
pub fn files_to_read() -> [&'static str; 4] {
    [APT_SOURCES, APT_KEYRING, YUM_REPO, RPM_KEY]
}

pub fn check_url(text: &str) -> Result<String, String> {
    let url = text.trim().trim_end_matches('/');
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://")).ok_or_else(|| {
        format!("--repo {text:?}: expected http://HOST[:PORT]/PATH or https://... (the folder scripts/build-repo.sh wrote, served by a web server)")
    })?;
    if rest.is_empty()
        || rest.starts_with('/')
        || url
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '\\' | '`' | '$'))
    {
        return Err(format!("--repo {text:?}: not a plain http(s) URL (no blanks, quotes, '$' or '\\')"));
    }
    Ok(url.to_string())
}

/// Reads `--repo-key`: the binary keyring or the ASCII-armored public key build-repo.sh exports.
pub fn read_key(path: &Path) -> Result<Vec<u8>, String> {
    let shown = path.display();
    let bytes = std::fs::read(path).map_err(|e| format!("--repo-key {shown}: {e}"))?;
    let text = String::from_utf8_lossy(&bytes);
    if text.contains("PRIVATE KEY BLOCK") {
        return Err(format!(
            "--repo-key {shown} is a SECRET key: give the public key (gearpump-archive-keyring.gpg from the \
             repository's root, or gpg --export KEYID); the secret key stays with whoever signs the repository"
        ));
    }
    let key = if text.trim_start().starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----") {
        dearmor(&text).ok_or_else(|| format!("--repo-key {shown}: the ASCII-armored key is damaged"))?
    } else {
        bytes
    };
    match packet_tag(&key) {
        Some(6) => Ok(key),
        Some(5) => Err(format!(
            "--repo-key {shown} is a SECRET key: give the public key (gpg --export KEYID); the secret key \
             stays with whoever signs the repository"
        )),
        _ => Err(format!(
            "--repo-key {shown} is not an OpenPGP public key: give gearpump-archive-keyring.gpg or .asc from \
             the repository's root (scripts/build-repo.sh exports both)"
        )),
    }
}

/// The tag of the first OpenPGP packet (RFC 4880 4.2: old and new formats).
fn packet_tag(bytes: &[u8]) -> Option<u8> {
    let first = *bytes.first()?;
    match first & 0xC0 {
        0xC0 => Some(first & 0x3F),
        0x80 => Some((first >> 2) & 0x0F),
        _ => None,
    }
}

/// The packets inside an ASCII-armored block, its checksum checked when present.
fn dearmor(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let mut lines = text.lines().map(str::trim).skip_while(|l| !l.starts_with("-----BEGIN PGP"));
    lines.next()?;
    // armor headers ("Comment: ...") end at the first empty line
    let mut body = String::new();
    let mut checksum = None;
    let mut in_headers = true;
    for line in lines {
        if line.starts_with("-----END PGP") {
            break;
        }
        if in_headers {
            if line.is_empty() {
                in_headers = false;
            } else if !line.contains(": ") {
                in_headers = false;
                body.push_str(line);
            }
            continue;
        }
        match line.strip_prefix('=') {
            Some(crc) if line.len() == 5 => checksum = Some(crc.to_string()),
            _ => body.push_str(line),
        }
    }
    let bytes = base64::engine::general_purpose::STANDARD.decode(body).ok()?;
    if let Some(crc) = checksum {
        let expected = base64::engine::general_purpose::STANDARD.decode(crc).ok()?;
        if expected != crc24(&bytes).to_be_bytes()[1..] {
            return None;
        }
    }
    Some(bytes)
}

/// The ASCII-armored form rpm and dnf read.
pub fn armor(key: &[u8]) -> String {
    use base64::Engine as _;
    let engine = &base64::engine::general_purpose::STANDARD;
    let mut out = String::from("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n");
    for chunk in key.chunks(48) {
        out.push_str(&engine.encode(chunk));
        out.push('\n');
    }
    out.push('=');
    out.push_str(&engine.encode(&crc24(key).to_be_bytes()[1..]));
    out.push_str("\n-----END PGP PUBLIC KEY BLOCK-----\n");
    out
}

/// RFC 4880 6.1: the armor checksum.
fn crc24(bytes: &[u8]) -> u32 {
    let mut crc: u32 = 0x00B7_04CE;
    for byte in bytes {
        crc ^= u32::from(*byte) << 16;
        for _ in 0..8 {
            crc <<= 1;
            if crc & 0x0100_0000 != 0 {
                crc ^= 0x0186_4CFB;
            }
        }
    }
    crc & 0x00FF_FFFF
}

pub fn apt_sources(url: &str) -> String {
    format!(
        "# Written by gearpump-setup: gearpump-master and gearpump-worker from the organisation's\n\
         # repository. apt uses it only if its Release file verifies with the key named here.\n\
         Types: deb\n\
         URIs: {url}\n\
         Suites: {SUITE}\n\
         Components: {COMPONENT}\n\
         Signed-By: {APT_KEYRING}\n"
    )
}

/// rpm checks each package's signature (scripts/build-repo.sh signs them) and dnf the
/// repository metadata's (repomd.xml.asc), both against the key named here.
pub fn yum_repo(url: &str) -> String {
    format!(
        "# Written by gearpump-setup: gearpump-master and gearpump-worker from the organisation's\n\
         # repository, its packages and metadata signed by the key named here.\n\
         [gearpump]\n\
         name=Gearpump\n\
         baseurl={url}/rpm\n\
         enabled=1\n\
         gpgcheck=1\n\
         repo_gpgcheck=1\n\
         gpgkey=file://{RPM_KEY}\n"
    )
}

/// Writes a binary file atomically from the base64 in the script (Action::Write carries text).
fn binary_write_script(path: &str, bytes: &[u8]) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut wrapped = String::new();
    for (i, c) in encoded.chars().enumerate() {
        if i > 0 && i % 76 == 0 {
            wrapped.push('\n');
        }
        wrapped.push(c);
    }
    format!(
        "set -e\nf={path}\nd=$(dirname \"$f\")\nmkdir -p \"$d\"\ntmp=$(mktemp \"$d/.gearpump-setup.XXXXXX\")\n\
         trap 'rm -f \"$tmp\"' EXIT\nbase64 -d >\"$tmp\" <<'GEARPUMP_KEY'\n{wrapped}\nGEARPUMP_KEY\n\
         chmod 0644 \"$tmp\"\nmv -f \"$tmp\" \"$f\"\ntrap - EXIT\n",
        path = shell_quote(path)
    )
}

/// The words apt (or dnf) uses when a signature does not verify.
const SIGNATURE_WORDS: &str =
    "GPG error|is not signed|NO_PUBKEY|BADSIG|EXPKEYSIG|REVKEYSIG|signatures were invalid|signature could not be verified|OpenPGP|GPG check FAILED|repomd.xml signature";

/// What a failed install leaves of the source and key files, and how the failure says so.
///
/// A repository the node's package manager refuses (bad signature, unreachable, no package)
/// must not stay configured: every later `apt-get update` on that host, also the operator's own
/// and unattended-upgrades', would then fail on it, which is worse for a production host than
/// having to write the file again. So the files this run created are removed again, and the
/// node is as it was. A file that was there before and was replaced cannot be put back (its old
/// content is not kept), so it stays and the message names it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Undo {
    /// Written by this run where nothing was before: removed on a refusal.
    pub created: Vec<String>,
    /// Written by this run over an earlier file: kept, named.
    pub replaced: Vec<String>,
}

impl Undo {
    /// Shell lines that remove the created files, then the sentence the refusal ends with.
    fn script_and_text(&self) -> (String, String) {
        let mut script = String::new();
        let mut text = Vec::new();
        if !self.created.is_empty() {
            let words: Vec<String> = self.created.iter().map(|f| shell_quote(f)).collect();
            script = format!("rm -f {}\n", words.join(" "));
            text.push(format!(
                "removed {} again (written by this run), so the node's package sources are as before",
                self.created.join(" and ")
            ));
        }
        if !self.replaced.is_empty() {
            text.push(format!(
                "{} now name{} this repository (an earlier file was replaced): fix the repository, or put \
                 the earlier file back",
                self.replaced.join(" and "),
                if self.replaced.len() == 1 { "s" } else { "" }
            ));
        }
        if text.is_empty() {
            text.push(
                "the source and key files were already in place before this run and are unchanged".into(),
            );
        }
        (script, text.join("; "))
    }
}

/// Refreshes only this repository's indexes (the node's other sources may be unreachable, as
/// on hosts without internet access), then installs or upgrades `product` by name. Any failure
/// ends in one line: what the package manager said, what was left on the node, and the fix.
pub fn install_script(url: &str, family: Family, product: Product, mode: Mode, undo: &Undo) -> String {
    let name = product.package_name();
    let u = shell_quote(url);
    let (undo_script, undo_text) = undo.script_and_text();
    // The node's state goes before the fix; the shell sees the text inside double quotes (the
    // paths and URL hold no quotes, '$' or '\\').
    let left = format!("; {undo_text}; running the same command again once the repository is fixed is safe");
    let signature_fix = format!(
        "fix: give --repo-key the key this repository is signed with (gearpump-archive-keyring.gpg in its root), \
         and check that nothing between the node and {url} alters the files (a proxy, a stale mirror); \
         rebuild it with scripts/build-repo.sh if its files were changed after signing"
    );
    let reach_fix = format!(
        "fix: check that the node reaches {url} and that it serves the folder scripts/build-repo.sh wrote"
    );
    match family {
        Family::Deb => {
            let only_upgrade = if mode == Mode::Upgrade { " --only-upgrade" } else { "" };
            format!(
                r#"export DEBIAN_FRONTEND=noninteractive LC_ALL=C
out=$(apt-get update -q -o Dir::Etc::sourcelist={sources} -o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0 2>&1)
rc=$?
said=$(printf '%s\n' "$out" | grep -E '^(E|W|Err):' | tr '\n' ' ')
if printf '%s' "$out" | grep -qE '{words}'; then
  {undo_script}echo "apt refused the repository {u}: its signature does not verify with the key given: $said; {signature_fix}{left}" >&2
  exit 1
fi
if [ $rc -ne 0 ] || [ -n "$said" ]; then
  {undo_script}echo "apt could not read the repository {u}: ${{said:-exit status $rc}}; {reach_fix}{left}" >&2
  exit 1
fi
if ! apt-cache show {name} >/dev/null 2>&1; then
  {undo_script}echo "the repository {u} has no {name} package: build it with scripts/build-packages.sh and scripts/build-repo.sh{left}" >&2
  exit 1
fi
# force-confold: a gear.conf this tool (or the operator) wrote is kept on upgrades
out=$(apt-get install -y -q{only_upgrade} -o Dpkg::Options::=--force-confold {name} 2>&1) || {{
  echo "apt-get install {name} failed: $(printf '%s\n' "$out" | grep -E '^(E|W):' | tr '\n' ' ')" >&2
  exit 1
}}
"#,
                sources = APT_SOURCES,
                words = SIGNATURE_WORDS,
                u = shell_quote_inner(&u),
            )
        }
        Family::Rpm => {
            let verb = if mode == Mode::Upgrade { "upgrade" } else { "install" };
            format!(
                r#"export LC_ALL=C
if command -v dnf >/dev/null 2>&1; then pm=dnf; elif command -v yum >/dev/null 2>&1; then pm=yum; else
  echo "neither dnf nor yum is installed: installing from --repo needs one of them" >&2; exit 1
fi
rpm --import {key} 2>/dev/null || true
out=$($pm -y --disablerepo='*' --enablerepo=gearpump --refresh {verb} {name} 2>&1) && exit 0
said=$(printf '%s\n' "$out" | grep -iE 'error|fail|signature' | tr '\n' ' ')
{undo_script}if printf '%s' "$out" | grep -qiE '{words}'; then
  echo "$pm refused the repository {u}: its signature does not verify with the key given: $said; {signature_fix}{left}" >&2
else
  echo "$pm could not install {name} from {u}: $said; {reach_fix}{left}" >&2
fi
exit 1
"#,
                key = RPM_KEY,
                words = SIGNATURE_WORDS,
                u = shell_quote_inner(&u),
            )
        }
    }
}

/// A quoted word shown inside a double-quoted echo: the quotes dropped (the URL was checked to
/// hold no quotes, blanks or '$').
fn shell_quote_inner(quoted: &str) -> String {
    quoted.trim_matches('\'').to_string()
}

/// The source and key files a node needs (only those that differ), then the install or upgrade.
/// `installed`: the product's version on the node; an install of something present is skipped.
pub fn actions(
    repo: &Repo,
    family: Family,
    product: Product,
    facts: &NodeFacts,
    installed: Option<&str>,
    mode: Mode,
) -> Vec<Action> {
    let mut actions = Vec::new();
    let mut undo = Undo::default();
    let mut written = |path: &str| {
        let list = if facts.file(path).is_some() { &mut undo.replaced } else { &mut undo.created };
        list.push(path.to_string());
    };
    let text_write = |path: &str, content: String| Action::Write {
        step: Step::Package,
        path: path.into(),
        mode: 0o644,
        owner: "root:root".into(),
        content,
        secret: false,
        backup: false,
    };
    match family {
        Family::Deb => {
            // The probe reads files as text; the same bytes read the same way compare equal.
            if facts.file(APT_KEYRING) != Some(String::from_utf8_lossy(&repo.key).as_ref()) {
                written(APT_KEYRING);
                actions.push(Action::Run {
                    step: Step::Package,
                    what: format!("write the repository key {APT_KEYRING}"),
                    script: binary_write_script(APT_KEYRING, &repo.key),
                });
            }
            let sources = apt_sources(&repo.url);
            if facts.file(APT_SOURCES) != Some(sources.as_str()) {
                written(APT_SOURCES);
                actions.push(text_write(APT_SOURCES, sources));
            }
        }
        Family::Rpm => {
            let key = armor(&repo.key);
            if facts.file(RPM_KEY) != Some(key.as_str()) {
                written(RPM_KEY);
                actions.push(text_write(RPM_KEY, key));
            }
            let repo_file = yum_repo(&repo.url);
            if facts.file(YUM_REPO) != Some(repo_file.as_str()) {
                written(YUM_REPO);
                actions.push(text_write(YUM_REPO, repo_file));
            }
        }
    }
    if installed.is_none() || mode == Mode::Upgrade {
        actions.push(Action::Run {
            step: Step::Package,
            what: format!(
                "{} {} from {} (was {})",
                if mode == Mode::Upgrade { "upgrade" } else { "install" },
                product.package_name(),
                repo.url,
                installed.unwrap_or("not installed")
            ),
            script: install_script(&repo.url, family, product, mode, &undo),
        });
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A public-key packet header (new format, tag 6) and some body: what read_key checks.
    const PUBLIC: &[u8] = &[0xC6, 0x03, 0x04, 0x01, 0x02];

    #[test]
    fn a_key_reads_the_same_binary_or_armored_and_a_secret_key_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let binary = dir.path().join("k.gpg");
        std::fs::write(&binary, PUBLIC).expect("write");
        assert_eq!(read_key(&binary).expect("binary key"), PUBLIC);
        let armored = dir.path().join("k.asc");
        std::fs::write(&armored, armor(PUBLIC)).expect("write");
        assert_eq!(read_key(&armored).expect("armored key"), PUBLIC);
        // a damaged body (the checksum no longer matches) is refused, not written to every node
        let broken = armor(PUBLIC).replace("xgMEAQI=", "xgMEAQM=");
        std::fs::write(&armored, broken).expect("write");
        assert!(read_key(&armored).expect_err("damaged").contains("damaged"));
        let secret = dir.path().join("s.gpg");
        std::fs::write(&secret, [0xC5, 0x01, 0x04]).expect("write");
        assert!(read_key(&secret).expect_err("secret").contains("SECRET key"));
        std::fs::write(&secret, "-----BEGIN PGP PRIVATE KEY BLOCK-----\n").expect("write");
        assert!(read_key(&secret).expect_err("secret").contains("SECRET key"));
        std::fs::write(&secret, "deb http://x stable main\n").expect("write");
        assert!(read_key(&secret).expect_err("not a key").contains("not an OpenPGP public key"));
    }

    #[test]
    fn armor_checksum_matches_rfc4880() {
        // `printf hello | gpg --enarmor` ends with "aGVsbG8=" and "=R/WK"
        let text = armor(b"hello");
        assert!(text.contains("\naGVsbG8=\n=R/WK\n"), "{text}");
        assert_eq!(dearmor(&text).as_deref(), Some(&b"hello"[..]));
    }

    #[test]
    fn urls_are_plain_http() {
        assert_eq!(check_url("http://10.231.0.1:8080/repo/").as_deref(), Ok("http://10.231.0.1:8080/repo"));
        assert!(check_url("https://pkgs.example.org/gearpump").is_ok());
        for bad in ["ftp://x/y", "http://", "http:///x", "http://x/$(reboot)", "http://x/a b", "x"] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_debian_node_gets_a_deb822_source_signed_by_its_key_then_installs_by_name() {
        let repo = Repo { url: "http://10.231.0.1:8080".into(), key: PUBLIC.to_vec() };
        let facts = NodeFacts::default();
        let list = actions(&repo, Family::Deb, Product::Master, &facts, None, Mode::Install);
        let sources = apt_sources(&repo.url);
        assert!(
            sources.contains("Types: deb\nURIs: http://10.231.0.1:8080\nSuites: stable\nComponents: main\n")
        );
        assert!(sources.contains(&format!("Signed-By: {APT_KEYRING}\n")));
        assert!(
            matches!(&list[1], Action::Write { path, content, .. } if path == APT_SOURCES && *content == sources)
        );
        let Some(Action::Run { script, .. }) = list.last() else { panic!("no install: {list:?}") };
        assert!(script.contains("apt-get install -y -q -o Dpkg::Options::=--force-confold gearpump-master"));
        assert!(script
            .contains("apt refused the repository http://10.231.0.1:8080: its signature does not verify"));
        // a refused repository does not stay configured: what this run created is removed again
        assert!(
            script.contains(&format!("rm -f {APT_KEYRING} {APT_SOURCES}\necho \"apt refused")),
            "{script}"
        );
        assert!(script.contains(&format!(
            "removed {APT_KEYRING} and {APT_SOURCES} again (written by this run), so the node's package sources \
             are as before; running the same command again once the repository is fixed is safe"
        )));
        // a node that has all of it: nothing to do; an upgrade always asks apt
        let mut facts = NodeFacts::default();
        facts.files.insert(APT_SOURCES.into(), Some(sources));
        facts.files.insert(APT_KEYRING.into(), Some(String::from_utf8_lossy(PUBLIC).into_owned()));
        assert!(
            actions(&repo, Family::Deb, Product::Master, &facts, Some("0.1.0-1"), Mode::Install).is_empty()
        );
        let upgrade = actions(&repo, Family::Deb, Product::Master, &facts, Some("0.1.0-1"), Mode::Upgrade);
        assert!(
            matches!(upgrade.as_slice(), [Action::Run { script, .. }] if script.contains("--only-upgrade")),
            "{upgrade:?}"
        );
        // files that were there already are neither removed nor claimed as new
        let Some(Action::Run { script, .. }) = upgrade.last() else { panic!("no upgrade") };
        assert!(!script.contains("rm -f"), "{script}");
        assert!(script
            .contains("the source and key files were already in place before this run and are unchanged"));
        // another URL replaces the source: kept, and named
        let moved = Repo { url: "http://10.231.0.1:8081".into(), key: PUBLIC.to_vec() };
        let list = actions(&moved, Family::Deb, Product::Master, &facts, Some("0.1.0-1"), Mode::Upgrade);
        let Some(Action::Run { script, .. }) = list.last() else { panic!("no upgrade") };
        assert!(!script.contains("rm -f"), "{script}");
        assert!(script
            .contains(&format!("{APT_SOURCES} now names this repository (an earlier file was replaced)")));
    }

    #[test]
    fn an_rpm_node_gets_a_repo_file_with_both_signature_checks() {
        let repo = Repo { url: "https://pkgs.example.org/gp".into(), key: PUBLIC.to_vec() };
        let list = actions(&repo, Family::Rpm, Product::Worker, &NodeFacts::default(), None, Mode::Install);
        assert!(
            matches!(&list[0], Action::Write { path, content, .. } if path == RPM_KEY && content.starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----"))
        );
        let repo_file = yum_repo(&repo.url);
        assert!(repo_file.contains("baseurl=https://pkgs.example.org/gp/rpm\n"));
        assert!(repo_file
            .contains("gpgcheck=1\nrepo_gpgcheck=1\ngpgkey=file:///etc/pki/rpm-gpg/RPM-GPG-KEY-gearpump\n"));
        assert!(
            matches!(list.last(), Some(Action::Run { script, .. }) if script.contains("install gearpump-worker"))
        );
    }
}
