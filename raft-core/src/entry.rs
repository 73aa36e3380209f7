//! Log entries: what one carries (a command, a blank entry of a new leader, or a configuration)
//! and where it sits in the log.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::membership::Membership;
use crate::types::{Index, Term};

/// What an entry carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Hash)]
pub enum EntryPayload {
    /// An empty entry. A new leader appends one to commit the entries of earlier terms
    /// (Raft paper §5.4.2, §8).
    Blank,
    /// A command for the user's state machine, opaque to Raft.
    Command(Bytes),
    /// A new cluster configuration. It takes effect on every node as soon as it is in the node's
    /// log, committed or not (Raft thesis §4.1). Boxed: configurations are rare, and unboxed one
    /// would double the size of every entry the log copies (56 bytes instead of 112).
    Membership(Box<Membership>),
}

/// One entry of the replicated log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Hash)]
pub struct Entry {
    /// The term of the leader that created the entry.
    pub term: Term,
    /// The entry's position in the log.
    pub index: Index,
    /// What the entry carries.
    pub payload: EntryPayload,
}

impl Entry {
    /// Fixed cost charged per entry when sizing messages, on top of the payload.
    pub const OVERHEAD_BYTES: usize = 24;

    /// Creates a command entry.
    pub fn command(term: Term, index: Index, data: impl Into<Bytes>) -> Self {
        Entry {
            term,
            index,
            payload: EntryPayload::Command(data.into()),
        }
    }

    /// Creates a blank (no-op) entry.
    pub fn blank(term: Term, index: Index) -> Self {
        Entry {
            term,
            index,
            payload: EntryPayload::Blank,
        }
    }

    /// The approximate size of the entry on the wire, used for flow control and batching.
    pub fn size_bytes(&self) -> usize {
        let payload = match &self.payload {
            EntryPayload::Blank => 0,
            EntryPayload::Command(data) => data.len(),
            EntryPayload::Membership(m) => {
                8 * (m.voters.len() + m.learners.len() + m.outgoing.as_ref().map_or(0, |o| o.len()))
            }
        };
        payload + Self::OVERHEAD_BYTES
    }
}
