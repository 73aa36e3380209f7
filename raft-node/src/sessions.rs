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
//! **Expiry and eviction are deterministic.** A session unused for
//! [`SessionLimits::expire_after_entries`] log entries is forgotten when an entry at least that far
//! on is applied, and registering one more than [`SessionLimits::max_sessions`] evicts the least
//! recently used: every replica applies the same entries, so every replica forgets the same
//! session at the same index (never by a node's own clock). A request of a forgotten session is
//! refused with [`SessionResponse::UnknownSession`] and not applied.
//!
//! **The limits are replicated state**, not a node's setting: they start at the value the
//! cluster was created with ([`Sessions::new`] uses [`SessionLimits::default`]), change only
//! through a [`SessionCommand::Configure`] entry, and travel in snapshots, so replicas that were
//! configured differently cannot diverge.
//!
//! **Snapshots** hold the limits and the session table ahead of the wrapped state machine's own
//! snapshot.
//!
//! Commands that do not start with the session envelope's marker go straight to the wrapped state
//! machine, so plain proposals keep working beside sessions.

use std::collections::{BTreeMap, BTreeSet};

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
    /// Changes the limits on sessions, for every replica at this entry.
    Configure(SessionLimits),
}

/// The limits on client sessions: part of the replicated state (see [`Sessions`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionLimits {
    /// A session unused for this many log entries expires (at least 1).
    pub expire_after_entries: u64,
    /// At most this many sessions are kept; registering one more evicts the least recently used
    /// (at least 1).
    pub max_sessions: u64,
}

impl Default for SessionLimits {
    /// A million entries, 100,000 sessions (each keeps its last response, so the table stays
    /// within what a snapshot carries comfortably).
    fn default() -> Self {
        SessionLimits {
            expire_after_entries: 1_000_000,
            max_sessions: 100_000,
        }
    }
}

impl SessionLimits {
    /// The limits with each at least 1.
    fn sane(self) -> Self {
        SessionLimits {
            expire_after_entries: self.expire_after_entries.max(1),
            max_sessions: self.max_sessions.max(1),
        }
    }
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
    /// The limits in force from this entry on.
    Configured(SessionLimits),
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
    limits: SessionLimits,
}

impl SnapshotHeader for TableHeader {
    const PART: &'static str = "session table";
    /// Version 2 carries every limit (version 1 had only the expiry).
    const VERSION: u32 = 2;
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
    limits: SessionLimits,
    applied: Index,
}

impl<M: StateMachine> Sessions<M> {
    /// Wraps `inner`, with the [default limits](SessionLimits::default) until a
    /// [`SessionCommand::Configure`] entry changes them.
    ///
    /// ```
    /// use raft_node::{SessionCommand, SessionLimits, Sessions};
    /// # #[derive(Default)] struct Counter;
    /// # impl raft_core::StateMachine for Counter {
    /// #     async fn apply(&mut self, _: u64, _: &bytes::Bytes) -> Result<bytes::Bytes, raft_core::StateMachineError> { Ok(bytes::Bytes::new()) }
    /// #     async fn query(&mut self, _: bytes::Bytes) -> Result<bytes::Bytes, raft_core::StateMachineError> { Ok(bytes::Bytes::new()) }
    /// #     async fn snapshot(&mut self, _: &mut dyn raft_core::SnapshotWrite) -> Result<(), raft_core::StateMachineError> { Ok(()) }
    /// #     async fn restore(&mut self, _: u64, _: &mut dyn raft_core::SnapshotRead) -> Result<(), raft_core::StateMachineError> { Ok(()) }
    /// #     fn applied_index(&self) -> u64 { 0 }
    /// # }
    /// let machine = Sessions::new(Counter::default());
    /// assert_eq!(machine.limits(), SessionLimits::default());
    /// // Proposed through the log, so that every replica changes its limits at the same entry:
    /// let change = SessionCommand::Configure(SessionLimits { expire_after_entries: 10_000, max_sessions: 1_000 });
    /// let _command: bytes::Bytes = change.encode();
    /// ```
    pub fn new(inner: M) -> Self {
        Self::with_limits(inner, SessionLimits::default())
    }

