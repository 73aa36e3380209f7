//! What a timeline records: one [`Record`] per thing that happened, at a time, on a node or on
//! the whole cluster.

use serde::{Deserialize, Serialize};

/// A node's role, as a lane shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Follows a leader.
    Follower,
    /// Asks for pre-votes.
    PreCandidate,
    /// Asks for votes in a new term.
    Candidate,
    /// Leads its term.
    Leader,
    /// Receives the log without a vote.
    Learner,
}

/// A fault injected, or an operator's action, marked on the picture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// The node's process was killed (or crashed): its lane turns grey until it restarts.
    Kill,
    /// The node's disk failed and the node stopped: grey until it restarts.
    DiskFailure,
    /// The node came back from its disk.
    Restart,
    /// The node was paused (SIGSTOP, or a stalled process).
    Pause,
    /// The paused node runs again.
    Resume,
    /// Every link of the node was cut.
    Isolate,
    /// The cluster was split in two.
    Partition,
    /// One direction of one link was cut.
    Cut,
    /// Every partition healed.
    Heal,
    /// Faults stopped: the cluster has to recover from here.
    Calm,
    /// A leader handed its leadership to another node.
    Transfer,
    /// The network started losing (and duplicating, delaying) messages.
    Loss,
}

impl Fault {
    /// The word drawn beside the marker.
    pub fn label(self) -> &'static str {
        match self {
            Fault::Kill => "kill",
            Fault::DiskFailure => "disk failed",
            Fault::Restart => "restart",
            Fault::Pause => "pause",
            Fault::Resume => "resume",
            Fault::Isolate => "isolate",
            Fault::Partition => "partition",
            Fault::Cut => "cut",
            Fault::Heal => "heal",
            Fault::Calm => "calm",
            Fault::Transfer => "transfer",
            Fault::Loss => "lossy",
        }
    }
}

/// One thing that happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The run's title and the unit of its times; the first record of a log.
    Meta {
        /// Drawn above the lanes.
        title: String,
        /// The unit of `time` (`ms`, `step`).
        unit: String,
    },
    /// The node's role or term changed.
    Role {
        /// Its role from now on.
        role: Role,
        /// Its term.
        term: u64,
    },
    /// The node's commit index advanced.
    Commit {
        /// The new commit index.
        index: u64,
    },
    /// A fault or an operator's action, on the node (or on the cluster when `node` is absent).
    Fault {
        /// What happened.
        fault: Fault,
        /// Details to print with it (the two sides of a partition, the target of a transfer).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        detail: String,
    },
    /// A new configuration of the cluster took effect (drawn on every lane).
    Membership {
        /// The voters.
        voters: Vec<u64>,
        /// The learners.
        #[serde(default)]
        learners: Vec<u64>,
    },
}

/// One line of a timeline's log: when, where, what.
///
/// ```
/// use raft_timeline::{Event, Record, Role};
/// let line = r#"{"time":12.5,"node":3,"event":"role","role":"leader","term":4}"#;
/// let record: Record = serde_json::from_str(line)?;
/// assert_eq!(record.event, Event::Role { role: Role::Leader, term: 4 });
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// When, in the run's unit (see [`Event::Meta`]), from the start of the run.
    pub time: f64,
    /// The node it happened on; absent for the whole cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<u64>,
    /// What happened.
    #[serde(flatten)]
    pub event: Event,
}
