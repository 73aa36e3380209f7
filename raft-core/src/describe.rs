//! One compact text form for what the core exchanges and keeps: [`Message`] (through
//! [`MessageSummary`], a copyable digest that a trace can keep cheaply), [`Entry`], [`Status`]
//! and [`Ready::describe`]. Logs, the simulator's traces and the interaction tests all print
//! with these, so a message reads the same everywhere:
//!
//! ```text
//! 1->2 AppendEntries t3 prev=5/t2 entries=6/t2..7/t3 commit=5
//! 2->1 AppendEntriesResponse t3 match=7
//! 3->1 RequestVoteResponse t4 granted
//! ```

use std::fmt::{self, Write as _};

use crate::entry::{Entry, EntryPayload};
use crate::message::{AppendEntriesResponse, Message, MessageBody};
use crate::ready::Ready;
use crate::types::{Index, NodeId, Status, Term};

/// A message in a few numbers: who, to whom, in which term, what kind, and what matters about
/// it. It is `Copy` and allocation-free, so a trace may keep one per message; its `Display` is
/// the message's one text form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageSummary {
    /// The sender.
    pub from: NodeId,
    /// The recipient.
    pub to: NodeId,
    /// The sender's term.
    pub term: Term,
    detail: Detail,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Detail {
    Vote {
        pre_vote: bool,
        transfer: bool,
        last: (Index, Term),
    },
    VoteAnswer {
        pre_vote: bool,
        granted: bool,
    },
    Append {
        prev: (Index, Term),
        first: Option<(Index, Term)>,
        last: Option<(Index, Term)>,
        commit: Index,
    },
    Accepted {
        match_index: Index,
    },
    Conflict {
        rejected: Index,
        hint: Index,
        hint_term: Option<Term>,
    },
    Heartbeat {
        commit: Index,
        round: u64,
    },
    HeartbeatAnswer {
        round: u64,
    },
    TimeoutNow,
    ReadIndex {
        id: u64,
    },
    ReadIndexAnswer {
        id: u64,
        index: Option<Index>,
    },
    Snapshot {
        at: (Index, Term),
        offset: u64,
        len: u64,
        done: bool,
    },
    SnapshotAnswer {
        index: Index,
        next_offset: u64,
        rejected: bool,
    },
}

impl MessageSummary {
    /// The digest of `message`.
    ///
    /// ```
    /// use raft_core::{Heartbeat, Message, MessageBody, MessageSummary};
    /// let heartbeat = Message {
    ///     from: 1,
    ///     to: 2,
    ///     term: 3,
    ///     body: MessageBody::Heartbeat(Heartbeat { commit: 7, round: 2 }),
    /// };
    /// assert_eq!(MessageSummary::of(&heartbeat).to_string(), "1->2 Heartbeat t3 commit=7 round=2");
    /// assert_eq!(heartbeat.to_string(), "1->2 Heartbeat t3 commit=7 round=2");
    /// ```
    pub fn of(message: &Message) -> Self {
        let at = |entry: &Entry| (entry.index, entry.term);
        let detail = match &message.body {
            MessageBody::RequestVote(r) => Detail::Vote {
                pre_vote: r.pre_vote,
                transfer: r.transfer,
                last: (r.last_log_index, r.last_log_term),
            },
            MessageBody::RequestVoteResponse(r) => Detail::VoteAnswer {
                pre_vote: r.pre_vote,
                granted: r.granted,
            },
            MessageBody::AppendEntries(a) => Detail::Append {
                prev: (a.prev_log_index, a.prev_log_term),
                first: a.entries.first().map(at),
                last: a.entries.last().map(at),
                commit: a.leader_commit,
            },
            MessageBody::AppendEntriesResponse(AppendEntriesResponse::Success { match_index }) => {
                Detail::Accepted {
                    match_index: *match_index,
                }
            }
            MessageBody::AppendEntriesResponse(AppendEntriesResponse::Conflict {
                rejected_index,
                conflict_index,
                conflict_term,
            }) => Detail::Conflict {
                rejected: *rejected_index,
                hint: *conflict_index,
                hint_term: *conflict_term,
            },
            MessageBody::Heartbeat(h) => Detail::Heartbeat {
                commit: h.commit,
                round: h.round,
            },
            MessageBody::HeartbeatResponse(r) => Detail::HeartbeatAnswer { round: r.round },
            MessageBody::TimeoutNow => Detail::TimeoutNow,
            MessageBody::ReadIndexRequest(r) => Detail::ReadIndex { id: r.id },
            MessageBody::ReadIndexResponse(r) => Detail::ReadIndexAnswer {
                id: r.id,
                index: r.index,
            },
            MessageBody::InstallSnapshot(s) => Detail::Snapshot {
                at: (s.meta.index, s.meta.term),
                offset: s.offset,
                len: s.data.len() as u64,
                done: s.done,
            },
            MessageBody::InstallSnapshotResponse(r) => Detail::SnapshotAnswer {
                index: r.snapshot_index,
                next_offset: r.next_offset,
                rejected: r.rejected,
            },
        };
        MessageSummary {
            from: message.from,
            to: message.to,
            term: message.term,
            detail,
        }
    }

