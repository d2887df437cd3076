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
        params.extended_key_usages =
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
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
        format!(
            "gearpump.master.tls {{\n  ca-file = \"{}\"\n  cert-file = \"{}\"\n  key-file = \"{}\"\n}}\n",
            self.ca.display(),
            self.cert.display(),
            self.key.display()
        )
    }
}

/// Writes a file with `mode`.
pub fn write_private(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}
