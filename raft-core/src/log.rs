//! The node's view of the replicated log, and the indexes that move along it.
//!
//! The core keeps the uncompacted log in memory (entries hold `Bytes`, so handing them to storage,
//! to peers and to the state machine copies no payload). Along the log move four indexes, always in
//! this order: `applied <= applying <= committed`, and `persisted <= last_index`:
//!
//! * `persisted`: entries up to here are durable on this node (acknowledged by the caller);
//! * `committed`: entries up to here are stored on a quorum and will never change;
//! * `applying`: entries up to here were handed to the caller to apply;
//! * `applied`: entries up to here were applied to the state machine (acknowledged).
//!
//! Entries from `unstable_from` on have not been handed to the caller for persistence yet.
//!
//! Compaction purges the log's head: the entries up to `base_index` are gone, and the latest
//! snapshot stands for the entries up to `snapshot_index` (`base_index <= snapshot_index`; the
//! entries between them are a tail kept for followers that lag a little). The term of an index is
//! known while its entry is held, and at `snapshot_index`.

use std::collections::VecDeque;

use crate::entry::Entry;
use crate::types::{Index, Term};

#[derive(Clone, Debug, Hash)]
pub(crate) struct RaftLog {
    /// Entries after `base_index`, consecutive.
    entries: VecDeque<Entry>,
    /// The index just before the first entry held (0 for a log that starts at 1).
    base_index: Index,
    /// The last index the latest snapshot covers (0 without a snapshot).
    pub(crate) snapshot_index: Index,
    /// The term of the entry at `snapshot_index`.
    snapshot_term: Term,
    /// A snapshot from the leader is being restored into the state machine: nothing after it may
    /// be applied before that is done.
    restoring: Option<Index>,
    pub(crate) committed: Index,
    pub(crate) persisted: Index,
    pub(crate) applying: Index,
    pub(crate) applied: Index,
    unstable_from: Index,
}

impl RaftLog {
    /// A log restored from storage: every entry given is durable. `snapshot` is the (index, term)
    /// of the latest snapshot, (0, 0) without one; the state machine has applied at least that.
    pub(crate) fn restore(
        snapshot: (Index, Term),
        mut entries: Vec<Entry>,
        committed: Index,
        applied: Index,
    ) -> Self {
        let (snapshot_index, snapshot_term) = snapshot;
        if entries.last().is_some_and(|e| e.index < snapshot_index) {
            entries.clear();
        }
        let base_index = entries.first().map_or(snapshot_index, |e| e.index - 1);
        let last = base_index + entries.len() as Index;
        // Whatever the state machine applied was committed, even if the commit index saved with it
        // was not made durable yet (storage may save a commit-only change lazily).
        let committed = committed.max(snapshot_index).max(applied).min(last);
        let applied = applied.clamp(snapshot_index, committed);
        RaftLog {
            entries: entries.into(),
            base_index,
            snapshot_index,
            snapshot_term,
            restoring: None,
            committed,
            persisted: last,
            applying: applied,
            applied,
            unstable_from: last + 1,
        }
    }

    pub(crate) fn first_index(&self) -> Index {
        self.base_index + 1
    }

    pub(crate) fn last_index(&self) -> Index {
        self.base_index + self.entries.len() as Index
    }

    pub(crate) fn last_term(&self) -> Term {
        self.entries.back().map_or(self.snapshot_term, |e| e.term)
    }

    /// The term of the entry at `index`, or `None` when the log does not hold it (compacted away,
    /// or beyond the end).
    pub(crate) fn term(&self, index: Index) -> Option<Term> {
        if index == self.snapshot_index {
            return Some(self.snapshot_term);
        }
        self.entry(index).map(|e| e.term)
    }

    /// The total size of the entries in `(after, upto]` that the log holds.
    pub(crate) fn bytes_between(&self, after: Index, upto: Index) -> u64 {
        ((after + 1)..=upto)
            .filter_map(|index| self.entry(index))
            .map(|e| e.size_bytes() as u64)
            .sum()
    }

