//! A shared run of consecutive log entries: what the log hands to an AppendEntries without
//! copying an entry.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::{Bound, Deref, RangeBounds};
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::entry::Entry;

/// Log entries behind one shared, immutable buffer. Cloning an `Entries` or taking a part of it
/// with [`Entries::slice`] copies no entry: it counts one more reference to the buffer.
///
/// The leader's log keeps each round's proposals as one such run and sends parts of it to every
/// follower; a follower keeps the run it received in its own log. Without it every entry was
/// cloned once per follower (a reference count touched per entry, on a cache line the other
/// threads touch too) and moved again on the follower.
///
/// It reads as a slice of [`Entry`] (it dereferences to `[Entry]`), compares, hashes and
/// serializes as one, and is built from a `Vec<Entry>` without copying.
///
/// ```
/// use raft_core::{Entries, Entry};
///
/// let entries = Entries::from(vec![Entry::blank(1, 1), Entry::blank(1, 2), Entry::blank(1, 3)]);
/// let tail = entries.slice(1..);
/// assert_eq!(tail.len(), 2);
/// assert_eq!(tail[0].index, 2);
/// assert_eq!(tail, vec![Entry::blank(1, 2), Entry::blank(1, 3)]);
/// ```
#[derive(Clone, Default)]
pub struct Entries {
    /// The buffer; `None` when empty, so that an empty run (a probe, a heartbeat-like append)
    /// allocates nothing.
    buffer: Option<Arc<Vec<Entry>>>,
    /// The part of the buffer this run covers: `start..end`, within the buffer.
    start: usize,
    end: usize,
}

impl Entries {
    /// No entries.
    pub const fn new() -> Self {
        Entries {
            buffer: None,
            start: 0,
            end: 0,
        }
    }

    /// How many entries the run holds. Read from the run itself, not its buffer (which is on
    /// the heap, behind a count other threads touch): the log's index search calls it at every
    /// step.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// Whether the run holds no entry.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// The entries as a slice.
    pub fn as_slice(&self) -> &[Entry] {
        match &self.buffer {
            Some(buffer) => &buffer[self.start..self.end],
            None => &[],
        }
    }

    /// The entries at positions `range` of this run, sharing its buffer. The range is clamped
    /// to the run (a range past the end gives fewer entries, or none) rather than panicking.
    pub fn slice(&self, range: impl RangeBounds<usize>) -> Entries {
        let len = self.end - self.start;
        let from = match range.start_bound() {
            Bound::Included(&n) => n,
            Bound::Excluded(&n) => n.saturating_add(1),
            Bound::Unbounded => 0,
        }
        .min(len);
        let to = match range.end_bound() {
            Bound::Included(&n) => n.saturating_add(1),
            Bound::Excluded(&n) => n,
            Bound::Unbounded => len,
        }
        .clamp(from, len);
        if from == to {
            return Entries::new();
        }
        Entries {
            buffer: self.buffer.clone(),
            start: self.start + from,
            end: self.start + to,
        }
    }

    /// The entries as an owned vector: the buffer itself when this run is its only user and
    /// covers all of it, a copy of the entries otherwise.
    pub fn into_vec(self) -> Vec<Entry> {
        let Some(buffer) = self.buffer else {
            return Vec::new();
        };
        let (start, end) = (self.start, self.end);
        match Arc::try_unwrap(buffer) {
            Ok(mut vec) if start == 0 => {
                vec.truncate(end);
                vec
            }
            Ok(vec) => vec[start..end].to_vec(),
            Err(shared) => shared[start..end].to_vec(),
        }
    }

