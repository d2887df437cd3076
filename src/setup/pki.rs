//! The installer's cluster CA, node certificates and client tokens (rcgen, ring).
//!
//! The admin's copies live in one folder on the admin machine (`--pki-dir`, default
//! `~/.config/gearpump`, mode 0700): `ca.pem`, `ca-key.pem` (0600), `admin.token`,
//! `submit.token` (0600) and `client.conf` (0600), which `gear` reads by default there. A
//! re-run loads them, so the CA and tokens stay the same; node certificates are re-issued
//! only when missing, from another CA, or with `--rotate-certs`.
//!
//! The CA certificate is kept as issued; to sign, the CA is rebuilt from its key with the same
//! subject, which yields the same issuer name and key identifier, so new certificates chain to
//! the kept `ca.pem` (no certificate parser is needed for that).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};

/// Where each node keeps its TLS files and the tokens.
pub const NODE_CA: &str = "/etc/gearpump/tls/ca.pem";
pub const NODE_CERT: &str = "/etc/gearpump/tls/node.pem";
pub const NODE_KEY: &str = "/etc/gearpump/tls/node-key.pem";
pub const NODE_TOKENS: &str = "/etc/gearpump/tokens";
/// A worker's certificate and key (the CA is `NODE_CA`); a node running a master and a worker
/// keeps both certificates, since a master certificate is no worker certificate (`tls::WORKER_USAGE`).
pub const WORKER_CERT: &str = "/etc/gearpump/tls/worker.pem";
pub const WORKER_KEY: &str = "/etc/gearpump/tls/worker-key.pem";

/// Which kind of certificate a node gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertKind {
    /// serverAuth + clientAuth: the master port and its calls to other masters.
    Master,
    /// clientAuth + the worker usage: a worker's calls to the masters.
    Worker,
}

/// The extended key usage extension of a worker certificate: clientAuth and the worker usage
/// (`tls::WORKER_USAGE`), encoded here because rcgen's `ExtendedKeyUsagePurpose::Other` takes
/// arcs as u64 and the worker OID's last arc is a 128-bit UUID.
pub fn worker_usage_extension() -> CustomExtension {
    let mut oids = Vec::new();
    for oid in [crate::tls::CLIENT_AUTH_USAGE, crate::tls::WORKER_USAGE] {
        oids.push(0x06);
        oids.push(oid.len() as u8);
        oids.extend_from_slice(oid);
    }
    let mut value = vec![0x30, oids.len() as u8];
    value.extend(oids);
    CustomExtension::from_oid_content(&[2, 5, 29, 37], value)
}

const CA_NAME: &str = "gearpump-master cluster CA";
/// Node certificates are valid this long; the master warns 30 days before the end.
const NODE_DAYS: i64 = 825;
const CA_DAYS: i64 = 3650;

/// What one node is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSecurity {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    /// The tokens file (`ROLE TOKEN` lines).
    pub tokens: String,
}

/// The admin's CA and tokens.
pub struct AdminPki {
    pub dir: PathBuf,
    pub ca_pem: String,
    ca_key_pem: String,
    pub admin_token: String,
    pub submit_token: String,
    /// Whether this run created them (and saved them unless a dry run).
    pub created: bool,
}

fn io_error(path: &Path, e: std::io::Error) -> String {
    format!("{}: {e}", path.display())
}

fn read_private(path: &Path) -> Result<String, String> {
    let mode = std::fs::metadata(path).map_err(|e| io_error(path, e))?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{}: mode {mode:o} lets other users read it; fix: chmod 600 {}",
            path.display(),
            path.display()
        ));
    }
    std::fs::read_to_string(path).map(|t| t.trim().to_string()).map_err(|e| io_error(path, e))
}

fn write_file(path: &Path, text: &str, mode: u32) -> Result<(), String> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(|e| io_error(path, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| io_error(path, e))?;
    file.write_all(text.as_bytes()).map_err(|e| io_error(path, e))
}

use std::os::unix::fs::OpenOptionsExt;

fn new_token() -> String {
    hex::encode(rand::random::<[u8; 24]>())
}

fn ca_params() -> Result<CertificateParams, String> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    params.distinguished_name.push(DnType::CommonName, CA_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(params)
}

