//! A simulated node: the real `RaftCore`, a disk whose writes become durable after a delay (and
//! are lost if the node crashes first), a state machine, and the simulator's mirror of the core's
//! log.
//!
//! The state machine's state is the hash chain of the entries it applied, so a snapshot (that
//! chain value at the snapshot's index, plus filler bytes to give it a size) can be checked
//! against the committed log when it is restored.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use raft_core::{
    Config, Index, LogImage, LogWrite, Membership, Message, NodeId, RaftCore, ReceivedChunk, RestoredState,
    SnapshotChecksum, SnapshotMeta, Term,
};

use crate::log_mirror::LogMirror;

/// What survives a crash.
#[derive(Clone, Debug, Default, Hash)]
pub(crate) struct Disk {
    /// The hard state, the entries and the latest recorded snapshot, as `raft-core` defines a
    /// `LogWrite` to change them.
    pub(crate) log: LogImage,
    /// Complete snapshots by index.
    pub(crate) snapshots: BTreeMap<Index, Bytes>,
    /// Snapshots being received (not complete), by index.
    pub(crate) receiving: BTreeMap<Index, Vec<u8>>,
    /// The node's logical log as a mirror (the purged prefix included), for invariant checks.
    pub(crate) mirror: LogMirror,
}

impl Disk {
    fn apply(&mut self, pending: &PendingWrite) -> Result<(), String> {
        for chunk in &pending.chunks {
            let receiving = self.receiving.entry(chunk.snapshot_index).or_default();
            if chunk.offset == 0 {
                receiving.clear();
            }
            if receiving.len() as u64 != chunk.offset {
                return Err(format!(
                    "snapshot {} chunk at offset {} after {} bytes",
                    chunk.snapshot_index,
                    chunk.offset,
                    receiving.len()
                ));
            }
            receiving.extend_from_slice(&chunk.data);
        }
        let write = &pending.write;
        if let Some(meta) = pending.restore.as_ref() {
            let data = self.receiving.remove(&meta.index).unwrap_or_default();
            self.receiving.retain(|index, _| *index > meta.index);
            if data.len() as u64 != meta.size {
                return Err(format!(
                    "received snapshot has {} bytes, expected {}",
                    data.len(),
                    meta.size
                ));
            }
            self.snapshots.insert(meta.index, data.into());
        }
        self.log.apply(write).map_err(|error| error.to_string())?;
        if let Some((prefix, discard)) = &pending.mirror_reset {
            self.mirror = self.mirror.rebase(prefix, *discard);
        }
        self.mirror.write(&write.entries);
        if let Some(meta) = &write.snapshot {
            self.snapshots.retain(|index, _| *index >= meta.index);
        }
        Ok(())
    }
}

/// A write issued but not yet durable.
#[derive(Clone, Debug, Hash)]
pub(crate) struct PendingWrite {
    pub(crate) write: LogWrite,
    pub(crate) persisted: Option<(Index, Term)>,
    pub(crate) messages: Vec<Message>,
    /// Snapshot chunks received, written before `write`.
    pub(crate) chunks: Vec<ReceivedChunk>,
    /// The received snapshot `write` records; the state machine is restored from it once durable.
    pub(crate) restore: Option<SnapshotMeta>,
    /// After a snapshot from the leader: the committed prefix up to it, and whether the log after
    /// it was discarded (see [`LogMirror::rebase`]).
    pub(crate) mirror_reset: Option<(LogMirror, bool)>,
    pub(crate) durable_at: u64,
}

/// The bytes of a snapshot of a state machine whose state is `state` after applying `index`.
pub(crate) fn encode_snapshot(index: Index, state: u64) -> (Bytes, SnapshotChecksum) {
    let mut data = Vec::new();
    data.extend_from_slice(&index.to_le_bytes());
    data.extend_from_slice(&state.to_le_bytes());
    // Filler, so snapshots span several chunks.
    data.extend((0..(index % 97) * 8).map(|i| (i as u8) ^ (index as u8)));
    let mut checksum = SnapshotChecksum::new();
    checksum.update(&data);
    (data.into(), checksum)
}

/// The (index, state) a snapshot holds.
pub(crate) fn decode_snapshot(data: &[u8]) -> Option<(Index, u64)> {
    let index = u64::from_le_bytes(data.get(0..8)?.try_into().ok()?);
    let state = u64::from_le_bytes(data.get(8..16)?.try_into().ok()?);
    Some((index, state))
}

