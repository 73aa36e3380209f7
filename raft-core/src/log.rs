//! The node's view of the replicated log, and the indexes that move along it.
//!
//! The core keeps the uncompacted log in memory (entries hold `Bytes`, so handing them to storage,
//! to peers and to the state machine copies no payload). It keeps the entries as shared runs
//! ([`Entries`]): each round's proposals become one run when first read out, and a follower
//! keeps each run it received, so an AppendEntries carries a part of a run, not copies of its
//! entries. Along the log move four indexes, always in
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

use std::hash::{Hash, Hasher};

use crate::entries::Entries;
use crate::entry::Entry;
use crate::runs::EntryRuns;
use crate::types::{Index, Term};

/// A run shorter than this share of `max_entries` is not sent on its own to a follower that
/// needs more (a lagging one): its entries are copied into one message with the next runs'.
const SHARE_RUNS_FROM_ONE_IN: usize = 4;

#[derive(Clone, Debug)]
pub(crate) struct RaftLog {
    /// The entries after `base_index` that were read out, as the runs they were read out (or
    /// received) in.
    runs: EntryRuns,
    /// The entries after the runs, appended since the log was last read out (this round's
    /// proposals); they become one run when first read out.
    open: Vec<Entry>,
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
            runs: EntryRuns::from(entries),
            open: Vec::new(),
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

    /// How many entries the log holds (the runs and the open entries together).
    fn len(&self) -> Index {
        (self.runs.len() + self.open.len()) as Index
    }

    pub(crate) fn last_index(&self) -> Index {
        self.base_index + self.len()
    }

    pub(crate) fn last_term(&self) -> Term {
        self.open
            .last()
            .or_else(|| self.runs.last())
            .map_or(self.snapshot_term, |e| e.term)
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
        self.entries_between(after, upto)
            .map(|e| e.size_bytes() as u64)
            .sum()
    }

