//! The replicated key-value store: the state machine of the service, the tests and the benchmarks.
//!
//! Commands are encoded with postcard. Writes go through the log; a `Get` or a `Scan` can too, but
//! is better sent through [`RaftNode::read`](raft_node::RaftNode::read), which serves it from the
//! state machine at the consistency level asked for, without writing to the log. Every answer is a
//! [`KvReply`]: the response and the index of the last entry applied when it was made.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use raft_core::{Index, SnapshotRead, SnapshotWrite, StateMachine, StateMachineError, StorageError};

use raft_node::snapshot_stream::{RecordReader, RecordWriter, SnapshotHeader};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// An operation on the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvCommand {
    /// Reads a key.
    Get {
        /// The key.
        key: String,
    },
    /// Sets a key.
    Put {
        /// The key.
        key: String,
        /// The new value.
        value: String,
    },
    /// Removes a key.
    Delete {
        /// The key.
        key: String,
    },
    /// Appends to a key's value (an absent key counts as empty).
    Append {
        /// The key.
        key: String,
        /// What to append.
        value: String,
    },
    /// Sets a key to `new` only if its value is `expected` (`None`: absent). `new: None` deletes.
    CompareAndSwap {
        /// The key.
        key: String,
        /// The value the key must have.
        expected: Option<String>,
        /// The value to set.
        new: Option<String>,
    },
    /// Reads the keys that start with `prefix`, in order, at most `limit` of them.
    Scan {
        /// The prefix (empty: every key).
        prefix: String,
        /// The most pairs returned.
        limit: usize,
    },
}

/// The store's answer to a [`KvCommand`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvResponse {
    /// The value read (`Get`) or the value after an `Append`.
    Value(Option<String>),
    /// The value before a `Put` or `Delete`.
    Previous(Option<String>),
    /// Whether a `CompareAndSwap` swapped, and the value the key has afterwards.
    Swapped {
        /// True when the comparison held and the value was set.
        swapped: bool,
        /// The key's value after the operation.
        current: Option<String>,
    },
    /// The pairs a `Scan` found, in key order.
    Entries {
        /// The pairs.
        entries: Vec<(String, String)>,
        /// Whether more keys with the prefix were left out by the limit.
        more: bool,
    },
    /// The command could not be decoded; nothing changed. Every replica answers the same.
    Invalid(String),
}

/// What the state machine returns for every command and query: the response and the index of the
/// last entry applied when it was made (the entry of the command itself, for a write).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvReply {
    /// The index the response reflects.
    pub index: Index,
    /// The response.
    pub response: KvResponse,
}

/// A value that could not be decoded.
#[derive(Debug, Error)]
#[error("cannot decode key-value message: {0}")]
pub struct DecodeError(#[from] postcard::Error);

impl KvCommand {
    /// Encodes the command for [`RaftNode::propose`](raft_node::RaftNode::propose).
    pub fn encode(&self) -> Bytes {
        // Encoding a plain enum of strings into a Vec cannot fail.
        postcard::to_allocvec(self).map(Bytes::from).unwrap_or_default()
    }

    /// Decodes a command.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        Ok(postcard::from_bytes(bytes)?)
    }

    /// The key the command touches.
    pub fn key(&self) -> &str {
        match self {
            KvCommand::Get { key }
            | KvCommand::Put { key, .. }
            | KvCommand::Delete { key }
            | KvCommand::Append { key, .. }
            | KvCommand::CompareAndSwap { key, .. } => key,
            KvCommand::Scan { prefix, .. } => prefix,
        }
    }

    /// Whether the command only reads (it may be served by [`RaftNode::read`](raft_node::RaftNode::read)).
    pub fn is_read(&self) -> bool {
        matches!(self, KvCommand::Get { .. } | KvCommand::Scan { .. })
    }
}

impl KvReply {
    /// Encodes the reply.
    pub fn encode(&self) -> Bytes {
        postcard::to_allocvec(self).map(Bytes::from).unwrap_or_default()
    }

    /// Decodes a reply returned by [`RaftNode::propose`](raft_node::RaftNode::propose) or
    /// [`RaftNode::read`](raft_node::RaftNode::read).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        Ok(postcard::from_bytes(bytes)?)
    }

    /// The response in a reply's bytes, without its index.
    ///
    /// ```
    /// use raft_kv::{KvReply, KvResponse};
    /// let reply = KvReply { index: 7, response: KvResponse::Value(None) };
    /// assert_eq!(KvReply::response_of(&reply.encode())?, KvResponse::Value(None));
    /// # Ok::<(), raft_kv::DecodeError>(())
    /// ```
    pub fn response_of(bytes: &[u8]) -> Result<KvResponse, DecodeError> {
        Ok(Self::decode(bytes)?.response)
    }
}

#[derive(Debug, Default)]
struct KvState {
    data: BTreeMap<String, String>,
    applied: Index,
}

