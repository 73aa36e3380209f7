//! Consecutive log entries kept as shared runs, found by index: the part of the log the core,
//! the in-memory storage and the simulator's disks hold without copying an entry.

use std::collections::VecDeque;
use std::fmt;
use std::hash::{Hash, Hasher};

use crate::entries::Entries;
use crate::entry::Entry;
use crate::error::StorageError;
use crate::types::Index;

/// One run: a non-empty [`Entries`] and the index of its first entry, kept beside it so that
/// finding the run that holds an index reads no entry (a run's entries are on the heap, behind
/// a reference count that other threads touch).
#[derive(Clone, Debug)]
struct Run {
    first: Index,
    entries: Entries,
}

impl Run {
    /// The index just after the run's last entry.
    fn end(&self) -> Index {
        self.first + self.entries.len() as Index
    }

    /// How many of the run's entries come before `index` (all of them when it is past the run).
    fn offset_of(&self, index: Index) -> usize {
        usize::try_from(index.saturating_sub(self.first)).unwrap_or(usize::MAX)
    }
}

/// Consecutive log entries (each entry's index one more than the one before), kept as the runs
/// of [`Entries`] they were appended in. Appending a run shares its buffer; reading a range
/// that lies in one run shares it too ([`range`](Self::range)); truncating or purging cuts a
/// run at any index. It compares and hashes as its sequence of entries, whatever the runs.
///
/// ```
/// use raft_core::{Entries, Entry, EntryRuns};
///
/// let mut log = EntryRuns::new();
/// log.append(Entries::from(vec![Entry::blank(1, 1), Entry::blank(1, 2)]))?;
/// log.append(Entries::from(vec![Entry::blank(1, 3), Entry::blank(1, 4)]))?;
/// // A later run replaces the entries from its first index on.
/// log.append(Entries::from(vec![Entry::blank(2, 4)]))?;
/// assert_eq!((log.len(), log.get(4).map(|e| e.term)), (4, Some(2)));
/// log.purge_to(2);
/// assert_eq!(log.iter().map(|e| e.index).collect::<Vec<_>>(), [3, 4]);
/// // Entries after the last one would leave a gap: refused.
/// assert!(log.append(Entries::from(vec![Entry::blank(2, 9)])).is_err());
/// # Ok::<(), raft_core::StorageError>(())
/// ```
#[derive(Clone, Default)]
pub struct EntryRuns {
    /// Each run is non-empty and starts right after the one before it.
    runs: VecDeque<Run>,
}

impl EntryRuns {
    /// No entries.
    pub const fn new() -> Self {
        EntryRuns {
            runs: VecDeque::new(),
        }
    }

    /// How many entries are held.
    pub fn len(&self) -> usize {
        match (self.runs.front(), self.runs.back()) {
            (Some(front), Some(back)) => usize::try_from(back.end() - front.first).unwrap_or(usize::MAX),
            _ => 0,
        }
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// The first entry held.
    pub fn first(&self) -> Option<&Entry> {
        self.runs.front().and_then(|run| run.entries.first())
    }

    /// The last entry held.
    pub fn last(&self) -> Option<&Entry> {
        self.runs.back().and_then(|run| run.entries.last())
    }

    /// How many runs hold the entries (each appended run, less those purged, more where a run
    /// was cut).
    pub fn run_count(&self) -> usize {
        self.runs.len()
    }

    /// Where in `runs` the run holding `index` is: the first run that ends after `index`
    /// (`runs.len()` when `index` is past them all).
    ///
    /// Most lookups are of the newest entries (the next to replicate, the last term, the
    /// commit), which the last run or the one before it holds: those two are looked at first,
    /// before a binary search over what may be thousands of runs, each step of it a cache miss.
    fn run_position(&self, index: Index) -> usize {
        let count = self.runs.len();
        for position in (count.saturating_sub(2)..count).rev() {
            let run = &self.runs[position];
            if run.first <= index {
                // The runs are consecutive: `index` is in this run or past the last one.
                return if index < run.end() { position } else { count };
            }
        }
        self.runs.partition_point(|run| run.end() <= index)
    }

    /// The entry at `index`, if held.
    pub fn get(&self, index: Index) -> Option<&Entry> {
        let run = self.runs.get(self.run_position(index))?;
        run.entries
            .get(usize::try_from(index.checked_sub(run.first)?).ok()?)
    }

    /// Every entry held, in order.
    pub fn iter(&self) -> EntryRunsIter<'_> {
        EntryRunsIter {
            runs: self.runs.iter(),
            run: [].iter(),
        }
    }

