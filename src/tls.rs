//! TLS on the master's port, with rustls (ring provider; no OpenSSL, no aws-lc).
//!
//! One port carries client REST and peer RPC, so at the TLS layer a client certificate is
//! optional: clients (`gear`, curl) authenticate with bearer tokens, masters with their node
//! certificate. A certificate that *is* presented must chain to the cluster CA and name a host
//! of `gearpump.cluster.masters`, or the handshake fails (logged with the peer's address and
//! rustls' reason). The peer routes then insist on a verified master (`Caller::node`), which
//! the listener records per connection from the handshake.
//!
//! Masters call each other with the same certificate as a client certificate (`client_config`),
//! verifying the callee's certificate against the cluster CA and the address dialled, so a
//! host that was added as a voter without a cluster certificate never receives Raft traffic.
//!
//! Workers present a *worker certificate* from the same CA (`Identity::Worker`): accepted at
//! the handshake, admitted only on the worker routes (heartbeats, which carry the attempt
//! reports, and the jar download), and never as a master. See `WORKER_USAGE` for how the two
//! kinds are told apart.
//!
//! A worker's log port is TLS too, the other way round: the worker serves its worker
//! certificate and admits only master certificates (`WorkerTls`); masters read it with
//! `NodeTls::worker_logs`, which accepts only a worker certificate naming the host dialled.
//!
//! Files are checked at start (`NodeTls::load`, `WorkerTls::load`), each failure naming the file and the fix:
//! a key readable by group or others, a certificate that does not match its key, one that has
//! expired, is not yet valid, was not signed by the CA, or does not name this master.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::config::TlsFiles;

/// A certificate expiring within this is warned about at start and in `GET master`.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 86_400);
/// A TLS handshake must finish within this, or the connection is dropped (a slow or silent
/// client cannot hold a connection slot with an unfinished handshake).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Open connections the port accepts at once; more wait in the kernel's backlog.
pub const MAX_CONNECTIONS: usize = 1024;
/// Open connections from one IP address on a worker's log port (a master's port takes
/// `gearpump.master.max-connections-per-address`, 128 by default); more are closed at once, so
/// one client cannot take every slot of the port.
pub const MAX_CONNECTIONS_PER_IP: usize = 128;
/// A request's headers must arrive within this (from the connection's start or the previous
/// response), so a client sending them a byte at a time (slowloris) cannot hold a slot.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request head (request line and headers) the port reads.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// A bad TLS file: exit 78 with the file and the fix.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {problem}\n  fix: {fix}")]
pub struct TlsError {
    pub file: String,
    pub problem: String,
    pub fix: String,
}

fn tls_error(file: &Path, problem: impl Into<String>, fix: impl Into<String>) -> TlsError {
    TlsError { file: file.display().to_string(), problem: problem.into(), fix: fix.into() }
}

/// The ring provider, explicitly: rustls' process default may be unset or another one.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The master hosts a peer certificate may name: `gearpump.cluster.masters` plus the hosts of
/// the current Raft membership (a master added at run time is in the membership before the
/// others' configuration lists it), kept current by the daemon.
#[derive(Debug, Clone)]
pub struct MasterNames(Arc<std::sync::RwLock<Vec<String>>>);

impl MasterNames {
    pub fn new(hosts: Vec<String>) -> MasterNames {
        MasterNames(Arc::new(std::sync::RwLock::new(hosts)))
    }

    pub fn set(&self, hosts: Vec<String>) {
        if let Ok(mut current) = self.0.write() {
            *current = hosts;
        }
    }

    pub fn get(&self) -> Vec<String> {
        self.0.read().map(|hosts| hosts.clone()).unwrap_or_default()
    }
}

