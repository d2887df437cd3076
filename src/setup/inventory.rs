//! The validated request: which nodes, which packages, which jar store. Everything here is
//! checked before any node is contacted, so a typo never leaves a half-configured cluster.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::repo::{self, Repo};
use super::ssh::SshOptions;
use super::SetupError;
use crate::cli::SetupArgs;
use crate::config::{HostPort, JarStoreRoot};

/// Package family of a node: what installs a package there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Family {
    Deb,
    Rpm,
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Family::Deb => "deb",
            Family::Rpm => "rpm",
        })
    }
}

/// Which of the two packages a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Product {
    Master,
    Worker,
}

impl Product {
    pub fn package_name(self) -> &'static str {
        match self {
            Product::Master => "gearpump-master",
            Product::Worker => "gearpump-worker",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageFile {
    pub path: PathBuf,
    pub product: Product,
    pub family: Family,
    /// Debian spelling (amd64, arm64, all) whatever the package's own.
    pub arch: String,
    /// VERSION-RELEASE as dpkg-query and `rpm -q --qf '%{VERSION}-%{RELEASE}'` print it.
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JarStore {
    /// hdfs://... or file:///... written as is.
    Uri(String),
    Nfs {
        export: String,
        options: String,
        mount: String,
    },
    /// Nothing given: each master keeps jars on its own disk.
    Local,
}

impl JarStore {
    pub fn root_path(&self) -> String {
        match self {
            JarStore::Uri(uri) => uri.clone(),
            JarStore::Nfs { mount, .. } => format!("file://{mount}"),
            // the shipped default: a folder under the state directory
            JarStore::Local => "jarstore".into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Inventory {
    /// The masters the cluster should have when done, in the order given.
    pub masters: Vec<String>,
    /// Masters to take out.
    pub removed: Vec<String>,
    /// Nodes that run gearpump-worker (some may be masters too), in the order given.
    pub workers: Vec<String>,
    pub port: u16,
    pub packages: Vec<PackageFile>,
    pub jar_store: JarStore,
    pub failover_timeout: Option<String>,
    pub ssh: SshOptions,
    pub ready_timeout: Duration,
    pub dry_run: bool,
    pub warnings: Vec<String>,
    /// TLS and tokens (the default), or `--insecure`.
    pub security: Security,
    /// `--repo URL --repo-key FILE`: install by name from this repository (then `packages` is
    /// empty).
    pub repo: Option<Repo>,
    /// `--upgrade`: a rolling upgrade of the running masters to the version given.
    pub upgrade: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Security {
    /// The CA and tokens in `pki_dir`; `rotate`: new node certificates.
    Secure {
        pki_dir: PathBuf,
        rotate: bool,
    },
    Insecure,
}

impl Inventory {
    pub fn master_address(&self, node: &str) -> String {
        HostPort { host: node.to_string(), port: self.port }.to_string()
    }

    pub fn master_addresses(&self) -> Vec<String> {
        self.masters.iter().map(|m| self.master_address(m)).collect()
    }

    /// Every node the run touches: the masters, the workers that are not masters, then the
    /// masters being removed.
    pub fn all_nodes(&self) -> Vec<String> {
        let mut nodes = self.masters.clone();
        nodes.extend(self.worker_only().cloned());
        nodes.extend(self.removed.iter().filter(|r| !nodes.contains(r)).cloned().collect::<Vec<_>>());
        nodes
    }

    /// Workers that are not masters too: their gear.conf and secret are the worker plan's.
    pub fn worker_only(&self) -> impl Iterator<Item = &String> {
        self.workers.iter().filter(|w| !self.masters.contains(w))
    }
}

/// Checks a node name: it goes on ssh's command line and into gear.conf, so it must be a plain
/// host name or address (a leading '-' would be read by ssh as an option).
pub fn check_node_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("an empty name".into());
    }
    if name.len() > 253 {
        return Err(format!("{name:?} is longer than a host name can be"));
    }
    if name.starts_with(['-', '.']) || name.ends_with('.') {
        return Err(format!("{name:?} is not a host name"));
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')) {
        return Err(format!("{name:?} is not a host name or IPv4 address (letters, digits, '.', '-', '_')"));
    }
    Ok(())
}

fn split_names(list: &str, what: &str) -> Result<Vec<String>, SetupError> {
    let mut names: Vec<String> = Vec::new();
    for (index, raw) in list.split(',').enumerate() {
        let name = raw.trim();
        check_node_name(name)
            .map_err(|why| SetupError::Arguments(format!("{what}: entry {} is {why}", index + 1)))?;
        if names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            return Err(SetupError::Arguments(format!("{what}: {name} is listed twice")));
        }
        names.push(name.to_string());
    }
    Ok(names)
}

/// Parses a duration the way gear.conf spells it (a number and ms, s, m or min) and checks the
/// range the master accepts.
pub fn check_failover(text: &str) -> Result<String, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 =
        number.parse().map_err(|_| format!("{text:?} is not a duration such as 400ms or 2s"))?;
    let millis = match unit.trim() {
        "ms" => Some(number),
        "s" => number.checked_mul(1000),
        "m" | "min" => number.checked_mul(60_000),
        _ => return Err(format!("{text:?}: the unit must be ms, s or m")),
    };
    // The same range as the master's own check of gearpump.master.failover-timeout.
    let (min, max) = crate::config::keys::FAILOVER_RANGE;
    let (min_ms, max_ms) = (min.as_millis(), max.as_millis());
    match millis.map(u128::from) {
        Some(ms) if (min_ms..=max_ms).contains(&ms) => Ok(format!("{number}{}", unit.trim())),
        _ => Err(format!(
            "{text:?} is outside {}..{}",
            crate::config::keys::format_duration(min),
            crate::config::keys::format_duration(max)
        )),
    }
}

/// Checks a jar store URI: hdfs://AUTHORITY/path or file:///absolute/path.
pub fn check_jar_store_uri(uri: &str) -> Result<(), String> {
    if uri.chars().any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '\\') {
        return Err(format!("{uri:?} contains blanks, quotes or control characters"));
    }
    // The master's own parser, so setup never writes a root the master would refuse; setup asks
    // more of it: a shared store (not a master-local folder) below the file system's root.
    match crate::config::parse_jar_root(uri) {
        Err((problem, fix)) => Err(format!("{problem}; {fix}")),
        Ok(JarStoreRoot::Hdfs(_)) => match crate::config::parse_hdfs_uri(uri) {
            Ok((_, path)) if path != "/" => Ok(()),
            _ => Err(format!("{uri:?} has no path (hdfs://namenode:9000/gearpump/jars)")),
        },
        Ok(JarStoreRoot::Shared(path)) if path != Path::new("/") => Ok(()),
        Ok(JarStoreRoot::Shared(_)) => {
            Err(format!("{uri:?} is not an absolute folder (file:///shared/folder)"))
        }
        Ok(JarStoreRoot::Local(_)) => {
            Err(format!("{uri:?} is neither hdfs://... nor file:///... (for NFS use --nfs SERVER:/export)"))
        }
    }
}

fn check_nfs(export: &str, options: &str, mount: &Path) -> Result<JarStore, String> {
    let (server, path) =
        export.split_once(":/").ok_or_else(|| format!("--nfs {export:?}: expected SERVER:/export"))?;
    check_node_name(server).map_err(|why| format!("--nfs {export:?}: the server is {why}"))?;
    if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("--nfs {export:?}: the export path has blanks or control characters"));
    }
    if options.is_empty() || options.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("--nfs-options {options:?}: a comma-separated list without blanks"));
    }
    let mount_text = mount.to_str().ok_or("--nfs-mount is not UTF-8")?;
    if !mount.is_absolute()
        || mount_text == "/"
        || mount_text.ends_with('/')
        || mount_text.contains("//")
        || mount_text.split('/').any(|c| c == "." || c == "..")
        || mount_text.chars().any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '\\')
    {
        return Err(format!("--nfs-mount {mount_text:?}: an absolute, normalized folder path"));
    }
    Ok(JarStore::Nfs {
        export: format!("{server}:/{path}"),
        options: options.to_string(),
        mount: mount_text.to_string(),
    })
}

