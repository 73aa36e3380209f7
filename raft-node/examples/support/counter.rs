//! The tutorial's state machine: a counter that every command increments. Both counter examples
//! (`counter`: three nodes in one process, `counter_node`: three processes) run it.

use bytes::Bytes;
use raft_core::{Index, SnapshotRead, SnapshotWrite, StateMachine, StateMachineError};

/// The state machine: a count, and how far it has applied the log.
#[derive(Default)]
pub struct Counter {
    count: u64,
    applied: Index,
}

impl StateMachine for Counter {
    async fn apply(&mut self, index: Index, _command: &Bytes) -> Result<Bytes, StateMachineError> {
        self.count += 1;
        self.applied = index;
        Ok(Bytes::from(self.count.to_string()))
    }

    async fn query(&mut self, _query: Bytes) -> Result<Bytes, StateMachineError> {
        Ok(Bytes::from(self.count.to_string()))
    }

    async fn snapshot(&mut self, out: &mut dyn SnapshotWrite) -> Result<(), StateMachineError> {
        let bytes = Bytes::copy_from_slice(&self.count.to_le_bytes());
        out.write(bytes)
            .await
            .map_err(|e| StateMachineError::storage(self.applied, e))
    }

    async fn restore(&mut self, index: Index, input: &mut dyn SnapshotRead) -> Result<(), StateMachineError> {
        let bytes = input
            .read()
            .await
            .map_err(|e| StateMachineError::storage(index, e))?;
        let count = bytes
            .as_deref()
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .unwrap_or_default();
        (self.count, self.applied) = (u64::from_le_bytes(count), index);
        Ok(())
    }

    fn applied_index(&self) -> Index {
        self.applied
    }
}