/// The key-value state machine. Clones share the same data, so a test can read a replica's state
/// while the node owns the state machine.
///
/// ```
/// use raft_kv::{KvCommand, KvResponse, KvStateMachine};
/// use raft_core::StateMachine;
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let mut kv = KvStateMachine::new();
/// let put = KvCommand::Put { key: "a".into(), value: "1".into() };
/// kv.apply(1, &put.encode()).await?;
/// assert_eq!(kv.get("a"), Some("1".to_string()));
/// # Ok::<(), raft_core::StateMachineError>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug, Default)]
pub struct KvStateMachine {
    state: Arc<Mutex<KvState>>,
}

impl KvStateMachine {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, KvState> {
        // Updates are single assignments; a poisoned lock still holds consistent data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The value of `key` on this replica (a local read: it may be stale).
    pub fn get(&self, key: &str) -> Option<String> {
        self.lock().data.get(key).cloned()
    }

    /// A copy of this replica's data.
    pub fn contents(&self) -> BTreeMap<String, String> {
        self.lock().data.clone()
    }

    /// Executes a command against the data.
    fn execute(data: &mut BTreeMap<String, String>, command: KvCommand) -> KvResponse {
        match command {
            KvCommand::Get { key } => KvResponse::Value(data.get(&key).cloned()),
            KvCommand::Scan { prefix, limit } => Self::scan(data, &prefix, limit),
            KvCommand::Put { key, value } => KvResponse::Previous(data.insert(key, value)),
            KvCommand::Delete { key } => KvResponse::Previous(data.remove(&key)),
            KvCommand::Append { key, value } => {
                let current = data.entry(key).or_default();
                current.push_str(&value);
                KvResponse::Value(Some(current.clone()))
            }
            KvCommand::CompareAndSwap { key, expected, new } => {
                let current = data.get(&key).cloned();
                if current == expected {
                    match &new {
                        Some(value) => data.insert(key, value.clone()),
                        None => data.remove(&key),
                    };
                    KvResponse::Swapped {
                        swapped: true,
                        current: new,
                    }
                } else {
                    KvResponse::Swapped {
                        swapped: false,
                        current,
                    }
                }
            }
        }
    }

    fn scan(data: &BTreeMap<String, String>, prefix: &str, limit: usize) -> KvResponse {
        let mut matching = data
            .range::<str, _>((std::ops::Bound::Included(prefix), std::ops::Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix));
        let entries: Vec<(String, String)> = matching
            .by_ref()
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let more = matching.next().is_some();
        KvResponse::Entries { entries, more }
    }
}

impl StateMachine for KvStateMachine {
    async fn apply(&mut self, index: Index, command: &Bytes) -> Result<Bytes, StateMachineError> {
        let mut state = self.lock();
        let response = match KvCommand::decode(command) {
            Ok(command) => Self::execute(&mut state.data, command),
            Err(error) => KvResponse::Invalid(error.to_string()),
        };
        state.applied = index;
        Ok(KvReply { index, response }.encode())
    }

    async fn query(&mut self, query: Bytes) -> Result<Bytes, StateMachineError> {
        let state = self.lock();
        let response = match KvCommand::decode(&query) {
            Ok(KvCommand::Get { key }) => KvResponse::Value(state.data.get(&key).cloned()),
            Ok(KvCommand::Scan { prefix, limit }) => Self::scan(&state.data, &prefix, limit),
            Ok(other) => KvResponse::Invalid(format!(
                "{other:?} changes the store; propose it instead of reading it"
            )),
            Err(error) => KvResponse::Invalid(error.to_string()),
        };
        Ok(KvReply {
            index: state.applied,
            response,
        }
        .encode())
    }

    /// Streams the pairs in key order, a batch at a time, so the lock is never held across a
    /// write and the whole store is never copied at once.
    async fn snapshot(&mut self, snapshot: &mut dyn SnapshotWrite) -> Result<(), StateMachineError> {
        let (index, count) = {
            let state = self.lock();
            (state.applied, state.data.len() as u64)
        };
        let failed = |error| StateMachineError::storage(index, error);
        let mut writer = RecordWriter::new(snapshot);
        let header = KvSnapshotHeader {
            version: KvSnapshotHeader::VERSION,
            pairs: count,
        };
        writer.push(&header).await.map_err(failed)?;
        let mut after: Option<String> = None;
        loop {
            let batch: Vec<(String, String)> = {
                let state = self.lock();
                let range = match &after {
                    None => state.data.range::<String, _>(..),
                    Some(key) => state
                        .data
                        .range::<String, _>((std::ops::Bound::Excluded(key), std::ops::Bound::Unbounded)),
                };
                range
                    .take(SNAPSHOT_BATCH)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            };
            let Some((last, _)) = batch.last() else {
                break;
            };
            after = Some(last.clone());
            for pair in &batch {
                writer.push(pair).await.map_err(failed)?;
            }
        }
        writer.finish().await.map_err(failed)
    }