    /// Records a snapshot built here at (`index`, `term`) and drops the entries up to `purge_to`.
    pub(crate) fn compact(&mut self, index: Index, term: Term, purge_to: Index) {
        debug_assert!(index <= self.committed && purge_to <= index);
        self.snapshot_index = index;
        self.snapshot_term = term;
        self.purge_to(purge_to);
    }

    /// Replaces the log up to `index` with a snapshot received from the leader. With `keep_rest`
    /// (the log agrees at `index`) the entries after it stay; otherwise the whole log goes.
    pub(crate) fn install_snapshot(&mut self, index: Index, term: Term, keep_rest: bool) {
        debug_assert!(index > self.committed);
        self.snapshot_index = index;
        self.snapshot_term = term;
        if keep_rest {
            self.purge_to(index);
            self.persisted = self.persisted.max(index);
            self.unstable_from = self.unstable_from.max(index + 1);
        } else {
            self.entries.clear();
            self.base_index = index;
            self.persisted = index;
            self.unstable_from = index + 1;
        }
        self.committed = index;
        self.applying = index;
        self.restoring = Some(index);
    }

    /// Drops the entries up to `index` (never past the snapshot).
    fn purge_to(&mut self, index: Index) {
        let index = index.min(self.snapshot_index);
        while self.base_index < index && !self.entries.is_empty() {
            self.entries.pop_front();
            self.base_index += 1;
        }
        if self.entries.is_empty() {
            self.base_index = self.snapshot_index.max(self.base_index);
        }
    }

    pub(crate) fn entry(&self, index: Index) -> Option<&Entry> {
        if index <= self.base_index {
            return None;
        }
        self.entries.get((index - self.base_index - 1) as usize)
    }

    /// Whether a log ending at (`last_term`, `last_index`) is at least as up to date as this one
    /// (Raft paper §5.4.1: compare last terms, then lengths).
    pub(crate) fn is_up_to_date(&self, last_index: Index, last_term: Term) -> bool {
        last_term > self.last_term() || (last_term == self.last_term() && last_index >= self.last_index())
    }

    /// Entries from `from` on, at most `max_entries` and about `max_bytes` (at least one entry).
    pub(crate) fn entries_from(&self, from: Index, max_entries: usize, max_bytes: usize) -> Vec<Entry> {
        if from <= self.base_index {
            return Vec::new();
        }
        let start = ((from - self.base_index - 1) as usize).min(self.entries.len());
        let held = self.entries.range(start..);
        let mut batch = Vec::with_capacity(held.len().min(max_entries));
        let mut bytes = 0;
        for entry in held {
            let size = entry.size_bytes();
            if batch.len() >= max_entries || (!batch.is_empty() && bytes + size > max_bytes) {
                break;
            }
            bytes += size;
            batch.push(entry.clone());
        }
        batch
    }

    /// The first index of the run of entries that share the term of the entry at `index`.
    pub(crate) fn first_index_of_term_at(&self, index: Index) -> Index {
        let Some(term) = self.term(index) else {
            return index;
        };
        let mut first = index;
        while first > self.first_index() && self.term(first - 1) == Some(term) {
            first -= 1;
        }
        first
    }

    /// The last index at or below `at_most` whose entry has term `term`.
    pub(crate) fn last_index_of_term(&self, term: Term, at_most: Index) -> Option<Index> {
        let mut index = at_most.min(self.last_index());
        while index >= self.first_index() {
            match self.term(index) {
                Some(t) if t == term => return Some(index),
                Some(t) if t < term => return None,
                _ => index -= 1,
            }
        }
        None
    }

    /// Appends entries that follow the leader's log, keeping those already present and truncating
    /// from the first conflicting one. Returns the index of the last entry of `entries` (or `after`
    /// when empty). The caller has checked that the entry at `after` matches the leader's.
    pub(crate) fn append_after(&mut self, after: Index, entries: Vec<Entry>) -> Index {
        let last_new = after + entries.len() as Index;
        let mut new_entries = entries.into_iter().peekable();
        // Skip entries already present with the same term (log matching: same index and term
        // means same entry and same prefix).
        while let Some(entry) = new_entries.peek() {
            match self.term(entry.index) {
                Some(term) if term == entry.term => {
                    new_entries.next();
                }
                _ => break,
            }
        }
        let Some(first_new) = new_entries.peek().map(|e| e.index) else {
            return last_new;
        };
        if first_new <= self.last_index() {
            debug_assert!(
                first_new > self.committed,
                "truncating committed entry {first_new}"
            );
            self.truncate_from(first_new);
        }
        self.entries.extend(new_entries);
        last_new
    }