/// The extended key usage that makes a certificate a worker certificate: OID
/// 2.25.54345209142951778765432108738186758684 (DER content bytes below), minted from a random
/// UUID in the `2.25` arc that X.667 leaves to anyone without registration.
///
/// Why an extended key usage rather than a name convention or an OU: a worker and a master
/// often share a host (node3 runs both), so the names a certificate carries cannot tell them
/// apart, and webpki checks extended key usages during path building (`KeyUsage::required`)
/// without an X.509 parser of our own. The two kinds are disjoint by construction:
/// - a master certificate has `serverAuth` + `clientAuth` and never this usage;
/// - a worker certificate has `clientAuth` + this usage and never `serverAuth`.
///
/// A master is recognised only with `serverAuth` (so a worker certificate naming a master's
/// host is still no master), a worker only with this usage (so a master certificate cannot act
/// as a worker and take over another worker's attempts).
pub const WORKER_USAGE: &[u8] = &[
    0x69, 0xd1, 0xe2, 0xc0, 0xeb, 0xc2, 0x81, 0xea, 0x82, 0xc7, 0xbc, 0xa5, 0xc7, 0xad, 0xf7, 0x98, 0xab,
    0x94, 0x1c,
];
/// id-kp-serverAuth (1.3.6.1.5.5.7.3.1) and id-kp-clientAuth (1.3.6.1.5.5.7.3.2), DER contents.
pub const SERVER_AUTH_USAGE: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];
pub const CLIENT_AUTH_USAGE: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02];

/// A verified worker certificate, kept so that a worker route can check that the worker acts
/// as itself (`names`).
#[derive(Clone)]
pub struct WorkerCert(Arc<CertificateDer<'static>>);

impl WorkerCert {
    /// Whether the certificate was issued for `host` (a subject alternative name).
    pub fn names(&self, host: &str) -> bool {
        let Ok(name) = ServerName::try_from(host) else { return false };
        webpki::EndEntityCert::try_from(self.0.as_ref())
            .is_ok_and(|cert| cert.verify_is_valid_for_subject_name(&name).is_ok())
    }
}

impl std::fmt::Debug for WorkerCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WorkerCert")
    }
}

/// What a verified client certificate makes its holder.
#[derive(Debug, Clone)]
pub enum Identity {
    /// A master, by the host of the masters list its certificate names.
    Master(String),
    Worker(WorkerCert),
}

/// Tells masters from workers by their certificates (see `WORKER_USAGE`).
#[derive(Clone)]
pub struct Identify {
    roots: Arc<RootCertStore>,
    names: MasterNames,
    provider: Arc<CryptoProvider>,
}

impl std::fmt::Debug for Identify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Identify")
    }
}

impl Identify {
    /// The identity of a client certificate chain, or `None` when it chains to the CA with
    /// neither usage, or names no master. The chain is verified again here (the handshake's
    /// verifier did too): webpki only tells usages apart while building the path.
    pub fn of(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Option<Identity> {
        let cert = webpki::EndEntityCert::try_from(end_entity).ok()?;
        let verifies = |usage: &'static [u8]| {
            cert.verify_for_usage(
                self.provider.signature_verification_algorithms.all,
                &self.roots.roots,
                intermediates,
                UnixTime::now(),
                webpki::KeyUsage::required(usage),
                None,
                None,
            )
            .is_ok()
        };
        if verifies(WORKER_USAGE) {
            return Some(Identity::Worker(WorkerCert(Arc::new(end_entity.clone().into_owned()))));
        }
        if verifies(SERVER_AUTH_USAGE) {
            return named_master(end_entity, &self.names.get()).map(Identity::Master);
        }
        None
    }
}

/// Who is on the other end of a connection: its address and, when it presented a valid
/// certificate, the master host that certificate names or the worker certificate.
#[derive(Debug, Clone)]
pub struct Caller {
    pub address: SocketAddr,
    pub node: Option<String>,
    pub worker: Option<WorkerCert>,
}

impl Caller {
    /// A caller without a certificate.
    pub fn anonymous(address: SocketAddr) -> Caller {
        Caller { address, node: None, worker: None }
    }

    fn of(address: SocketAddr, identity: Option<Identity>) -> Caller {
        match identity {
            Some(Identity::Master(host)) => Caller { address, node: Some(host), worker: None },
            Some(Identity::Worker(cert)) => Caller { address, node: None, worker: Some(cert) },
            None => Caller::anonymous(address),
        }
    }

    /// A master (verified certificate) or a process on this machine.
    pub fn is_trusted_without_token(&self) -> bool {
        self.node.is_some() || crate::api::auth::is_loopback(&self.address)
    }
}

/// The CA's certificates as a root store.
pub fn read_roots(ca_file: &Path) -> Result<RootCertStore, TlsError> {
    let certificates = read_certificates(ca_file)?;
    let mut roots = RootCertStore::empty();
    for certificate in certificates {
        roots.add(certificate).map_err(|e| {
            tls_error(
                ca_file,
                format!("not a usable CA certificate: {e}"),
                "point ca-file at the cluster CA's PEM certificate",
            )
        })?;
    }
    Ok(roots)
}

