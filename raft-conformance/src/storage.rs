//! The storage suite: what every [`LogStorage`] must do.
//!
//! Each case is a public async function taking a fresh [`StorageHarness`]; [`storage_suite!`]
//! turns them all into tests. A case panics (fails) with a message saying which rule broke.
//!
//! [`storage_suite!`]: crate::storage_suite

use async_trait::async_trait;
use bytes::Bytes;
use raft_core::{
    Entry, EntryPayload, EntryRuns, HardState, Index, LogStorage, LogWrite, Membership, SnapshotChecksum,
    SnapshotMeta, SnapshotStore, StorageError, StoredLog, Term,
};

/// Opens one node's store, again and again, as a process restarting would.
#[async_trait]
pub trait StorageHarness: Send {
    /// The store under test.
    type Storage: LogStorage;

    /// Opens the store: empty the first time, afterwards with everything an earlier instance
    /// made durable. The suite drops every earlier instance (and its snapshot store handles)
    /// before it reopens.
    async fn open(&mut self) -> Self::Storage;
}

/// Expands to one `#[tokio::test]` per case of the storage suite, each with a harness made by
/// `$make` (an expression evaluated once per test).
#[macro_export]
macro_rules! storage_suite {
    ($make:expr) => {
        $crate::storage_suite!(@cases $make;
            empty_store_loads_nothing,
            appended_entries_read_back_by_range,
            term_lookup_reads_one_entry,
            out_of_range_reads_return_only_stored_entries,
            append_replaces_the_conflicting_suffix,
            one_write_of_several_runs_appends_them_in_order,
            append_that_leaves_a_gap_is_refused_and_changes_nothing,
            hard_state_is_saved_and_survives_reopen,
            purge_drops_the_prefix_and_the_log_continues,
            purge_past_the_last_entry_leaves_an_empty_log_that_continues_after_it,
            discard_log_drops_every_entry,
            every_part_of_one_write_survives_reopen,
            membership_entries_and_large_entries_round_trip,
            snapshot_bytes_are_read_back_whole_and_by_chunk,
            unfinished_snapshot_is_invisible,
            recorded_snapshot_survives_reopen,
            superseded_snapshot_being_sent_stays_readable,
            reopen_after_many_writes_loads_the_same_log,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $crate::storage::$case($make).await;
            }
        )*
    };
}

fn entries(range: std::ops::RangeInclusive<Index>, term: Term) -> Vec<Entry> {
    range
        .map(|i| Entry::command(term, i, format!("entry {i} of term {term}")))
        .collect()
}

fn append(entries: Vec<Entry>) -> LogWrite {
    LogWrite {
        entries: entries.into(),
        ..LogWrite::default()
    }
}

async fn persist<S: LogStorage>(storage: &mut S, write: LogWrite) {
    if let Err(e) = storage.persist(write).await {
        panic!("persist failed: {e}");
    }
}

async fn load<S: LogStorage>(storage: &mut S) -> StoredLog {
    match storage.load().await {
        Ok(log) => log,
        Err(e) => panic!("load failed: {e}"),
    }
}

async fn read<S: LogStorage>(storage: &S, range: std::ops::RangeInclusive<Index>) -> Vec<Entry> {
    match storage.entries(range.clone()).await {
        Ok(entries) => entries,
        Err(e) => panic!("entries({range:?}) failed: {e}"),
    }
}

async fn last_index<S: LogStorage>(storage: &S) -> Index {
    match storage.last_index().await {
        Ok(index) => index,
        Err(e) => panic!("last_index failed: {e}"),
    }
}

fn indexes(entries: &[Entry]) -> Vec<Index> {
    entries.iter().map(|e| e.index).collect()
}

fn membership(voters: impl IntoIterator<Item = u64>) -> Membership {
    match Membership::voters(voters) {
        Ok(m) => m,
        Err(e) => panic!("membership: {e}"),
    }
}

/// Writes `data` as the snapshot at `index` and returns its metadata.
async fn store_snapshot<S: SnapshotStore>(
    store: &S,
    index: Index,
    term: Term,
    data: &[Bytes],
) -> SnapshotMeta {
    let mut sink = match store.create(index).await {
        Ok(sink) => sink,
        Err(e) => panic!("create snapshot {index}: {e}"),
    };
    let mut checksum = SnapshotChecksum::new();
    for piece in data {
        checksum.update(piece);
        if let Err(e) = sink.write(piece.clone()).await {
            panic!("write snapshot {index}: {e}");
        }
    }
    if let Err(e) = sink.finish().await {
        panic!("finish snapshot {index}: {e}");
    }
    SnapshotMeta {
        index,
        term,
        membership: membership([1, 2, 3]),
        size: checksum.size(),
        checksum: checksum.value(),
    }
}