    async fn restore(
        &mut self,
        index: Index,
        snapshot: &mut dyn SnapshotRead,
    ) -> Result<(), StateMachineError> {
        let failed = |error| StateMachineError::storage(index, error);
        let mut reader = RecordReader::new(snapshot);
        let header: KvSnapshotHeader = reader.header().await.map_err(failed)?;
        let mut data = BTreeMap::new();
        while let Some((key, value)) = reader.next::<(String, String)>().await.map_err(failed)? {
            data.insert(key, value);
        }
        if data.len() as u64 != header.pairs {
            return Err(failed(StorageError::Corrupt(format!(
                "key-value snapshot holds {} pairs, its header says {}",
                data.len(),
                header.pairs
            ))));
        }
        let mut state = self.lock();
        state.data = data;
        state.applied = index;
        Ok(())
    }

    fn applied_index(&self) -> Index {
        self.lock().applied
    }
}

/// Pairs copied out of the store per lock acquisition while snapshotting.
const SNAPSHOT_BATCH: usize = 1024;

/// The first record of a key-value snapshot; the pairs follow, one record each.
#[derive(Debug, Serialize, Deserialize)]
struct KvSnapshotHeader {
    version: u32,
    pairs: u64,
}

impl SnapshotHeader for KvSnapshotHeader {
    const PART: &'static str = "key-value snapshot";
    const VERSION: u32 = 1;
    fn version(&self) -> u32 {
        self.version
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(data: &mut BTreeMap<String, String>, command: KvCommand) -> KvResponse {
        KvStateMachine::execute(data, command)
    }

    #[test]
    fn operations_follow_their_definitions() {
        let mut d = BTreeMap::new();
        let k = || "k".to_string();
        assert_eq!(run(&mut d, KvCommand::Get { key: k() }), KvResponse::Value(None));
        assert_eq!(
            run(
                &mut d,
                KvCommand::Append {
                    key: k(),
                    value: "a".into()
                }
            ),
            KvResponse::Value(Some("a".into()))
        );
        assert_eq!(
            run(
                &mut d,
                KvCommand::Put {
                    key: k(),
                    value: "b".into()
                }
            ),
            KvResponse::Previous(Some("a".into()))
        );
        let cas = |expected: Option<&str>, new: &str| KvCommand::CompareAndSwap {
            key: "k".into(),
            expected: expected.map(str::to_string),
            new: Some(new.to_string()),
        };
        assert_eq!(
            run(&mut d, cas(Some("x"), "c")),
            KvResponse::Swapped {
                swapped: false,
                current: Some("b".into())
            }
        );
        assert_eq!(
            run(&mut d, cas(Some("b"), "c")),
            KvResponse::Swapped {
                swapped: true,
                current: Some("c".into())
            }
        );
        assert_eq!(
            run(&mut d, KvCommand::Delete { key: k() }),
            KvResponse::Previous(Some("c".into()))
        );
        assert!(d.is_empty());
    }

    #[tokio::test]
    async fn scan_returns_the_prefixed_keys_in_order_up_to_the_limit_at_the_applied_index() {
        let mut kv = KvStateMachine::new();
        for (index, key) in ["b/2", "a/1", "b/1", "b/3", "c"].into_iter().enumerate() {
            let put = KvCommand::Put {
                key: key.into(),
                value: index.to_string(),
            };
            kv.apply(index as u64 + 1, &put.encode()).await.unwrap();
        }
        let scan = |prefix: &str, limit| KvCommand::Scan {
            prefix: prefix.into(),
            limit,
        };
        let reply = KvReply::decode(&kv.query(scan("b/", 2).encode()).await.unwrap()).unwrap();
        assert_eq!(reply.index, 5);
        assert_eq!(
            reply.response,
            KvResponse::Entries {
                entries: vec![("b/1".into(), "2".into()), ("b/2".into(), "0".into())],
                more: true
            }
        );
        let all = KvReply::response_of(&kv.query(scan("b/", 10).encode()).await.unwrap()).unwrap();
        assert!(matches!(all, KvResponse::Entries { ref entries, more: false } if entries.len() == 3));
        let none = KvReply::response_of(&kv.query(scan("z", 10).encode()).await.unwrap()).unwrap();
        assert_eq!(
            none,
            KvResponse::Entries {
                entries: vec![],
                more: false
            }
        );
    }

    #[tokio::test]
    async fn a_write_sent_as_a_query_is_refused_and_changes_nothing() {
        let mut kv = KvStateMachine::new();
        let put = KvCommand::Put {
            key: "k".into(),
            value: "v".into(),
        };
        let reply = KvReply::response_of(&kv.query(put.encode()).await.unwrap()).unwrap();
        assert!(matches!(reply, KvResponse::Invalid(_)));
        assert!(kv.contents().is_empty());
    }

    #[tokio::test]
    async fn malformed_command_changes_nothing_and_says_so() {
        let mut kv = KvStateMachine::new();
        let reply = kv
            .apply(1, &Bytes::from_static(&[0xff, 0xff, 0xff]))
            .await
            .unwrap();
        let reply = KvReply::decode(&reply).unwrap();
        assert!(matches!(reply.response, KvResponse::Invalid(_)));
        assert_eq!(reply.index, 1);
        assert!(kv.contents().is_empty());
        assert_eq!(kv.applied_index(), 1);
    }
}
