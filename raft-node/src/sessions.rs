//! Exactly-once client sessions (Raft thesis §6.3).
//!
//! A proposal whose outcome is unknown (a timeout, a leader change, a node that stopped) can only
//! be retried safely if the state machine recognizes the retry. [`Sessions`] wraps any
//! [`StateMachine`] and keeps, in the replicated state, each client session's highest applied
//! sequence number and that request's response. A retried request (same session, same sequence
//! number) gets the stored response and is not applied again. [`SessionClient`](crate::SessionClient) (in `session_client.rs`) numbers requests
//! and retries them on timeouts and leader changes, following the leader hint, with the same
//! sequence number, so its caller gets exactly-once writes without thinking about it.
//!
//! **Expiry is deterministic.** A session unused for `expire_after_entries` log entries is
//! forgotten when an entry at least that far on is applied: every replica applies the same entries,
//! so every replica forgets it at the same index (never by a node's own clock). A request of a
//! forgotten session is refused with [`SessionResponse::UnknownSession`] and not applied.
//!
//! **Snapshots** hold the session table ahead of the wrapped state machine's own snapshot.
//!
//! Commands that do not start with the session envelope's marker go straight to the wrapped state
//! machine, so plain proposals keep working beside sessions.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use bytes::Bytes;
use raft_core::{Index, SnapshotRead, SnapshotWrite, StateMachine, StateMachineError, StorageError};
use serde::{Deserialize, Serialize};
use tracing::debug;

use crate::snapshot_stream::{RecordReader, RecordWriter, SnapshotHeader};

/// The two bytes that open every session command (no postcard-encoded enum of fewer than 0xF5
/// variants starts with them).
const MARKER: [u8; 2] = [0xF5, 0x5E];

/// A client session's id: the log index of the entry that registered it (unique in the cluster).
pub type SessionId = u64;

/// A command of the session layer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionCommand {
    /// Opens a session; its id is this entry's index.
    Register,
    /// Request `sequence` of `session`: apply `command` once.
    Request {
        /// The session.
        session: SessionId,
        /// Numbers the session's requests, from 1, without gaps.
        sequence: u64,
        /// The command for the wrapped state machine.
        command: Bytes,
    },
    /// Ends a session.
    Close {
        /// The session.
        session: SessionId,
    },
}

impl SessionCommand {
    /// The command as proposed: the marker, then postcard.
    pub fn encode(&self) -> Bytes {
        let mut bytes = MARKER.to_vec();
        // A plain enum of integers and bytes always encodes.
        bytes.extend(postcard::to_allocvec(self).unwrap_or_default());
        bytes.into()
    }

    /// The session command in `bytes`, or `None` when they are not one (a plain command).
    pub fn decode(bytes: &[u8]) -> Option<Result<Self, postcard::Error>> {
        let body = bytes.strip_prefix(&MARKER)?;
        Some(postcard::from_bytes(body))
    }
}

/// The session layer's answer to a [`SessionCommand`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionResponse {
    /// The session is open.
    Registered {
        /// Its id.
        session: SessionId,
    },
    /// The wrapped state machine's response: fresh, or remembered for a retry.
    Applied(Bytes),
    /// The session expired or never existed: the request was not applied. Register again.
    UnknownSession,
    /// The request is older than the session's last applied one; its response is no longer kept
    /// (it was applied).
    Superseded {
        /// The session's last applied sequence number.
        last_sequence: u64,
    },
    /// The session was closed.
    Closed,
    /// The command could not be decoded; nothing was applied.
    Invalid(String),
}

impl SessionResponse {
    fn encode(&self) -> Bytes {
        postcard::to_allocvec(self).unwrap_or_default().into()
    }

    /// Decodes a response.
    pub fn decode(bytes: &[u8]) -> Result<Self, postcard::Error> {
        postcard::from_bytes(bytes)
    }
}

/// What the replicated state keeps per session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct SessionRecord {
    session: SessionId,
    last_sequence: u64,
    response: Bytes,
    /// The index of the last entry that used the session.
    last_active: Index,
}

/// The first record of the session table in a snapshot.
#[derive(Debug, Serialize, Deserialize)]
struct TableHeader {
    version: u32,
    sessions: u64,
    expire_after_entries: u64,
}

impl SnapshotHeader for TableHeader {
    const PART: &'static str = "session table";
    const VERSION: u32 = 1;
    fn version(&self) -> u32 {
        self.version
    }
}

