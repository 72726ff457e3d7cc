//! TLS for every client vitalsd opens (FHIR over HTTPS, HL7 over MLLP/TLS, MQTT over TLS) and
//! for the MLLP listener: one crypto provider (ring), one way to build a rustls client
//! configuration from the config's `ca_file` and optional client certificate, and one to build
//! the listener's server configuration (certificate, key, optional client CA).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// Why a TLS configuration could not be built; names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read certificates from {path}: {reason}")]
    Certs { path: PathBuf, reason: String },
    #[error("{path} holds no certificate")]
    NoCerts { path: PathBuf },
    #[error("cannot read the private key in {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("no trusted root certificates: the system store is empty and no ca_file is set")]
    NoRoots,
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Installs the ring crypto provider for the whole process. Call once at start (idempotent).
pub fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Certificates from a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsError::Certs {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?
        .collect();
    let certs = certs.map_err(|e| TlsError::Certs {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if certs.is_empty() {
        return Err(TlsError::NoCerts {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Key {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Trust anchors: exactly the certificates in `ca_file` when set (a private clinic CA), else
/// the system's store.
pub fn roots(ca_file: Option<&Path>) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for c in load_certs(path)? {
                store.add(c).map_err(|e| TlsError::Certs {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(TlsError::NoRoots);
            }
        }
    }
    Ok(store)
}

/// A client configuration trusting `ca_file` (or the system store), optionally presenting a
/// client certificate.
pub fn client_config(
    ca_file: Option<&Path>,
    client_auth: Option<(&Path, &Path)>,
) -> Result<Arc<ClientConfig>, TlsError> {
    init();
    let builder = ClientConfig::builder().with_root_certificates(roots(ca_file)?);
    let config = match client_auth {
        Some((cert, key)) => builder.with_client_auth_cert(load_certs(cert)?, load_key(key)?)?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// A server configuration presenting `cert`/`key`; with `client_ca`, every client must present a
/// certificate issued by it (mutual TLS), else no client certificate is asked for.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<ServerConfig>, TlsError> {
    init();
    let builder = match client_ca {
        Some(ca) => {
            let verifier = WebPkiClientVerifier::builder(Arc::new(roots(Some(ca))?))
                .build()
                .map_err(|e| TlsError::Certs {
                    path: ca.to_path_buf(),
                    reason: e.to_string(),
                })?;
            ServerConfig::builder().with_client_cert_verifier(verifier)
        }
        None => ServerConfig::builder().with_no_client_auth(),
    };
    Ok(Arc::new(
        builder.with_single_cert(load_certs(cert)?, load_key(key)?)?,
    ))
}
