//! A QUIC transport for `raft-core` (quinn + rustls on the ring provider) with mutual TLS.
//!
//! * **Trust**: every node presents a certificate signed by the cluster's CA and naming its node
//!   id ([`certs`]); a peer whose certificate is missing, expired, from another CA or for another
//!   node is refused. [`ClusterCa`] creates the CA and node certificates.
//! * **Wire**: length-prefixed frames with a maximum size, a versioned format carrying the
//!   cluster id ([`wire`]); bad input gives a typed [`WireError`], a log line and a closed stream,
//!   never a panic.
//! * **Links**: a connection to each peer with a stream for snapshot chunks apart from the
//!   stream for everything else, batching, send timeouts and reconnection with backoff
//!   ([`QuicTransport`]).
//!
//! ```no_run
//! use std::collections::BTreeMap;
//! use raft_net_quic::{ClusterCa, QuicConfig, QuicTransport};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let ca = ClusterCa::generate("prod")?;
//! let tls = ca.issue(7, 1)?.tls(&ca.cert_pem())?;
//! let peers = BTreeMap::from([(2, "10.0.0.2:7000".parse()?), (3, "10.0.0.3:7000".parse()?)]);
//! let config = QuicConfig::new(1, 42, "0.0.0.0:7000".parse()?, peers, tls);
//! let (transport, inbox) = QuicTransport::start(config)?;
//! # let _ = (transport, inbox);
//! # Ok(())
//! # }
//! ```

pub mod certs;
mod socket;
mod transport;
pub mod wire;

pub use crate::certs::{CertError, ClientCertificate, ClusterCa, NodeCertificate, NodeTls};
pub use crate::transport::{QuicConfig, QuicError, QuicInbox, QuicTransport};
pub use crate::wire::WireError;