/// A state machine with exactly-once client sessions in front of `M`.
#[derive(Debug)]
pub struct Sessions<M> {
    inner: M,
    table: BTreeMap<SessionId, SessionRecord>,
    /// (last active index, session), to find the sessions due to expire.
    by_activity: BTreeSet<(Index, SessionId)>,
    expire_after_entries: u64,
    applied: Index,
}

impl<M: StateMachine> Sessions<M> {
    /// Wraps `inner`; sessions unused for `expire_after_entries` entries expire. Every node of a
    /// cluster must use the same value.
    pub fn new(inner: M, expire_after_entries: u64) -> Self {
        Sessions {
            applied: inner.applied_index(),
            inner,
            table: BTreeMap::new(),
            by_activity: BTreeSet::new(),
            expire_after_entries: expire_after_entries.max(1),
        }
    }

    /// The wrapped state machine.
    pub fn inner(&self) -> &M {
        &self.inner
    }

    /// How many sessions are open.
    pub fn open_sessions(&self) -> usize {
        self.table.len()
    }

    fn expire(&mut self, index: Index) {
        while let Some(&(active, session)) = self.by_activity.first() {
            if active.saturating_add(self.expire_after_entries) > index {
                break;
            }
            self.by_activity.pop_first();
            self.table.remove(&session);
            debug!(session, index, "session expired");
        }
    }

    fn touch(&mut self, session: SessionId, index: Index) {
        if let Some(record) = self.table.get_mut(&session) {
            self.by_activity.remove(&(record.last_active, session));
            record.last_active = index;
            self.by_activity.insert((index, session));
        }
    }

    async fn apply_session(
        &mut self,
        index: Index,
        command: SessionCommand,
    ) -> Result<SessionResponse, StateMachineError> {
        Ok(match command {
            SessionCommand::Register => {
                let record = SessionRecord {
                    session: index,
                    last_sequence: 0,
                    response: Bytes::new(),
                    last_active: index,
                };
                self.table.insert(index, record);
                self.by_activity.insert((index, index));
                SessionResponse::Registered { session: index }
            }
            SessionCommand::Close { session } => {
                if let Some(record) = self.table.remove(&session) {
                    self.by_activity.remove(&(record.last_active, session));
                }
                SessionResponse::Closed
            }
            SessionCommand::Request {
                session,
                sequence,
                command,
            } => {
                let Some(record) = self.table.get(&session) else {
                    return Ok(SessionResponse::UnknownSession);
                };
                if sequence == record.last_sequence {
                    let response = SessionResponse::Applied(record.response.clone());
                    self.touch(session, index);
                    return Ok(response);
                }
                if sequence < record.last_sequence {
                    return Ok(SessionResponse::Superseded {
                        last_sequence: record.last_sequence,
                    });
                }
                let response = self.inner.apply(index, command).await?;
                if let Some(record) = self.table.get_mut(&session) {
                    record.last_sequence = sequence;
                    record.response = response.clone();
                }
                self.touch(session, index);
                SessionResponse::Applied(response)
            }
        })
    }
}

#[async_trait]
impl<M: StateMachine> StateMachine for Sessions<M> {
    async fn apply(&mut self, index: Index, command: Bytes) -> Result<Bytes, StateMachineError> {
        self.expire(index);
        self.applied = index;
        match SessionCommand::decode(&command) {
            None => self.inner.apply(index, command).await,
            Some(Err(error)) => Ok(SessionResponse::Invalid(error.to_string()).encode()),
            Some(Ok(command)) => Ok(self.apply_session(index, command).await?.encode()),
        }
    }

    async fn query(&mut self, query: Bytes) -> Result<Bytes, StateMachineError> {
        self.inner.query(query).await
    }

    async fn snapshot(&mut self, snapshot: &mut dyn SnapshotWrite) -> Result<(), StateMachineError> {
        let index = self.applied;
        let failed = |error| StateMachineError::storage(index, error);
        let mut writer = RecordWriter::new(snapshot);
        let header = TableHeader {
            version: TableHeader::VERSION,
            sessions: self.table.len() as u64,
            expire_after_entries: self.expire_after_entries,
        };
        writer.push(&header).await.map_err(failed)?;
        for record in self.table.values() {
            writer.push(record).await.map_err(failed)?;
        }
        writer.finish().await.map_err(failed)?;
        self.inner.snapshot(snapshot).await
    }

