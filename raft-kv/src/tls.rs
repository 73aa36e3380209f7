//! TLS for the client API, on the cluster's CA: the server requires a client certificate signed
//! by it; the client trusts only it and presents its certificate. The material and the rustls
//! configurations are the QUIC transport's ([`NodeTls`]); this module reads them from files.

use std::ops::Deref;
use std::path::Path;

use raft_node::quic::{CertError, NodeTls};
use thiserror::Error;

/// The ALPN protocols of the client API: HTTP/2 (many requests share a connection) and HTTP/1.1.
pub(crate) const H2: &[u8] = b"h2";
const HTTP1: &[u8] = b"http/1.1";

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
    /// The files hold no valid PEM certificate or key, or rustls refused them.
    #[error("{files}: {source}")]
    Cert {
        /// The files.
        files: String,
        /// Why.
        #[source]
        source: CertError,
    },
}

/// A CA certificate, a certificate chain and its key, read from PEM files; it derefs to the
/// [`NodeTls`] it holds.
#[derive(Debug, Clone)]
pub struct TlsMaterial {
    tls: NodeTls,
    files: String,
}

impl Deref for TlsMaterial {
    type Target = NodeTls;
    fn deref(&self) -> &NodeTls {
        &self.tls
    }
}

fn read(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

impl TlsMaterial {
    /// Reads the three PEM files.
    pub fn from_files(ca: &Path, cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let files = format!("{}, {}, {}", ca.display(), cert.display(), key.display());
        match NodeTls::from_pem(&read(ca)?, &read(cert)?, &read(key)?) {
            Ok(tls) => Ok(TlsMaterial { tls, files }),
            Err(source) => Err(TlsError::Cert { files, source }),
        }
    }

    fn refused(&self, source: CertError) -> TlsError {
        TlsError::Cert {
            files: self.files.clone(),
            source,
        }
    }

    /// The server side: this node's certificate, client certificates from the CA required.
    pub fn server_config(&self) -> Result<rustls::ServerConfig, TlsError> {
        let mut config = self.tls.server_config(H2).map_err(|e| self.refused(e))?;
        config.alpn_protocols = vec![H2.to_vec(), HTTP1.to_vec()];
        Ok(config)
    }

    /// The client side: trusts the CA only and presents this certificate.
    ///
    /// `http2`: offer HTTP/2 first (the server then multiplexes every request of this client on
    /// one connection); otherwise HTTP/1.1 only, a connection per request in flight.
    pub fn client_config(&self, http2: bool) -> Result<rustls::ClientConfig, TlsError> {
        let mut config = self.tls.client_config(HTTP1).map_err(|e| self.refused(e))?;
        if http2 {
            config.alpn_protocols = vec![H2.to_vec(), HTTP1.to_vec()];
        }
        Ok(config)
    }
}
