//! Known bugs that can be switched on to prove the simulator finds them.
//!
//! The switch exists only when the crate is built with the `planted-bugs` feature, and even then
//! every bug is off unless [`Config::planted_bug`](crate::Config) names it. Production builds
//! compile none of this: [`RaftCore::planted`](crate::RaftCore) is a constant `false` there.

/// A deliberate violation of one protocol rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PlantedBug {
    /// Commit entries of earlier terms by counting replicas (violates Raft paper Figure 8).
    CountPreviousTermTowardCommit,
    /// Grant a second vote in a term already voted in.
    GrantSecondVoteInTerm,
    /// Acknowledge appended entries before they are durable.
    AcknowledgeBeforePersist,
    /// Grant votes without checking that the candidate's log is up to date.
    SkipUpToDateLogCheck,
    /// A candidate whose own vote is a quorum leads at once, before its new term and its vote
    /// are durable (violates Raft paper Figure 2: persist before acting).
    LeadBeforeVoteIsDurable,
    /// Complete a newer snapshot from the leader while the previous one is still being restored.
    CompleteSnapshotWhileRestoring,
    /// Change the voters in one step, without the joint configuration (Raft thesis §4.3): the
    /// old and the new majorities may not overlap, so two leaders can be elected in one term.
    SkipJointConsensus,
    /// Keep serving lease reads while a leadership transfer is under way (Raft thesis §6.4.1):
    /// the target may win an election the voters grant despite their leases, and acknowledge
    /// writes the old leader's lease reads do not see.
    KeepLeaseDuringTransfer,
}

impl PlantedBug {
    /// Every planted bug.
    pub const ALL: [PlantedBug; 8] = [
        PlantedBug::CountPreviousTermTowardCommit,
        PlantedBug::GrantSecondVoteInTerm,
        PlantedBug::AcknowledgeBeforePersist,
        PlantedBug::SkipUpToDateLogCheck,
        PlantedBug::LeadBeforeVoteIsDurable,
        PlantedBug::CompleteSnapshotWhileRestoring,
        PlantedBug::SkipJointConsensus,
        PlantedBug::KeepLeaseDuringTransfer,
    ];
}

impl std::str::FromStr for PlantedBug {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|bug| format!("{bug:?}").eq_ignore_ascii_case(name))
            .ok_or_else(|| format!("unknown planted bug {name:?}; known: {:?}", Self::ALL))
    }
}