    async fn restore(
        &mut self,
        index: Index,
        snapshot: &mut dyn SnapshotRead,
    ) -> Result<(), StateMachineError> {
        let failed = |error| StateMachineError::storage(index, error);
        let mut reader = RecordReader::new(snapshot);
        let header: TableHeader = reader.header().await.map_err(failed)?;
        let mut table = BTreeMap::new();
        let mut by_activity = BTreeSet::new();
        for _ in 0..header.sessions {
            let record: SessionRecord = reader
                .next()
                .await
                .map_err(failed)?
                .ok_or_else(|| failed(StorageError::Corrupt("session table cut short".into())))?;
            by_activity.insert((record.last_active, record.session));
            table.insert(record.session, record);
        }
        self.inner.restore(index, &mut reader).await?;
        self.table = table;
        self.by_activity = by_activity;
        self.applied = index;
        Ok(())
    }

    fn applied_index(&self) -> Index {
        self.applied.max(self.inner.applied_index())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A state machine that appends each command's bytes to one shared string and answers with
    /// the string after the append.
    #[derive(Clone, Default)]
    struct Appender {
        text: Arc<Mutex<String>>,
        applied: Index,
    }

    impl Appender {
        fn text(&self) -> String {
            self.text.lock().map(|t| t.clone()).unwrap_or_default()
        }
    }

    #[async_trait]
    impl StateMachine for Appender {
        async fn apply(&mut self, index: Index, command: Bytes) -> Result<Bytes, StateMachineError> {
            let mut text = self.text.lock().unwrap_or_else(|e| e.into_inner());
            text.push_str(&String::from_utf8_lossy(&command));
            self.applied = index;
            Ok(Bytes::from(text.clone()))
        }
        async fn query(&mut self, _query: Bytes) -> Result<Bytes, StateMachineError> {
            Ok(Bytes::from(self.text()))
        }
        async fn snapshot(&mut self, _snapshot: &mut dyn SnapshotWrite) -> Result<(), StateMachineError> {
            Ok(())
        }
        async fn restore(
            &mut self,
            index: Index,
            _snapshot: &mut dyn SnapshotRead,
        ) -> Result<(), StateMachineError> {
            self.applied = index;
            Ok(())
        }
        fn applied_index(&self) -> Index {
            self.applied
        }
    }

    fn append(value: &str) -> Bytes {
        Bytes::from(value.to_string())
    }

    fn request(session: SessionId, sequence: u64, value: &str) -> Bytes {
        SessionCommand::Request {
            session,
            sequence,
            command: append(value),
        }
        .encode()
    }

    async fn apply(machine: &mut Sessions<Appender>, index: Index, command: Bytes) -> SessionResponse {
        SessionResponse::decode(&machine.apply(index, command).await.unwrap()).unwrap()
    }

    #[tokio::test]
    async fn duplicate_request_is_applied_once() {
        let inner = Appender::default();
        let mut machine = Sessions::new(inner.clone(), 1000);
        assert_eq!(
            apply(&mut machine, 1, SessionCommand::Register.encode()).await,
            SessionResponse::Registered { session: 1 }
        );
        let first = apply(&mut machine, 2, request(1, 1, "x")).await;
        let retry = apply(&mut machine, 3, request(1, 1, "x")).await;
        assert_eq!(first, retry, "the retry gets the stored response");
        assert_eq!(inner.text(), "x", "and is not applied again");
        let SessionResponse::Applied(reply) = apply(&mut machine, 4, request(1, 2, "y")).await else {
            panic!("not applied");
        };
        assert_eq!(&reply[..], b"xy");
        assert_eq!(
            apply(&mut machine, 5, request(1, 1, "x")).await,
            SessionResponse::Superseded { last_sequence: 2 }
        );
        assert_eq!(inner.text(), "xy");
    }

    #[tokio::test]
    async fn sessions_expire_by_log_position_and_their_requests_are_not_applied() {
        let inner = Appender::default();
        let mut machine = Sessions::new(inner.clone(), 10);
        apply(&mut machine, 1, SessionCommand::Register.encode()).await;
        apply(&mut machine, 5, request(1, 1, "x")).await;
        // Used at 5: still open at 14, gone at 15, on every replica alike.
        machine.apply(14, append("-")).await.unwrap();
        assert_eq!(machine.open_sessions(), 1);
        assert_eq!(
            apply(&mut machine, 15, request(1, 2, "y")).await,
            SessionResponse::UnknownSession
        );
        assert_eq!(inner.text(), "x-");
    }

    #[tokio::test]
    async fn plain_commands_pass_through_untouched() {
        let inner = Appender::default();
        let mut machine = Sessions::new(inner, 10);
        let reply = machine.apply(1, append("p")).await.unwrap();
        assert_eq!(&reply[..], b"p");
    }
}
