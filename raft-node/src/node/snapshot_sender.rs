//! The snapshot sender: reads the chunks of a snapshot the leader sends to a lagging follower
//! from the snapshot store, on a task of its own so that a large transfer never delays heartbeats.
//! Before the first chunk of a snapshot goes out, its bytes are checked against its metadata: a
//! damaged snapshot is reported like a failed write (the node stops and says why) instead of
//! being sent to a follower, which would refuse it at its end and have the transfer start over
//! forever.

use std::collections::BTreeSet;
use std::sync::Arc;

use raft_core::{Index, SnapshotChunkRequest, SnapshotStore, StorageError, Transport};
use tokio::sync::mpsc;
use tracing::{debug, error, info};

use crate::metrics::MessageMeter;

use super::snapshot_check::verify_snapshot;
use super::types::send;

/// Snapshots whose bytes were checked, remembered so that each is read in full once.
const VERIFIED_KEPT: usize = 8;

/// Reads the chunks of snapshots the leader sends and hands them to the transport.
pub(super) async fn send_snapshot_chunks<St: SnapshotStore, T: Transport>(
    snapshots: St,
    transport: Arc<T>,
    mut requests: mpsc::UnboundedReceiver<SnapshotChunkRequest>,
    failures: mpsc::UnboundedSender<StorageError>,
    mut meter: MessageMeter,
) {
    let mut verified: BTreeSet<Index> = BTreeSet::new();
    while let Some(request) = requests.recv().await {
        let index = request.meta.index;
        if !verified.contains(&index) {
            match verify_snapshot(&snapshots, &request.meta).await {
                Ok(()) => {
                    verified.insert(index);
                    while verified.len() > VERIFIED_KEPT {
                        verified.pop_first();
                    }
                }
                Err(failure @ StorageError::Corrupt(_)) => {
                    error!(snapshot = index, error = %failure, "a snapshot to send is damaged; stopping");
                    let _ = failures.send(failure);
                    return;
                }
                // Superseded and deleted meanwhile: the core moves on to a newer one.
                Err(other) => {
                    debug!(to = request.to, error = %other, "snapshot chunk not sent");
                    continue;
                }
            }
        }
        match snapshots.read_chunk(index, request.offset, request.len).await {
            Ok(data) => {
                if request.offset == 0 {
                    meter.snapshot_send(request.to);
                    info!(
                        to = request.to,
                        snapshot = index,
                        bytes = request.meta.size,
                        "snapshot transfer starts"
                    );
                }
                send(&*transport, &mut meter, request.into_message(data));
            }
            // Superseded by a newer snapshot: the core starts over with that one when the
            // transfer stalls.
            Err(error) => debug!(to = request.to, %error, "snapshot chunk not sent"),
        }
    }
}