    /// The entries from `from` on, in order. It starts inside the run holding `from`, with no
    /// walk over the entries before it.
    pub fn iter_from(&self, from: Index) -> impl Iterator<Item = &Entry> {
        self.runs
            .range(self.run_position(from)..)
            .flat_map(move |run| run.entries.get(run.offset_of(from)..).unwrap_or_default())
    }

    /// The entries of the run holding `from`, from `from` to that run's end, sharing its buffer
    /// (none when `from` is not held).
    pub fn run_tail(&self, from: Index) -> Entries {
        match self.runs.get(self.run_position(from)) {
            Some(run) => run.entries.slice(run.offset_of(from)..),
            None => Entries::new(),
        }
    }

    /// At most `count` entries from `from` on. They share the buffer of the run holding `from`
    /// when that run has them all; entries across runs are copied into one buffer.
    pub fn range(&self, from: Index, count: usize) -> Entries {
        let tail = self.run_tail(from);
        if count <= tail.len() {
            return tail.slice(..count);
        }
        self.iter_from(from).take(count).cloned().collect()
    }

    /// At most `count` entries from `from` on, as runs that share the buffers of the runs
    /// holding them: nothing is copied, however many runs they span (unlike
    /// [`range`](Self::range), which hands out one buffer).
    pub fn share(&self, from: Index, count: usize) -> EntryRuns {
        let mut shared = EntryRuns::new();
        let mut left = count;
        for run in self.runs.range(self.run_position(from)..) {
            if left == 0 {
                break;
            }
            let skip = run.offset_of(from);
            let take = run.entries.len().saturating_sub(skip).min(left);
            if take == 0 {
                break;
            }
            left -= take;
            shared.runs.push_back(Run {
                first: run.first.max(from),
                entries: run.entries.slice(skip..skip + take),
            });
        }
        shared
    }

    /// The runs, in order (for tests of the sharing).
    #[cfg(test)]
    pub(crate) fn parts(&self) -> impl Iterator<Item = &Entries> {
        self.runs.iter().map(|run| &run.entries)
    }

    /// Appends `entries` (consecutive), replacing every entry held from the first of them on.
    /// Refused, changing nothing, when they would start after the entry following the last one
    /// held (a gap); with nothing held they may start at any index.
    pub fn append(&mut self, entries: Entries) -> Result<(), StorageError> {
        let Some(first) = entries.first().map(|e| e.index) else {
            return Ok(());
        };
        if let Some(last) = self.last().map(|e| e.index) {
            if first > last.saturating_add(1) {
                return Err(StorageError::LogGap { first, last });
            }
            self.truncate_from(first);
        }
        self.runs.push_back(Run { first, entries });
        Ok(())
    }

    /// Appends the runs of `entries`, sharing their buffers, as [`append`](Self::append) does
    /// with one run: they replace every entry held from their first index on, and a gap is
    /// refused, changing nothing.
    pub fn append_runs(&mut self, entries: EntryRuns) -> Result<(), StorageError> {
        let mut runs = entries.runs.into_iter();
        let Some(first) = runs.next() else {
            return Ok(());
        };
        self.append(first.entries)?;
        // The rest follow the first without a gap: an `EntryRuns` holds consecutive entries.
        self.runs.extend(runs);
        Ok(())
    }

    /// Drops the entries at `index` and after.
    pub fn truncate_from(&mut self, index: Index) {
        let position = self.run_position(index);
        self.runs.truncate(position.saturating_add(1));
        if let Some(run) = self.runs.back_mut() {
            let keep = run.offset_of(index);
            if keep == 0 {
                self.runs.pop_back();
            } else {
                run.entries = run.entries.slice(..keep);
            }
        }
    }

    /// Drops the entries up to and including `index`.
    pub fn purge_to(&mut self, index: Index) {
        let after = index.saturating_add(1);
        let position = self.run_position(after);
        self.runs.drain(..position.min(self.runs.len()));
        if let Some(run) = self.runs.front_mut() {
            let cut = run.offset_of(after);
            if cut > 0 {
                run.entries = run.entries.slice(cut..);
                run.first = after;
            }
        }
    }

    /// Drops every entry.
    pub fn clear(&mut self) {
        self.runs.clear();
    }
}

impl From<Vec<Entry>> for EntryRuns {
    /// One run of `entries`, which must be consecutive.
    fn from(entries: Vec<Entry>) -> Self {
        let mut runs = EntryRuns::new();
        // Nothing is held yet, so no gap is possible.
        let _ = runs.append(Entries::from(entries));
        runs
    }
}