/// Writes `data` as the snapshot at `index` and records it durably, purging the log up to it.
async fn record_snapshot<S: LogStorage>(
    storage: &mut S,
    index: Index,
    term: Term,
    data: &[Bytes],
) -> SnapshotMeta {
    let meta = store_snapshot(&storage.snapshot_store(), index, term, data).await;
    persist(
        storage,
        LogWrite {
            purge_to: index,
            snapshot: Some(meta.clone()),
            ..LogWrite::default()
        },
    )
    .await;
    meta
}

async fn read_snapshot<S: SnapshotStore>(store: &S, index: Index) -> Result<Vec<u8>, StorageError> {
    let mut reader = store.open(index).await?;
    let mut all = Vec::new();
    while let Some(piece) = reader.read().await? {
        all.extend_from_slice(&piece);
    }
    Ok(all)
}

/// A new store holds no hard state, no snapshot and no entries.
pub async fn empty_store_loads_nothing<H: StorageHarness>(mut harness: H) {
    let mut storage = harness.open().await;
    let log = load(&mut storage).await;
    assert_eq!(log, StoredLog::default(), "a new store must be empty");
    assert_eq!(last_index(&storage).await, 0, "an empty log's last index is 0");
    assert!(
        read(&storage, 1..=10).await.is_empty(),
        "an empty log has no entries"
    );
}

/// Entries appended are read back, in order, by any range inside the log.
pub async fn appended_entries_read_back_by_range<H: StorageHarness>(mut harness: H) {
    let mut storage = harness.open().await;
    persist(&mut storage, append(entries(1..=5, 1))).await;
    persist(&mut storage, append(entries(6..=10, 2))).await;
    assert_eq!(last_index(&storage).await, 10);
    assert_eq!(
        read(&storage, 1..=10).await,
        [entries(1..=5, 1), entries(6..=10, 2)].concat()
    );
    assert_eq!(
        read(&storage, 3..=7).await,
        [entries(3..=5, 1), entries(6..=7, 2)].concat()
    );
    assert_eq!(load(&mut storage).await.entries.len(), 10);
}

/// The term of one entry is found by reading the one-entry range.
pub async fn term_lookup_reads_one_entry<H: StorageHarness>(mut harness: H) {
    let mut storage = harness.open().await;
    persist(
        &mut storage,
        append([entries(1..=3, 1), entries(4..=6, 3)].concat()),
    )
    .await;
    for (index, term) in [(1, 1), (3, 1), (4, 3), (6, 3)] {
        let found = read(&storage, index..=index).await;
        assert_eq!(found.len(), 1, "entry {index} must be found");
        assert_eq!(found[0].term, term, "term of entry {index}");
    }
}

/// Reads outside the log return what is inside it and nothing else, never an error.
pub async fn out_of_range_reads_return_only_stored_entries<H: StorageHarness>(mut harness: H) {
    let mut storage = harness.open().await;
    persist(&mut storage, append(entries(1..=5, 1))).await;
    assert_eq!(
        indexes(&read(&storage, 4..=100).await),
        [4, 5],
        "a read past the end is cut at the end"
    );
    assert!(
        read(&storage, 6..=9).await.is_empty(),
        "a read wholly past the end is empty"
    );
    assert_eq!(
        indexes(&read(&storage, 0..=2).await),
        [1, 2],
        "index 0 is before the log"
    );
    #[allow(clippy::reversed_empty_ranges)]
    let reversed = read(&storage, 4..=2).await;
    assert!(reversed.is_empty(), "an empty range reads nothing");
    assert!(read(&storage, u64::MAX..=u64::MAX).await.is_empty());
}

