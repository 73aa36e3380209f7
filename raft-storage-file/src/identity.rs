//! Which node of which cluster a store belongs to, and the check every store makes when it opens.

use raft_core::{ClusterId, NodeId};
use thiserror::Error;

/// Which node of which cluster a store belongs to. Recorded when the store is created and checked
/// at every open, so that a node never starts on another node's data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreIdentity {
    /// The cluster.
    pub cluster_id: ClusterId,
    /// The node.
    pub node_id: NodeId,
}

impl StoreIdentity {
    /// Checks that the identity a store recorded (`found`) is this one: the cluster first.
    ///
    /// ```
    /// use raft_storage_file::{IdentityMismatch, StoreIdentity};
    ///
    /// let node = StoreIdentity { cluster_id: 7, node_id: 1 };
    /// assert_eq!(node.check(node), Ok(()));
    /// let other = StoreIdentity { cluster_id: 7, node_id: 2 };
    /// assert_eq!(node.check(other), Err(IdentityMismatch::Node { found: 2, expected: 1 }));
    /// ```
    pub fn check(self, found: StoreIdentity) -> Result<(), IdentityMismatch> {
        if found.cluster_id != self.cluster_id {
            return Err(IdentityMismatch::Cluster {
                found: found.cluster_id,
                expected: self.cluster_id,
            });
        }
        if found.node_id != self.node_id {
            return Err(IdentityMismatch::Node {
                found: found.node_id,
                expected: self.node_id,
            });
        }
        Ok(())
    }
}

/// A store that belongs to another cluster or to another node: it is left as it is.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum IdentityMismatch {
    /// The store belongs to another cluster.
    #[error("store belongs to cluster {found}, not {expected}; point the node at its own data directory")]
    Cluster {
        /// The cluster id on disk.
        found: ClusterId,
        /// The cluster id this node was configured with.
        expected: ClusterId,
    },
    /// The store belongs to another node of the cluster.
    #[error("store belongs to node {found}, not {expected}; point the node at its own data directory")]
    Node {
        /// The node id on disk.
        found: NodeId,
        /// The node id this node was configured with.
        expected: NodeId,
    },
}
