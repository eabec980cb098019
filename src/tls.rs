//! TLS with rustls: the hub's certificate and key (PEM files, checked at start and reloaded on SIGHUP
//! without touching open connections), and the trust of the client commands (`--ca-cert`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use anyhow::{Context, bail};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

/// The hub's certificate chain and private key, as PEM files (`tls_cert`, `tls_key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server certificate first, then the intermediates (certbot's `fullchain.pem`).
    pub cert: PathBuf,
    /// Its private key: PKCS#8, PKCS#1 (RSA) or SEC1 (EC) (certbot's `privkey.pem`).
    pub key: PathBuf,
}

/// The one crypto provider rtctl uses (reqwest and jsonwebtoken use aws-lc-rs too).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Reads the pair and checks it: the certificate parses, the key parses, and the key is the
/// certificate's. Every error names the setting at fault and the file.
pub fn load(files: &TlsFiles) -> anyhow::Result<Arc<CertifiedKey>> {
    let (cert, key) = (files.cert.display(), files.key.display());
    let chain = read_certificates(&files.cert).context("invalid tls_cert")?;
    let private_key = PrivateKeyDer::from_pem_file(&files.key).map_err(|error| match error {
        rustls::pki_types::pem::Error::Io(error) => anyhow::anyhow!("invalid tls_key: cannot read {key}: {error}"),
        rustls::pki_types::pem::Error::NoItemsFound => {
            anyhow::anyhow!("invalid tls_key: {key} holds no PEM private key (BEGIN PRIVATE KEY)")
        }
        error => anyhow::anyhow!("invalid tls_key: {key} is not a PEM private key: {error}"),
    })?;
    let certified = CertifiedKey::from_der(chain, private_key, &provider()).map_err(|error| match error {
        rustls::Error::InconsistentKeys(_) => {
            anyhow::anyhow!("invalid tls_key: {key} is not the private key of the certificate in {cert}")
        }
        error => anyhow::anyhow!("invalid tls_key: {key}: {error}"),
    })?;
    Ok(Arc::new(certified))
}

/// Every certificate of a PEM file, in order; none is an error.
fn read_certificates(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let shown = path.display();
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|error| match error {
            rustls::pki_types::pem::Error::Io(error) => anyhow::anyhow!("cannot read {shown}: {error}"),
            error => anyhow::anyhow!("cannot read {shown}: {error}"),
        })?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| anyhow::anyhow!("{shown} is not a PEM certificate file: {error}"))?;
    if chain.is_empty() {
        bail!("{shown} holds no PEM certificate (BEGIN CERTIFICATE)");
    }
    Ok(chain)
}

/// The hub's TLS: the acceptor every new connection's handshake goes through, and the certificate it
/// presents, which [`ServerTls::reload`] replaces. A handshake takes the certificate current when it
/// starts; connections already open keep their session.
pub struct ServerTls {
    files: TlsFiles,
    current: Arc<Current>,
    acceptor: TlsAcceptor,
}

/// The certificate new handshakes present.
#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // Held for a clone of the Arc, never across an await; a poisoned lock still holds a whole pair.
        Some(Arc::clone(&self.0.read().unwrap_or_else(PoisonError::into_inner)))
    }
}

impl ServerTls {
    /// Loads the files (see [`load`]) and builds the acceptor.
    pub fn new(files: TlsFiles) -> anyhow::Result<Self> {
        let current = Arc::new(Current(RwLock::new(load(&files)?)));
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .context("the TLS provider supports no protocol version")?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&current) as Arc<dyn ResolvesServerCert>);
        // The hub speaks HTTP/1.1 only (WebSockets need it); saying so lets a client that offers h2 fall back.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self { files, current, acceptor: TlsAcceptor::from(Arc::new(config)) })
    }

    /// The acceptor for new connections.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.clone()
    }

    /// The files it serves.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// Reads the files again and, when they are a valid pair, presents them to new handshakes from now
    /// on. On error the certificate in use stays; the error says which file is wrong.
    pub fn reload(&self) -> anyhow::Result<()> {
        let fresh = load(&self.files)?;
        *self.current.0.write().unwrap_or_else(PoisonError::into_inner) = fresh;
        Ok(())
    }
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").field("files", &self.files).finish_non_exhaustive()
    }
}

/// The client commands' TLS when `--ca-cert` names a file: the certificates in it are the only roots
/// trusted (as curl's `--cacert`), for a hub whose certificate a private CA signed. Without it, the
/// clients trust the platform's roots.
pub fn client_config(ca_cert: &Path) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in read_certificates(ca_cert).context("invalid ca_cert")? {
        roots
            .add(certificate)
            .with_context(|| format!("invalid ca_cert: {} holds a certificate rustls cannot use", ca_cert.display()))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("the TLS provider supports no protocol version")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