#[derive(Clone, Debug)]
pub(crate) struct SimNode {
    pub(crate) id: NodeId,
    pub(crate) config: Config,
    /// The configuration it was started with (bootstrap, or empty for a joiner).
    pub(crate) initial: Membership,
    pub(crate) core: Option<RaftCore>,
    pub(crate) disk: Disk,
    pub(crate) pending: VecDeque<PendingWrite>,
    /// The core's in-memory log, kept up to date from each `Ready`.
    pub(crate) mirror: LogMirror,
    /// The state machine's applied index (volatile: reset by a crash).
    pub(crate) applied: Index,
    /// The state machine's state: the hash chain of the entries applied.
    pub(crate) state: u64,
    pub(crate) tick_period: u64,
    pub(crate) next_tick: u64,
    pub(crate) restart_at: Option<u64>,
    /// How many times the node restarted: each restart is a new incarnation of the process.
    pub(crate) incarnation: u64,
    /// The core's term and commit index after the previous step (this incarnation).
    pub(crate) last_term: Term,
    pub(crate) last_commit: Index,
}

impl SimNode {
    pub(crate) fn new(id: NodeId, config: Config, membership: &Membership, tick_period: u64) -> Self {
        let core = RaftCore::new(config.clone(), membership.clone()).ok();
        SimNode {
            id,
            config,
            initial: membership.clone(),
            core,
            disk: Disk::default(),
            pending: VecDeque::new(),
            mirror: LogMirror::default(),
            applied: 0,
            state: 0,
            tick_period,
            next_tick: tick_period,
            restart_at: None,
            incarnation: 0,
            last_term: 0,
            last_commit: 0,
        }
    }

    pub(crate) fn is_up(&self) -> bool {
        self.core.is_some()
    }

    /// Loses the process: the core, the unsynced writes and the state machine.
    pub(crate) fn crash(&mut self, restart_at: u64) {
        self.core = None;
        self.pending.clear();
        self.applied = 0;
        self.state = 0;
        self.restart_at = Some(restart_at);
    }

    /// Starts the node again from its disk.
    pub(crate) fn restart(&mut self) -> Result<(), String> {
        let membership = &self.initial;
        // The state machine comes back from the latest snapshot.
        let (applied, state) = match &self.disk.log.snapshot {
            None => (0, 0),
            Some(meta) => self
                .disk
                .snapshots
                .get(&meta.index)
                .and_then(|data| decode_snapshot(data))
                .ok_or_else(|| format!("node {}: snapshot {} missing or unreadable", self.id, meta.index))?,
        };
        self.applied = applied;
        self.state = state;
        let restored = RestoredState {
            hard_state: self.disk.log.hard_state,
            snapshot: self.disk.log.snapshot.clone(),
            entries: self.disk.log.entries.iter().cloned().collect(),
            applied,
        };
        let core = RaftCore::restore(self.config.clone(), membership.clone(), restored)
            .map_err(|e| format!("node {} could not restart from its disk: {e}", self.id))?;
        self.last_term = core.term();
        self.last_commit = core.status().commit_index;
        self.core = Some(core);
        self.mirror = self.disk.mirror.clone();
        self.restart_at = None;
        self.incarnation += 1;
        Ok(())
    }

    /// Hashes what decides the node's future: its process, its disk, its writes in flight, its
    /// state machine and what the checks remember of this incarnation. Not its clock (the
    /// checker ticks nodes by action; the simulator never hashes).
    pub(crate) fn hash_state<H: std::hash::Hasher>(&self, state: &mut H) {
        use std::hash::Hash;
        self.id.hash(state);
        self.core.hash(state);
        self.disk.hash(state);
        self.pending.hash(state);
        Hash::hash(&self.mirror, state);
        (self.applied, self.state, self.incarnation).hash(state);
        (self.last_term, self.last_commit).hash(state);
    }

    /// Makes the oldest pending write durable, whenever it was due; returns it.
    pub(crate) fn complete_next_write(&mut self) -> Result<Option<PendingWrite>, String> {
        let Some(write) = self.pending.pop_front() else {
            return Ok(None);
        };
        self.disk.apply(&write)?;
        Ok(Some(write))
    }

    /// Makes the writes due by `now` durable, in order; returns them.
    pub(crate) fn complete_writes(&mut self, now: u64) -> Result<Vec<PendingWrite>, String> {
        let mut done = Vec::new();
        while self.pending.front().is_some_and(|w| w.durable_at <= now) {
            if let Some(write) = self.pending.pop_front() {
                self.disk.apply(&write)?;
                done.push(write);
            }
        }
        Ok(done)
    }
}
