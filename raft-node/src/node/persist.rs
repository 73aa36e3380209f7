//! The writes to storage: makes the core's writes durable in order, many at a time (group
//! commit), writes received snapshot chunks to the snapshot store first, then releases the
//! messages that waited on the writes.
//!
//! The event loop drives the writes itself, one at a time: [`PersistQueue::push`] queues a job,
//! and the loop polls [`PersistQueue::poll_written`] beside its other inputs. The write in flight
//! owns the storage; every job queued meanwhile goes into the next write, merged into one
//! `persist` call. A store whose write completes at once (in memory) is thus written within the
//! loop's own turn, and one that waits on a disk wakes the loop itself when it is done: no task
//! stands between the two.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use raft_core::{
    Index, LogStorage, LogWrite, ReceivedChunk, SnapshotMeta, SnapshotSink, SnapshotStore, StorageError,
    Transport,
};
use tokio::time::Instant;

use crate::metrics::{MessageMeter, PersistMetrics};

use super::types::{send, PersistJob, Persisted};

/// What a finished write hands back: the writer, the emptied batch (to be filled again without
/// allocating) and what the write made durable.
type Written<S, T> = (Writer<S, T>, Vec<PersistJob>, Result<Persisted, StorageError>);

/// A write being made durable, with the writer it owns until it is done.
type InFlight<S, T> = Pin<Box<dyn Future<Output = Written<S, T>> + Send>>;

/// The node's writes to storage: at most one in flight, the jobs queued behind it, and the
/// writer (the storage and what goes with it) while no write is in flight.
pub(super) struct PersistQueue<S: LogStorage, T> {
    idle: Option<Writer<S, T>>,
    in_flight: Option<InFlight<S, T>>,
    queued: Vec<PersistJob>,
    /// A batch emptied by the last write, kept for its capacity.
    spare: Vec<PersistJob>,
    /// A write failed: nothing more is written.
    failed: bool,
}

impl<S: LogStorage, T: Transport> PersistQueue<S, T> {
    pub(super) fn new(storage: S, transport: Arc<T>, meter: MessageMeter, metrics: PersistMetrics) -> Self {
        let snapshots = storage.snapshot_store();
        PersistQueue {
            idle: Some(Writer {
                storage,
                snapshots,
                receiving: ReceivingSnapshot::default(),
                transport,
                meter,
                metrics,
            }),
            in_flight: None,
            queued: Vec::new(),
            spare: Vec::new(),
            failed: false,
        }
    }

    /// Queues `job`, and starts writing it unless a write is in flight (then it goes into the
    /// next one, with everything else queued meanwhile). The write makes progress when the loop
    /// polls [`Self::poll_written`].
    pub(super) fn push(&mut self, job: PersistJob) {
        self.queued.push(job);
        self.start();
    }