pub fn read_certificates(file: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let text = std::fs::read(file).map_err(|e| {
        tls_error(file, e.to_string(), "check the path and that the service user may read it")
    })?;
    let certificates: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&text).collect::<Result<_, _>>().map_err(|e| {
            tls_error(file, format!("not PEM certificates: {e}"), "write the certificate in PEM form")
        })?;
    if certificates.is_empty() {
        return Err(tls_error(
            file,
            "no certificate in the file",
            "write the certificate in PEM form (-----BEGIN CERTIFICATE-----)",
        ));
    }
    Ok(certificates)
}

/// A private key file, refused when group or others may read it.
pub fn read_key(file: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    use std::os::unix::fs::PermissionsExt;
    let metadata = std::fs::metadata(file).map_err(|e| {
        tls_error(file, e.to_string(), "check the path and that the service user may read it")
    })?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(tls_error(
            file,
            format!("the private key has mode {mode:o}: group or others may read it"),
            format!("chmod 600 {} (owned by the service user)", file.display()),
        ));
    }
    let text = std::fs::read(file)
        .map_err(|e| tls_error(file, e.to_string(), "make it readable by the service user"))?;
    PrivateKeyDer::from_pem_slice(&text).map_err(|e| {
        tls_error(
            file,
            format!("no PEM private key: {e}"),
            "write the key in PEM form (PKCS#8, SEC1 or PKCS#1)",
        )
    })
}

/// The server side of a port: its configuration and, for the listener, who a verified client
/// certificate belongs to.
#[derive(Clone)]
pub struct ServerTls {
    pub config: Arc<ServerConfig>,
    pub identify: Identify,
}

/// A master's TLS: the server side of its port, the client side of its peer calls, and the
/// client that reads application logs from workers' log ports (`worker_logs`).
#[derive(Clone)]
pub struct NodeTls {
    pub server: ServerTls,
    pub client: ClientConfig,
    /// Presents this master's certificate and accepts only a worker certificate naming the
    /// host dialled (`WorkerServerVerifier`): a worker certificate has no `serverAuth`, so
    /// rustls' own verifier would refuse every worker.
    pub worker_logs: ClientConfig,
    /// Set when the certificate expires within `EXPIRY_WARNING`.
    pub expiry_warning: Option<String>,
}

impl std::fmt::Debug for NodeTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeTls")
    }
}

/// The three files of a master or a worker, read and checked against each other: the CA, the
/// chain and a key that group and others cannot read and that matches the certificate.
struct Loaded {
    provider: Arc<CryptoProvider>,
    roots: Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Loaded {
    fn read(files: &TlsFiles) -> Result<Loaded, TlsError> {
        let provider = provider();
        let roots = Arc::new(read_roots(&files.ca_file)?);
        let chain = read_certificates(&files.cert_file)?;
        let key = read_key(&files.key_file)?;
        let signing_key = provider.key_provider.load_private_key(key.clone_key()).map_err(|e| {
            tls_error(
                &files.key_file,
                format!("unusable private key: {e}"),
                "use an ECDSA P-256/P-384, Ed25519 or RSA key in PEM form",
            )
        })?;
        rustls::sign::CertifiedKey::new(chain.clone(), signing_key).keys_match().map_err(|e| {
            tls_error(
                &files.cert_file,
                format!("the certificate does not match the key {}: {e}", files.key_file.display()),
                "install the certificate issued for this key (gearpump-setup --rotate-certs re-issues both)",
            )
        })?;
        Ok(Loaded { provider, roots, chain, key })
    }

    /// The client side: trusts masters' certificates from the CA, presents this certificate.
    fn client_config(&self, files: &TlsFiles) -> Result<ClientConfig, TlsError> {
        ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| bad_config(files, e))?
            .with_root_certificates(self.roots.clone())
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| bad_config(files, e))
    }

    /// A master's client of workers' log ports: presents this certificate, trusts only worker
    /// certificates from the CA naming the host dialled.
    fn worker_log_client(&self, files: &TlsFiles) -> Result<ClientConfig, TlsError> {
        let verifier = WorkerServerVerifier { roots: self.roots.clone(), provider: self.provider.clone() };
        ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| bad_config(files, e))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| bad_config(files, e))
    }

    /// The server side of a port that verifies client certificates with `verifier`.
    fn server_config(
        &self,
        files: &TlsFiles,
        verifier: Arc<dyn ClientCertVerifier>,
    ) -> Result<Arc<ServerConfig>, TlsError> {
        let mut server = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| bad_config(files, e))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| bad_config(files, e))?;
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(server))
    }

    /// rustls' client verifier for the CA: certificates optional (`allow_unauthenticated`) or
    /// required.
    fn ca_client_verifier(
        &self,
        files: &TlsFiles,
        optional: bool,
    ) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
        let builder = WebPkiClientVerifier::builder_with_provider(self.roots.clone(), self.provider.clone());
        let builder = if optional { builder.allow_unauthenticated() } else { builder };
        builder.build().map_err(|e| {
            tls_error(
                &files.ca_file,
                format!("cannot verify clients with this CA: {e}"),
                "point ca-file at the cluster CA",
            )
        })
    }
}