/// An append replaces every stored entry from its first index on (a follower truncating a
/// conflicting suffix), atomically, and the truncation survives a reopen.
pub async fn append_replaces_the_conflicting_suffix<H: StorageHarness>(mut harness: H) {
    let mut storage = harness.open().await;
    persist(&mut storage, append(entries(1..=10, 1))).await;
    persist(&mut storage, append(entries(6..=7, 2))).await;
    let expected = [entries(1..=5, 1), entries(6..=7, 2)].concat();
    assert_eq!(
        last_index(&storage).await,
        7,
        "entries after the new suffix are gone"
    );
    assert_eq!(read(&storage, 1..=10).await, expected);
    drop(storage);
    let mut storage = harness.open().await;
    assert_eq!(
        load(&mut storage).await.entries,
        expected,
        "the truncation is durable"
    );
    assert_eq!(last_index(&storage).await, 7);
    // Appending right after the new end continues the log.
    persist(&mut storage, append(entries(8..=8, 2))).await;
    assert_eq!(last_index(&storage).await, 8);
}

/// One write whose entries come as several runs (a follower's two appends in one round, or
/// writes merged by group commit) stores them in order, replacing the stored suffix from its
/// first index, as one run would; and so it reads back, before and after a reopen.
pub async fn one_write_of_several_runs_appends_them_in_order<H: StorageHarness>(mut harness: H) {
    let mut storage = harness.open().await;
    persist(&mut storage, append(entries(1..=6, 1))).await;
    let mut runs = EntryRuns::new();
    for part in [entries(4..=5, 2), entries(6..=6, 2), entries(7..=9, 3)] {
        runs.append(part.into()).expect("consecutive runs");
    }
    assert_eq!(runs.run_count(), 3);
    persist(
        &mut storage,
        LogWrite {
            entries: runs,
            ..LogWrite::default()
        },
    )
    .await;
    let expected = [entries(1..=3, 1), entries(4..=6, 2), entries(7..=9, 3)].concat();
    assert_eq!(last_index(&storage).await, 9);
    assert_eq!(read(&storage, 1..=9).await, expected);
    drop(storage);
    let mut storage = harness.open().await;
    assert_eq!(load(&mut storage).await.entries, expected, "the runs are durable");
}

/// An append that starts past the end would leave a hole; it is refused with `LogGap` and the
/// store is unchanged.
pub async fn append_that_leaves_a_gap_is_refused_and_changes_nothing<H: StorageHarness>(mut harness: H) {
    let mut storage = harness.open().await;
    persist(&mut storage, append(entries(1..=3, 1))).await;
    let refused = storage
        .persist(LogWrite {
            entries: entries(5..=6, 1).into(),
            hard_state: Some(HardState {
                term: 9,
                voted_for: Some(2),
                commit: 3,
            }),
            ..LogWrite::default()
        })
        .await;
    assert!(
        matches!(refused, Err(StorageError::LogGap { first: 5, last: 3 })),
        "expected LogGap {{ first: 5, last: 3 }}, got {refused:?}"
    );
    assert_eq!(last_index(&storage).await, 3);
    drop(storage);
    let mut storage = harness.open().await;
    let log = load(&mut storage).await;
    assert_eq!(
        log.entries,
        entries(1..=3, 1),
        "a refused write leaves no entry behind"
    );
    assert_eq!(
        log.hard_state,
        HardState::default(),
        "a refused write leaves no hard state behind"
    );
}

/// The hard state saved last is the one loaded, across reopens.
pub async fn hard_state_is_saved_and_survives_reopen<H: StorageHarness>(mut harness: H) {
    let mut storage = harness.open().await;
    let first = HardState {
        term: 3,
        voted_for: Some(2),
        commit: 0,
    };
    let second = HardState {
        term: 4,
        voted_for: None,
        commit: 7,
    };
    persist(
        &mut storage,
        LogWrite {
            hard_state: Some(first),
            ..LogWrite::default()
        },
    )
    .await;
    assert_eq!(load(&mut storage).await.hard_state, first);
    persist(
        &mut storage,
        LogWrite {
            hard_state: Some(second),
            ..LogWrite::default()
        },
    )
    .await;
    drop(storage);
    let mut storage = harness.open().await;
    assert_eq!(
        load(&mut storage).await.hard_state,
        second,
        "the last hard state saved survives"
    );
}