    /// Whether a write is in flight, to be polled.
    pub(super) fn is_writing(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Polls the write in flight. When it is done, starts the next one (everything queued
    /// meanwhile) and polls that too, so that a disk write is under way before this returns;
    /// returns what the finished writes made durable, or the first failure. `Pending`,
    /// registering no waker, when no write is in flight.
    pub(super) fn poll_written(&mut self, cx: &mut Context<'_>) -> Poll<Result<Persisted, StorageError>> {
        let mut done: Option<Persisted> = None;
        while let Some(in_flight) = self.in_flight.as_mut() {
            let Poll::Ready((writer, batch, result)) = in_flight.as_mut().poll(cx) else {
                break;
            };
            self.in_flight = None;
            self.idle = Some(writer);
            self.spare = batch;
            match result {
                Ok(persisted) => match &mut done {
                    Some(earlier) => earlier.extend(persisted),
                    None => done = Some(persisted),
                },
                Err(error) => {
                    self.failed = true;
                    return Poll::Ready(Err(error));
                }
            }
            self.start();
        }
        done.map_or(Poll::Pending, |persisted| Poll::Ready(Ok(persisted)))
    }

    /// Finishes the write in flight and writes what is still queued (the node is stopping: the
    /// writes it handed over are still made, and their messages sent).
    pub(super) async fn finish(&mut self) {
        while self.is_writing() {
            let _ = std::future::poll_fn(|cx| self.poll_written(cx)).await;
        }
    }

    /// Starts a write of everything queued, if there is any and none is in flight.
    fn start(&mut self) {
        if self.failed || self.queued.is_empty() {
            return;
        }
        let Some(mut writer) = self.idle.take() else {
            return;
        };
        let next = std::mem::take(&mut self.spare);
        let mut batch = std::mem::replace(&mut self.queued, next);
        self.in_flight = Some(Box::pin(async move {
            let result = writer.write(&mut batch).await;
            batch.clear();
            (writer, batch, result)
        }));
    }
}

/// Owns the storage: writes a batch of jobs as one, then releases the messages that waited on
/// them.
struct Writer<S: LogStorage, T> {
    storage: S,
    snapshots: S::Snapshots,
    receiving: ReceivingSnapshot,
    transport: Arc<T>,
    meter: MessageMeter,
    metrics: PersistMetrics,
}

impl<S: LogStorage, T: Transport> Writer<S, T> {
    /// Makes `batch` durable as one write (its snapshot chunks first), then sends the messages
    /// that waited on it.
    async fn write(&mut self, batch: &mut [PersistJob]) -> Result<Persisted, StorageError> {
        // Snapshot chunks go to the snapshot store first; a completed snapshot is finished
        // (durable) before the write that records it as the latest.
        for job in batch.iter_mut() {
            let chunks = std::mem::take(&mut job.chunks);
            self.receiving
                .store(&self.snapshots, chunks, job.restore.as_ref())
                .await?;
        }
        let write = merge_writes(batch)?;
        if !write.is_empty() {
            let measured = self.metrics.enabled.then(|| {
                let bytes: usize = write.entries.iter().map(|e| e.size_bytes()).sum();
                (write.entries.len(), bytes, Instant::now())
            });
            self.storage.persist(write).await?;
            if let Some((entries, bytes, started)) = measured {
                self.metrics.latency.record(started.elapsed().as_secs_f64());
                self.metrics.entries.record(entries as f64);
                self.metrics.bytes.record(bytes as f64);
            }
        }
        let mut persisted = Persisted::default();
        for job in batch.iter_mut() {
            for message in job.messages.drain(..) {
                send(&*self.transport, &mut self.meter, message);
            }
            persisted.acknowledged.extend(job.persisted);
            persisted.restore.extend(job.restore.take());
        }
        Ok(persisted)
    }
}

/// The snapshots a follower is receiving from the leader, as they are written to the snapshot
/// store, by index.
#[derive(Default)]
struct ReceivingSnapshot {
    sinks: BTreeMap<Index, Box<dyn SnapshotSink>>,
}

impl ReceivingSnapshot {
    /// Writes `chunks` (a chunk at offset 0 starts its snapshot afresh), then finishes the
    /// snapshot `complete` names, if any, abandoning older unfinished ones.
    async fn store<St: SnapshotStore>(
        &mut self,
        snapshots: &St,
        chunks: Vec<ReceivedChunk>,
        complete: Option<&SnapshotMeta>,
    ) -> Result<(), StorageError> {
        for chunk in chunks {
            let index = chunk.snapshot_index;
            if chunk.offset == 0 {
                // A new transfer: one started earlier (another snapshot, or this one from an
                // earlier leader) will not be finished; dropping its sink abandons its file.
                self.sinks.clear();
                self.sinks.insert(index, snapshots.create(index).await?);
            }
            match self.sinks.get_mut(&index) {
                Some(sink) => sink.write(chunk.data).await?,
                None => return Err(StorageError::SnapshotNotFound(index)),
            }
        }
        if let Some(meta) = complete {
            let sink = self
                .sinks
                .remove(&meta.index)
                .ok_or(StorageError::SnapshotNotFound(meta.index))?;
            sink.finish().await?;
            self.sinks.retain(|index, _| *index > meta.index);
        }
        Ok(())
    }
}

/// Merges consecutive writes into one (group commit), exactly as storage would apply them one
/// after the other; refused, as storage would refuse the later write, when one leaves a gap.
fn merge_writes(batch: &mut [PersistJob]) -> Result<LogWrite, StorageError> {
    let mut merged = LogWrite::default();
    for job in batch.iter_mut() {
        merged.merge(std::mem::take(&mut job.write))?;
    }
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft_core::{Entry, Term};

    #[cfg(feature = "mem")]
    mod queue {
        use std::sync::Mutex;
        use std::task::Waker;

        use raft_core::{HeartbeatResponse, Message, MessageBody, TransportError};
        use raft_storage_mem::MemStorage;

        use super::*;

        /// Records what is sent, in order.
        #[derive(Default)]
        struct Recorder(Mutex<Vec<Message>>);

        impl Transport for Recorder {
            fn send(&self, message: Message) -> Result<(), TransportError> {
                self.0.lock().unwrap_or_else(|e| e.into_inner()).push(message);
                Ok(())
            }
        }

        impl Recorder {
            fn rounds(&self) -> Vec<u64> {
                let sent = self.0.lock().unwrap_or_else(|e| e.into_inner());
                sent.iter()
                    .map(|m| match &m.body {
                        MessageBody::HeartbeatResponse(r) => r.round,
                        _ => 0,
                    })
                    .collect()
            }
        }

        /// A job writing entry `index` that releases a message tagged `index` once durable.
        fn entry_job(index: Index) -> PersistJob {
            let mut job = job(vec![Entry::command(1, index, "x")], None);
            job.persisted = Some((index, 1));
            job.messages = vec![Message {
                from: 2,
                to: 1,
                term: 1,
                body: MessageBody::HeartbeatResponse(HeartbeatResponse { round: index }),
            }];
            job
        }

        fn queue(storage: &MemStorage, transport: &Arc<Recorder>) -> PersistQueue<MemStorage, Recorder> {
            PersistQueue::new(
                storage.clone(),
                transport.clone(),
                MessageMeter::new(2, false),
                PersistMetrics::new(2, false),
            )
        }

        fn poll_once(
            queue: &mut PersistQueue<MemStorage, Recorder>,
        ) -> Poll<Result<Persisted, StorageError>> {
            queue.poll_written(&mut Context::from_waker(Waker::noop()))
        }

        #[tokio::test]
        async fn an_in_memory_write_is_durable_on_its_first_poll_and_then_releases_its_messages() {
            let storage = MemStorage::new();
            let transport = Arc::new(Recorder::default());
            let mut queue = queue(&storage, &transport);
            queue.push(entry_job(1));
            assert!(transport.rounds().is_empty(), "nothing leaves before the write");
            let Poll::Ready(Ok(persisted)) = poll_once(&mut queue) else {
                panic!("an in-memory write waits for nothing");
            };
            assert_eq!(persisted.acknowledged, vec![(1, 1)]);
            assert_eq!(storage.durable_entries().len(), 1);
            assert_eq!(transport.rounds(), vec![1]);
            assert!(!queue.is_writing());
        }

        #[tokio::test]
        async fn jobs_queued_behind_a_write_in_flight_go_into_the_next_write_as_one() {
            let storage = MemStorage::new();
            storage.hold_writes();
            let transport = Arc::new(Recorder::default());
            let mut queue = queue(&storage, &transport);
            queue.push(entry_job(1));
            assert!(
                poll_once(&mut queue).is_pending(),
                "the disk holds the first write"
            );
            queue.push(entry_job(2));
            queue.push(entry_job(3));
            assert!(poll_once(&mut queue).is_pending());
            assert!(transport.rounds().is_empty(), "nothing is durable yet");

            storage.release_writes();
            // The poll that finds the first write done starts the next one and, as an
            // in-memory write completes at once, reports both.
            let written = std::future::poll_fn(|cx| queue.poll_written(cx)).await;
            assert_eq!(
                written.map(|p| p.acknowledged).ok(),
                Some(vec![(1, 1), (2, 1), (3, 1)])
            );
            assert!(!queue.is_writing());
            assert_eq!(storage.write_count(), 2, "jobs 2 and 3 were one write");
            assert_eq!(transport.rounds(), vec![1, 2, 3], "messages leave in order");
            let indexes: Vec<Index> = storage.durable_entries().iter().map(|e| e.index).collect();
            assert_eq!(indexes, vec![1, 2, 3]);
        }

        #[tokio::test]
        async fn finishing_makes_the_write_in_flight_and_every_queued_one() {
            let storage = MemStorage::new();
            storage.hold_writes();
            let transport = Arc::new(Recorder::default());
            let mut queue = queue(&storage, &transport);
            queue.push(entry_job(1));
            assert!(poll_once(&mut queue).is_pending());
            queue.push(entry_job(2));
            let releaser = {
                let storage = storage.clone();
                tokio::spawn(async move {
                    tokio::task::yield_now().await;
                    storage.release_writes();
                })
            };
            queue.finish().await;
            releaser.await.expect("released");
            assert_eq!(storage.durable_entries().len(), 2);
            assert_eq!(transport.rounds(), vec![1, 2]);
            assert!(!queue.is_writing());
        }

        #[tokio::test]
        async fn after_a_failed_write_nothing_more_is_written() {
            use raft_storage_mem::{FaultyStorage, WriteFault};
            let (storage, faults) = FaultyStorage::new(MemStorage::new());
            let transport = Arc::new(Recorder::default());
            let mut queue = PersistQueue::new(
                storage,
                transport.clone(),
                MessageMeter::new(2, false),
                PersistMetrics::new(2, false),
            );
            faults.fail_writes(WriteFault::DiskFull);
            queue.push(entry_job(1));
            queue.push(entry_job(2));
            let failed = std::future::poll_fn(|cx| queue.poll_written(cx)).await;
            assert!(failed.is_err());
            assert!(
                !queue.is_writing(),
                "the job queued behind the failure is not written"
            );
            queue.push(entry_job(3));
            assert!(!queue.is_writing());
            queue.finish().await;
            assert!(
                transport.rounds().is_empty(),
                "no message waited on a failed write leaves"
            );
            assert_eq!(faults.writes_failed(), 1);
        }
    }

    fn job(entries: Vec<Entry>, term: Option<Term>) -> PersistJob {
        PersistJob {
            write: LogWrite {
                entries: entries.into(),
                hard_state: term.map(|term| raft_core::HardState {
                    term,
                    voted_for: None,
                    commit: 0,
                }),
                ..LogWrite::default()
            },
            persisted: None,
            messages: Vec::new(),
            chunks: Vec::new(),
            restore: None,
        }
    }

    #[test]
    fn merged_writes_apply_later_truncations_and_the_last_hard_state() {
        let mut batch = vec![
            job(
                vec![Entry::blank(1, 1), Entry::blank(1, 2), Entry::blank(1, 3)],
                Some(1),
            ),
            job(vec![Entry::blank(2, 2)], Some(2)),
            job(vec![Entry::blank(2, 3)], None),
        ];
        let merged = merge_writes(&mut batch).expect("no gap");
        let terms: Vec<(Index, Term)> = merged.entries.iter().map(|e| (e.index, e.term)).collect();
        assert_eq!(terms, vec![(1, 1), (2, 2), (3, 2)]);
        assert_eq!(merged.hard_state.map(|h| h.term), Some(2));
    }

    #[test]
    fn a_merged_write_whose_entries_leave_a_gap_is_refused() {
        let mut batch = vec![
            job(vec![Entry::blank(1, 1), Entry::blank(1, 2)], None),
            job(vec![Entry::blank(1, 4)], None),
        ];
        assert!(matches!(
            merge_writes(&mut batch),
            Err(StorageError::LogGap { first: 4, last: 2 })
        ));
    }
}
