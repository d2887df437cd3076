//! Test certificates made with rcgen: a cluster CA, node certificates with the names and
//! validity a test asks for, and the gear.conf lines that point a master at them.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
    SanType,
};
use time::{Duration, OffsetDateTime};

pub struct Ca {
    pub cert: rcgen::Certificate,
    pub key: KeyPair,
}

/// A node certificate and its key, PEM.
pub struct Issued {
    pub cert: String,
    pub key: String,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).expect("self-signed CA");
        Ca { cert, key }
    }

    /// A node certificate naming `names` (IP addresses become IP SANs), valid from
    /// `not_before` to `not_after` days from now.
    pub fn issue_valid(&self, names: &[&str], not_before: i64, not_after: i64) -> Issued {
        self.issue_kind(names, not_before, not_after, false)
    }

    /// A worker certificate (clientAuth and the worker usage, as gearpump-setup issues it).
    pub fn issue_worker(&self, names: &[&str]) -> Issued {
        self.issue_kind(names, -1, 365, true)
    }

    /// A master (`worker` false) or worker certificate valid from `not_before` to `not_after`
    /// days from now.
    pub fn issue_kind(&self, names: &[&str], not_before: i64, not_after: i64, worker: bool) -> Issued {
        let key = KeyPair::generate().expect("node key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, names.first().copied().unwrap_or("node"));
        params.subject_alt_names = names
            .iter()
            .map(|name| match name.parse() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*name).try_into().expect("a DNS name")),
            })
            .collect();
        if worker {
            params.custom_extensions = vec![gearpump_master::setup::pki::worker_usage_extension()];
        } else {
            params.extended_key_usages =
                vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        }
        let now = OffsetDateTime::now_utc();
        params.not_before = now + Duration::days(not_before);
        params.not_after = now + Duration::days(not_after);
        let cert = params.signed_by(&key, &self.cert, &self.key).expect("signed");
        Issued { cert: cert.pem(), key: key.serialize_pem() }
    }

    pub fn issue(&self, names: &[&str]) -> Issued {
        self.issue_valid(names, -1, 365)
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }
}

/// Files of one master's TLS setup.
pub struct TlsPaths {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsPaths {
    /// Writes `ca`'s certificate and `issued` under `dir` with `prefix`; the key 0600.
    pub fn write(dir: &Path, prefix: &str, ca_pem: &str, issued: &Issued) -> TlsPaths {
        let paths = TlsPaths {
            ca: dir.join(format!("{prefix}-ca.pem")),
            cert: dir.join(format!("{prefix}-cert.pem")),
            key: dir.join(format!("{prefix}-key.pem")),
        };
        std::fs::write(&paths.ca, ca_pem).expect("write CA");
        std::fs::write(&paths.cert, &issued.cert).expect("write cert");
        std::fs::write(&paths.key, &issued.key).expect("write key");
        std::fs::set_permissions(&paths.key, std::fs::Permissions::from_mode(0o600)).expect("chmod key");
        paths
    }

    pub fn conf(&self) -> String {
        self.conf_of("gearpump.master.tls")
    }

    /// The same files as a worker's `gearpump.worker.tls`.
    pub fn worker_conf(&self) -> String {
        self.conf_of("gearpump.worker.tls")
    }

    fn conf_of(&self, section: &str) -> String {
        format!(
            "{section} {{\n  ca-file = \"{}\"\n  cert-file = \"{}\"\n  key-file = \"{}\"\n}}\n",
            self.ca.display(),
            self.cert.display(),
            self.key.display()
        )
    }

    /// A rustls client presenting this certificate and trusting this CA.
    pub fn client(&self) -> reqwest::Client {
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let ca = std::fs::read(&self.ca).expect("CA");
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pki_types::pem::PemObject::pem_slice_iter(&ca) {
            roots.add(cert.expect("CA cert")).expect("add CA");
        }
        let chain = std::fs::read(&self.cert).expect("cert");
        let key = std::fs::read(&self.key).expect("key");
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_client_auth_cert(
                rustls_pki_types::pem::PemObject::pem_slice_iter(&chain)
                    .collect::<Result<Vec<_>, _>>()
                    .expect("chain"),
                rustls_pki_types::pem::PemObject::from_pem_slice(&key).expect("key"),
            )
            .expect("client auth");
        reqwest::Client::builder().use_preconfigured_tls(tls).no_proxy().build().expect("client")
    }

    /// A client presenting this certificate that accepts any server certificate: for asking a
    /// worker's log port (whose certificate a web client would refuse) who it lets in.
    pub fn client_trusting_any_server(&self) -> reqwest::Client {
        let mut pem = std::fs::read(&self.cert).expect("cert");
        pem.extend(std::fs::read(&self.key).expect("key"));
        let identity = reqwest::Identity::from_pem(&pem).expect("identity");
        trusting_any_server().identity(identity).build().expect("client")
    }
}

/// A client builder without a certificate that accepts any server certificate.
pub fn trusting_any_server() -> reqwest::ClientBuilder {
    reqwest::Client::builder().use_rustls_tls().danger_accept_invalid_certs(true).no_proxy()
}

/// A cluster as gearpump-setup secures it: a CA, a master certificate for 127.0.0.1 and
/// localhost, a tokens file (admin, submit, read) and a cluster secret, under `dir`.
pub struct Secured {
    pub ca: Ca,
    pub master: TlsPaths,
    /// gear.conf lines for the masters (and, through the shared secret, the workers).
    pub conf: String,
}

pub const ADMIN_TOKEN: &str = "admin-token-0123456789abcdef";
pub const SUBMIT_TOKEN: &str = "submit-token-0123456789abcdef";
pub const READ_TOKEN: &str = "read-token-0123456789abcdef";
pub const SECRET: &str = "cluster-secret-0123456789abcdef";

impl Secured {
    pub fn write(dir: &Path) -> Secured {
        let ca = Ca::new("test cluster CA");
        let master = TlsPaths::write(dir, "node", &ca.pem(), &ca.issue(&["127.0.0.1", "localhost"]));
        let tokens = dir.join("tokens");
        write_private(
            &tokens,
            &format!("admin {ADMIN_TOKEN}\nsubmit {SUBMIT_TOKEN}\nread {READ_TOKEN}\n"),
            0o640,
        );
        let secret = dir.join("secret");
        write_private(&secret, SECRET, 0o600);
        let conf = format!(
            "{}gearpump.master.auth.tokens-file = \"{}\"\ngearpump.master.secret-file = \"{}\"\n",
            master.conf(),
            tokens.display(),
            secret.display()
        );
        Secured { ca, master, conf }
    }

    /// A worker certificate for `names` with the cluster CA, written under `dir` as `prefix`.
    pub fn worker(&self, dir: &Path, prefix: &str, names: &[&str]) -> TlsPaths {
        TlsPaths::write(dir, prefix, &self.ca.pem(), &self.ca.issue_worker(names))
    }
}

/// Writes a file with `mode`.
pub fn write_private(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}
