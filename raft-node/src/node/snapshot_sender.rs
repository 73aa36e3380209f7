//! The snapshot sender: reads the chunks of a snapshot the leader sends to a lagging follower
//! from the snapshot store, on a task of its own so that a large transfer never delays heartbeats.

use std::sync::Arc;

use raft_core::{SnapshotChunkRequest, SnapshotStore, Transport};
use tokio::sync::mpsc;
use tracing::debug;

use super::types::send;

/// Reads the chunks of snapshots the leader sends and hands them to the transport.
pub(super) async fn send_snapshot_chunks<St: SnapshotStore, T: Transport>(
    snapshots: St,
    transport: Arc<T>,
    mut requests: mpsc::UnboundedReceiver<SnapshotChunkRequest>,
) {
    while let Some(request) = requests.recv().await {
        match snapshots
            .read_chunk(request.meta.index, request.offset, request.len)
            .await
        {
            Ok(data) => send(&*transport, request.into_message(data)),
            // Superseded by a newer snapshot: the core starts over with that one when the
            // transfer stalls.
            Err(error) => debug!(to = request.to, %error, "snapshot chunk not sent"),
        }
    }
}