/// Reads family, architecture and version from a package file's conventional name:
/// `gearpump-master_VERSION_ARCH.deb`, `gearpump-master-VERSION-RELEASE.ARCH.rpm`.
pub fn parse_package_name(path: &Path) -> Result<PackageFile, String> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let normalize = |arch: &str| match arch {
        "x86_64" => "amd64".to_string(),
        "aarch64" => "arm64".to_string(),
        "noarch" => "all".to_string(),
        other => other.to_string(),
    };
    for product in [Product::Master, Product::Worker] {
        let prefix = product.package_name();
        if let Some(stem) = name.strip_suffix(".deb") {
            let parts: Vec<&str> = stem.split('_').collect();
            if let [package, version, arch] = parts.as_slice() {
                if *package == prefix {
                    return Ok(PackageFile {
                        path: path.to_path_buf(),
                        product,
                        family: Family::Deb,
                        arch: normalize(arch),
                        version: (*version).to_string(),
                    });
                }
            }
        } else if let Some(stem) = name.strip_suffix(".rpm") {
            if let Some(rest) = stem.strip_prefix(prefix).and_then(|r| r.strip_prefix('-')) {
                if let Some((version, arch)) = rest.rsplit_once('.') {
                    if version.contains('-') {
                        return Ok(PackageFile {
                            path: path.to_path_buf(),
                            product,
                            family: Family::Rpm,
                            arch: normalize(arch),
                            version: version.to_string(),
                        });
                    }
                }
            }
        }
    }
    Err(format!(
        "{}: not a gearpump-master or gearpump-worker package name (gearpump-master_VERSION_ARCH.deb \
         or gearpump-master-VERSION-RELEASE.ARCH.rpm, the same with gearpump-worker)",
        path.display()
    ))
}

