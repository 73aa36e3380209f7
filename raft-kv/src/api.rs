//! The client API's JSON bodies, shared by the server and the client.
//!
//! | method and path | body | answer |
//! |---|---|---|
//! | `GET /v1/kv?key=K&consistency=C` | | [`ReadReply`] with `value` |
//! | `GET /v1/scan?prefix=P&limit=N&consistency=C` | | [`ReadReply`] with `entries` |
//! | `POST /v1/kv` | [`WriteRequest`] | [`WriteReply`] |
//! | `POST /v1/sessions` | | [`SessionReply`] |
//! | `GET /v1/status` | | [`NodeStatusReply`] |
//! | `POST /v1/cluster/add` | [`AddNodeRequest`] | [`MembershipReply`] |
//! | `POST /v1/cluster/promote`, `/remove`, `/transfer` | [`NodeRequest`] | [`MembershipReply`] |
//! | `POST /v1/cluster/snapshot` | | [`SnapshotReply`] |
//! | `POST /v1/cluster/sessions` | [`SessionLimitsRequest`] | [`SessionLimitsRequest`] in force |
//! | `GET /metrics` | | the node's metrics in the Prometheus text format (see [`raft_node::metrics`]) |
//!
//! Every failure is an HTTP status with an [`ErrorReply`]: 400 a malformed request, 404 an
//! unknown route, 413 a key, value or body over the limits, 421 not the leader (with the leader's
//! client address when known), 503 no leader or the node is stopping, 504 the outcome is unknown
//! (retrying with the same session and sequence number is safe).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use raft_core::{Index, NodeId, Term};
use serde::{Deserialize, Serialize};

/// How fresh a read must be (`linearizable` by default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consistency {
    /// Reflects every write acknowledged before the read began (ReadIndex).
    #[default]
    Linearizable,
    /// Served by a leader within its lease, without a round of heartbeats.
    Lease,
    /// Served from this node's state machine as it is: may be stale.
    Serializable,
}

/// A write.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum WriteOp {
    /// Sets `key` to `value`.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// Removes `key`.
    Delete {
        /// The key.
        key: String,
    },
    /// Appends `value` to the key's value.
    Append {
        /// The key.
        key: String,
        /// What to append.
        value: String,
    },
    /// Sets `key` to `new` (`null` deletes) only if its value is `expected` (`null`: absent).
    Cas {
        /// The key.
        key: String,
        /// The value the key must have.
        expected: Option<String>,
        /// The value to set.
        new: Option<String>,
    },
}

/// The body of `POST /v1/kv`: a write, exactly once when `session` and `sequence` are given.
/// Unknown fields are refused (by [`WriteOp`], which receives every field but these two).
///
/// ```
/// use raft_kv::api::{WriteOp, WriteRequest};
/// let put: WriteRequest = serde_json::from_str(r#"{"op":"put","key":"k","value":"v","session":3,"sequence":1}"#)?;
/// assert_eq!(put.op, WriteOp::Put { key: "k".into(), value: "v".into() });
/// assert_eq!((put.session, put.sequence), (Some(3), Some(1)));
/// assert!(serde_json::from_str::<WriteRequest>(r#"{"op":"put","key":"k","value":"v","ttl":5}"#).is_err());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteRequest {
    /// The write.
    #[serde(flatten)]
    pub op: WriteOp,
    /// The client session ([`SessionReply::session`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<u64>,
    /// The request's number in its session, from 1, without gaps; a retry reuses it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u64>,
}

/// The answer to a write.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteReply {
    /// The log index the write was applied at.
    pub index: Index,
    /// The value before a put or delete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    /// The value after an append or a compare-and-swap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Whether a compare-and-swap swapped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swapped: Option<bool>,
}

/// The answer to a read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadReply {
    /// The index of the last entry applied when the read was served.
    pub index: Index,
    /// The consistency it was served at.
    pub consistency: Consistency,
    /// The value of a get (`null`: absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The pairs of a scan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entries: Option<Vec<(String, String)>>,
    /// Whether a scan left keys out because of its limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub more: Option<bool>,
}

/// The answer to `POST /v1/sessions`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionReply {
    /// The new session's id.
    pub session: u64,
}

/// Where a member can be reached; kept in the replicated configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberAddress {
    /// Its QUIC address for Raft traffic.
    pub peer: SocketAddr,
    /// Its client API address.
    pub client: SocketAddr,
}

/// A member as the status shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Its id.
    pub id: NodeId,
    /// `voter` or `learner` (`voter (leaving)` for an outgoing voter of a joint configuration).
    pub role: String,
    /// Its addresses, if the configuration has them.
    pub address: Option<MemberAddress>,
}

/// The answer to `GET /v1/status`: one node's view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatusReply {
    /// The node.
    pub id: NodeId,
    /// The cluster.
    pub cluster_id: u64,
    /// `leader`, `follower`, `candidate`, `pre_candidate` or `learner`; `stopped` when it stopped.
    pub role: String,
    /// Its current term.
    pub term: Term,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// The leader's client address, when known.
    pub leader_client: Option<SocketAddr>,
    /// Its last log index.
    pub last_index: Index,
    /// Its commit index.
    pub commit_index: Index,
    /// Its applied index.
    pub applied_index: Index,
    /// Its latest snapshot's index.
    pub snapshot_index: Index,
    /// Milliseconds since it last heard from the leader (0 on the leader itself; `null` when it
    /// knows no leader), to the precision of a tick.
    pub last_contact_ms: Option<u64>,
    /// The members of the configuration in force on this node.
    pub members: Vec<MemberInfo>,
    /// Whether a joint configuration is in force.
    pub joint: bool,
}

/// The body of `POST /v1/cluster/add`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddNodeRequest {
    /// The new node's id.
    pub id: NodeId,
    /// Its QUIC address.
    pub peer: SocketAddr,
    /// Its client API address.
    pub client: SocketAddr,
}

/// The body of `POST /v1/cluster/promote`, `/remove` and `/transfer`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeRequest {
    /// The node.
    pub id: NodeId,
}

/// The answer to a membership change: the configuration now in force.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipReply {
    /// The voters.
    pub voters: Vec<NodeId>,
    /// The learners.
    pub learners: Vec<NodeId>,
    /// The members' addresses.
    pub addresses: BTreeMap<NodeId, MemberAddress>,
}

/// The answer to `POST /v1/cluster/snapshot`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotReply {
    /// The snapshot's last included index.
    pub index: Index,
    /// Its term.
    pub term: Term,
}

/// The limits on client sessions (`POST /v1/cluster/sessions`): replicated through the log, so
/// every node applies them at the same entry. The answer is the limits in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionLimitsRequest {
    /// A session unused for this many log entries expires.
    pub expire_after_entries: u64,
    /// At most this many sessions are kept; one more evicts the least recently used.
    pub max_sessions: u64,
}

/// Every failure's body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// A stable code: `bad_request`, `not_found`, `too_large`, `not_leader`, `no_leader`,
    /// `unavailable`, `timeout`, `session_expired`, `refused`, `internal`.
    pub error: String,
    /// What happened, for people.
    pub message: String,
    /// The leader, when this node is not it and knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<NodeId>,
    /// The leader's client address, when known: send the request there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_client: Option<SocketAddr>,
}

impl MemberAddress {
    /// The string kept in [`Membership::addresses`](raft_core::Membership::addresses).
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads a member's addresses from the configuration; `None` when the string is not ours.
    pub fn decode(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }
}
