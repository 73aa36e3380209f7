//! A compact copy of a log: each entry's term and a hash chain over the entries, so that "do these
//! two logs agree up to index i?" is one comparison.

use raft_core::{Entry, EntryPayload, EntryRuns, Index, Term};

/// Terms and cumulative hashes of a log from index 1. `chain(i)` covers entries 1..=i, so two logs
/// with equal chains at `i` hold the same entries up to `i` (up to a 64-bit hash collision).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct LogMirror {
    terms: Vec<Term>,
    /// The hash of each entry alone.
    hashes: Vec<u64>,
    /// `chain[i]` covers entries 1..=i+1.
    chain: Vec<u64>,
}

impl LogMirror {
    /// Applies a write as storage would: replace from the first entry's index on.
    pub(crate) fn write(&mut self, entries: &EntryRuns) {
        let Some(first) = entries.first() else {
            return;
        };
        let keep = (first.index - 1) as usize;
        self.terms.truncate(keep);
        self.hashes.truncate(keep);
        self.chain.truncate(keep);
        for entry in entries {
            debug_assert_eq!(entry.index as usize, self.terms.len() + 1, "mirror gap");
            self.push(entry.term, entry_hash(entry));
        }
    }

    /// Appends an entry known by its term and hash.
    pub(crate) fn push(&mut self, term: Term, hash: u64) {
        let previous = self.chain.last().copied().unwrap_or(0);
        self.terms.push(term);
        self.hashes.push(hash);
        self.chain.push(extend_chain(previous, hash));
    }

    /// The first `index` entries (`None` when the log is shorter).
    pub(crate) fn prefix(&self, index: Index) -> Option<LogMirror> {
        let keep = index as usize;
        if keep > self.terms.len() {
            return None;
        }
        Some(LogMirror {
            terms: self.terms[..keep].to_vec(),
            hashes: self.hashes[..keep].to_vec(),
            chain: self.chain[..keep].to_vec(),
        })
    }

    /// `prefix` followed by this log's entries after it (none when `discard_rest`): the log after
    /// installing a snapshot of the committed prefix.
    pub(crate) fn rebase(&self, prefix: &LogMirror, discard_rest: bool) -> LogMirror {
        let mut rebased = prefix.clone();
        if !discard_rest {
            for index in prefix.len() + 1..=self.len() {
                if let (Some(term), Some(hash)) = (self.term(index), self.hash(index)) {
                    rebased.push(term, hash);
                }
            }
        }
        rebased
    }

    pub(crate) fn len(&self) -> Index {
        self.terms.len() as Index
    }

    pub(crate) fn term(&self, index: Index) -> Option<Term> {
        if index == 0 {
            return Some(0);
        }
        self.terms.get(index as usize - 1).copied()
    }

    /// The hash of the entry at `index`.
    pub(crate) fn hash(&self, index: Index) -> Option<u64> {
        self.hashes.get((index as usize).checked_sub(1)?).copied()
    }

    /// The hash chain up to `index` (0 for the empty prefix).
    pub(crate) fn chain(&self, index: Index) -> Option<u64> {
        if index == 0 {
            return Some(0);
        }
        self.chain.get(index as usize - 1).copied()
    }
}

/// A hash of one entry: index, term and payload.
pub(crate) fn entry_hash(entry: &Entry) -> u64 {
    let mut h = fnv(0xcbf2_9ce4_8422_2325, &entry.index.to_le_bytes());
    h = fnv(h, &entry.term.to_le_bytes());
    match &entry.payload {
        EntryPayload::Blank => fnv(h, b"blank"),
        EntryPayload::Command(data) => fnv(fnv(h, b"cmd"), data),
        EntryPayload::Membership(m) => {
            let mut h = fnv(h, b"config");
            for id in m
                .voters
                .iter()
                .chain([0u64].iter())
                .chain(m.outgoing.iter().flatten())
            {
                h = fnv(h, &id.to_le_bytes());
            }
            for id in &m.learners {
                h = fnv(fnv(h, b"l"), &id.to_le_bytes());
            }
            h
        }
    }
}

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    h
}

/// The chain after an entry with hash `hash` follows a prefix whose chain is `previous`.
pub(crate) fn extend_chain(previous: u64, hash: u64) -> u64 {
    let mut z = previous ^ hash.rotate_left(17);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_agree_exactly_on_identical_prefixes() {
        let mut a = LogMirror::default();
        a.write(&EntryRuns::from(vec![
            Entry::blank(1, 1),
            Entry::command(1, 2, "x"),
            Entry::command(2, 3, "y"),
        ]));
        let mut b = LogMirror::default();
        b.write(&EntryRuns::from(vec![
            Entry::blank(1, 1),
            Entry::command(1, 2, "x"),
            Entry::command(3, 3, "z"),
        ]));
        assert_eq!(a.chain(2), b.chain(2));
        assert_ne!(a.chain(3), b.chain(3));
        b.write(&EntryRuns::from(vec![Entry::command(2, 3, "y")]));
        assert_eq!(a, b);
    }
}
