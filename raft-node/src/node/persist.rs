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
    /// meanwhile) and returns what it made durable; the next write's progress waits for the next
    /// poll. `Pending`, registering no waker, when no write is in flight.
    pub(super) fn poll_written(&mut self, cx: &mut Context<'_>) -> Poll<Result<Persisted, StorageError>> {
        let Some(in_flight) = self.in_flight.as_mut() else {
            return Poll::Pending;
        };
        let (writer, batch, result) = std::task::ready!(in_flight.as_mut().poll(cx));
        self.in_flight = None;
        self.idle = Some(writer);
        self.spare = batch;
        if result.is_err() {
            self.failed = true;
        } else {
            self.start();
        }
        Poll::Ready(result)
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
        let write = merge_writes(batch);
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
/// after the other.
fn merge_writes(batch: &mut [PersistJob]) -> LogWrite {
    let mut merged = LogWrite::default();
    for job in batch.iter_mut() {
        merged.merge(std::mem::take(&mut job.write));
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft_core::{Entry, Term};

    fn job(entries: Vec<Entry>, term: Option<Term>) -> PersistJob {
        PersistJob {
            write: LogWrite {
                entries,
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
        let merged = merge_writes(&mut batch);
        let terms: Vec<(Index, Term)> = merged.entries.iter().map(|e| (e.index, e.term)).collect();
        assert_eq!(terms, vec![(1, 1), (2, 2), (3, 2)]);
        assert_eq!(merged.hard_state.map(|h| h.term), Some(2));
    }
}
