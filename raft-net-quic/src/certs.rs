//! The cluster's certificate authority and the node certificates it issues (rcgen).
//!
//! Every node presents a certificate signed by the cluster's CA. The cluster id and the node id
//! are bound to the certificate as the DNS subject alternative name `node-<id>.cluster-<cluster>`
//! (see [`node_name`]): a node of cluster 7 dialing node 2 accepts only a certificate valid for
//! `node-2.cluster-7`, and a node accepting a stream that says it comes from node 2 checks the
//! same of the dialer's certificate. So a CA shared by two clusters does not let node 2 of one
//! join the other as its node 2: the hello's cluster id is what a peer says, the certificate is
//! what the CA vouches for.
//!
//! **Rotating the CA** without a flag day: the CA PEM a node trusts may hold several
//! certificates (a bundle). Give every node the bundle of the old and the new CA and restart
//! them one at a time; then issue node certificates from the new CA and restart them one at a
//! time; then drop the old CA from the bundle.
//!
//! ```
//! use raft_net_quic::ClusterCa;
//!
//! let ca = ClusterCa::generate("my-cluster")?;
//! let node_1 = ca.issue(7, 1)?; // cluster 7, node 1
//! let tls = node_1.tls(&ca.cert_pem())?; // what `QuicConfig::tls` takes
//! # let _ = tls;
//! # Ok::<(), raft_net_quic::CertError>(())
//! ```

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use raft_core::{ClusterId, NodeId};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose,
};
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;

/// How long a new CA is valid.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How long a node certificate is valid by default.
pub const NODE_VALIDITY: Duration = Duration::from_secs(2 * 365 * 24 * 3600);

/// A certificate or key that cannot be made or read.
#[derive(Debug, Error)]
pub enum CertError {
    /// rcgen could not generate or sign.
    #[error("cannot generate certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the material (a key that does not match its certificate, say).
    #[error("invalid TLS configuration: {0}")]
    Tls(String),
    /// A PEM input holds no certificate or key, or a malformed one.
    #[error("cannot read {what} from PEM: {detail}")]
    Pem {
        /// What was being read.
        what: &'static str,
        /// Why it failed.
        detail: String,
    },
}

/// The name a node's certificate is issued for: `node-<id>.cluster-<cluster_id>`.
///
/// ```
/// assert_eq!(raft_net_quic::certs::node_name(7, 2), "node-2.cluster-7");
/// ```
pub fn node_name(cluster_id: ClusterId, id: NodeId) -> String {
    format!("node-{id}.cluster-{cluster_id}")
}

/// The cluster's certificate authority: signs node certificates.
pub struct ClusterCa {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
    key_pem: String,
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCa").finish_non_exhaustive()
    }
}