fn bad_config(files: &TlsFiles, error: rustls::Error) -> TlsError {
    tls_error(&files.cert_file, error.to_string(), "check the certificate and key")
}

impl NodeTls {
    /// Loads and checks the files for the master `this_host`; peers must name one of `names`.
    pub fn load(files: &TlsFiles, this_host: &str, names: &MasterNames) -> Result<NodeTls, TlsError> {
        let loaded = Loaded::read(files)?;
        let (provider, roots, chain) = (loaded.provider.clone(), loaded.roots.clone(), loaded.chain.clone());
        let server_verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .map_err(|e| {
                    tls_error(&files.ca_file, format!("unusable CA: {e}"), "point ca-file at the cluster CA")
                })?;
        let name = ServerName::try_from(this_host.to_string()).map_err(|e| {
            tls_error(
                &files.cert_file,
                format!("{this_host:?} is not a host name: {e}"),
                "fix gearpump.hostname",
            )
        })?;
        let verify = |end_entity: &CertificateDer<'_>, intermediates: &[CertificateDer<'_>], at: UnixTime| {
            server_verifier.verify_server_cert(end_entity, intermediates, &name, &[], at).map(|_| ())
        };
        let expiry_warning = check_certificate(files, &chain, &format!("master's host {this_host}"), verify)?;

        let identify = Identify { roots, names: names.clone(), provider };
        let verifier = Arc::new(NodeCertVerifier {
            inner: loaded.ca_client_verifier(files, true)?,
            identify: identify.clone(),
            masters_only: false,
        });
        let server = ServerTls { config: loaded.server_config(files, verifier)?, identify };
        let client = loaded.client_config(files)?;
        let worker_logs = loaded.worker_log_client(files)?;
        Ok(NodeTls { server, client, worker_logs, expiry_warning })
    }
}

/// A worker's TLS (`gearpump.worker.tls`): the client of its heartbeats, and the server side
/// of its log port, which only masters may read (application logs may hold anything).
pub struct WorkerTls {
    pub client: ClientConfig,
    /// Presents the worker certificate; a client must present a master certificate naming a
    /// host of the worker's `gearpump.cluster.masters`, or the handshake fails.
    pub server: ServerTls,
    /// Set when the certificate expires within `EXPIRY_WARNING`.
    pub expiry_warning: Option<String>,
}

impl std::fmt::Debug for WorkerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WorkerTls")
    }
}

impl WorkerTls {
    /// Loads the worker's files after the same checks as a master's: a private key, matching
    /// its certificate, which the CA signed, is valid now, is a worker certificate
    /// (`WORKER_USAGE`) and names the worker's host `this_host`. `masters` are the hosts whose
    /// master certificates may read the log port.
    pub fn load(files: &TlsFiles, this_host: &str, masters: Vec<String>) -> Result<WorkerTls, TlsError> {
        let loaded = Loaded::read(files)?;
        let identify = Identify {
            roots: loaded.roots.clone(),
            names: MasterNames::new(masters),
            provider: loaded.provider.clone(),
        };
        let client_verifier = loaded.ca_client_verifier(files, false)?;
        let invalid = |problem: rustls::CertificateError| rustls::Error::InvalidCertificate(problem);
        let verify = |end_entity: &CertificateDer<'_>, intermediates: &[CertificateDer<'_>], at: UnixTime| {
            client_verifier.verify_client_cert(end_entity, intermediates, at)?;
            let Some(Identity::Worker(cert)) = identify.of(end_entity, intermediates) else {
                return Err(invalid(rustls::CertificateError::Other(rustls::OtherError(Arc::new(
                    NotAWorker,
                )))));
            };
            if !cert.names(this_host) {
                return Err(invalid(rustls::CertificateError::NotValidForName));
            }
            Ok(())
        };
        let expiry_warning =
            check_certificate(files, &loaded.chain, &format!("worker's host {this_host}"), verify)?;
        let verifier = Arc::new(NodeCertVerifier {
            inner: client_verifier.clone(),
            identify: identify.clone(),
            masters_only: true,
        });
        let server = ServerTls { config: loaded.server_config(files, verifier)?, identify };
        Ok(WorkerTls { client: loaded.client_config(files)?, server, expiry_warning })
    }
}