    /// The message's kind, as [`MessageBody::kind`] names it.
    pub fn kind(&self) -> &'static str {
        match self.detail {
            Detail::Vote { pre_vote: true, .. } => "PreVote",
            Detail::Vote { .. } => "RequestVote",
            Detail::VoteAnswer { pre_vote: true, .. } => "PreVoteResponse",
            Detail::VoteAnswer { .. } => "RequestVoteResponse",
            Detail::Append { .. } => "AppendEntries",
            Detail::Accepted { .. } | Detail::Conflict { .. } => "AppendEntriesResponse",
            Detail::Heartbeat { .. } => "Heartbeat",
            Detail::HeartbeatAnswer { .. } => "HeartbeatResponse",
            Detail::TimeoutNow => "TimeoutNow",
            Detail::ReadIndex { .. } => "ReadIndexRequest",
            Detail::ReadIndexAnswer { .. } => "ReadIndexResponse",
            Detail::Snapshot { .. } => "InstallSnapshot",
            Detail::SnapshotAnswer { .. } => "InstallSnapshotResponse",
        }
    }
}

impl fmt::Display for MessageSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}->{} {} t{}", self.from, self.to, self.kind(), self.term)?;
        match self.detail {
            Detail::Vote { transfer, last, .. } => {
                write!(f, " last={}/t{}", last.0, last.1)?;
                if transfer {
                    f.write_str(" transfer")?;
                }
                Ok(())
            }
            Detail::VoteAnswer { granted, .. } => f.write_str(if granted { " granted" } else { " refused" }),
            Detail::Append {
                prev,
                first,
                last,
                commit,
            } => {
                write!(f, " prev={}/t{}", prev.0, prev.1)?;
                match (first, last) {
                    (Some(first), Some(last)) if first == last => {
                        write!(f, " entries={}/t{}", first.0, first.1)?
                    }
                    (Some(first), Some(last)) => {
                        write!(f, " entries={}/t{}..{}/t{}", first.0, first.1, last.0, last.1)?
                    }
                    _ => f.write_str(" entries=none")?,
                }
                write!(f, " commit={commit}")
            }
            Detail::Accepted { match_index } => write!(f, " match={match_index}"),
            Detail::Conflict {
                rejected,
                hint,
                hint_term,
            } => {
                write!(f, " rejected={rejected} hint={hint}")?;
                match hint_term {
                    Some(term) => write!(f, "/t{term}"),
                    None => Ok(()),
                }
            }
            Detail::Heartbeat { commit, round } => write!(f, " commit={commit} round={round}"),
            Detail::HeartbeatAnswer { round } => write!(f, " round={round}"),
            Detail::TimeoutNow => Ok(()),
            Detail::ReadIndex { id } => write!(f, " read={id}"),
            Detail::ReadIndexAnswer {
                id,
                index: Some(index),
            } => write!(f, " read={id} index={index}"),
            Detail::ReadIndexAnswer { id, index: None } => write!(f, " read={id} refused"),
            Detail::Snapshot {
                at,
                offset,
                len,
                done,
            } => {
                write!(f, " snapshot={}/t{} offset={offset} len={len}", at.0, at.1)?;
                if done {
                    f.write_str(" done")?;
                }
                Ok(())
            }
            Detail::SnapshotAnswer {
                index,
                next_offset,
                rejected,
            } => {
                write!(f, " snapshot={index} next={next_offset}")?;
                if rejected {
                    f.write_str(" rejected")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        MessageSummary::of(self).fmt(f)
    }
}

/// `index/tterm` and what the entry carries: `3/t2 cmd "put x"` (a command shown as text when it
/// is short and printable, otherwise by its size), `3/t2 blank`, `3/t2 config voters=[1, 2]`.
impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/t{}", self.index, self.term)?;
        match &self.payload {
            EntryPayload::Blank => f.write_str(" blank"),
            EntryPayload::Command(data) => match std::str::from_utf8(data) {
                Ok(text) if text.len() <= 32 && !text.chars().any(char::is_control) => {
                    write!(f, " cmd {text:?}")
                }
                _ => write!(f, " cmd ({} bytes)", data.len()),
            },
            EntryPayload::Membership(m) => {
                write!(f, " config voters={:?}", m.voters.iter().collect::<Vec<_>>())?;
                if let Some(outgoing) = &m.outgoing {
                    write!(f, " outgoing={:?}", outgoing.iter().collect::<Vec<_>>())?;
                }
                if !m.learners.is_empty() {
                    write!(f, " learners={:?}", m.learners.iter().collect::<Vec<_>>())?;
                }
                Ok(())
            }
        }
    }
}