    /// Whether `self` and `other` share one buffer (for tests of the log's sharing).
    #[cfg(test)]
    pub(crate) fn shares_buffer_with(&self, other: &Entries) -> bool {
        match (&self.buffer, &other.buffer) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Deref for Entries {
    type Target = [Entry];

    fn deref(&self) -> &[Entry] {
        self.as_slice()
    }
}

impl AsRef<[Entry]> for Entries {
    fn as_ref(&self) -> &[Entry] {
        self.as_slice()
    }
}

impl From<Vec<Entry>> for Entries {
    /// Takes the vector as the buffer, without copying its entries.
    fn from(entries: Vec<Entry>) -> Self {
        if entries.is_empty() {
            return Entries::new();
        }
        let end = entries.len();
        Entries {
            buffer: Some(Arc::new(entries)),
            start: 0,
            end,
        }
    }
}

impl FromIterator<Entry> for Entries {
    fn from_iter<I: IntoIterator<Item = Entry>>(iter: I) -> Self {
        Entries::from(iter.into_iter().collect::<Vec<_>>())
    }
}

impl IntoIterator for Entries {
    type Item = Entry;
    type IntoIter = std::vec::IntoIter<Entry>;

    /// The entries by value: moved out of the buffer when this run is its only user and covers
    /// all of it, cloned otherwise (see [`Entries::into_vec`]).
    fn into_iter(self) -> Self::IntoIter {
        self.into_vec().into_iter()
    }
}

impl<'a> IntoIterator for &'a Entries {
    type Item = &'a Entry;
    type IntoIter = std::slice::Iter<'a, Entry>;

    fn into_iter(self) -> Self::IntoIter {
        self.as_slice().iter()
    }
}

impl PartialEq for Entries {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Entries {}

impl PartialEq<Vec<Entry>> for Entries {
    fn eq(&self, other: &Vec<Entry>) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl PartialEq<[Entry]> for Entries {
    fn eq(&self, other: &[Entry]) -> bool {
        self.as_slice() == other
    }
}

impl Hash for Entries {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state);
    }
}

impl fmt::Debug for Entries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

impl Serialize for Entries {
    /// As a sequence of entries: the same bytes as a `Vec<Entry>`.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.as_slice().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<Entry>::deserialize(deserializer).map(Entries::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(indexes: std::ops::RangeInclusive<u64>) -> Entries {
        indexes.map(|i| Entry::blank(1, i)).collect()
    }

    fn indexes(entries: &Entries) -> Vec<u64> {
        entries.iter().map(|e| e.index).collect()
    }

    #[test]
    fn a_slice_shares_the_buffer_and_is_clamped_to_the_run() {
        let entries = run(1..=5);
        let middle = entries.slice(1..3);
        assert_eq!(indexes(&middle), vec![2, 3]);
        assert!(middle.shares_buffer_with(&entries));
        assert_eq!(indexes(&middle.slice(1..)), vec![3]);
        assert_eq!(indexes(&entries.slice(3..=100)), vec![4, 5]);
        assert!(entries.slice(7..).is_empty());
        // A reversed range gives nothing rather than panicking, as a range from outside might.
        #[allow(clippy::reversed_empty_ranges)]
        let reversed = entries.slice(4..2);
        assert!(reversed.is_empty());
        assert!(Entries::new().slice(..).is_empty());
    }

    #[test]
    fn into_vec_gives_the_buffer_back_when_unshared_and_copies_otherwise() {
        let entries = run(1..=4);
        let head = entries.slice(..2);
        assert_eq!(indexes(&Entries::from(head.clone().into_vec())), vec![1, 2]);
        drop(entries);
        assert_eq!(
            head.into_vec().iter().map(|e| e.index).collect::<Vec<_>>(),
            vec![1, 2]
        );
        let tail = run(1..=4).slice(2..);
        assert_eq!(
            tail.into_vec().iter().map(|e| e.index).collect::<Vec<_>>(),
            vec![3, 4]
        );
    }

    #[test]
    fn entries_serialize_as_a_vector_of_entries() {
        let entries = run(3..=6).slice(1..3);
        let vec: Vec<Entry> = entries.to_vec();
        let encoded = postcard::to_allocvec(&entries).expect("encode");
        assert_eq!(encoded, postcard::to_allocvec(&vec).expect("encode"));
        let decoded: Entries = postcard::from_bytes(&encoded).expect("decode");
        assert_eq!(decoded, entries);
    }
}