/// Checks a master's or worker's own certificate as its peers will (`verify`): signed by the
/// CA, valid now, and naming `host` (for example "master's host node1"). Returns a warning when
/// it expires within `EXPIRY_WARNING`.
fn check_certificate(
    files: &TlsFiles,
    chain: &[CertificateDer<'static>],
    host: &str,
    verify: impl Fn(&CertificateDer<'_>, &[CertificateDer<'_>], UnixTime) -> Result<(), rustls::Error>,
) -> Result<Option<String>, TlsError> {
    let Some((end_entity, intermediates)) = chain.split_first() else {
        return Err(tls_error(&files.cert_file, "no certificate", "write the certificate in PEM form"));
    };
    let verify = |at: UnixTime| verify(end_entity, intermediates, at);
    let cert_file = &files.cert_file;
    match verify(UnixTime::now()) {
        Ok(_) => {}
        Err(rustls::Error::InvalidCertificate(problem)) => {
            use rustls::CertificateError as E;
            let (what, fix) = match &problem {
                E::Expired | E::ExpiredContext { .. } => (
                    "the certificate has expired".to_string(),
                    "renew it: gearpump-setup --rotate-certs".to_string(),
                ),
                E::NotValidYet | E::NotValidYetContext { .. } => (
                    "the certificate is not valid yet".into(),
                    "check this machine's clock, or re-issue the certificate".into(),
                ),
                E::UnknownIssuer | E::BadSignature | E::UnhandledCriticalExtension => (
                    format!("the CA {} did not sign this certificate", files.ca_file.display()),
                    "install the certificate issued by the cluster CA, or the CA that issued it".into(),
                ),
                E::NotValidForName | E::NotValidForNameContext { .. } => {
                    let bare = host.rsplit(' ').next().unwrap_or(host);
                    (
                        format!("the certificate does not name this {host}"),
                        format!("issue a certificate with {bare} as a subject alternative name"),
                    )
                }
                E::InvalidPurpose | E::InvalidPurposeContext { .. } => (
                    format!(
                        "the certificate is not for this use (a {host} needs its own kind of certificate)"
                    ),
                    "issue a master certificate for masters and a worker certificate for workers \
                     (gearpump-setup does both)"
                        .into(),
                ),
                E::Other(other) => (
                    other.to_string(),
                    "issue a worker certificate for this worker (gearpump-setup --workers does)".into(),
                ),
                other => (
                    format!("the certificate is not valid: {other:?}"),
                    "re-issue it from the cluster CA".into(),
                ),
            };
            return Err(tls_error(cert_file, what, fix));
        }
        Err(other) => return Err(tls_error(cert_file, other.to_string(), "re-issue it from the cluster CA")),
    }
    let soon = UnixTime::since_unix_epoch(Duration::from_secs(UnixTime::now().as_secs()) + EXPIRY_WARNING);
    match verify(soon) {
        Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::Expired | rustls::CertificateError::ExpiredContext { .. },
        )) => Ok(Some(format!(
            "the TLS certificate {} expires within 30 days; renew it with gearpump-setup --rotate-certs",
            cert_file.display()
        ))),
        _ => Ok(None),
    }
}

/// The master host of `hosts` that `certificate` is valid for, if any.
pub fn named_master(certificate: &CertificateDer<'_>, hosts: &[String]) -> Option<String> {
    let end_entity = webpki::EndEntityCert::try_from(certificate).ok()?;
    hosts.iter().find_map(|host| {
        let name = ServerName::try_from(host.as_str()).ok()?;
        end_entity.verify_is_valid_for_subject_name(&name).ok().map(|()| host.clone())
    })
}