    /// Wraps `inner` with these limits until a [`SessionCommand::Configure`] entry changes them.
    /// They are the replicated state's starting point: every node of a cluster must start with the
    /// same (as with the bootstrap membership); a restored snapshot brings its own.
    pub fn with_limits(inner: M, limits: SessionLimits) -> Self {
        Sessions {
            applied: inner.applied_index(),
            inner,
            table: BTreeMap::new(),
            by_activity: BTreeSet::new(),
            limits: limits.sane(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> SessionLimits {
        self.limits
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
            if active.saturating_add(self.limits.expire_after_entries) > index {
                break;
            }
            self.by_activity.pop_first();
            self.table.remove(&session);
            debug!(session, index, "session expired");
        }
    }

    /// Evicts the least recently used sessions until at most `keep` are left.
    fn evict_to(&mut self, keep: u64, index: Index) {
        while self.table.len() as u64 > keep {
            let Some((_, session)) = self.by_activity.pop_first() else {
                break;
            };
            self.table.remove(&session);
            debug!(session, index, "session evicted: too many sessions");
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
                self.evict_to(self.limits.max_sessions - 1, index);
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
            SessionCommand::Configure(limits) => {
                self.limits = limits.sane();
                self.expire(index);
                self.evict_to(self.limits.max_sessions, index);
                SessionResponse::Configured(self.limits)
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
                let response = self.inner.apply(index, &command).await?;
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

impl<M: StateMachine> StateMachine for Sessions<M> {
    async fn apply(&mut self, index: Index, command: &Bytes) -> Result<Bytes, StateMachineError> {
        self.expire(index);
        self.applied = index;
        match SessionCommand::decode(command) {
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
            limits: self.limits,
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
        // The snapshot's limits, not this node's: they are replicated state.
        self.limits = header.limits.sane();
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

    impl StateMachine for Appender {
        async fn apply(&mut self, index: Index, command: &Bytes) -> Result<Bytes, StateMachineError> {
            let mut text = self.text.lock().unwrap_or_else(|e| e.into_inner());
            text.push_str(&String::from_utf8_lossy(command));
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

    fn limits(expire_after_entries: u64, max_sessions: u64) -> SessionLimits {
        SessionLimits {
            expire_after_entries,
            max_sessions,
        }
    }

    async fn apply(machine: &mut Sessions<Appender>, index: Index, command: Bytes) -> SessionResponse {
        SessionResponse::decode(&machine.apply(index, &command).await.unwrap()).unwrap()
    }

    #[tokio::test]
    async fn duplicate_request_is_applied_once() {
        let inner = Appender::default();
        let mut machine = Sessions::new(inner.clone());
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
        let mut machine = Sessions::with_limits(inner.clone(), limits(10, 100));
        apply(&mut machine, 1, SessionCommand::Register.encode()).await;
        apply(&mut machine, 5, request(1, 1, "x")).await;
        // Used at 5: still open at 14, gone at 15, on every replica alike.
        machine.apply(14, &append("-")).await.unwrap();
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
        let mut machine = Sessions::new(inner);
        let reply = machine.apply(1, &append("p")).await.unwrap();
        assert_eq!(&reply[..], b"p");
    }

    #[tokio::test]
    async fn registering_past_max_sessions_evicts_the_least_recently_used() {
        let inner = Appender::default();
        let mut machine = Sessions::with_limits(inner.clone(), limits(1000, 2));
        apply(&mut machine, 1, SessionCommand::Register.encode()).await;
        apply(&mut machine, 2, SessionCommand::Register.encode()).await;
        // Session 1 is used after session 2 was registered: 2 is now the least recently used.
        apply(&mut machine, 3, request(1, 1, "a")).await;
        apply(&mut machine, 4, SessionCommand::Register.encode()).await;
        assert_eq!(machine.open_sessions(), 2);
        assert_eq!(
            apply(&mut machine, 5, request(2, 1, "b")).await,
            SessionResponse::UnknownSession,
            "the least recently used session was evicted"
        );
        assert!(matches!(
            apply(&mut machine, 6, request(1, 2, "c")).await,
            SessionResponse::Applied(_)
        ));
        assert!(matches!(
            apply(&mut machine, 7, request(4, 1, "d")).await,
            SessionResponse::Applied(_)
        ));
        assert_eq!(inner.text(), "acd");
    }

    #[tokio::test]
    async fn limits_change_only_through_the_log_and_apply_at_once() {
        let inner = Appender::default();
        let mut machine = Sessions::with_limits(inner, limits(1000, 10));
        for index in 1..=4 {
            apply(&mut machine, index, SessionCommand::Register.encode()).await;
        }
        assert_eq!(
            apply(&mut machine, 5, SessionCommand::Configure(limits(3, 2)).encode()).await,
            SessionResponse::Configured(limits(3, 2))
        );
        assert_eq!(machine.limits(), limits(3, 2));
        // Sessions 1 and 2 were evicted at once: only two are kept.
        assert_eq!(machine.open_sessions(), 2);
        assert_eq!(
            apply(&mut machine, 6, request(1, 1, "x")).await,
            SessionResponse::UnknownSession
        );
        // The new expiry holds from this entry on: session 3 (used at 3) is gone at 6, 4 at 7.
        assert_eq!(machine.open_sessions(), 1);
        machine.apply(7, &append("-")).await.unwrap();
        assert_eq!(machine.open_sessions(), 0);
    }

    /// A snapshot held in memory.
    #[derive(Default)]
    struct Buffer(Vec<u8>);

    #[async_trait::async_trait]
    impl SnapshotWrite for Buffer {
        async fn write(&mut self, data: Bytes) -> Result<(), StorageError> {
            self.0.extend_from_slice(&data);
            Ok(())
        }
    }

    /// Reads a snapshot held in memory, in one piece.
    struct Reader(Option<Bytes>);

    #[async_trait::async_trait]
    impl SnapshotRead for Reader {
        async fn read(&mut self) -> Result<Option<Bytes>, StorageError> {
            Ok(self.0.take())
        }
    }

    #[tokio::test]
    async fn a_restored_replica_takes_the_limits_in_the_snapshot_not_its_own() {
        let mut leader = Sessions::with_limits(Appender::default(), limits(10, 100));
        apply(&mut leader, 1, SessionCommand::Register.encode()).await;
        apply(&mut leader, 2, request(1, 1, "x")).await;
        let mut snapshot = Buffer::default();
        leader.snapshot(&mut snapshot).await.unwrap();
        // A replica started with other limits, restored from that snapshot, expires the session
        // at the same entry as the leader.
        let mut replica = Sessions::with_limits(Appender::default(), limits(1_000_000, 100));
        let mut reader = Reader(Some(Bytes::from(snapshot.0)));
        replica.restore(2, &mut reader).await.unwrap();
        assert_eq!(replica.limits(), limits(10, 100));
        for machine in [&mut leader, &mut replica] {
            assert_eq!(
                apply(machine, 12, request(1, 2, "y")).await,
                SessionResponse::UnknownSession,
                "used at 2, expired at 12 on every replica"
            );
        }
    }
}
