//! Commitment (Raft paper §5.3, §5.4.2).
//!
//! An entry is committed once a quorum stores it durably. The leader counts itself only for what
//! its own storage has acknowledged (Raft thesis §10.2.1), and it commits by counting replicas
//! only entries of its own term: an entry of an earlier term stored on a majority can still be
//! overwritten (Figure 8), and becomes committed only with a later entry of the leader's term.

use crate::core::RaftCore;

impl RaftCore {
    /// Advances the commit index to the highest index a quorum stores, if that entry is of the
    /// current term. Returns whether it advanced.
    pub(crate) fn maybe_commit(&mut self) -> bool {
        let me = self.id();
        let persisted = self.log.persisted;
        let progress = &self.progress;
        let quorum_index = self.membership.committed_index(|id| {
            if id == me {
                persisted
            } else {
                progress.get(&id).map_or(0, |p| p.match_index)
            }
        });
        let own_term = self.log.term(quorum_index) == Some(self.term)
            || self.planted(crate::planted::PlantedBug::CountPreviousTermTowardCommit);
        if quorum_index <= self.log.committed || !own_term {
            return false;
        }
        self.log.committed = quorum_index;
        true
    }
}