/// A purge after a snapshot drops the entries up to it; the log keeps its indexes and goes on.
pub async fn purge_drops_the_prefix_and_the_log_continues<H: StorageHarness>(mut harness: H) {
    let mut storage = harness.open().await;
    persist(&mut storage, append(entries(1..=10, 1))).await;
    let snapshot = store_snapshot(
        &storage.snapshot_store(),
        5,
        1,
        &[Bytes::from_static(b"state at 5")],
    )
    .await;
    persist(
        &mut storage,
        LogWrite {
            purge_to: 5,
            snapshot: Some(snapshot.clone()),
            ..LogWrite::default()
        },
    )
    .await;
    assert_eq!(
        indexes(&read(&storage, 1..=10).await),
        [6, 7, 8, 9, 10],
        "the first index after a purge is 6"
    );
    assert_eq!(last_index(&storage).await, 10);
    persist(&mut storage, append(entries(11..=11, 1))).await;
    drop(storage);
    let mut storage = harness.open().await;
    let log = load(&mut storage).await;
    assert_eq!(indexes(&log.entries), [6, 7, 8, 9, 10, 11]);
    assert_eq!(log.snapshot, Some(snapshot));
    assert!(
        read(&storage, 1..=5).await.is_empty(),
        "purged entries stay purged"
    );
}

/// A snapshot from the leader may cover more than the log holds: after the purge the log is empty
/// and continues at `purge_to + 1`; an append below that is a gap.
pub async fn purge_past_the_last_entry_leaves_an_empty_log_that_continues_after_it<H: StorageHarness>(
    mut harness: H,
) {
    let mut storage = harness.open().await;
    persist(&mut storage, append(entries(1..=3, 1))).await;
    let snapshot = store_snapshot(
        &storage.snapshot_store(),
        8,
        2,
        &[Bytes::from_static(b"state at 8")],
    )
    .await;
    persist(
        &mut storage,
        LogWrite {
            purge_to: 8,
            snapshot: Some(snapshot.clone()),
            ..LogWrite::default()
        },
    )
    .await;
    assert_eq!(
        last_index(&storage).await,
        8,
        "an empty log's last index is where it was purged to"
    );
    assert!(read(&storage, 1..=20).await.is_empty());
    drop(storage);
    let mut storage = harness.open().await;
    let log = load(&mut storage).await;
    assert!(log.entries.is_empty());
    assert_eq!(log.snapshot, Some(snapshot));
    assert_eq!(last_index(&storage).await, 8, "the purge point survives a reopen");
    let below = storage.persist(append(entries(5..=5, 2))).await;
    assert!(
        matches!(below, Err(StorageError::LogGap { .. })),
        "append below the purge point: {below:?}"
    );
    persist(&mut storage, append(entries(9..=10, 2))).await;
    assert_eq!(indexes(&read(&storage, 1..=20).await), [9, 10]);
}

/// `discard_log` drops every entry (a snapshot replaced a log that disagreed with it), in the same
/// write as the purge and the snapshot that replace it.
pub async fn discard_log_drops_every_entry<H: StorageHarness>(mut harness: H) {
    let mut storage = harness.open().await;
    persist(&mut storage, append(entries(1..=30, 1))).await;
    let snapshot = store_snapshot(
        &storage.snapshot_store(),
        20,
        3,
        &[Bytes::from_static(b"leader's state")],
    )
    .await;
    persist(
        &mut storage,
        LogWrite {
            discard_log: true,
            purge_to: 20,
            snapshot: Some(snapshot.clone()),
            ..LogWrite::default()
        },
    )
    .await;
    assert!(
        read(&storage, 1..=30).await.is_empty(),
        "entries after the snapshot are discarded too"
    );
    assert_eq!(last_index(&storage).await, 20);
    drop(storage);
    let mut storage = harness.open().await;
    let log = load(&mut storage).await;
    assert!(log.entries.is_empty());
    assert_eq!(log.snapshot, Some(snapshot));
}

/// One write with every part (purge, entries, snapshot, hard state) is applied whole.
pub async fn every_part_of_one_write_survives_reopen<H: StorageHarness>(mut harness: H) {
    let mut storage = harness.open().await;
    persist(&mut storage, append(entries(1..=4, 1))).await;
    let snapshot = store_snapshot(&storage.snapshot_store(), 3, 1, &[Bytes::from_static(b"three")]).await;
    let hard_state = HardState {
        term: 2,
        voted_for: Some(1),
        commit: 4,
    };
    persist(
        &mut storage,
        LogWrite {
            discard_log: false,
            purge_to: 3,
            entries: entries(4..=6, 2).into(),
            snapshot: Some(snapshot.clone()),
            hard_state: Some(hard_state),
        },
    )
    .await;
    drop(storage);
    let mut storage = harness.open().await;
    let log = load(&mut storage).await;
    assert_eq!(
        log,
        StoredLog {
            hard_state,
            snapshot: Some(snapshot),
            entries: entries(4..=6, 2),
        }
    );
}