impl FromIterator<Entry> for EntryRuns {
    /// One run of the entries, which must be consecutive.
    fn from_iter<I: IntoIterator<Item = Entry>>(iter: I) -> Self {
        EntryRuns::from(iter.into_iter().collect::<Vec<_>>())
    }
}

/// The entries of an [`EntryRuns`], in order, by reference ([`EntryRuns::iter`]).
#[derive(Clone, Debug)]
pub struct EntryRunsIter<'a> {
    runs: std::collections::vec_deque::Iter<'a, Run>,
    run: std::slice::Iter<'a, Entry>,
}

impl<'a> Iterator for EntryRunsIter<'a> {
    type Item = &'a Entry;

    fn next(&mut self) -> Option<&'a Entry> {
        loop {
            if let Some(entry) = self.run.next() {
                return Some(entry);
            }
            self.run = self.runs.next()?.entries.iter();
        }
    }
}

impl<'a> IntoIterator for &'a EntryRuns {
    type Item = &'a Entry;
    type IntoIter = EntryRunsIter<'a>;

    fn into_iter(self) -> EntryRunsIter<'a> {
        self.iter()
    }
}

impl IntoIterator for EntryRuns {
    type Item = Entry;
    type IntoIter = std::vec::IntoIter<Entry>;

    /// The entries by value, in order: each run's moved out of its buffer when the run is that
    /// buffer's only user and covers all of it, cloned otherwise (see [`Entries::into_vec`]).
    fn into_iter(self) -> Self::IntoIter {
        let mut all = Vec::new();
        for run in self.runs {
            if all.is_empty() {
                all = run.entries.into_vec();
            } else {
                all.extend(run.entries);
            }
        }
        all.into_iter()
    }
}

impl PartialEq for EntryRuns {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for EntryRuns {}

impl PartialEq<Vec<Entry>> for EntryRuns {
    fn eq(&self, other: &Vec<Entry>) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl PartialEq<[Entry]> for EntryRuns {
    fn eq(&self, other: &[Entry]) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Hash for EntryRuns {
    /// The entries, whichever runs hold them.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.len().hash(state);
        for entry in self.iter() {
            entry.hash(state);
        }
    }
}

impl fmt::Debug for EntryRuns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(term: u64, indexes: std::ops::RangeInclusive<u64>) -> Entries {
        indexes.map(|i| Entry::blank(term, i)).collect()
    }

    fn indexes(log: &EntryRuns) -> Vec<u64> {
        log.iter().map(|e| e.index).collect()
    }

    fn three_runs() -> EntryRuns {
        let mut log = EntryRuns::new();
        for (from, to) in [(1, 3), (4, 4), (5, 8)] {
            log.append(run(1, from..=to)).expect("consecutive");
        }
        log
    }

    /// The tail's shortcut finds the same run as the binary search, for every index below,
    /// inside and past logs of one to many runs, purged or not.
    #[test]
    fn a_run_is_found_by_index_as_the_binary_search_finds_it() {
        for runs in 1..=6u64 {
            for purged in [0, 1, 2, 5] {
                let mut log = EntryRuns::new();
                let mut next = 1;
                for length in (0..runs).map(|r| 1 + (r * 7 + 3) % 4) {
                    log.append(run(1, next..=next + length - 1)).expect("consecutive");
                    next += length;
                }
                log.purge_to(purged);
                for index in 0..next + 3 {
                    let searched = log.runs.partition_point(|run| run.end() <= index);
                    assert_eq!(
                        log.run_position(index),
                        searched,
                        "runs {runs}, purged {purged}, index {index}"
                    );
                }
            }
        }
    }

    #[test]
    fn entries_are_found_by_index_across_runs() {
        let log = three_runs();
        assert_eq!((log.len(), log.run_count()), (8, 3));
        for index in 1..=8 {
            assert_eq!(log.get(index).map(|e| e.index), Some(index));
        }
        assert!(log.get(0).is_none() && log.get(9).is_none());
        assert_eq!(
            log.iter_from(3).map(|e| e.index).collect::<Vec<_>>(),
            [3, 4, 5, 6, 7, 8]
        );
        assert_eq!(log.iter_from(9).count(), 0);
        assert_eq!(
            (log.first().map(|e| e.index), log.last().map(|e| e.index)),
            (Some(1), Some(8))
        );
    }