/// The CA check of rustls' client verifier, plus: the certificate is a master's naming a host
/// of the masters list, or (unless `masters_only`: a worker's log port) a worker's.
#[derive(Debug)]
struct NodeCertVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    identify: Identify,
    masters_only: bool,
}

impl ClientCertVerifier for NodeCertVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.masters_only
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self.inner.verify_client_cert(end_entity, intermediates, now)?;
        match self.identify.of(end_entity, intermediates) {
            Some(Identity::Master(_)) => Ok(verified),
            Some(Identity::Worker(_)) if !self.masters_only => Ok(verified),
            _ => Err(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
                Arc::new(NotAMaster { or_worker: !self.masters_only }),
            )))),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A master's check of a worker's log port: the certificate chains to the cluster CA as a
/// worker certificate (`WORKER_USAGE`) and names the host dialled. rustls' `WebPkiServerVerifier`
/// insists on `serverAuth`, which a worker certificate never has (so it can never pass as a
/// master's server certificate), hence this verifier; the handshake signatures are checked
/// with the provider's algorithms as rustls' own verifier does.
#[derive(Debug)]
struct WorkerServerVerifier {
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for WorkerServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let cert = webpki::EndEntityCert::try_from(end_entity).map_err(certificate_error)?;
        cert.verify_for_usage(
            self.provider.signature_verification_algorithms.all,
            &self.roots.roots,
            intermediates,
            now,
            webpki::KeyUsage::required(WORKER_USAGE),
            None,
            None,
        )
        .map_err(certificate_error)?;
        cert.verify_is_valid_for_subject_name(server_name).map_err(certificate_error)?;
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// webpki's verdict in rustls' terms, for the handshake's alert and the log line.
fn certificate_error(error: webpki::Error) -> rustls::Error {
    use rustls::CertificateError as E;
    let problem = match error {
        webpki::Error::CertExpired { .. } => E::Expired,
        webpki::Error::CertNotValidYet { .. } => E::NotValidYet,
        webpki::Error::UnknownIssuer => E::UnknownIssuer,
        webpki::Error::CertNotValidForName(_) => E::NotValidForName,
        webpki::Error::RequiredEkuNotFoundContext(_) => E::InvalidPurpose,
        webpki::Error::InvalidSignatureForPublicKey => E::BadSignature,
        other => E::Other(rustls::OtherError(Arc::new(other))),
    };
    rustls::Error::InvalidCertificate(problem)
}

#[derive(Debug)]
struct NotAMaster {
    /// Whether a worker certificate would have done.
    or_worker: bool,
}

impl std::fmt::Display for NotAMaster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.or_worker {
            f.write_str(
                "the certificate is neither a master certificate naming a host of gearpump.cluster.masters \
                 nor a worker certificate",
            )
        } else {
            f.write_str(
                "the certificate is not a master certificate naming a host of gearpump.cluster.masters",
            )
        }
    }
}

impl std::error::Error for NotAMaster {}

#[derive(Debug)]
struct NotAWorker;

impl std::fmt::Display for NotAWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the certificate is not a worker certificate (it lacks the gearpump worker key usage)")
    }
}

impl std::error::Error for NotAWorker {}

/// A connection's place in the port's limits, given back when the connection closes.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    ip: IpAddr,
    per_ip: PerIp,
}

type PerIp = Arc<std::sync::Mutex<HashMap<IpAddr, usize>>>;

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut counts) = self.per_ip.lock() {
            if let Some(count) = counts.get_mut(&self.ip) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    counts.remove(&self.ip);
                }
            }
        }
    }
}

/// One accepted connection, plain or TLS, holding its connection slot until it closes.
pub enum Conn {
    Plain(TcpStream, Slot),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>, Slot),
}

impl AsyncRead for Conn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(stream, _) => Pin::new(stream).poll_read(cx, buf),
            Conn::Tls(stream, _) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(stream, _) => Pin::new(stream).poll_write(cx, buf),
            Conn::Tls(stream, _) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(stream, _) => Pin::new(stream).poll_flush(cx),
            Conn::Tls(stream, _) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(stream, _) => Pin::new(stream).poll_shutdown(cx),
            Conn::Tls(stream, _) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The master's port: accepts TCP, bounds open connections, finishes TLS
/// handshakes in their own tasks (one slow handshake never delays the next accept) and hands
/// over each connection with its `Caller`.
pub struct NodeListener {
    incoming: mpsc::Receiver<(Conn, Caller)>,
}

