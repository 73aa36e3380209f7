//! The configurations in the log: the one in force before the first configuration entry, and each
//! configuration entry with its index and term, so the configuration at any index can be found
//! and a truncation can roll back to an earlier one. A leaf: the rules in `reconfiguration.rs`
//! drive it.

use crate::entry::{Entry, EntryPayload};
use crate::membership::Membership;
use crate::types::{Index, Term};

/// The configurations in the in-memory log, oldest first, with the one in force before them.
#[derive(Clone, Debug, Default, Hash)]
pub(crate) struct ConfigHistory {
    /// The configuration before any configuration entry in the log (bootstrap).
    pub(crate) base: Membership,
    /// (index, term, configuration) of each configuration entry in the log.
    pub(crate) entries: Vec<(Index, Term, Membership)>,
}

impl ConfigHistory {
    pub(crate) fn latest(&self) -> &Membership {
        self.entries.last().map_or(&self.base, |(_, _, m)| m)
    }

    /// The index of the latest configuration entry, if any.
    pub(crate) fn latest_index(&self) -> Option<Index> {
        self.entries.last().map(|(i, _, _)| *i)
    }

    /// The configuration in force at `index`: that of the last configuration entry at or before it.
    pub(crate) fn at(&self, index: Index) -> &Membership {
        self.entries
            .iter()
            .rev()
            .find(|(i, _, _)| *i <= index)
            .map_or(&self.base, |(_, _, m)| m)
    }

    /// Folds the configuration entries up to `index` into the base (they are in a snapshot now).
    pub(crate) fn fold_up_to(&mut self, index: Index) {
        self.base = self.at(index).clone();
        self.entries.retain(|(i, _, _)| *i > index);
    }

    /// Records the configuration entries among `entries` (appended to the log).
    pub(crate) fn record(&mut self, entries: &[Entry]) {
        for entry in entries {
            if let EntryPayload::Membership(m) = &entry.payload {
                self.entries.retain(|(i, _, _)| *i < entry.index);
                self.entries.push((entry.index, entry.term, (**m).clone()));
            }
        }
    }
}