impl AdminPki {
    /// The files in `dir`, or new ones (written unless `save` is false, for `--dry-run`).
    pub fn load_or_create(dir: &Path, save: bool) -> Result<AdminPki, String> {
        let ca_file = dir.join("ca.pem");
        if ca_file.exists() {
            return Ok(AdminPki {
                dir: dir.to_path_buf(),
                ca_pem: std::fs::read_to_string(&ca_file).map_err(|e| io_error(&ca_file, e))?,
                ca_key_pem: read_private(&dir.join("ca-key.pem"))?,
                admin_token: read_private(&dir.join("admin.token"))?,
                submit_token: read_private(&dir.join("submit.token"))?,
                created: false,
            });
        }
        let key = KeyPair::generate().map_err(|e| e.to_string())?;
        let mut params = ca_params()?;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(CA_DAYS);
        let ca = params.self_signed(&key).map_err(|e| e.to_string())?;
        let pki = AdminPki {
            dir: dir.to_path_buf(),
            ca_pem: ca.pem(),
            ca_key_pem: key.serialize_pem(),
            admin_token: new_token(),
            submit_token: new_token(),
            created: true,
        };
        if save {
            std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| io_error(dir, e))?;
            write_file(&dir.join("ca-key.pem"), &pki.ca_key_pem, 0o600)?;
            write_file(&dir.join("admin.token"), &format!("{}\n", pki.admin_token), 0o600)?;
            write_file(&dir.join("submit.token"), &format!("{}\n", pki.submit_token), 0o600)?;
            // Last: its presence means the rest is complete.
            write_file(&ca_file, &pki.ca_pem, 0o644)?;
        }
        Ok(pki)
    }

    /// Writes `client.conf` beside the CA for `gear` (which reads ~/.config/gearpump/client.conf).
    pub fn write_client_conf(&self, masters: &[String]) -> Result<PathBuf, String> {
        let path = self.dir.join("client.conf");
        let text = format!(
            "# written by gearpump-setup: gear reads this file from ~/.config/gearpump/client.conf\n\
             ca-file = \"{}\"\ntoken-file = \"{}\"\nmasters = \"{}\"\n",
            self.dir.join("ca.pem").display(),
            self.dir.join("admin.token").display(),
            masters.join(",")
        );
        write_file(&path, &text, 0o600)?;
        Ok(path)
    }

    /// The masters' tokens file: the admin and submit tokens with their roles.
    pub fn tokens_file(&self) -> String {
        format!("admin {}\nsubmit {}\n", self.admin_token, self.submit_token)
    }

    /// A certificate for master or worker `name` (a host name or an IP address) and its new key.
    pub fn issue(&self, name: &str, kind: CertKind) -> Result<(String, String), String> {
        let ca_key = KeyPair::from_pem(&self.ca_key_pem).map_err(|e| format!("the CA key: {e}"))?;
        let issuer = ca_params()?.self_signed(&ca_key).map_err(|e| e.to_string())?;
        let key = KeyPair::generate().map_err(|e| e.to_string())?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
        params.distinguished_name.push(DnType::CommonName, name);
        let san = match name.parse() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(name.try_into().map_err(|e| format!("{name:?}: {e}"))?),
        };
        params.subject_alt_names = vec![san];
        match kind {
            CertKind::Master => {
                params.extended_key_usages =
                    vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
            }
            CertKind::Worker => {
                params.distinguished_name.push(DnType::OrganizationalUnitName, "gearpump-worker");
                params.custom_extensions = vec![worker_usage_extension()];
            }
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(NODE_DAYS);
        let cert = params.signed_by(&key, &issuer, &ca_key).map_err(|e| e.to_string())?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// What `node` gets: its current certificate when it was issued by this CA for this name
    /// and is not near its end (`keep`), else a new one.
    pub fn for_node(
        &self,
        node: &str,
        kind: CertKind,
        current: Option<(&str, &str, &str)>,
        rotate: bool,
    ) -> Result<NodeSecurity, String> {
        let keep = current.filter(|(ca, cert, key)| {
            !rotate && *ca == self.ca_pem && self.still_good(node, kind, cert, key)
        });
        let (cert_pem, key_pem) = match keep {
            Some((_, cert, key)) => (cert.to_string(), key.to_string()),
            None => self.issue(node, kind)?,
        };
        Ok(NodeSecurity { ca_pem: self.ca_pem.clone(), cert_pem, key_pem, tokens: self.tokens_file() })
    }

    /// The checks the master (or worker) makes at start: signed by this CA, valid, of its kind,
    /// naming `node`, and not expiring within 30 days.
    fn still_good(&self, node: &str, kind: CertKind, cert: &str, key: &str) -> bool {
        let dir = match tempfile_dir() {
            Some(dir) => dir,
            None => return false,
        };
        let files = crate::config::TlsFiles {
            ca_file: dir.join("ca.pem"),
            cert_file: dir.join("cert.pem"),
            key_file: dir.join("key.pem"),
        };
        let written = write_file(&files.ca_file, &self.ca_pem, 0o600)
            .and_then(|()| write_file(&files.cert_file, cert, 0o600))
            .and_then(|()| write_file(&files.key_file, key, 0o600));
        let good = written.is_ok()
            && match kind {
                CertKind::Master => {
                    let names = crate::tls::MasterNames::new(vec![node.to_string()]);
                    matches!(crate::tls::NodeTls::load(&files, node, &names), Ok(tls) if tls.expiry_warning.is_none())
                }
                CertKind::Worker => {
                    matches!(crate::tls::WorkerTls::load(&files, node, Vec::new()), Ok(tls) if tls.expiry_warning.is_none())
                }
            };
        let _ = std::fs::remove_dir_all(&dir);
        good
    }
}