    /// Appends one entry at the end (the leader's own proposals).
    pub(crate) fn push(&mut self, entry: Entry) {
        debug_assert_eq!(entry.index, self.last_index() + 1);
        self.entries.push_back(entry);
    }

    fn truncate_from(&mut self, index: Index) {
        let keep = (index - self.base_index - 1) as usize;
        self.entries.truncate(keep);
        self.unstable_from = self.unstable_from.min(index);
        self.persisted = self.persisted.min(index - 1);
    }

    /// Whether the state machine is being restored from a snapshot installed from the leader
    /// (handed out, not yet reported applied).
    pub(crate) fn is_restoring(&self) -> bool {
        self.restoring.is_some()
    }

    /// Entries not yet handed out for persistence; marks them handed out.
    pub(crate) fn take_unstable(&mut self) -> Vec<Entry> {
        let from = self.unstable_from;
        let batch: Vec<Entry> = self.entries_from(from, usize::MAX, usize::MAX);
        self.unstable_from = self.last_index() + 1;
        batch
    }

    /// The caller reports the entries up to `index` (whose entry has `term`) durable. Reports that
    /// refer to entries since replaced are ignored.
    pub(crate) fn on_persisted(&mut self, index: Index, term: Term) -> bool {
        if index <= self.persisted || index >= self.unstable_from || self.term(index) != Some(term) {
            return false;
        }
        self.persisted = index;
        true
    }

    /// Committed, durable entries not yet handed out for applying; marks them handed out.
    pub(crate) fn take_committed(&mut self) -> Vec<Entry> {
        if self.restoring.is_some() {
            return Vec::new();
        }
        let upto = self.committed.min(self.persisted);
        if upto <= self.applying {
            return Vec::new();
        }
        let count = (upto - self.applying) as usize;
        let batch = self.entries_from(self.applying + 1, count, usize::MAX);
        self.applying = upto;
        batch
    }

