//! What the node's integration tests share.

use async_trait::async_trait;
use bytes::Bytes;
use raft_node::raft_core::{Index, SnapshotRead, SnapshotWrite, StateMachine, StateMachineError};

/// Answers every command with its index.
#[derive(Default)]
pub struct Echo {
    applied: Index,
}

#[async_trait]
impl StateMachine for Echo {
    async fn apply(&mut self, index: Index, _command: Bytes) -> Result<Bytes, StateMachineError> {
        self.applied = index;
        Ok(Bytes::from(index.to_string()))
    }
    async fn query(&mut self, _query: Bytes) -> Result<Bytes, StateMachineError> {
        Ok(Bytes::new())
    }
    async fn snapshot(&mut self, out: &mut dyn SnapshotWrite) -> Result<(), StateMachineError> {
        out.write(Bytes::new())
            .await
            .map_err(|e| StateMachineError::storage(self.applied, e))
    }
    async fn restore(
        &mut self,
        index: Index,
        _input: &mut dyn SnapshotRead,
    ) -> Result<(), StateMachineError> {
        self.applied = index;
        Ok(())
    }
    fn applied_index(&self) -> Index {
        self.applied
    }
}
