//! A simulated node: the real `RaftCore`, a disk whose writes become durable after a delay (and
//! are lost if the node crashes first), and the simulator's mirror of the core's log.

use std::collections::VecDeque;

use raft_core::{
    Config, Entry, HardState, Index, LogWrite, Membership, Message, NodeId, RaftCore, RestoredState, Term,
};

use crate::log_mirror::LogMirror;

/// What survives a crash.
#[derive(Clone, Debug, Default)]
pub(crate) struct Disk {
    pub(crate) hard_state: HardState,
    pub(crate) entries: Vec<Entry>,
    /// The same entries as a mirror, for invariant checks.
    pub(crate) mirror: LogMirror,
}

impl Disk {
    fn apply(&mut self, write: &LogWrite) {
        if let Some(first) = write.entries.first() {
            self.entries.truncate((first.index - 1) as usize);
            self.entries.extend(write.entries.iter().cloned());
            self.mirror.write(&write.entries);
        }
        if let Some(hard_state) = write.hard_state {
            self.hard_state = hard_state;
        }
    }
}

/// A write issued but not yet durable.
#[derive(Debug)]
pub(crate) struct PendingWrite {
    pub(crate) write: LogWrite,
    pub(crate) persisted: Option<(Index, Term)>,
    pub(crate) messages: Vec<Message>,
    pub(crate) durable_at: u64,
}

#[derive(Debug)]
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
    pub(crate) tick_period: u64,
    pub(crate) next_tick: u64,
    pub(crate) restart_at: Option<u64>,
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
            tick_period,
            next_tick: tick_period,
            restart_at: None,
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
        self.restart_at = Some(restart_at);
    }

    /// Starts the node again from its disk.
    pub(crate) fn restart(&mut self) -> Result<(), String> {
        let membership = &self.initial;
        let restored = RestoredState {
            hard_state: self.disk.hard_state,
            entries: self.disk.entries.clone(),
            applied: 0,
        };
        let core = RaftCore::restore(self.config.clone(), membership.clone(), restored)
            .map_err(|e| format!("node {} could not restart from its disk: {e}", self.id))?;
        self.last_term = core.term();
        self.last_commit = core.status().commit_index;
        self.core = Some(core);
        self.mirror = self.disk.mirror.clone();
        self.restart_at = None;
        Ok(())
    }

    /// Makes the writes due by `now` durable, in order; returns them.
    pub(crate) fn complete_writes(&mut self, now: u64) -> Vec<PendingWrite> {
        let mut done = Vec::new();
        while self.pending.front().is_some_and(|w| w.durable_at <= now) {
            if let Some(write) = self.pending.pop_front() {
                self.disk.apply(&write.write);
                done.push(write);
            }
        }
        done
    }
}