impl NodeListener {
    /// Accepts on `listener`, at most `per_address` open connections from one IP address.
    pub fn new(
        listener: TcpListener,
        tls: Option<&ServerTls>,
        per_address: usize,
    ) -> io::Result<NodeListener> {
        let (sender, incoming) = mpsc::channel(64);
        let tls = tls.map(|tls| (tokio_rustls::TlsAcceptor::from(tls.config.clone()), tls.identify.clone()));
        tokio::spawn(accept_loop(listener, tls, per_address, sender));
        Ok(NodeListener { incoming })
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<(tokio_rustls::TlsAcceptor, Identify)>,
    per_address: usize,
    sender: mpsc::Sender<(Conn, Caller)>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let per_ip: PerIp = Arc::default();
    let mut refused_at: Option<std::time::Instant> = None;
    loop {
        // Wait for a free slot before accepting: excess connections queue in the backlog.
        let Ok(permit) = slots.clone().acquire_owned().await else { return };
        // Once the server stops taking connections (serve() closed the channel), stop accepting
        // and drop the socket: a client connecting now is refused, which it can retry on
        // another master, instead of being accepted and then reset at exit.
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = sender.closed() => return,
        };
        let (stream, address) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(%error, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let ip = address.ip();
        let admitted = match per_ip.lock() {
            Ok(mut counts) => {
                let count = counts.entry(ip).or_insert(0);
                *count += 1;
                *count <= per_address
            }
            Err(_) => true,
        };
        let permit = Slot { _permit: permit, ip, per_ip: per_ip.clone() };
        if !admitted {
            // At most one line a minute: a flood must not flood the journal too.
            if refused_at.is_none_or(|at| at.elapsed() > Duration::from_secs(60)) {
                tracing::warn!(remote = %address, "closed a connection: {per_address} are open from this address (gearpump.master.max-connections-per-address)");
                refused_at = Some(std::time::Instant::now());
            }
            continue;
        }
        let _ = stream.set_nodelay(true);
        let Some((acceptor, identify)) = &tls else {
            if sender.send((Conn::Plain(stream, permit), Caller::anonymous(address))).await.is_err() {
                return;
            }
            continue;
        };
        let (acceptor, sender, identify) = (acceptor.clone(), sender.clone(), identify.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => {
                    let identity = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|chain| chain.split_first())
                        .and_then(|(end_entity, intermediates)| identify.of(end_entity, intermediates));
                    let caller = Caller::of(address, identity);
                    let _ = sender.send((Conn::Tls(Box::new(stream), permit), caller)).await;
                }
                Ok(Err(error)) => {
                    tracing::warn!(remote = %address, reason = %error, "refused a TLS connection")
                }
                Err(_) => {
                    tracing::info!(remote = %address, "dropped a connection that did not finish its TLS handshake within 10 s")
                }
            }
        });
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then lets open requests finish
/// (the caller bounds how long). HTTP/1.1 only, with a deadline for each request's headers
/// and a bound on their size; each request carries its connection's `ConnectInfo<Caller>`.
///
/// At shutdown it stops accepting at once (new clients are refused and try another master) and
/// still serves the connections accepted already, TLS handshake done, that wait in the channel:
/// their clients sent a request that would otherwise be reset without an answer. Found by the
/// rolling upgrade of a TLS cluster (tests/testbed/repo_upgrade_test.sh), where a follower's
/// restart reset a client's request.
pub async fn serve(
    mut listener: NodeListener,
    router: axum::Router,
    shutdown: impl std::future::Future<Output = ()>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT).max_header_size(MAX_HEADER_BYTES);
    tokio::pin!(shutdown);
    let mut stopping = false;
    let mut last_ones = tokio::task::JoinSet::new();
    loop {
        let (io, caller) = if stopping {
            // after close(): what is buffered, then None
            match listener.incoming.recv().await {
                Some(accepted) => accepted,
                None => break,
            }
        } else {
            tokio::select! {
                accepted = listener.incoming.recv() => match accepted {
                    Some(accepted) => accepted,
                    None => break,
                },
                () = &mut shutdown => {
                    stopping = true;
                    listener.incoming.close();
                    continue;
                }
            }
        };
        let router = router.clone();
        let service =
            hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(axum::extract::ConnectInfo(caller.clone()));
                tower::ServiceExt::oneshot(router.clone(), request)
            });
        if stopping {
            // Not watched: a graceful shutdown closes a connection that has not read its first
            // request yet, which is what these are. Served without keep-alive: one request each.
            builder.keep_alive(false);
            let connection = builder.serve_connection(TokioIo::new(io), service);
            last_ones.spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(%error, "a connection ended with an error");
                }
            });
            continue;
        }
        let connection = builder.serve_connection(TokioIo::new(io), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "a connection ended with an error");
            }
        });
    }
    graceful.shutdown().await;
    // bounded by the header deadline, and by the caller
    while last_ones.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(address: SocketAddr, path: &str) -> io::Result<String> {
        let mut stream = TcpStream::connect(address).await?;
        stream
            .write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes())
            .await?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await?;
        Ok(answer)
    }

    #[tokio::test]
    async fn at_shutdown_new_clients_are_refused_and_open_requests_answered() {
        let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = tcp.local_addr().expect("address");
        let listener = NodeListener::new(tcp, None, MAX_CONNECTIONS_PER_IP).expect("listener");
        // The slow request tells the test it has arrived, then waits for the test to let it
        // finish: no sleep decides the order, so a loaded machine cannot reorder the steps.
        let arrived = Arc::new(tokio::sync::Notify::new());
        let release = Arc::new(tokio::sync::Notify::new());
        let (arrived_in, release_in) = (arrived.clone(), release.clone());
        let router = axum::Router::new().route(
            "/slow",
            axum::routing::get(move || async move {
                arrived_in.notify_one();
                release_in.notified().await;
                "done"
            }),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, router, async move {
            let _ = stopped.await;
        }));
        let slow = tokio::spawn(get(address, "/slow"));
        arrived.notified().await;
        let _ = stop.send(());
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        // Until the listener is closed, a connection may still be taken into the backlog (and
        // reset when it closes); once closed, the port refuses.
        let refused = loop {
            match TcpStream::connect(address).await.map_err(|e| e.kind()) {
                Err(io::ErrorKind::ConnectionRefused) => break Some(io::ErrorKind::ConnectionRefused),
                _ if std::time::Instant::now() > deadline => break None,
                _ => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        };
        assert_eq!(refused, Some(io::ErrorKind::ConnectionRefused), "a new client is refused");
        release.notify_one();
        let answer = slow.await.expect("joined").expect("the open request is answered");
        assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("done"), "{answer}");
        tokio::time::timeout(Duration::from_secs(5), server).await.expect("serve ends").expect("joined");
    }

    use crate::setup::pki::{AdminPki, CertKind};

    fn der(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).expect("a PEM certificate")
    }

    /// A master reads a log port only from a worker certificate of the cluster CA naming the
    /// host dialled: not a master's certificate, not another host's, not another CA's.
    #[test]
    fn a_log_port_must_present_a_worker_certificate_for_its_host() {
        let dir = tempfile::tempdir().expect("dir");
        let pki = AdminPki::load_or_create(dir.path(), false).expect("a CA");
        let other_dir = tempfile::tempdir().expect("dir");
        let rogue = AdminPki::load_or_create(other_dir.path(), false).expect("another CA");
        let mut roots = RootCertStore::empty();
        roots.add(der(&pki.ca_pem)).expect("the CA");
        let verifier = WorkerServerVerifier { roots: Arc::new(roots), provider: provider() };
        let check = |cert: &str, host: &str| {
            let name = ServerName::try_from(host.to_string()).expect("a name");
            verifier.verify_server_cert(&der(cert), &[], &name, &[], UnixTime::now()).map(|_| ())
        };
        let issue = |pki: &AdminPki, host: &str, kind| pki.issue(host, kind).expect("a certificate").0;

        assert_eq!(check(&issue(&pki, "127.0.0.1", CertKind::Worker), "127.0.0.1"), Ok(()));
        let refused = |result: Result<(), rustls::Error>, problem: rustls::CertificateError| {
            assert_eq!(result, Err(rustls::Error::InvalidCertificate(problem)));
        };
        use rustls::CertificateError as E;
        refused(check(&issue(&pki, "node2", CertKind::Worker), "node3"), E::NotValidForName);
        refused(check(&issue(&pki, "node3", CertKind::Master), "node3"), E::InvalidPurpose);
        // Every gearpump-setup CA has the same name, so webpki finds the issuer by name and
        // then the signature does not verify.
        refused(check(&issue(&rogue, "node3", CertKind::Worker), "node3"), E::BadSignature);
    }
}