    pub(crate) fn on_applied(&mut self, index: Index) {
        if index > self.applied && index <= self.applying {
            self.applied = index;
            if self.restoring.is_some_and(|restoring| index >= restoring) {
                self.restoring = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_of(terms: &[Term]) -> RaftLog {
        let entries = terms
            .iter()
            .enumerate()
            .map(|(i, t)| Entry::blank(*t, i as Index + 1))
            .collect();
        RaftLog::restore((0, 0), entries, 0, 0)
    }

    #[test]
    fn entries_from_stops_at_the_count_the_byte_budget_and_the_log_bounds() {
        // Entries 3..=7 after a snapshot at 2, each a 10-byte command.
        let entries = (3..=7).map(|i| Entry::command(1, i, vec![0u8; 10])).collect();
        let log = RaftLog::restore((2, 1), entries, 0, 0);
        let indexes = |batch: Vec<Entry>| batch.iter().map(|e| e.index).collect::<Vec<_>>();
        let one = Entry::command(1, 3, vec![0u8; 10]).size_bytes();
        assert_eq!(
            indexes(log.entries_from(4, usize::MAX, usize::MAX)),
            vec![4, 5, 6, 7]
        );
        assert_eq!(indexes(log.entries_from(4, 2, usize::MAX)), vec![4, 5]);
        assert_eq!(indexes(log.entries_from(3, usize::MAX, 2 * one)), vec![3, 4]);
        assert_eq!(
            indexes(log.entries_from(3, usize::MAX, 1)),
            vec![3],
            "at least one entry, however small the budget"
        );
        assert!(
            log.entries_from(2, usize::MAX, usize::MAX).is_empty(),
            "in the snapshot"
        );
        assert!(
            log.entries_from(8, usize::MAX, usize::MAX).is_empty(),
            "past the end"
        );
        assert!(log.entries_from(u64::MAX, 1, 1).is_empty());
    }

    #[test]
    fn restored_commit_index_is_at_least_what_the_state_machine_applied() {
        // The commit index saved lazily lags behind what was applied before a crash.
        let entries = (1..=5).map(|i| Entry::blank(1, i)).collect();
        let log = RaftLog::restore((0, 0), entries, 2, 4);
        assert_eq!(log.committed, 4);
        assert_eq!(log.applying, 4, "nothing applied is applied again");
    }

    #[test]
    fn append_after_keeps_matching_entries_and_truncates_conflicts() {
        let mut log = log_of(&[1, 1, 2, 2]);
        let last = log.append_after(
            2,
            vec![Entry::blank(2, 3), Entry::blank(3, 4), Entry::blank(3, 5)],
        );
        assert_eq!(last, 5);
        assert_eq!(log.term(3), Some(2));
        assert_eq!(log.term(4), Some(3));
        assert_eq!(log.persisted, 3);
        assert_eq!(log.take_unstable().len(), 2);
    }

    #[test]
    fn stale_append_does_not_truncate() {
        let mut log = log_of(&[1, 1, 2, 2]);
        assert_eq!(log.append_after(1, vec![Entry::blank(1, 2)]), 2);
        assert_eq!(log.last_index(), 4);
    }

    #[test]
    fn term_lookups() {
        let log = log_of(&[1, 1, 3, 3, 3, 5]);
        assert_eq!(log.first_index_of_term_at(5), 3);
        assert_eq!(log.last_index_of_term(3, 6), Some(5));
        assert_eq!(log.last_index_of_term(2, 6), None);
        assert_eq!(log.term(0), Some(0));
        assert_eq!(log.term(7), None);
    }

    #[test]
    fn installed_snapshot_keeps_the_entries_after_it_when_the_log_agrees() {
        let mut log = log_of(&[1, 1, 2, 2, 2]);
        log.install_snapshot(3, 2, true);
        assert_eq!((log.first_index(), log.last_index()), (4, 5));
        assert_eq!(log.term(3), Some(2));
        assert_eq!(log.term(2), None);
        assert_eq!(log.committed, 3);
        // Nothing after the snapshot is applied before the state machine is restored from it.
        log.committed = 5;
        assert!(log.take_committed().is_empty());
        log.on_applied(3);
        assert_eq!(log.take_committed().len(), 2);
    }

    #[test]
    fn installed_snapshot_replaces_a_log_that_disagrees() {
        let mut log = log_of(&[1, 1, 2, 2, 2]);
        log.install_snapshot(4, 3, false);
        assert_eq!((log.first_index(), log.last_index(), log.last_term()), (5, 4, 3));
        assert_eq!(log.persisted, 4);
        assert!(log.take_unstable().is_empty());
    }

    #[test]
    fn compaction_keeps_the_requested_tail() {
        let mut log = log_of(&[1, 1, 1, 1, 1, 1]);
        log.committed = 6;
        log.compact(4, 1, 2);
        assert_eq!(log.first_index(), 3);
        assert_eq!(log.term(2), None);
        assert_eq!(log.term(4), Some(1));
        log.compact(5, 1, 5);
        assert_eq!(log.first_index(), 6);
        assert_eq!(
            log.bytes_between(5, 6),
            log.entry(6).map_or(0, |e| e.size_bytes() as u64)
        );
    }

    #[test]
    fn persist_reports_for_replaced_entries_are_ignored() {
        let mut log = log_of(&[1]);
        log.push(Entry::blank(1, 2));
        assert_eq!(log.take_unstable().len(), 1);
        log.append_after(1, vec![Entry::blank(2, 2)]);
        assert!(!log.on_persisted(2, 1));
        assert_eq!(log.take_unstable().len(), 1);
        assert!(log.on_persisted(2, 2));
        assert_eq!(log.persisted, 2);
    }
}