impl ClusterCa {
    /// A new CA for the cluster named `name`, valid for [`CA_VALIDITY`].
    pub fn generate(name: &str) -> Result<Self, CertError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("{name} raft cluster CA"));
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = SystemTime::now();
        params.not_before = (now - Duration::from_secs(3600)).into();
        params.not_after = (now + CA_VALIDITY).into();
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        let key_pem = key.serialize_pem();
        Ok(ClusterCa {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
            key_pem,
        })
    }

    /// The CA saved earlier with [`cert_pem`](Self::cert_pem) and [`key_pem`](Self::key_pem).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, CertError> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| CertError::Pem {
            what: "CA key",
            detail: e.to_string(),
        })?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key).map_err(|e| CertError::Pem {
            what: "CA certificate",
            detail: e.to_string(),
        })?;
        Ok(ClusterCa {
            cert_pem: cert_pem.to_owned(),
            issuer,
            key_pem: key_pem.to_owned(),
        })
    }

    /// The CA certificate, PEM: every node needs it to check its peers.
    pub fn cert_pem(&self) -> String {
        self.cert_pem.clone()
    }

    /// The CA's private key, PEM: keep it secret; it is needed only to issue certificates.
    pub fn key_pem(&self) -> String {
        self.key_pem.clone()
    }

    /// Issues node `id` of cluster `cluster_id` a certificate valid from now for
    /// [`NODE_VALIDITY`].
    pub fn issue(&self, cluster_id: ClusterId, id: NodeId) -> Result<NodeCertificate, CertError> {
        self.issue_for_hosts(cluster_id, id, &[])
    }

    /// Issues node `id` a certificate that is also valid for `hosts` (IP addresses or DNS names),
    /// so that clients reaching the node's client API at one of them can verify it.
    ///
    /// ```
    /// let ca = raft_net_quic::ClusterCa::generate("c")?;
    /// let cert = ca.issue_for_hosts(7, 1, &["127.0.0.1".into(), "localhost".into()])?;
    /// assert_eq!((cert.cluster_id, cert.node_id), (7, 1));
    /// # Ok::<(), raft_net_quic::CertError>(())
    /// ```
    pub fn issue_for_hosts(
        &self,
        cluster_id: ClusterId,
        id: NodeId,
        hosts: &[String],
    ) -> Result<NodeCertificate, CertError> {
        let now = SystemTime::now();
        let validity = (now - Duration::from_secs(3600), now + NODE_VALIDITY);
        self.issue_with(cluster_id, id, hosts, validity)
    }

    /// Issues a client of the cluster's API a certificate named `name` (client authentication
    /// only: it cannot act as a node).
    pub fn issue_client(&self, name: &str) -> Result<ClientCertificate, CertError> {
        let subject = format!("client-{name}");
        let now = SystemTime::now();
        let validity = (now - Duration::from_secs(3600), now + NODE_VALIDITY);
        let usage = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let (cert_pem, key_pem) = self.sign_leaf(&subject, vec![subject.clone()], usage, validity)?;
        Ok(ClientCertificate {
            name: name.to_string(),
            cert_pem,
            key_pem,
        })
    }

    /// Issues node `id` a certificate valid between the two times (tests use it for expired
    /// certificates).
    pub fn issue_valid_between(
        &self,
        cluster_id: ClusterId,
        id: NodeId,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<NodeCertificate, CertError> {
        self.issue_with(cluster_id, id, &[], (not_before, not_after))
    }

    fn issue_with(
        &self,
        cluster_id: ClusterId,
        id: NodeId,
        hosts: &[String],
        validity: (SystemTime, SystemTime),
    ) -> Result<NodeCertificate, CertError> {
        let name = node_name(cluster_id, id);
        let mut names = vec![name.clone()];
        names.extend(hosts.iter().cloned());
        // Every node is both a client (it dials) and a server (it accepts).
        let usage = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let (cert_pem, key_pem) = self.sign_leaf(&name, names, usage, validity)?;
        Ok(NodeCertificate {
            cluster_id,
            node_id: id,
            cert_pem,
            key_pem,
        })
    }

    /// Signs a new key's certificate for `common_name`, valid for `names`; returns both as PEM.
    fn sign_leaf(
        &self,
        common_name: &str,
        names: Vec<String>,
        usage: Vec<ExtendedKeyUsagePurpose>,
        (not_before, not_after): (SystemTime, SystemTime),
    ) -> Result<(String, String), CertError> {
        let mut params = CertificateParams::new(names)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = usage;
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// A node's certificate and private key, PEM.
#[derive(Clone)]
pub struct NodeCertificate {
    /// The cluster the certificate names.
    pub cluster_id: ClusterId,
    /// The node the certificate names.
    pub node_id: NodeId,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PEM. Keep it secret.
    pub key_pem: String,
}

impl std::fmt::Debug for NodeCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCertificate")
            .field("cluster_id", &self.cluster_id)
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

impl NodeCertificate {
    /// The TLS material for this node, trusting the CA (or the bundle of CAs) in `ca_cert_pem`.
    pub fn tls(&self, ca_cert_pem: &str) -> Result<NodeTls, CertError> {
        NodeTls::from_pem(ca_cert_pem, &self.cert_pem, &self.key_pem)
    }
}

/// A client's certificate and private key, PEM.
#[derive(Clone)]
pub struct ClientCertificate {
    /// The client's name (the certificate names `client-<name>`).
    pub name: String,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PEM. Keep it secret.
    pub key_pem: String,
}

impl std::fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// What a node needs for mutual TLS: the CAs it trusts, its certificate chain and its key.
#[derive(Debug)]
pub struct NodeTls {
    /// The CA certificates this node trusts: the cluster's CA, or during a rotation the old one
    /// and the new one (see the [module](self) docs). Never empty.
    pub cas: Vec<CertificateDer<'static>>,
    /// This node's certificate (first) and any intermediates.
    pub chain: Vec<CertificateDer<'static>>,
    /// This node's private key.
    pub key: PrivateKeyDer<'static>,
}

impl Clone for NodeTls {
    fn clone(&self) -> Self {
        NodeTls {
            cas: self.cas.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl NodeTls {
    /// Reads the CA certificates (one, or a bundle during a rotation), the node's certificate
    /// chain and its key from PEM text.
    pub fn from_pem(ca_cert_pem: &str, cert_pem: &str, key_pem: &str) -> Result<Self, CertError> {
        let pem = |what: &'static str| {
            move |e: rustls_pki_types::pem::Error| CertError::Pem {
                what,
                detail: e.to_string(),
            }
        };
        let cas = CertificateDer::pem_slice_iter(ca_cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(pem("CA certificate"))?;
        if cas.is_empty() {
            return Err(CertError::Pem {
                what: "CA certificate",
                detail: "no certificate in the PEM text".into(),
            });
        }
        let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(pem("node certificate"))?;
        if chain.is_empty() {
            return Err(CertError::Pem {
                what: "node certificate",
                detail: "no certificate in the PEM text".into(),
            });
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(pem("node key"))?;
        Ok(NodeTls { cas, chain, key })
    }
}

impl NodeTls {
    fn roots(&self) -> Result<Arc<rustls::RootCertStore>, CertError> {
        let mut roots = rustls::RootCertStore::empty();
        for ca in &self.cas {
            roots.add(ca.clone()).map_err(tls_error)?;
        }
        Ok(Arc::new(roots))
    }

    /// A TLS 1.3 server (ring provider) presenting this certificate and requiring a client
    /// certificate from the CA, offering the ALPN protocol `alpn`.
    pub fn server_config(&self, alpn: &[u8]) -> Result<rustls::ServerConfig, CertError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = WebPkiClientVerifier::builder_with_provider(self.roots()?, provider.clone())
            .build()
            .map_err(tls_error)?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls_error)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(tls_error)?;
        config.alpn_protocols = vec![alpn.to_vec()];
        Ok(config)
    }

    /// A TLS 1.3 client (ring provider) trusting only the CA and presenting this certificate,
    /// offering the ALPN protocol `alpn`.
    pub fn client_config(&self, alpn: &[u8]) -> Result<rustls::ClientConfig, CertError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls_error)?
            .with_root_certificates(self.roots()?)
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .map_err(tls_error)?;
        config.alpn_protocols = vec![alpn.to_vec()];
        Ok(config)
    }
}

fn tls_error(e: impl std::fmt::Display) -> CertError {
    CertError::Tls(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_saved_as_pem_issues_certificates_after_loading() {
        let ca = ClusterCa::generate("test").expect("generate");
        let loaded = ClusterCa::from_pem(&ca.cert_pem(), &ca.key_pem()).expect("load");
        let cert = loaded.issue(1, 4).expect("issue");
        assert_eq!(cert.node_id, 4);
        let tls = cert.tls(&ca.cert_pem()).expect("tls material");
        assert_eq!(tls.chain.len(), 1);
    }

    #[test]
    fn a_bundle_of_cas_is_trusted_whole() {
        let old = ClusterCa::generate("old").expect("generate");
        let new = ClusterCa::generate("new").expect("generate");
        let bundle = format!("{}{}", old.cert_pem(), new.cert_pem());
        let tls = new
            .issue(1, 2)
            .expect("issue")
            .tls(&bundle)
            .expect("tls material");
        assert_eq!(tls.cas.len(), 2);
        assert!(matches!(
            NodeTls::from_pem("", &old.issue(1, 2).expect("issue").cert_pem, "k"),
            Err(CertError::Pem {
                what: "CA certificate",
                ..
            })
        ));
    }

    #[test]
    fn garbage_pem_is_a_typed_error() {
        assert!(matches!(
            NodeTls::from_pem("nope", "nope", "nope"),
            Err(CertError::Pem { .. })
        ));
        assert!(matches!(
            ClusterCa::from_pem("nope", "nope"),
            Err(CertError::Pem { .. })
        ));
    }
}
