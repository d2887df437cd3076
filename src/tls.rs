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
//! Files are checked at start (`NodeTls::load`), each failure naming the file and the fix:
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
/// Open connections from one IP address; more are closed at once, so one client cannot take
/// every slot of the port.
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

/// Who is on the other end of a connection: its address and, when it presented a valid node
/// certificate, the master host that certificate names.
#[derive(Debug, Clone)]
pub struct Caller {
    pub address: SocketAddr,
    pub node: Option<String>,
}

impl Caller {
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

/// A master's TLS: the server side of its port and the client side of its peer calls.
#[derive(Clone)]
pub struct NodeTls {
    pub server: Arc<ServerConfig>,
    pub client: ClientConfig,
    /// Set when the certificate expires within `EXPIRY_WARNING`.
    pub expiry_warning: Option<String>,
}

impl std::fmt::Debug for NodeTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeTls")
    }
}

impl NodeTls {
    /// Loads and checks the files for the master `this_host`; peers must name one of `names`.
    pub fn load(files: &TlsFiles, this_host: &str, names: &MasterNames) -> Result<NodeTls, TlsError> {
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
        let expiry_warning = check_certificate(files, &roots, &chain, this_host, provider.clone())?;

        let inner = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .allow_unauthenticated()
            .build()
            .map_err(|e| {
                tls_error(
                    &files.ca_file,
                    format!("cannot verify clients with this CA: {e}"),
                    "point ca-file at the cluster CA",
                )
            })?;
        let verifier = Arc::new(NodeCertVerifier { inner, names: names.clone() });
        let bad_config =
            |e: rustls::Error| tls_error(&files.cert_file, e.to_string(), "check the certificate and key");
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(bad_config)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(bad_config)?;
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(bad_config)?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(bad_config)?;
        Ok(NodeTls { server: Arc::new(server), client, expiry_warning })
    }
}

/// Verifies this master's own certificate as a peer would: signed by the CA, valid now, and
/// naming `this_host`. Returns a warning when it expires within `EXPIRY_WARNING`.
fn check_certificate(
    files: &TlsFiles,
    roots: &Arc<RootCertStore>,
    chain: &[CertificateDer<'static>],
    this_host: &str,
    provider: Arc<CryptoProvider>,
) -> Result<Option<String>, TlsError> {
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(roots.clone(), provider)
        .build()
        .map_err(|e| {
            tls_error(&files.ca_file, format!("unusable CA: {e}"), "point ca-file at the cluster CA")
        })?;
    let name = ServerName::try_from(this_host.to_string()).map_err(|e| {
        tls_error(&files.cert_file, format!("{this_host:?} is not a host name: {e}"), "fix gearpump.hostname")
    })?;
    let Some((end_entity, intermediates)) = chain.split_first() else {
        return Err(tls_error(&files.cert_file, "no certificate", "write the certificate in PEM form"));
    };
    let verify = |at: UnixTime| verifier.verify_server_cert(end_entity, intermediates, &name, &[], at);
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
                E::NotValidForName | E::NotValidForNameContext { .. } => (
                    format!("the certificate does not name this master's host {this_host}"),
                    format!("issue a certificate with {this_host} as a subject alternative name"),
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

/// The CA check of rustls' client verifier, plus: the certificate names a master.
#[derive(Debug)]
struct NodeCertVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    names: MasterNames,
}

impl ClientCertVerifier for NodeCertVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
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
        if named_master(end_entity, &self.names.get()).is_none() {
            return Err(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(
                rustls::OtherError(Arc::new(NotAMaster)),
            )));
        }
        Ok(verified)
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

#[derive(Debug)]
struct NotAMaster;

impl std::fmt::Display for NotAMaster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the certificate names no host of gearpump.cluster.masters")
    }
}

impl std::error::Error for NotAMaster {}

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
    pub fn new(
        listener: TcpListener,
        tls: Option<Arc<ServerConfig>>,
        names: MasterNames,
    ) -> io::Result<NodeListener> {
        let (sender, incoming) = mpsc::channel(64);
        tokio::spawn(accept_loop(listener, tls.map(tokio_rustls::TlsAcceptor::from), names, sender));
        Ok(NodeListener { incoming })
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    names: MasterNames,
    sender: mpsc::Sender<(Conn, Caller)>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let per_ip: PerIp = Arc::default();
    let mut refused_at: Option<std::time::Instant> = None;
    loop {
        // Wait for a free slot before accepting: excess connections queue in the backlog.
        let Ok(permit) = slots.clone().acquire_owned().await else { return };
        let (stream, address) = match listener.accept().await {
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
                *count <= MAX_CONNECTIONS_PER_IP
            }
            Err(_) => true,
        };
        let permit = Slot { _permit: permit, ip, per_ip: per_ip.clone() };
        if !admitted {
            // At most one line a minute: a flood must not flood the journal too.
            if refused_at.is_none_or(|at| at.elapsed() > Duration::from_secs(60)) {
                tracing::warn!(remote = %address, "closed a connection: {MAX_CONNECTIONS_PER_IP} are open from this address");
                refused_at = Some(std::time::Instant::now());
            }
            continue;
        }
        let _ = stream.set_nodelay(true);
        let Some(acceptor) = &acceptor else {
            if sender.send((Conn::Plain(stream, permit), Caller { address, node: None })).await.is_err() {
                return;
            }
            continue;
        };
        let (acceptor, sender, names) = (acceptor.clone(), sender.clone(), names.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => {
                    let node = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|chain| chain.first())
                        .and_then(|certificate| named_master(certificate, &names.get()));
                    let _ =
                        sender.send((Conn::Tls(Box::new(stream), permit), Caller { address, node })).await;
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
    loop {
        let (io, caller) = tokio::select! {
            accepted = listener.incoming.recv() => match accepted {
                Some(accepted) => accepted,
                None => break,
            },
            () = &mut shutdown => break,
        };
        let router = router.clone();
        let service =
            hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(axum::extract::ConnectInfo(caller.clone()));
                tower::ServiceExt::oneshot(router.clone(), request)
            });
        let connection = builder.serve_connection(TokioIo::new(io), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "a connection ended with an error");
            }
        });
    }
    graceful.shutdown().await;
}
