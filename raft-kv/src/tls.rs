//! TLS for the client API: the server requires a client certificate signed by the cluster CA;
//! the client trusts only that CA and presents its certificate.

use std::path::Path;
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;

/// TLS material that cannot be read or used.
#[derive(Debug, Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file holds no valid PEM certificate or key.
    #[error("{path} holds no valid PEM {what}: {detail}")]
    Pem {
        /// The file.
        path: String,
        /// A certificate or a key.
        what: &'static str,
        /// Why.
        detail: String,
    },
    /// rustls refused the material.
    #[error("invalid TLS configuration: {0}")]
    Config(String),
}

/// A CA certificate, a certificate chain and its key, read from PEM files.
#[derive(Debug)]
pub struct TlsMaterial {
    /// The cluster CA.
    pub ca: CertificateDer<'static>,
    /// The certificate (first) and intermediates.
    pub chain: Vec<CertificateDer<'static>>,
    /// The private key.
    pub key: PrivateKeyDer<'static>,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

impl TlsMaterial {
    /// Reads the three PEM files.
    pub fn from_files(ca: &Path, cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let pem = |path: &Path, what: &'static str| {
            let path = path.display().to_string();
            move |e: rustls_pki_types::pem::Error| TlsError::Pem {
                path,
                what,
                detail: e.to_string(),
            }
        };
        let ca_der = CertificateDer::from_pem_slice(&read(ca)?).map_err(pem(ca, "certificate"))?;
        let chain = CertificateDer::pem_slice_iter(&read(cert)?)
            .collect::<Result<Vec<_>, _>>()
            .map_err(pem(cert, "certificate"))?;
        if chain.is_empty() {
            return Err(TlsError::Pem {
                path: cert.display().to_string(),
                what: "certificate",
                detail: "no certificate".into(),
            });
        }
        let key = PrivateKeyDer::from_pem_slice(&read(key)?).map_err(pem(key, "key"))?;
        Ok(TlsMaterial {
            ca: ca_der,
            chain,
            key,
        })
    }

    fn roots(&self) -> Result<Arc<rustls::RootCertStore>, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.ca.clone())
            .map_err(|e| TlsError::Config(e.to_string()))?;
        Ok(Arc::new(roots))
    }

    /// The server side: this node's certificate, client certificates from the CA required.
    pub fn server_config(&self) -> Result<rustls::ServerConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config_error = |e: rustls::Error| TlsError::Config(e.to_string());
        let verifier = WebPkiClientVerifier::builder_with_provider(self.roots()?, provider.clone())
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(config_error)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(config_error)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }

    /// The client side: trusts the CA only and presents this certificate.
    pub fn client_config(&self) -> Result<rustls::ClientConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config_error = |e: rustls::Error| TlsError::Config(e.to_string());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(config_error)?
            .with_root_certificates(self.roots()?)
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .map_err(config_error)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}