    #[test]
    fn a_range_inside_one_run_shares_it_and_one_across_runs_is_copied() {
        let mut log = EntryRuns::new();
        let first = run(1, 1..=5);
        log.append(first.clone()).expect("first run");
        log.append(run(1, 6..=7)).expect("second run");
        let inside = log.range(2, 3);
        assert_eq!(inside.iter().map(|e| e.index).collect::<Vec<_>>(), [2, 3, 4]);
        assert!(inside.shares_buffer_with(&first));
        let across = log.range(4, 3);
        assert_eq!(across.iter().map(|e| e.index).collect::<Vec<_>>(), [4, 5, 6]);
        assert!(!across.shares_buffer_with(&first));
        assert_eq!(log.range(6, 100).len(), 2, "clamped to what is held");
        assert!(log.range(8, 1).is_empty());
        assert_eq!(log.run_tail(3).len(), 3);
    }

    #[test]
    fn a_shared_range_keeps_every_run_it_spans_without_copying() {
        let log = three_runs();
        let buffers: Vec<Entries> = log.parts().cloned().collect();
        let shared = log.share(2, 5);
        assert_eq!(indexes(&shared), [2, 3, 4, 5, 6]);
        let parts: Vec<&Entries> = shared.parts().collect();
        assert_eq!(parts.len(), 3, "one part for each run spanned");
        for (part, buffer) in parts.iter().zip(&buffers) {
            assert!(part.shares_buffer_with(buffer), "no entry copied");
        }
        assert_eq!(
            (shared.first().map(|e| e.index), shared.last().map(|e| e.index)),
            (Some(2), Some(6))
        );
        assert_eq!(
            shared.get(4).map(|e| e.index),
            Some(4),
            "found by index as any EntryRuns"
        );
        assert_eq!(indexes(&log.share(7, 100)), [7, 8], "clamped to what is held");
        assert!(log.share(9, 1).is_empty() && log.share(3, 0).is_empty());
        let by_value: Vec<u64> = shared.into_iter().map(|e| e.index).collect();
        assert_eq!(by_value, [2, 3, 4, 5, 6]);
    }

    #[test]
    fn an_append_replaces_the_entries_from_its_first_index_and_refuses_a_gap() {
        let mut log = three_runs();
        log.append(run(2, 6..=6)).expect("inside the last run");
        assert_eq!(indexes(&log), [1, 2, 3, 4, 5, 6]);
        assert_eq!(log.get(6).map(|e| e.term), Some(2));
        log.append(run(3, 2..=2)).expect("inside the first run");
        assert_eq!(indexes(&log), [1, 2]);
        assert_eq!(log.run_count(), 2);
        let before = log.clone();
        assert!(matches!(
            log.append(run(3, 4..=4)),
            Err(StorageError::LogGap { first: 4, last: 2 })
        ));
        assert_eq!(log, before, "a refused append changes nothing");
        log.append(run(4, 1..=1)).expect("replaces everything");
        assert_eq!((indexes(&log), log.run_count()), (vec![1], 1));
    }

    #[test]
    fn truncation_and_purge_cut_runs_at_any_index() {
        let mut log = three_runs();
        log.truncate_from(7);
        assert_eq!(indexes(&log), [1, 2, 3, 4, 5, 6]);
        log.truncate_from(5);
        assert_eq!((indexes(&log), log.run_count()), (vec![1, 2, 3, 4], 2));
        log.truncate_from(100);
        assert_eq!(log.len(), 4);
        log.purge_to(2);
        assert_eq!(indexes(&log), [3, 4]);
        assert_eq!(log.get(3).map(|e| e.index), Some(3));
        log.purge_to(3);
        assert_eq!((indexes(&log), log.run_count()), (vec![4], 1));
        log.purge_to(0);
        assert_eq!(log.len(), 1);
        log.purge_to(10);
        assert_eq!((log.is_empty(), log.len(), log.first()), (true, 0, None));
        let mut log = three_runs();
        log.truncate_from(1);
        assert!(log.is_empty());
        let mut log = three_runs();
        log.truncate_from(0);
        assert!(log.is_empty());
    }

    #[test]
    fn logs_with_the_same_entries_are_equal_whatever_their_runs() {
        let one = EntryRuns::from((1..=8).map(|i| Entry::blank(1, i)).collect::<Vec<_>>());
        let three = three_runs();
        assert_eq!(one, three);
        let hash = |log: &EntryRuns| {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            log.hash(&mut hasher);
            hasher.finish()
        };
        assert_eq!(hash(&one), hash(&three));
        let mut shorter = three_runs();
        shorter.truncate_from(8);
        assert_ne!(one, shorter);
    }
}
