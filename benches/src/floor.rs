//! The channel floor: the closed-loop benchmark's clients against a server that does no work.
//!
//! A write to a [`raft_node::RaftNode`] crosses from the client's runtime to the node's and back:
//! a bounded queue in, a oneshot answer out, and a wake-up of a task on the other runtime each
//! way. Any implementation that answers each client write by a oneshot from another runtime (as
//! `RaftNode::propose` and openraft's `client_write` both do) pays these, whatever its protocol.
//! [`ChannelFloor`] is only that: one task takes the queued writes in batches and answers each at
//! once. The writes per second it reaches at a client count bound what any such cluster can
//! reach at that count on the same machine.

use bytes::Bytes;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};

use crate::WriteTarget;

/// A queued write and where its answer goes.
type Write = (Bytes, oneshot::Sender<Bytes>);

/// A server that answers every write at once (see the module's documentation). Its task ends
/// when the last clone is dropped.
///
/// ```no_run
/// # async fn example() {
/// use raft_benches::{closed_loop, ChannelFloor, MachineKind};
/// let server = tokio::runtime::Handle::current();
/// let floor = ChannelFloor::start(&server, 4096);
/// let run = closed_loop(floor, &server, 64, 100_000, MachineKind::Noop, 128).await;
/// println!("{:.0} writes/s", run.per_second());
/// # }
/// ```
#[derive(Clone)]
pub struct ChannelFloor {
    writes: mpsc::Sender<Write>,
}

impl ChannelFloor {
    /// Starts the answering task on `runtime`, behind a queue of `queue` writes (`RaftNode`'s
    /// request queue holds `NodeConfig::request_queue`, 4096 by default).
    pub fn start(runtime: &Handle, queue: usize) -> ChannelFloor {
        let queue = queue.max(1);
        let (writes, mut queued) = mpsc::channel::<Write>(queue);
        runtime.spawn(async move {
            let mut batch = Vec::with_capacity(queue);
            while queued.recv_many(&mut batch, queue).await > 0 {
                for (command, reply) in batch.drain(..) {
                    drop(command);
                    let _ = reply.send(Bytes::new());
                }
            }
        });
        ChannelFloor { writes }
    }
}

impl WriteTarget for ChannelFloor {
    type Endpoint = mpsc::Sender<Write>;

    fn endpoint(&self) -> Option<Self::Endpoint> {
        Some(self.writes.clone())
    }

    fn fallback(&self) -> Self::Endpoint {
        self.writes.clone()
    }

    async fn write(writes: &Self::Endpoint, command: Bytes) -> bool {
        let (reply, answer) = oneshot::channel();
        let queued = match writes.try_send((command, reply)) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(write)) => writes.send(write).await.map_err(drop),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(()),
        };
        queued.is_ok() && answer.await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{closed_loop, MachineKind};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn channel_floor_answers_every_write() {
        let runtime = Handle::current();
        let floor = ChannelFloor::start(&runtime, 16);
        let run = closed_loop(floor.clone(), &runtime, 8, 800, MachineKind::Noop, 16).await;
        assert_eq!(run.operations, 800);
        assert_eq!(run.errors, 0);
        assert_eq!(run.latency_us.len(), 800);
    }
}
