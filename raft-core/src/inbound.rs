//! What the core refuses from the network before any rule sees it: messages whose values no honest
//! peer sends. A term above [`MAX_TERM`], AppendEntries whose entries do not follow `prev_log_index`
//! one by one with terms that never fall and never pass the message's term, a vote request whose
//! log is from a later term than the candidate's, snapshot chunks whose offsets overflow, and
//! answers naming the last possible index, and messages that claim to come from the recipient
//! itself or from node 0. Everything after this check may add one to a term or an
//! index without overflowing. A leaf: it reads messages and says no.

use crate::error::StepError;
use crate::message::{AppendEntries, AppendEntriesResponse, Message, MessageBody};
use crate::types::{Index, Term};

/// The highest term the core accepts from a peer: 2^63 - 1. A cluster that held an election every
/// nanosecond would need 292 years to get there, so a higher term is corruption or hostility,
/// and refusing it keeps `term + 1` representable for every term the core holds.
pub const MAX_TERM: Term = u64::MAX >> 1;

/// The highest log index the core accepts from a peer, for the same reason.
pub const MAX_INDEX: Index = u64::MAX >> 1;

/// Refuses `message` if it carries values no honest peer sends.
pub(crate) fn check(message: &Message) -> Result<(), StepError> {
    let (from, kind) = (message.from, message.body.kind());
    let malformed = |reason: &'static str| StepError::Malformed { from, kind, reason };
    if message.from == message.to || message.from == 0 {
        return Err(malformed("the sender is this node itself, or node 0"));
    }
    if message.term > MAX_TERM {
        return Err(StepError::ImpossibleTerm {
            from,
            term: message.term,
        });
    }
    match &message.body {
        MessageBody::AppendEntries(append) => check_append(append, message.term).map_err(malformed),
        MessageBody::RequestVote(request) if request.last_log_term > message.term => {
            Err(malformed("the candidate's last log term is above its term"))
        }
        MessageBody::RequestVote(request) if request.last_log_index > MAX_INDEX => {
            Err(malformed("the candidate's last log index is impossible"))
        }
        MessageBody::AppendEntriesResponse(AppendEntriesResponse::Success { match_index })
            if *match_index > MAX_INDEX =>
        {
            Err(malformed("the match index is impossible"))
        }
        MessageBody::AppendEntriesResponse(AppendEntriesResponse::Conflict {
            rejected_index,
            conflict_index,
            conflict_term,
        }) if *rejected_index > MAX_INDEX
            || *conflict_index > MAX_INDEX
            || conflict_term.is_some_and(|t| t > message.term) =>
        {
            Err(malformed("the conflict hint is impossible"))
        }
        MessageBody::InstallSnapshot(chunk) => {
            let end = chunk.offset.checked_add(chunk.data.len() as u64);
            if chunk.meta.term > message.term {
                Err(malformed("the snapshot's term is above the leader's"))
            } else if chunk.meta.index == 0 || chunk.meta.index > MAX_INDEX {
                Err(malformed("the snapshot's index is impossible"))
            } else if end.is_none_or(|end| end > chunk.meta.size) {
                Err(malformed("the chunk does not fit in the snapshot"))
            } else {
                Ok(())
            }
        }
        _ => Ok(()),
    }
}

/// The entries follow `prev_log_index` one by one, their terms never fall below `prev_log_term`
/// or each other, and none is above the leader's term.
fn check_append(append: &AppendEntries, term: Term) -> Result<(), &'static str> {
    if append.prev_log_term > term {
        return Err("the previous entry's term is above the leader's");
    }
    if append.prev_log_index > MAX_INDEX || append.leader_commit > MAX_INDEX {
        return Err("an index is impossible");
    }
    let mut previous = (append.prev_log_index, append.prev_log_term);
    for entry in &append.entries {
        if Some(entry.index) != previous.0.checked_add(1) || entry.index > MAX_INDEX {
            return Err("the entries do not follow the previous index one by one");
        }
        if entry.term < previous.1 || entry.term > term {
            return Err("an entry's term falls, or is above the leader's");
        }
        previous = (entry.index, entry.term);
    }
    Ok(())
}