/// `1: leader t3 leader=1 commit=7 applied=7 last=7 persisted=7`, with the snapshot index when
/// there is one.
impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} t{}", self.id, self.role, self.term)?;
        match self.leader {
            Some(leader) => write!(f, " leader={leader}")?,
            None => f.write_str(" leader=none")?,
        }
        write!(
            f,
            " commit={} applied={} last={} persisted={}",
            self.commit_index, self.applied_index, self.last_log_index, self.persisted_index
        )?;
        if self.snapshot_index > 0 {
            write!(
                f,
                " snapshot={} first={}",
                self.snapshot_index, self.first_log_index
            )?;
        }
        Ok(())
    }
}

impl Ready {
    /// The batch as text, one item a line, in the order the caller carries it out; empty when
    /// there is nothing to do.
    ///
    /// ```
    /// use raft_core::{Config, Membership, RaftCore};
    /// let mut node = RaftCore::new(Config::new(1), Membership::voters([1])?)?;
    /// while node.ready().hard_state.is_none() {
    ///     node.tick();
    /// }
    /// node.tick(); // nothing new: campaigning again takes an election timeout
    /// assert_eq!(node.ready().describe(), "");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn describe(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let mut line = |text: fmt::Arguments<'_>| {
            let _ = out.write_fmt(text);
            out.push('\n');
        };
        if let Some(soft) = &self.soft_state {
            let leader = soft.leader.map_or("none".to_string(), |l| l.to_string());
            line(format_args!("role: {} t{} leader={leader}", soft.role, soft.term));
        }
        if let Some(hs) = &self.hard_state {
            let vote = hs.voted_for.map_or("none".to_string(), |v| v.to_string());
            line(format_args!(
                "hard state: term={} vote={vote} commit={}",
                hs.term, hs.commit
            ));
        }
        for message in &self.messages {
            line(format_args!("send: {message}"));
        }
        if let Some(update) = &self.snapshot {
            let what = if update.restore { "install" } else { "record" };
            line(format_args!(
                "snapshot: {what} {}/t{} purge_to={}{}",
                update.meta.index,
                update.meta.term,
                update.purge_to,
                if update.discard_log { " discard_log" } else { "" }
            ));
        }
        for chunk in &self.received_chunks {
            line(format_args!(
                "store chunk: snapshot={} offset={} len={}",
                chunk.snapshot_index,
                chunk.offset,
                chunk.data.len()
            ));
        }
        for entry in &self.entries {
            line(format_args!("append: {entry}"));
        }
        for message in &self.messages_after_persist {
            line(format_args!("send after persist: {message}"));
        }
        for entry in self.committed_entries.iter() {
            line(format_args!("apply: {entry}"));
        }
        for read in &self.read_states {
            line(format_args!("read ready: id={} index={}", read.id, read.index));
        }
        for (id, error) in &self.read_failures {
            line(format_args!("read failed: id={id}: {error}"));
        }
        for chunk in &self.snapshot_sends {
            line(format_args!(
                "read chunk: {}->{} snapshot={} offset={} len={}",
                chunk.from, chunk.to, chunk.meta.index, chunk.offset, chunk.len
            ));
        }
        if self.build_snapshot {
            line(format_args!("build snapshot"));
        }
        out
    }
}
