//! The persist task: makes the core's writes durable in order, many at a time (group commit),
//! writes received snapshot chunks to the snapshot store first, then releases the messages that
//! waited on the writes.

use std::collections::BTreeMap;
use std::sync::Arc;

use raft_core::{
    Index, LogStorage, LogWrite, ReceivedChunk, SnapshotMeta, SnapshotSink, SnapshotStore, StorageError,
    Transport,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::metrics::{MessageMeter, PersistMetrics};

use super::types::{send, PersistJob, Persisted};

/// Makes writes durable in order, many at a time, then releases the messages that waited on them.
pub(super) async fn persist_loop<S: LogStorage, T: Transport>(
    mut storage: S,
    transport: Arc<T>,
    mut jobs: mpsc::UnboundedReceiver<PersistJob>,
    done: mpsc::UnboundedSender<Result<Persisted, StorageError>>,
    mut meter: MessageMeter,
    metrics: PersistMetrics,
) {
    let snapshots = storage.snapshot_store();
    let mut receiving = ReceivingSnapshot::default();
    while let Some(first) = jobs.recv().await {
        let mut batch = vec![first];
        while let Ok(job) = jobs.try_recv() {
            batch.push(job);
        }
        // Snapshot chunks go to the snapshot store first; a completed snapshot is finished
        // (durable) before the write that records it as the latest.
        for job in &mut batch {
            let stored = receiving.store(&snapshots, std::mem::take(&mut job.chunks), job.restore.as_ref());
            if let Err(error) = stored.await {
                let _ = done.send(Err(error));
                return;
            }
        }
        let write = merge_writes(&mut batch);
        if !write.is_empty() {
            let measured = metrics.enabled.then(|| {
                let bytes: usize = write.entries.iter().map(|e| e.size_bytes()).sum();
                (write.entries.len(), bytes, Instant::now())
            });
            if let Err(error) = storage.persist(write).await {
                let _ = done.send(Err(error));
                return;
            }
            if let Some((entries, bytes, started)) = measured {
                metrics.latency.record(started.elapsed().as_secs_f64());
                metrics.entries.record(entries as f64);
                metrics.bytes.record(bytes as f64);
            }
        }
        let mut persisted = Persisted::default();
        for job in batch {
            for message in job.messages {
                send(&*transport, &mut meter, message);
            }
            persisted.acknowledged.extend(job.persisted);
            persisted.restore.extend(job.restore);
        }
        if done.send(Ok(persisted)).is_err() {
            return;
        }
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