fn tempfile_dir() -> Option<PathBuf> {
    let dir =
        std::env::temp_dir().join(format!("gearpump-setup-check-{}", hex::encode(rand::random::<[u8; 8]>())));
    std::fs::create_dir(&dir).ok()?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).ok()?;
    Some(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reloaded_ca_issues_certificates_that_chain_to_the_kept_one_and_re_runs_keep_them() {
        let dir = tempfile::tempdir().expect("dir");
        let pki_dir = dir.path().join("pki");
        let first = AdminPki::load_or_create(&pki_dir, true).expect("create");
        assert!(first.created);
        let mode = std::fs::metadata(pki_dir.join("ca-key.pem")).expect("key").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = AdminPki::load_or_create(&pki_dir, true).expect("load");
        assert!(!again.created);
        assert_eq!(
            (again.ca_pem.as_str(), again.admin_token.as_str()),
            (first.ca_pem.as_str(), first.admin_token.as_str())
        );

        let node = again.for_node("node1", CertKind::Master, None, false).expect("issue");
        assert!(node.tokens.contains(&format!("admin {}", first.admin_token)));
        // What a master checks at start: the kept CA signed it and it names node1.
        let current = Some((node.ca_pem.as_str(), node.cert_pem.as_str(), node.key_pem.as_str()));
        assert!(again.still_good("node1", CertKind::Master, &node.cert_pem, &node.key_pem));
        let master = CertKind::Master;
        assert_eq!(
            again.for_node("node1", master, current, false).expect("keep"),
            node,
            "a re-run keeps the certificate"
        );
        assert_ne!(again.for_node("node1", master, current, true).expect("rotate").cert_pem, node.cert_pem);
        assert_ne!(
            again.for_node("node2", master, current, false).expect("other name").cert_pem,
            node.cert_pem
        );
        let ip = again.for_node("10.0.0.7", master, None, false).expect("an IP address");
        assert!(again.still_good("10.0.0.7", master, &ip.cert_pem, &ip.key_pem));

        // Worker certificates: kept on a re-run, and never mistaken for the other kind.
        let worker = again.for_node("node4", CertKind::Worker, None, false).expect("a worker certificate");
        assert!(again.still_good("node4", CertKind::Worker, &worker.cert_pem, &worker.key_pem));
        assert!(!again.still_good("node4", CertKind::Master, &worker.cert_pem, &worker.key_pem));
        assert!(!again.still_good("node1", CertKind::Worker, &node.cert_pem, &node.key_pem));
        let current = Some((worker.ca_pem.as_str(), worker.cert_pem.as_str(), worker.key_pem.as_str()));
        assert_eq!(again.for_node("node4", CertKind::Worker, current, false).expect("keep"), worker);

        let conf = again.write_client_conf(&["node1:3000".into()]).expect("client.conf");
        let sources = crate::client::credentials::Sources { client_confs: vec![conf], ..Default::default() };
        let credentials = crate::client::credentials::resolve(&sources).expect("gear reads it");
        assert_eq!(credentials.token.as_deref(), Some(first.admin_token.as_str()));
        assert_eq!(credentials.masters.as_deref(), Some("node1:3000"));
    }
}
