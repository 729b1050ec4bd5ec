//! Server-side TLS: certificates from PEM files, client certificates verified against a CA bundle,
//! and reload without dropping anyone.
//!
//! A listener holds its current rustls `ServerConfig` behind a lock and every handshake takes the
//! config of the moment, so swapping it changes what new connections see while established ones keep
//! their session. A reload that fails (a half-written file, a key that does not match) keeps the old
//! config and says why.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::SystemTime;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, SupportedProtocolVersion};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{ClientAuth, TlsConfig};

/// Why a certificate, key or CA bundle cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read or holds no PEM item of the expected kind.
    #[error("{what} file {path}: {reason}")]
    File {
        /// Which file (`certificate`, `key`, `CA`).
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the combination (a key that does not match the certificate, a bad CA...).
    #[error("{context}: {source}")]
    Rustls {
        /// What was being set up.
        context: &'static str,
        /// rustls's reason.
        source: rustls::Error,
    },
    /// The client certificate verifier cannot be built from the CA bundle.
    #[error("CA file {path}: {reason}")]
    Verifier {
        /// The CA bundle.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

fn file_error(what: &'static str, path: &Path, reason: impl ToString) -> TlsError {
    TlsError::File {
        what,
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// The ALPN protocol id of MQTT over TLS and QUIC.
pub const ALPN_MQTT: &[u8] = b"mqtt";
/// The ALPN protocol id of WebSocket over TLS: the upgrade is an HTTP/1.1 request.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Reads a PEM certificate chain (leaf first); the error is the reason, for the caller to put
/// beside the path.
pub(crate) fn pem_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| e.to_string())?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no PEM CERTIFICATE section in it".into());
    }
    Ok(certs)
}

/// Reads a PEM CA bundle into a root store.
pub(crate) fn pem_roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in pem_certificates(path)? {
        roots
            .add(cert)
            .map_err(|e| format!("unusable CA certificate: {e}"))?;
    }
    Ok(roots)
}

/// Reads a PEM private key (PKCS#8, PKCS#1 or SEC1).
pub(crate) fn pem_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => {
            "no PEM private key (PKCS#8, PKCS#1 or SEC1) in it".to_string()
        }
        other => other.to_string(),
    })
}

/// The TLS versions a transport allows: 1.2 and 1.3 on TCP, 1.3 alone on QUIC (RFC 9001).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Versions {
    /// TLS 1.2 and 1.3.
    Tls12And13,
    /// TLS 1.3 only.
    Tls13,
}

impl Versions {
    fn list(self) -> &'static [&'static SupportedProtocolVersion] {
        static TLS13_ONLY: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
        match self {
            Versions::Tls12And13 => rustls::DEFAULT_VERSIONS,
            Versions::Tls13 => &TLS13_ONLY,
        }
    }
}

/// Builds a rustls server config from the files `cfg` names, with the ring provider.
pub fn server_config(
    cfg: &TlsConfig,
    alpn: &[&[u8]],
    versions: Versions,
) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = pem_certificates(&cfg.cert).map_err(|e| file_error("certificate", &cfg.cert, e))?;
    let key = pem_key(&cfg.key).map_err(|e| file_error("key", &cfg.key, e))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions.list())
        .map_err(|source| TlsError::Rustls {
            context: "TLS versions",
            source,
        })?;
    let builder = match (cfg.client_auth, &cfg.ca) {
        (ClientAuth::None, _) | (_, None) => builder.with_no_client_auth(),
        (auth, Some(ca)) => {
            let roots = pem_roots(ca).map_err(|e| file_error("CA", ca, e))?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = match auth {
                ClientAuth::Optional => verifier.allow_unauthenticated(),
                _ => verifier,
            };
            let verifier = verifier.build().map_err(|e| TlsError::Verifier {
                path: ca.clone(),
                reason: e.to_string(),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|source| TlsError::Rustls {
            context: "certificate and key",
            source,
        })?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// When and how big a file was, to notice it changed.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// A listener's TLS config, swapped on reload.
#[derive(Debug)]
pub struct ReloadingTls {
    cfg: TlsConfig,
    alpn: Vec<Vec<u8>>,
    versions: Versions,
    current: RwLock<Arc<ServerConfig>>,
    /// The files' stamps when last loaded (certificate, key, CA).
    stamps: Mutex<[Stamp; 3]>,
}

impl ReloadingTls {
    /// Loads the files once; an error here stops the broker from starting.
    pub fn load(cfg: &TlsConfig, alpn: &[&[u8]], versions: Versions) -> Result<Self, TlsError> {
        let stamps = Self::stamps_of(cfg);
        let config = server_config(cfg, alpn, versions)?;
        Ok(ReloadingTls {
            cfg: cfg.clone(),
            alpn: alpn.iter().map(|p| p.to_vec()).collect(),
            versions,
            current: RwLock::new(Arc::new(config)),
            stamps: Mutex::new(stamps),
        })
    }

    fn stamps_of(cfg: &TlsConfig) -> [Stamp; 3] {
        [
            stamp(&cfg.cert),
            stamp(&cfg.key),
            cfg.ca.as_deref().and_then(stamp),
        ]
    }

    /// The config for the next handshake.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether a file changed on disk since it was last loaded.
    pub fn changed_on_disk(&self) -> bool {
        *self.stamps.lock().unwrap_or_else(PoisonError::into_inner) != Self::stamps_of(&self.cfg)
    }

    /// Reads the files again and, if they make a valid config, uses it for new handshakes. On
    /// error the old config stays.
    pub fn reload(&self) -> Result<Arc<ServerConfig>, TlsError> {
        // One reload at a time (SIGHUP and the watcher may race): the files read last are the
        // ones installed.
        let mut stamps = self.stamps.lock().unwrap_or_else(PoisonError::into_inner);
        let alpn: Vec<&[u8]> = self.alpn.iter().map(Vec::as_slice).collect();
        // Remember the stamps even on failure, so a broken file is reported once, not at every check.
        *stamps = Self::stamps_of(&self.cfg);
        let config = Arc::new(server_config(&self.cfg, &alpn, self.versions)?);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = config.clone();
        Ok(config)
    }

    /// The settings it was loaded from.
    pub fn settings(&self) -> &TlsConfig {
        &self.cfg
    }
}