    /// The entries in `(after, upto]` that the log holds, in order. One walk along the runs, not
    /// a lookup per index.
    pub(crate) fn entries_between(&self, after: Index, upto: Index) -> impl Iterator<Item = &Entry> {
        // An empty range (the common case: a proposal asks what was committed since the last
        // one) starts past the end, so it searches no run and reads no entry.
        let from = if upto > after {
            after.saturating_add(1)
        } else {
            self.last_index().saturating_add(1)
        };
        self.iter_from(from).take_while(move |e| e.index <= upto)
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
    ///
    /// Returns whether the stored log must be discarded with the snapshot's write. It must when
    /// the whole log goes, and also when the entry that agrees at `index` was not handed out for
    /// persistence yet: the entries not handed out replace a stored suffix that may conflict with
    /// them (a deposed leader's), and the snapshot purges them, so without the discard that
    /// stored suffix would outlive them. The entries kept after `index` are then all among those
    /// not handed out, and the write brings them back after the discard.
    pub(crate) fn install_snapshot(&mut self, index: Index, term: Term, keep_rest: bool) -> bool {
        debug_assert!(index > self.committed);
        self.snapshot_index = index;
        self.snapshot_term = term;
        let discards_stored_log = !keep_rest || index >= self.unstable_from;
        if keep_rest {
            self.purge_to(index);
            self.persisted = self.persisted.max(index);
            self.unstable_from = self.unstable_from.max(index + 1);
        } else {
            self.runs.clear();
            self.open.clear();
            self.base_index = index;
            self.persisted = index;
            self.unstable_from = index + 1;
        }
        self.committed = index;
        self.applying = index;
        self.restoring = Some(index);
        discards_stored_log
    }

    /// Drops the entries up to `index` (never past the snapshot).
    fn purge_to(&mut self, index: Index) {
        let upto = index.min(self.snapshot_index).min(self.last_index());
        if upto > self.base_index {
            let open_first = self.open_first();
            if upto >= open_first {
                self.runs.clear();
                self.open
                    .drain(..usize::try_from(upto - open_first + 1).unwrap_or(usize::MAX));
            } else {
                self.runs.purge_to(upto);
            }
            self.base_index = upto;
        }
        if self.len() == 0 {
            self.base_index = self.snapshot_index.max(self.base_index);
        }
    }

    /// The index of the first open entry (the one after the runs' last).
    fn open_first(&self) -> Index {
        self.base_index + self.runs.len() as Index + 1
    }

    pub(crate) fn entry(&self, index: Index) -> Option<&Entry> {
        if index <= self.base_index || index > self.last_index() {
            return None;
        }
        let open_first = self.open_first();
        if index >= open_first {
            return self.open.get(usize::try_from(index - open_first).ok()?);
        }
        self.runs.get(index)
    }

    /// The entries from `from` on, across runs and the open entries. It starts at `from` inside
    /// its run (a restored log is one long run: no walk over the entries before `from`).
    fn iter_from(&self, from: Index) -> impl Iterator<Item = &Entry> {
        let open_first = self.open_first();
        // Entries among the open ones (this round's proposals, the common case) need no search.
        let in_runs = (from < open_first).then(|| self.runs.iter_from(from));
        let skip = usize::try_from(from.saturating_sub(open_first)).unwrap_or(usize::MAX);
        in_runs
            .into_iter()
            .flatten()
            .chain(self.open.get(skip..).unwrap_or_default().iter())
    }

    /// Makes the open entries a run, so that they can be handed out shared.
    fn seal(&mut self) {
        if !self.open.is_empty() {
            let next_round = Vec::with_capacity(self.open.len());
            let run = std::mem::replace(&mut self.open, next_round);
            let appended = self.runs.append(Entries::from(run));
            debug_assert!(appended.is_ok(), "the open entries follow the runs");
        }
    }

    /// Whether a log ending at (`last_term`, `last_index`) is at least as up to date as this one
    /// (Raft paper §5.4.1: compare last terms, then lengths).
    pub(crate) fn is_up_to_date(&self, last_index: Index, last_term: Term) -> bool {
        last_term > self.last_term() || (last_term == self.last_term() && last_index >= self.last_index())
    }

    /// Entries from `from` on, at most `max_entries` and about `max_bytes` (at least one entry).
    /// They share the buffer of the run that holds `from` when that run supplies all of them,
    /// or a good part of a full message (a follower that lags gets a message per large run);
    /// entries from several small runs are copied into one message instead.
    pub(crate) fn entries_from(&mut self, from: Index, max_entries: usize, max_bytes: usize) -> Entries {
        if from <= self.base_index || from > self.last_index() {
            return Entries::new();
        }
        self.seal();
        let mut count = 0;
        let mut bytes = 0;
        for entry in self.iter_from(from) {
            let size = entry.size_bytes();
            if count >= max_entries || (count > 0 && bytes + size > max_bytes) {
                break;
            }
            bytes += size;
            count += 1;
        }
        let run = self.runs.run_tail(from);
        if count <= run.len() || run.len().saturating_mul(SHARE_RUNS_FROM_ONE_IN) >= max_entries {
            return run.slice(..count);
        }
        self.runs.range(from, count)
    }

    /// Whether everything from `from` to the log's end fits in one message of at most
    /// `max_entries` entries and about `max_bytes` bytes (the budget [`entries_from`] keeps: one
    /// entry always fits), so that [`entries_from`] would return all of it. Unlike
    /// [`entries_from`] it leaves this round's open entries open: asking does not cut the round's
    /// proposals into a run of their own.
    ///
    /// [`entries_from`]: RaftLog::entries_from
    pub(crate) fn fits_one_message(&self, from: Index, max_entries: usize, max_bytes: usize) -> bool {
        let last = self.last_index();
        if from > last {
            return true;
        }
        let count = last - from + 1;
        if count > u64::try_from(max_entries).unwrap_or(u64::MAX) {
            return false;
        }
        let mut bytes = 0usize;
        for (n, entry) in self.iter_from(from).enumerate() {
            let size = entry.size_bytes();
            if n > 0 && bytes.saturating_add(size) > max_bytes {
                return false;
            }
            bytes = bytes.saturating_add(size);
        }
        true
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
    /// when empty). The caller has checked that the entry at `after` matches the leader's. The
    /// new entries are kept as the run they came in, sharing its buffer.
    pub(crate) fn append_after(&mut self, after: Index, entries: Entries) -> Index {
        let last_new = after + entries.len() as Index;
        // Skip entries already present with the same term (log matching: same index and term
        // means same entry and same prefix).
        let present = entries
            .iter()
            .take_while(|entry| self.term(entry.index) == Some(entry.term))
            .count();
        let new_entries = entries.slice(present..);
        let Some(first_new) = new_entries.first().map(|e| e.index) else {
            return last_new;
        };
        if first_new <= self.last_index() {
            debug_assert!(
                first_new > self.committed,
                "truncating committed entry {first_new}"
            );
            self.truncate_from(first_new);
        }
        debug_assert_eq!(first_new, self.last_index() + 1);
        self.seal();
        let appended = self.runs.append(new_entries);
        debug_assert!(
            appended.is_ok(),
            "the caller checked that the entries follow the log"
        );
        last_new
    }

    /// Appends one entry at the end (the leader's own proposals).
    pub(crate) fn push(&mut self, entry: Entry) {
        debug_assert_eq!(entry.index, self.last_index() + 1);
        self.open.push(entry);
    }

    fn truncate_from(&mut self, index: Index) {
        let open_first = self.open_first();
        if index >= open_first {
            self.open
                .truncate(usize::try_from(index - open_first).unwrap_or(usize::MAX));
        } else {
            self.open.clear();
            self.runs.truncate_from(index);
        }
        self.unstable_from = self.unstable_from.min(index);
        self.persisted = self.persisted.min(index - 1);
    }

    /// Whether the state machine is being restored from a snapshot installed from the leader
    /// (handed out, not yet reported applied).
    pub(crate) fn is_restoring(&self) -> bool {
        self.restoring.is_some()
    }

    /// Entries not yet handed out for persistence; marks them handed out.
    /// They share the buffers of the runs that hold them (each round's proposals, or each run a
    /// follower received).
    pub(crate) fn take_unstable(&mut self) -> EntryRuns {
        self.seal();
        let count =
            usize::try_from((self.last_index() + 1).saturating_sub(self.unstable_from)).unwrap_or(usize::MAX);
        // As the runs hold them: a follower that took two appends in one round copies no entry.
        let batch = self.runs.share(self.unstable_from, count);
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

    /// Committed, durable entries not yet handed out for applying; marks them handed out. They
    /// share the buffers of the runs that hold them.
    pub(crate) fn take_committed(&mut self) -> EntryRuns {
        if self.restoring.is_some() {
            return EntryRuns::new();
        }
        let upto = self.committed.min(self.persisted);
        if upto <= self.applying {
            return EntryRuns::new();
        }
        // Durable entries were handed out for persistence, so they are in the runs.
        let count = usize::try_from(upto - self.applying).unwrap_or(usize::MAX);
        // As the runs hold them: a commit that covers several rounds copies no entry.
        let batch = self.runs.share(self.applying + 1, count);
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

impl Hash for RaftLog {
    /// The entries, whichever runs hold them, and every index.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.len().hash(state);
        for entry in self.iter_from(self.base_index + 1) {
            entry.hash(state);
        }
        self.base_index.hash(state);
        self.snapshot_index.hash(state);
        self.snapshot_term.hash(state);
        self.restoring.hash(state);
        self.committed.hash(state);
        self.persisted.hash(state);
        self.applying.hash(state);
        self.applied.hash(state);
        self.unstable_from.hash(state);
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
        let mut log = RaftLog::restore((2, 1), entries, 0, 0);
        let indexes = |batch: Entries| batch.iter().map(|e| e.index).collect::<Vec<_>>();
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
    fn the_rest_of_the_log_fits_one_message_as_entries_from_would_send_it_all() {
        // Entries 3..=7 after a snapshot at 2, each a 10-byte command.
        let entries = (3..=7).map(|i| Entry::command(1, i, vec![0u8; 10])).collect();
        let mut log = RaftLog::restore((2, 1), entries, 0, 0);
        let one = Entry::command(1, 3, vec![0u8; 10]).size_bytes();
        for (from, max_entries, max_bytes) in [
            (3, usize::MAX, usize::MAX),
            (3, 5, usize::MAX),
            (3, 4, usize::MAX),
            (4, 4, usize::MAX),
            (3, usize::MAX, 5 * one),
            (3, usize::MAX, 5 * one - 1),
            (7, usize::MAX, 1),
            (6, usize::MAX, 1),
        ] {
            let fits = log.fits_one_message(from, max_entries, max_bytes);
            let sent = log.entries_from(from, max_entries, max_bytes);
            assert_eq!(
                fits,
                sent.last().map(|e| e.index) == Some(7),
                "from {from}, {max_entries} entries, {max_bytes} bytes"
            );
        }
        assert!(log.fits_one_message(8, 1, 1), "nothing left to send");
    }

    #[test]
    fn asking_whether_the_rest_fits_leaves_the_rounds_proposals_open() {
        let mut log = log_of(&[1, 1]);
        log.push(Entry::blank(1, 3));
        log.push(Entry::blank(1, 4));
        let runs_before = log.runs.run_count();
        assert!(log.fits_one_message(3, 256, 1 << 20));
        assert_eq!(log.runs.run_count(), runs_before, "no run was cut");
        log.entries_from(3, 256, 1 << 20);
        assert_eq!(
            log.runs.run_count(),
            runs_before + 1,
            "entries_from seals the open entries"
        );
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
            vec![Entry::blank(2, 3), Entry::blank(3, 4), Entry::blank(3, 5)].into(),
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
        assert_eq!(log.append_after(1, vec![Entry::blank(1, 2)].into()), 2);
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
    fn installed_snapshot_over_entries_not_yet_handed_out_discards_the_stored_log() {
        // Stored: 1..=5. A new leader's entries replace 3..=5 with 3..=4 of term 3 (not handed
        // out yet: they carry the truncation of the stored 5), and its snapshot at 4 agrees.
        let mut log = log_of(&[1, 1, 2, 2, 2]);
        log.append_after(2, vec![Entry::blank(3, 3), Entry::blank(3, 4)].into());
        assert!(
            log.install_snapshot(4, 3, true),
            "the stored 5 must go with the write"
        );
        assert_eq!((log.first_index(), log.last_index()), (5, 4));
        assert!(log.take_unstable().is_empty());
        // Handed out first, the entries make their own truncation: no discard is needed.
        let mut log = log_of(&[1, 1, 2, 2, 2]);
        log.append_after(2, vec![Entry::blank(3, 3), Entry::blank(3, 4)].into());
        assert_eq!(log.take_unstable().len(), 2);
        assert!(!log.install_snapshot(4, 3, true));
        // Entries kept after the snapshot come back in the write after the discard.
        let mut log = log_of(&[1, 1, 2, 2, 2]);
        log.append_after(2, (3..=6).map(|i| Entry::blank(3, i)).collect::<Vec<_>>().into());
        assert!(log.install_snapshot(4, 3, true));
        let rest: Vec<Index> = log.take_unstable().iter().map(|e| e.index).collect();
        assert_eq!(rest, vec![5, 6]);
        // A log that disagrees always goes.
        let mut log = log_of(&[1, 1, 2, 2, 2]);
        assert!(log.install_snapshot(4, 3, false));
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
        log.append_after(1, vec![Entry::blank(2, 2)].into());
        assert!(!log.on_persisted(2, 1));
        assert_eq!(log.take_unstable().len(), 1);
        assert!(log.on_persisted(2, 2));
        assert_eq!(log.persisted, 2);
    }

    /// A leader with `rounds` rounds of proposals, each read out (sealed into a run) before the
    /// next; every entry a 10-byte command of term 1.
    fn log_of_rounds(rounds: &[usize]) -> RaftLog {
        let mut log = RaftLog::restore((0, 0), Vec::new(), 0, 0);
        for &round in rounds {
            for _ in 0..round {
                let index = log.last_index() + 1;
                log.push(Entry::command(1, index, vec![0u8; 10]));
            }
            log.take_unstable();
        }
        log
    }

    fn indexes_of<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> Vec<Index> {
        entries.into_iter().map(|e| e.index).collect()
    }

    #[test]
    fn entries_for_two_followers_share_one_run_and_copy_no_entry() {
        let mut log = log_of_rounds(&[3, 5]);
        let first = log.entries_from(4, 256, usize::MAX);
        let second = log.entries_from(4, 256, usize::MAX);
        assert_eq!(indexes_of(&first), vec![4, 5, 6, 7, 8]);
        assert!(first.shares_buffer_with(&second), "one run, handed to both");
        let part = log.entries_from(5, 2, usize::MAX);
        assert_eq!(indexes_of(&part), vec![5, 6]);
        assert!(
            part.shares_buffer_with(&first),
            "a budget inside the run still shares it"
        );
    }

    #[test]
    fn proposals_not_yet_read_out_become_one_run_when_first_sent() {
        let mut log = log_of_rounds(&[2]);
        log.push(Entry::blank(1, 3));
        log.push(Entry::blank(1, 4));
        assert_eq!(
            log.term(4),
            Some(1),
            "open entries are looked up before they are sealed"
        );
        let sent = log.entries_from(3, 256, usize::MAX);
        assert_eq!(indexes_of(&sent), vec![3, 4]);
        assert!(sent.shares_buffer_with(&log.entries_from(3, 256, usize::MAX)));
        assert_eq!(
            log.take_unstable().len(),
            2,
            "sending does not mark entries persisted"
        );
    }

    #[test]
    fn storage_and_the_state_machine_get_the_run_the_followers_get() {
        let mut log = log_of_rounds(&[2]);
        assert!(log.on_persisted(2, 1));
        for index in 3..=6 {
            log.push(Entry::command(1, index, vec![0u8; 10]));
        }
        let sent = log.entries_from(3, 256, usize::MAX);
        let unstable = log.take_unstable();
        assert_eq!(indexes_of(&unstable), vec![3, 4, 5, 6]);
        assert!(
            unstable.run_count() == 1 && unstable.parts().all(|part| part.shares_buffer_with(&sent)),
            "the write shares the round's run"
        );
        assert!(log.on_persisted(6, 1));
        log.committed = 5;
        let committed = log.take_committed();
        assert_eq!(indexes_of(&committed), vec![1, 2, 3, 4, 5]);
        let parts: Vec<_> = committed.parts().collect();
        assert_eq!(parts.len(), 2, "a commit across two rounds keeps their two runs");
        assert!(
            parts[1].shares_buffer_with(&sent),
            "the second round's part shares the round's run, copied nowhere"
        );
        log.committed = 6;
        let next = log.take_committed();
        assert_eq!(indexes_of(&next), vec![6]);
        let parts: Vec<_> = next.parts().collect();
        assert!(
            parts.len() == 1 && parts[0].shares_buffer_with(&sent),
            "inside one run, shared"
        );
        assert!(log.take_committed().is_empty());
    }

    #[test]
    fn a_follower_hands_the_run_it_received_to_storage() {
        let mut log = log_of(&[1]);
        let received: Entries = (2..=5).map(|i| Entry::blank(1, i)).collect();
        log.append_after(1, received.clone());
        let unstable = log.take_unstable();
        assert_eq!(indexes_of(&unstable), vec![2, 3, 4, 5]);
        assert!(unstable.run_count() == 1 && unstable.parts().all(|part| part.shares_buffer_with(&received)));
        // Two runs received in one round are written in order, as those two runs, copied nowhere.
        let first: Entries = (6..=7).map(|i| Entry::blank(1, i)).collect();
        let second: Entries = (8..=9).map(|i| Entry::blank(1, i)).collect();
        log.append_after(5, first.clone());
        log.append_after(7, second.clone());
        let unstable = log.take_unstable();
        assert_eq!(indexes_of(&unstable), vec![6, 7, 8, 9]);
        let parts: Vec<_> = unstable.parts().collect();
        assert!(
            parts.len() == 2 && parts[0].shares_buffer_with(&first) && parts[1].shares_buffer_with(&second)
        );
    }

    #[test]
    fn entries_across_small_runs_are_copied_into_one_message() {
        // Five rounds of one proposal each: a follower that lags gets them in one message.
        let mut log = log_of_rounds(&[1, 1, 1, 1, 1]);
        let batch = log.entries_from(2, 256, usize::MAX);
        assert_eq!(indexes_of(&batch), vec![2, 3, 4, 5]);
        // A run holding a quarter of a message or more goes alone, shared.
        let mut log = log_of_rounds(&[64, 64]);
        let batch = log.entries_from(1, 256, usize::MAX);
        assert_eq!(batch.len(), 64);
        assert!(batch.shares_buffer_with(&log.entries_from(1, 64, usize::MAX)));
        assert_eq!(indexes_of(&log.entries_from(65, 256, usize::MAX)).len(), 64);
        // The budget counts across runs when they are copied.
        let mut log = log_of_rounds(&[1, 1, 1, 1, 1]);
        let one = Entry::command(1, 1, vec![0u8; 10]).size_bytes();
        assert_eq!(indexes_of(&log.entries_from(1, 8, 3 * one)), vec![1, 2, 3]);
    }

    #[test]
    fn a_follower_keeps_the_run_it_received_and_truncates_inside_it() {
        let mut log = log_of(&[1, 1]);
        let received: Entries = (3..=8).map(|i| Entry::blank(2, i)).collect();
        assert_eq!(log.append_after(2, received.clone()), 8);
        assert_eq!(log.take_unstable().len(), 6);
        assert!(log.on_persisted(8, 2));
        assert_eq!(log.term(8), Some(2));
        // A later leader replaces 6..; the run is cut at 5 and the new entries follow it.
        let replacement: Entries = (6..=7).map(|i| Entry::blank(3, i)).collect();
        assert_eq!(log.append_after(5, replacement), 7);
        assert_eq!(log.last_index(), 7);
        assert_eq!((log.term(5), log.term(6), log.term(8)), (Some(2), Some(3), None));
        assert_eq!(log.persisted, 5);
        assert_eq!(
            log.take_unstable()
                .iter()
                .map(|e| (e.index, e.term))
                .collect::<Vec<_>>(),
            vec![(6, 3), (7, 3)]
        );
        // What the follower sends on (as a leader later) is the received run, shared, cut where
        // it was truncated.
        let sent = log.entries_from(3, 8, usize::MAX);
        assert_eq!(indexes_of(&sent), vec![3, 4, 5]);
        assert!(sent.shares_buffer_with(&received));
    }

    #[test]
    fn compaction_cuts_runs_and_open_entries_at_any_index() {
        let mut log = log_of_rounds(&[3, 3]);
        log.push(Entry::blank(1, 7));
        log.push(Entry::blank(1, 8));
        log.committed = 8;
        log.compact(2, 1, 2);
        assert_eq!((log.first_index(), log.last_index()), (3, 8));
        assert_eq!(log.entry(3).map(|e| e.index), Some(3));
        log.compact(7, 1, 7);
        assert_eq!((log.first_index(), log.last_index()), (8, 8));
        assert_eq!(log.entry(7), None);
        assert_eq!(log.entry(8).map(|e| e.index), Some(8));
        assert_eq!(log.term(7), Some(1), "the snapshot's term");
        log.compact(8, 1, 8);
        assert_eq!((log.first_index(), log.last_index(), log.last_term()), (9, 8, 1));
        log.push(Entry::blank(2, 9));
        assert_eq!(indexes_of(&log.entries_from(9, 256, usize::MAX)), vec![9]);
    }

    #[test]
    fn a_log_hashes_the_same_whichever_runs_hold_its_entries() {
        use std::hash::DefaultHasher;
        let hash = |log: &RaftLog| {
            let mut hasher = DefaultHasher::new();
            log.hash(&mut hasher);
            hasher.finish()
        };
        let one = log_of_rounds(&[4]);
        let two = log_of_rounds(&[1, 3]);
        assert_eq!(hash(&one), hash(&two));
        assert_ne!(hash(&one), hash(&log_of_rounds(&[1, 2])));
    }
}