/// Configuration entries and big payloads come back exactly as written.
pub async fn membership_entries_and_large_entries_round_trip<H: StorageHarness>(mut harness: H) {
    let mut storage = harness.open().await;
    let config = Entry {
        term: 1,
        index: 1,
        payload: EntryPayload::Membership(Box::new(membership([1, 2, 3]))),
    };
    let blank = Entry::blank(1, 2);
    let large = Entry::command(1, 3, Bytes::from(vec![0xA5u8; 4 << 20]));
    let empty = Entry::command(1, 4, Bytes::new());
    let written = vec![config, blank, large, empty];
    persist(&mut storage, append(written.clone())).await;
    drop(storage);
    let mut storage = harness.open().await;
    assert_eq!(load(&mut storage).await.entries, written);
    assert_eq!(read(&storage, 3..=3).await, written[2..3]);
}

/// A finished snapshot reads back whole (in pieces of any size) and by chunk.
pub async fn snapshot_bytes_are_read_back_whole_and_by_chunk<H: StorageHarness>(mut harness: H) {
    let storage = harness.open().await;
    let store = storage.snapshot_store();
    let pieces: Vec<Bytes> = (0..40u8)
        .map(|i| Bytes::from(vec![i; 10_000 + i as usize]))
        .collect();
    let whole: Vec<u8> = pieces.iter().flat_map(|p| p.iter().copied()).collect();
    let meta = store_snapshot(&store, 7, 2, &pieces).await;
    assert_eq!(meta.size, whole.len() as u64);
    match read_snapshot(&store, 7).await {
        Ok(read) => assert!(read == whole, "snapshot bytes differ from what was written"),
        Err(e) => panic!("open snapshot 7: {e}"),
    }
    let chunk = |offset: u64, len: u64| {
        let store = store.clone();
        async move {
            match store.read_chunk(7, offset, len).await {
                Ok(bytes) => bytes,
                Err(e) => panic!("read_chunk({offset}, {len}): {e}"),
            }
        }
    };
    assert_eq!(chunk(0, 100).await, whole[..100]);
    assert_eq!(chunk(123_456, 1_000).await, whole[123_456..124_456]);
    let size = whole.len() as u64;
    assert_eq!(
        chunk(size - 10, 1_000).await,
        whole[whole.len() - 10..],
        "a chunk is cut at the end"
    );
    assert!(chunk(size, 10).await.is_empty(), "a chunk at the end is empty");
    assert!(
        chunk(size + 10, 10).await.is_empty(),
        "a chunk past the end is empty"
    );
    let missing = store.read_chunk(8, 0, 10).await;
    assert!(
        matches!(missing, Err(StorageError::SnapshotNotFound(8))),
        "unknown snapshot: {missing:?}"
    );
}

/// A snapshot is invisible until finished; an abandoned one never appears, and starting the same
/// index again replaces it.
pub async fn unfinished_snapshot_is_invisible<H: StorageHarness>(mut harness: H) {
    let storage = harness.open().await;
    let store = storage.snapshot_store();
    let mut sink = match store.create(4).await {
        Ok(sink) => sink,
        Err(e) => panic!("create: {e}"),
    };
    if let Err(e) = sink.write(Bytes::from_static(b"half")).await {
        panic!("write: {e}");
    }
    assert!(
        matches!(store.open(4).await, Err(StorageError::SnapshotNotFound(4))),
        "an unfinished snapshot must not be readable"
    );
    assert!(matches!(
        store.read_chunk(4, 0, 4).await,
        Err(StorageError::SnapshotNotFound(4))
    ));
    drop(sink);
    assert!(
        matches!(store.open(4).await, Err(StorageError::SnapshotNotFound(4))),
        "an abandoned snapshot must not be readable"
    );
    store_snapshot(&store, 4, 1, &[Bytes::from_static(b"whole")]).await;
    match read_snapshot(&store, 4).await {
        Ok(read) => assert_eq!(read, b"whole"),
        Err(e) => panic!("open after finish: {e}"),
    }
}