pub fn default_packages(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("deb" | "rpm")))
        .collect();
    found.sort();
    found
}

/// Validates the command line. `package_dir` is where default packages are looked for.
pub fn from_args(args: &SetupArgs, package_dir: &Path) -> Result<Inventory, SetupError> {
    let mut warnings = Vec::new();
    let listed = split_names(&args.masters, "--masters")?;
    let mut removed: Vec<String> = Vec::new();
    for name in &args.remove {
        let name = name.trim();
        check_node_name(name).map_err(|why| SetupError::Arguments(format!("--remove: {why}")))?;
        if removed.iter().any(|r| r.eq_ignore_ascii_case(name)) {
            return Err(SetupError::Arguments(format!("--remove {name} is given twice")));
        }
        removed.push(name.to_string());
    }
    let masters: Vec<String> =
        listed.iter().filter(|m| !removed.iter().any(|r| r.eq_ignore_ascii_case(m))).cloned().collect();
    if masters.is_empty() {
        return Err(SetupError::Arguments("no master would be left: --remove names every master".into()));
    }
    if masters.len().is_multiple_of(2) {
        warnings.push(format!(
            "{} masters tolerate no more failures than {}: an odd count (3 or 5) is the useful size",
            masters.len(),
            masters.len() - 1
        ));
    }
    if args.port == 0 {
        return Err(SetupError::Arguments("--port 0 is not a port".into()));
    }
    let jar_store = match (&args.jar_store, &args.nfs) {
        (Some(uri), None) => {
            check_jar_store_uri(uri).map_err(|why| SetupError::Arguments(format!("--jar-store: {why}")))?;
            JarStore::Uri(uri.clone())
        }
        (None, Some(export)) => {
            check_nfs(export, &args.nfs_options, &args.nfs_mount).map_err(SetupError::Arguments)?
        }
        (Some(_), Some(_)) => {
            return Err(SetupError::Arguments("--jar-store and --nfs exclude each other".into()))
        }
        (None, None) => {
            if masters.len() > 1 {
                warnings.push(
                    "no --jar-store or --nfs: every master keeps jars on its own disk, so an application \
                     whose jar was on a lost master cannot be recovered"
                        .into(),
                );
            }
            JarStore::Local
        }
    };
    let failover_timeout = match &args.failover_timeout {
        Some(text) => Some(
            check_failover(text).map_err(|why| SetupError::Arguments(format!("--failover-timeout {why}")))?,
        ),
        None => None,
    };
    let workers = match &args.workers {
        Some(list) => split_names(list, "--workers")?,
        None => Vec::new(),
    };
    let repo = match (&args.repo, &args.repo_key) {
        (Some(url), Some(key)) => Some(Repo {
            url: repo::check_url(url).map_err(SetupError::Arguments)?,
            key: repo::read_key(key).map_err(SetupError::Arguments)?,
        }),
        (None, None) => None,
        _ => {
            return Err(SetupError::Arguments(
                "--repo URL and --repo-key FILE go together: the key the repository is signed with".into(),
            ))
        }
    };
    if args.upgrade && repo.is_none() && args.package.is_empty() {
        return Err(SetupError::Arguments(
            "--upgrade needs the version to upgrade to: --repo URL --repo-key FILE, or --package FILE".into(),
        ));
    }
    let package_paths = if repo.is_some() {
        Vec::new()
    } else if args.package.is_empty() {
        default_packages(package_dir)
    } else {
        args.package.clone()
    };
    let mut packages: Vec<PackageFile> = Vec::new();
    for path in &package_paths {
        if !path.is_file() {
            return Err(SetupError::Arguments(format!("--package {}: no such file", path.display())));
        }
        let package = parse_package_name(path).map_err(SetupError::Arguments)?;
        if let Some(other) = packages
            .iter()
            .find(|p| p.product == package.product && p.family == package.family && p.arch == package.arch)
        {
            return Err(SetupError::Arguments(format!(
                "two {} {} packages for {}: {} and {}; pass the one to install with --package",
                package.product.package_name(),
                package.family,
                package.arch,
                other.path.display(),
                package.path.display()
            )));
        }
        packages.push(package);
    }
    if packages.is_empty() && repo.is_none() {
        warnings.push(format!(
            "no package given and none in {}: nodes without gearpump-master installed will fail \
             (build them with scripts/build-packages.sh)",
            package_dir.display()
        ));
    } else if repo.is_none() && !workers.is_empty() && !packages.iter().any(|p| p.product == Product::Worker)
    {
        warnings.push(
            "--workers without a gearpump-worker package: worker nodes without it installed will fail \
             (scripts/build-packages.sh builds it next to gearpump-master)"
                .into(),
        );
    }
    if let Some(key) = &args.ssh_key {
        if !key.is_file() {
            return Err(SetupError::Arguments(format!("--ssh-key {}: no such file", key.display())));
        }
    }
    if let Some(config) = &args.ssh_config {
        if !config.is_file() {
            return Err(SetupError::Arguments(format!("--ssh-config {}: no such file", config.display())));
        }
    }
    if let Some(user) = &args.ssh_user {
        if user.is_empty() || user.starts_with('-') || user.chars().any(|c| c.is_whitespace() || c == '@') {
            return Err(SetupError::Arguments(format!("--ssh-user {user:?} is not a user name")));
        }
    }
    if args.connect_timeout == 0 || args.timeout == 0 {
        return Err(SetupError::Arguments(
            "--connect-timeout and --timeout must be at least 1 second".into(),
        ));
    }
    let security = if args.insecure {
        warnings.push(
            "--insecure: the masters speak plain HTTP and accept any client; anyone who reaches \
             the master port can submit jars (remote code execution once workers run them)"
                .into(),
        );
        Security::Insecure
    } else {
        let pki_dir = match &args.pki_dir {
            Some(dir) => dir.clone(),
            None => match std::env::var_os("HOME") {
                Some(home) => PathBuf::from(home).join(".config/gearpump"),
                None => return Err(SetupError::Arguments("HOME is not set: give --pki-dir DIR".into())),
            },
        };
        Security::Secure { pki_dir, rotate: args.rotate_certs }
    };
    Ok(Inventory {
        security,
        masters,
        removed,
        workers,
        port: args.port,
        packages,
        jar_store,
        failover_timeout,
        ssh: SshOptions {
            user: args.ssh_user.clone(),
            key: args.ssh_key.clone(),
            port: args.ssh_port,
            config: args.ssh_config.clone(),
            sudo: args.sudo,
            connect_timeout: Duration::from_secs(args.connect_timeout),
        },
        ready_timeout: Duration::from_secs(args.timeout),
        dry_run: args.dry_run,
        warnings,
        repo,
        upgrade: args.upgrade,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn inventory(line: &str) -> Result<Inventory, SetupError> {
        let args = SetupArgs::try_parse_from(line.split_whitespace())
            .map_err(|e| SetupError::Arguments(e.to_string()))?;
        from_args(&args, Path::new("/nonexistent"))
    }

    fn refused(line: &str) -> String {
        match inventory(line) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{line} was accepted"),
        }
    }

    #[test]
    fn accepts_a_plain_cluster() {
        let inv =
            inventory("gearpump-setup --masters node1,node2,node3 --jar-store hdfs://nn:9000/gearpump/jars")
                .expect("valid");
        assert_eq!(inv.master_addresses(), ["node1:3000", "node2:3000", "node3:3000"]);
        assert_eq!(inv.jar_store.root_path(), "hdfs://nn:9000/gearpump/jars");
        // only the "no package found" warning
        assert_eq!(inv.warnings.len(), 1, "{:?}", inv.warnings);
    }

    #[test]
    fn refuses_bad_names_and_duplicates() {
        assert!(refused("gearpump-setup --masters node1,,node3").contains("entry 2 is an empty name"));
        assert!(refused("gearpump-setup --masters node1,NODE1").contains("listed twice"));
        assert!(refused("gearpump-setup --masters node1,-oProxyCommand=x").contains("not a host name"));
        assert!(refused("gearpump-setup --masters node1,a/b").contains("not a host name"));
        assert!(refused("gearpump-setup --masters node1 --remove node1").contains("no master would be left"));
        assert!(refused("gearpump-setup --masters a,b,c --remove d --remove d").contains("twice"));
    }

    #[test]
    fn workers_are_set_up_with_and_without_tls() {
        let secure = inventory("gearpump-setup --masters node1 --workers node2").expect("secure workers");
        assert!(matches!(secure.security, Security::Secure { .. }));
        assert!(inventory("gearpump-setup --masters node1 --workers node2 --insecure").is_ok());
    }

    #[test]
    fn warns_about_even_counts_and_local_stores() {
        let inv = inventory("gearpump-setup --masters a,b,c,d").expect("valid");
        assert!(inv.warnings.iter().any(|w| w.contains("4 masters tolerate no more failures than 3")));
        assert!(inv.warnings.iter().any(|w| w.contains("cannot be recovered")));
        let inv = inventory("gearpump-setup --masters a,b,c,d,e --remove e --jar-store file:///srv/jars")
            .expect("valid");
        assert_eq!(inv.masters, ["a", "b", "c", "d"]);
        assert_eq!(inv.removed, ["e"]);
    }

    #[test]
    fn refuses_bad_uris_and_durations() {
        for bad in [
            "http://x/y",
            "hdfs:///path",
            "hdfs://nn:99999/p",
            "hdfs://nn:9000",
            "hdfs://nn:http/x",
            "hdfs://u@nn:9000/x",
            "hdfs://nn/a/../b",
            "file://relative",
            "file:///",
            "jars",
        ] {
            assert!(
                refused(&format!("gearpump-setup --masters a,b,c --jar-store {bad}")).contains("--jar-store"),
                "{bad}"
            );
        }
        assert!(refused("gearpump-setup --masters a --nfs filer/export").contains("SERVER:/export"));
        assert!(
            refused("gearpump-setup --masters a --nfs filer:/x --nfs-mount relative").contains("--nfs-mount")
        );
        assert!(refused("gearpump-setup --masters a --failover-timeout 10ms").contains("outside"));
        assert!(refused("gearpump-setup --masters a --failover-timeout 2h").contains("unit"));
        assert!(refused("gearpump-setup --masters a --jar-store hdfs://n/p --nfs f:/x")
            .contains("cannot be used with"));
        assert!(refused("gearpump-setup --masters a --package /nonexistent/x.deb").contains("no such file"));
        assert_eq!(check_failover("2s"), Ok("2s".into()));
    }

    #[test]
    fn nfs_becomes_a_file_root() {
        let inv = inventory("gearpump-setup --masters a,b,c --nfs filer:/export/gp").expect("valid");
        assert_eq!(
            inv.jar_store,
            JarStore::Nfs {
                export: "filer:/export/gp".into(),
                options: "hard,noatime".into(),
                mount: "/mnt/gearpump-jars".into()
            }
        );
        assert_eq!(inv.jar_store.root_path(), "file:///mnt/gearpump-jars");
    }

    #[test]
    fn package_names() {
        let deb = parse_package_name(Path::new("t/gearpump-master_0.1.0-1_amd64.deb")).expect("deb");
        assert_eq!((deb.family, deb.arch.as_str(), deb.version.as_str()), (Family::Deb, "amd64", "0.1.0-1"));
        let rpm = parse_package_name(Path::new("gearpump-master-0.1.0-1.x86_64.rpm")).expect("rpm");
        assert_eq!((rpm.family, rpm.arch.as_str(), rpm.version.as_str()), (Family::Rpm, "amd64", "0.1.0-1"));
        assert!(parse_package_name(Path::new("other_1_amd64.deb")).is_err());
        let worker = parse_package_name(Path::new("gearpump-worker_0.1.0-1_amd64.deb")).expect("worker deb");
        assert_eq!(
            (worker.product, worker.family, worker.version.as_str()),
            (Product::Worker, Family::Deb, "0.1.0-1")
        );
        let worker = parse_package_name(Path::new("gearpump-worker-0.1.0-1.x86_64.rpm")).expect("worker rpm");
        assert_eq!((worker.product, worker.arch.as_str()), (Product::Worker, "amd64"));
    }
}