/// The snapshot a write recorded is loaded after a reopen, and its bytes are still there.
pub async fn recorded_snapshot_survives_reopen<H: StorageHarness>(mut harness: H) {
    let mut storage = harness.open().await;
    persist(&mut storage, append(entries(1..=12, 1))).await;
    record_snapshot(&mut storage, 6, 1, &[Bytes::from_static(b"six")]).await;
    let newer = record_snapshot(
        &mut storage,
        10,
        1,
        &[Bytes::from_static(b"ten"), Bytes::from_static(b"!")],
    )
    .await;
    drop(storage);
    let mut storage = harness.open().await;
    let log = load(&mut storage).await;
    assert_eq!(
        log.snapshot,
        Some(newer),
        "the latest recorded snapshot is loaded"
    );
    assert_eq!(indexes(&log.entries), [11, 12]);
    match read_snapshot(&storage.snapshot_store(), 10).await {
        Ok(read) => assert_eq!(read, b"ten!"),
        Err(e) => panic!("snapshot 10 after reopen: {e}"),
    }
}

/// A snapshot a leader is sending chunk by chunk stays readable when a newer one is recorded
/// meanwhile (see [`SnapshotStore::read_chunk`]): a store that deleted it at once would make a
/// large transfer start over with every newer snapshot, forever under sustained writes.
pub async fn superseded_snapshot_being_sent_stays_readable<H: StorageHarness>(mut harness: H) {
    let mut storage = harness.open().await;
    persist(&mut storage, append(entries(1..=12, 1))).await;
    let store = storage.snapshot_store();
    record_snapshot(&mut storage, 6, 1, &[Bytes::from_static(b"snapshot six")]).await;
    // A transfer of snapshot 6 begins.
    match store.read_chunk(6, 0, 4).await {
        Ok(chunk) => assert_eq!(&chunk[..], b"snap"),
        Err(e) => panic!("first chunk of snapshot 6: {e}"),
    }
    record_snapshot(&mut storage, 10, 1, &[Bytes::from_static(b"ten")]).await;
    // The transfer goes on.
    match store.read_chunk(6, 4, 100).await {
        Ok(chunk) => assert_eq!(&chunk[..], b"shot six"),
        Err(e) => panic!("a superseded snapshot being sent must stay readable: {e}"),
    }
}

/// A long history of appends, truncations, purges and hard states reopens to exactly the log a
/// model of the rules predicts.
pub async fn reopen_after_many_writes_loads_the_same_log<H: StorageHarness>(mut harness: H) {
    let mut storage = harness.open().await;
    let mut model: Vec<Entry> = Vec::new();
    let mut purged_to: Index = 0;
    let mut term = 1;
    let mut hard_state = HardState::default();
    // A fixed pseudo-random walk (the suite must be deterministic).
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..200u64 {
        let last = purged_to + model.len() as Index;
        let choice = next() % 10;
        let mut write = LogWrite::default();
        if choice < 6 || last == purged_to {
            let n = 1 + next() % 8;
            write.entries = entries(last + 1..=last + n, term).into();
        } else if choice < 8 {
            // Truncate a conflicting suffix with entries of a newer term.
            term += 1;
            let from = purged_to + 1 + next() % (last - purged_to);
            write.entries = entries(from..=from + next() % 4, term).into();
        } else {
            let to = purged_to + 1 + next() % (last - purged_to);
            write.purge_to = to;
        }
        if round % 7 == 0 {
            hard_state = HardState {
                term,
                voted_for: Some(1 + round % 3),
                commit: purged_to,
            };
            write.hard_state = Some(hard_state);
        }
        if write.purge_to > 0 {
            model.drain(..(write.purge_to - purged_to) as usize);
            purged_to = write.purge_to;
        }
        if let Some(first) = write.entries.first() {
            model.truncate((first.index - purged_to - 1) as usize);
            model.extend(write.entries.iter().cloned());
        }
        persist(&mut storage, write).await;
        if round % 50 == 49 {
            drop(storage);
            storage = harness.open().await;
        }
        assert_eq!(
            last_index(&storage).await,
            purged_to + model.len() as Index,
            "last index at round {round}"
        );
    }
    drop(storage);
    let mut storage = harness.open().await;
    let log = load(&mut storage).await;
    assert_eq!(log.hard_state, hard_state);
    assert!(log.entries == model, "the reopened log differs from the model");
    let last = purged_to + model.len() as Index;
    assert!(read(&storage, purged_to + 1..=last).await == model);
}
