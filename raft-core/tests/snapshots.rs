//! Rule tests for snapshots and log compaction (Raft paper §7, Raft thesis chapter 5).
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;

use raft_core::{
    Config, Entry, InitError, InstallSnapshot, Membership, Message, MessageBody, NodeId, RaftCore,
    ReplicationState, RestoredState,
};
use support::{config, hard, Net};

/// Snapshot after 10 applied entries, keep 2 before it, send in 64-byte chunks, 4 at a time.
fn compacting(id: NodeId) -> Config {
    let mut config = config(id).with_snapshot_policy(10, 0, 2);
    config.snapshot_chunk_bytes = 64;
    config.snapshot_chunks_in_flight = 4;
    config
}

fn compacting_net(size: u64) -> Net {
    Net::with_config(size, compacting)
}

fn propose_many(net: &mut Net, leader: NodeId, count: usize) {
    for i in 0..count {
        net.node(leader)
            .propose(format!("command-{i:04}").into())
            .unwrap();
        net.settle();
    }
    // A heartbeat tells the followers the last commit index.
    net.tick_all(2);
}

/// Isolates the leader `old` until the others elect one of themselves; returns the new leader.
fn depose(net: &mut Net, old: NodeId) -> NodeId {
    net.isolated.insert(old);
    net.tick_all(60);
    let leader = net.leaders().into_iter().find(|id| *id != old);
    leader.expect("the others elected a new leader")
}

fn commands(net: &Net, id: NodeId) -> Vec<(u64, bytes::Bytes)> {
    net.applied[&id]
        .iter()
        .filter_map(|e| match &e.payload {
            raft_core::EntryPayload::Command(c) => Some((e.index, c.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn log_is_compacted_once_the_policy_threshold_is_applied_keeping_a_tail() {
    let mut net = compacting_net(3);
    net.elect(1);
    propose_many(&mut net, 1, 25);
    for id in 1..=3 {
        let status = net.node(id).status();
        assert!(status.snapshot_index >= 20, "node {id}: {status:?}");
        assert_eq!(
            status.first_log_index,
            status.snapshot_index - 2 + 1,
            "node {id} keeps 2 entries"
        );
        // Storage holds exactly what the core holds, and records the snapshot.
        let stored = &net.stored[&id].1;
        assert_eq!(stored.first().unwrap().index, status.first_log_index);
        assert_eq!(net.stored_snapshot[&id].index, status.snapshot_index);
    }
}

#[test]
fn snapshot_due_by_count_waits_until_the_log_outgrows_the_last_snapshot() {
    // Every 10 entries by count, but only once the log since the last snapshot holds four times
    // its bytes. The harness's snapshot holds every entry ever applied, so it keeps growing and
    // the snapshots come further and further apart.
    let mut net = Net::with_config(3, |id| Config {
        snapshot_min_log_percent: 400,
        ..compacting(id)
    });
    net.elect(1);
    let log_bytes = |net: &Net, after: u64, up_to: u64| -> u64 {
        net.applied[&1]
            .iter()
            .filter(|e| e.index > after && e.index <= up_to)
            .map(|e| e.size_bytes() as u64)
            .sum()
    };
    let mut last: Option<raft_core::SnapshotMeta> = None;
    let mut intervals = Vec::new();
    for i in 0..400 {
        net.node(1).propose(format!("command-{i:04}").into()).unwrap();
        net.settle();
        let Some(meta) = net.node(1).snapshot_meta().cloned() else {
            continue;
        };
        if last.as_ref().is_some_and(|l| l.index == meta.index) {
            continue;
        }
        if let Some(previous) = &last {
            let since = meta.index - previous.index;
            assert!(since >= 10, "due by count: {since} entries");
            let written = log_bytes(&net, previous.index, meta.index);
            assert!(
                written * 100 >= previous.size * 400,
                "{written} bytes of log since a snapshot of {} bytes",
                previous.size
            );
            let one_entry_earlier = log_bytes(&net, previous.index, meta.index - 1);
            assert!(
                one_entry_earlier * 100 < previous.size * 400 || since - 1 < 10,
                "not taken later than due"
            );
            intervals.push(since);
        }
        last = Some(meta);
    }
    assert!(intervals.len() >= 3, "snapshots were taken: {intervals:?}");
    assert!(
        intervals.last() > intervals.first(),
        "they come further apart as the state grows: {intervals:?}"
    );
    assert!(
        intervals.iter().any(|&n| n > 10),
        "the floor, not the count, decided: {intervals:?}"
    );
}

#[test]
fn snapshot_records_the_term_and_configuration_at_its_index() {
    let mut net = compacting_net(3);
    net.elect(1);
    propose_many(&mut net, 1, 12);
    let meta = net.node(1).snapshot_meta().unwrap().clone();
    let entry_term = net.applied[&1]
        .iter()
        .find(|e| e.index == meta.index)
        .unwrap()
        .term;
    assert_eq!(meta.term, entry_term);
    assert_eq!(meta.membership, Membership::voters([1, 2, 3]).unwrap());
}

#[test]
fn snapshot_now_compacts_without_waiting_for_the_policy() {
    let mut net = Net::with_config(3, |id| config(id).with_snapshot_policy(0, 0, 0));
    net.elect(1);
    propose_many(&mut net, 1, 3);
    assert_eq!(net.node(1).status().snapshot_index, 0);
    net.node(1).request_snapshot();
    net.settle();
    let status = net.node(1).status();
    assert_eq!(status.snapshot_index, status.applied_index);
    assert_eq!(status.first_log_index, status.snapshot_index + 1);
}

#[test]
fn follower_behind_the_purge_point_catches_up_by_snapshot() {
    let mut net = compacting_net(3);
    net.elect(1);
    net.isolated.insert(3);
    propose_many(&mut net, 1, 40);
    let leader_first = net.node(1).status().first_log_index;
    assert!(leader_first > 2, "the leader compacted");
    net.isolated.clear();
    net.tick_all(5);
    assert!(net.node(3).status().snapshot_index >= leader_first - 1);
    assert_eq!(commands(&net, 3), commands(&net, 1));
    assert_eq!(
        net.node(3).status().applied_index,
        net.node(1).status().applied_index
    );
    // Replication continues from the log after the snapshot.
    propose_many(&mut net, 1, 3);
    assert_eq!(commands(&net, 3), commands(&net, 1));
    assert_eq!(
        net.node(1).follower_progress(3).unwrap().state,
        ReplicationState::Replicate
    );
}

#[test]
fn snapshot_install_truncates_a_conflicting_log() {
    let mut net = compacting_net(3);
    net.elect(1);
    propose_many(&mut net, 1, 3);
    // The old leader appends entries nobody else gets.
    net.isolated.insert(1);
    for i in 0..5 {
        net.node(1).propose(format!("lost-{i}").into()).unwrap();
        net.process(1);
    }
    let old_term = net.node(1).term();
    // The others elect a leader and move on far enough to compact past the conflict.
    let leader = depose(&mut net, 1);
    propose_many(&mut net, leader, 30);
    assert!(net.node(leader).status().first_log_index > 6);
    net.isolated.clear();
    net.tick_all(5);
    assert_eq!(net.node(1).leader(), Some(leader));
    assert!(net.node(1).status().snapshot_index > 0);
    assert!(
        net.stored[&1].1.iter().all(|e| e.term > old_term),
        "the conflicting entries are gone from storage"
    );
    assert!(!commands(&net, 1).iter().any(|(_, c)| c.starts_with(b"lost")));
    assert_eq!(commands(&net, 1), commands(&net, leader));
}

#[test]
fn a_snapshot_waits_for_the_appends_in_flight_to_be_answered() {
    // Node 3 is cut off with an AppendEntries in flight; the leader compacts past what node 3
    // lacks, yet sends no chunk into the void while that message is unanswered. With Nagle's
    // rule the leader's window to node 3 stays open (one message in flight, the rest held), so
    // only the wait keeps the transfer from starting; a full window would hide it.
    let mut net = Net::with_config(3, |id| Config {
        hold_partial_appends: true,
        ..compacting(id)
    });
    net.elect(1);
    net.isolated.insert(3);
    propose_many(&mut net, 1, 40);
    assert!(
        net.node(1).status().first_log_index > 3,
        "compacted past node 3's log"
    );
    let progress = net.node(1).follower_progress(3).unwrap();
    assert_eq!(progress.state, ReplicationState::Replicate);
    assert!(progress.inflight_messages > 0);
    assert_eq!(
        net.chunks_sent, 0,
        "no snapshot while the append in flight is unanswered"
    );
    // Once node 3 answers again, the gap is found and the snapshot follows, once.
    let chunks = net.node(1).snapshot_meta().unwrap().size.div_ceil(64) as usize;
    net.isolated.clear();
    net.tick_all(10);
    assert_eq!(commands(&net, 3), commands(&net, 1));
    assert!(
        net.chunks_sent >= chunks && net.chunks_sent < 2 * chunks,
        "{} chunks",
        net.chunks_sent
    );
}

#[test]
fn lost_snapshot_chunk_resumes_from_the_gap_not_from_the_start() {
    let mut net = compacting_net(3);
    net.elect(1);
    net.isolated.insert(3);
    propose_many(&mut net, 1, 40);
    let size = net.node(1).snapshot_meta().unwrap().size;
    let chunks = size.div_ceil(64) as usize;
    assert!(chunks >= 8, "the snapshot spans several chunks ({size} bytes)");
    net.drop_chunks_at.insert(64 * 3);
    net.isolated.clear();
    net.tick_all(10);
    assert_eq!(commands(&net, 3), commands(&net, 1));
    // A restart from zero would have sent every chunk at least twice.
    assert!(
        net.chunks_sent < 2 * chunks,
        "{} chunks sent for a {chunks}-chunk snapshot",
        net.chunks_sent
    );
}

#[test]
fn snapshot_with_a_bad_checksum_is_refused_and_sent_again() {
    let mut net = compacting_net(3);
    net.elect(1);
    net.isolated.insert(3);
    propose_many(&mut net, 1, 40);
    let chunks = net.node(1).snapshot_meta().unwrap().size.div_ceil(64) as usize;
    net.corrupt_chunk_at = Some(64);
    net.isolated.clear();
    net.tick_all(10);
    assert_eq!(commands(&net, 3), commands(&net, 1));
    assert!(
        net.chunks_sent >= 2 * chunks,
        "the corrupt snapshot was sent again from the start"
    );
}

#[test]
fn chunk_from_a_stale_term_is_refused() {
    let mut net = compacting_net(3);
    net.elect(1);
    propose_many(&mut net, 1, 12);
    let meta = net.node(1).snapshot_meta().unwrap().clone();
    let leader = depose(&mut net, 1);
    let follower = 5 - leader;
    let before = net.node(follower).status();
    let stale = Message {
        from: 1,
        to: follower,
        term: before.term - 1,
        body: MessageBody::InstallSnapshot(InstallSnapshot {
            meta,
            offset: 0,
            data: bytes::Bytes::new(),
            done: false,
        }),
    };
    net.node(follower).step(stale).unwrap();
    let ready = net.node(follower).ready();
    assert!(ready.received_chunks.is_empty());
    assert_eq!(net.node(follower).leader(), Some(leader));
}

#[test]
fn snapshot_already_covered_by_the_commit_index_is_acknowledged_without_installing() {
    let mut net = compacting_net(3);
    net.elect(1);
    propose_many(&mut net, 1, 12);
    let meta = net.node(1).snapshot_meta().unwrap().clone();
    let term = net.node(1).term();
    let commit = net.node(3).status().commit_index;
    let chunk = Message {
        from: 1,
        to: 3,
        term,
        body: MessageBody::InstallSnapshot(InstallSnapshot {
            meta,
            offset: 0,
            data: bytes::Bytes::from_static(b"x"),
            done: false,
        }),
    };
    net.node(3).step(chunk).unwrap();
    let ready = net.node(3).ready();
    assert!(ready.received_chunks.is_empty());
    assert!(ready.snapshot.is_none());
    let acks: Vec<_> = ready
        .messages_after_persist
        .iter()
        .filter_map(|m| match &m.body {
            MessageBody::AppendEntriesResponse(raft_core::AppendEntriesResponse::Success { match_index }) => {
                Some(*match_index)
            }
            _ => None,
        })
        .collect();
    assert_eq!(acks, vec![commit]);
}

#[test]
fn restarted_node_recovers_from_its_snapshot_plus_the_log_after_it() {
    let mut net = compacting_net(3);
    net.elect(1);
    propose_many(&mut net, 1, 25);
    let before = net.node(2).status();
    let applied_before = commands(&net, 2);
    net.restart(2, compacting, Membership::voters([1, 2, 3]).unwrap());
    let after = net.node(2).status();
    assert_eq!(after.snapshot_index, before.snapshot_index);
    assert_eq!(after.first_log_index, before.first_log_index);
    assert_eq!(after.last_log_index, before.last_log_index);
    // The state machine came back from the snapshot; the committed tail is applied again.
    net.settle();
    propose_many(&mut net, 1, 1);
    let applied_after = commands(&net, 2);
    assert_eq!(&applied_after[..applied_before.len()], &applied_before[..]);
    assert_eq!(applied_after, commands(&net, 1));
}

#[test]
fn restore_refuses_a_state_machine_behind_the_snapshot() {
    let mut net = compacting_net(3);
    net.elect(1);
    propose_many(&mut net, 1, 12);
    let snapshot = net.stored_snapshot[&2].clone();
    let state = RestoredState {
        hard_state: net.stored[&2].0,
        snapshot: Some(snapshot.clone()),
        entries: net.stored[&2].1.clone(),
        applied: 0,
    };
    let error = RaftCore::restore(compacting(2), Membership::default(), state).unwrap_err();
    assert_eq!(
        error,
        InitError::StateMachineBehindSnapshot {
            applied: 0,
            snapshot_index: snapshot.index
        }
    );
}

#[test]
fn restore_refuses_a_log_with_a_gap_after_the_snapshot() {
    let mut net = compacting_net(3);
    net.elect(1);
    propose_many(&mut net, 1, 12);
    let snapshot = net.stored_snapshot[&2].clone();
    let entries: Vec<Entry> = net.stored[&2]
        .1
        .iter()
        .filter(|e| e.index > snapshot.index + 1)
        .cloned()
        .collect();
    let state = RestoredState {
        hard_state: hard(net.node(2).term()),
        snapshot: Some(snapshot.clone()),
        entries,
        applied: snapshot.index,
    };
    let error = RaftCore::restore(compacting(2), Membership::default(), state).unwrap_err();
    assert!(matches!(error, InitError::LogNotContiguous { .. }), "{error:?}");
}

#[test]
fn learner_added_after_compaction_catches_up_via_snapshot_and_gets_the_configuration() {
    let mut net = compacting_net(3);
    net.elect(1);
    propose_many(&mut net, 1, 30);
    net.add_joiner(4);
    let voters: BTreeSet<NodeId> = [1, 2, 3].into();
    net.node(1).change_membership(voters.clone(), [4].into()).unwrap();
    net.settle();
    net.tick_all(5);
    assert!(
        net.node(4).status().snapshot_index > 0,
        "the learner got a snapshot"
    );
    assert_eq!(net.node(4).membership().learners, [4].into());
    assert_eq!(commands(&net, 4), commands(&net, 1));
    // Promote it: the learner, caught up, now votes.
    net.node(1)
        .change_membership([1, 2, 3, 4].into(), BTreeSet::new())
        .unwrap();
    net.settle();
    net.tick_all(3);
    assert!(net.node(4).membership().is_voter(4));
}

/// A snapshot at `index` of term 1 whose bytes are `data`, for a 3-voter cluster.
fn snapshot_of(index: u64, data: &[u8]) -> raft_core::SnapshotMeta {
    let mut checksum = raft_core::SnapshotChecksum::new();
    checksum.update(data);
    raft_core::SnapshotMeta {
        index,
        term: 1,
        membership: Membership::voters([1, 2, 3]).unwrap(),
        size: checksum.size(),
        checksum: checksum.value(),
    }
}

/// The leader (node 1, term 1) sends node 2 the chunk `data[offset..end]` of the snapshot `meta`.
fn chunk(meta: &raft_core::SnapshotMeta, data: &[u8], offset: usize, end: usize) -> Message {
    Message {
        from: 1,
        to: 2,
        term: 1,
        body: MessageBody::InstallSnapshot(InstallSnapshot {
            meta: meta.clone(),
            offset: offset as u64,
            data: bytes::Bytes::copy_from_slice(&data[offset..end]),
            done: end == data.len(),
        }),
    }
}

#[test]
fn newer_snapshot_is_not_completed_while_the_previous_one_is_being_restored() {
    // The story of simulator seeds 100458, 102408, 104699, 105565, 109295 and 111603: a follower
    // completes snapshot I and, before its state machine is restored from I, the last chunk of a
    // newer snapshot J. Completing J would hand out a second restore, and recording J lets the
    // store delete I while the first restore still reads it.
    let mut node = RaftCore::new(config(2), Membership::voters([1, 2, 3]).unwrap()).unwrap();
    let (first_data, second_data) = (b"state at ten".to_vec(), b"the state at index twenty".to_vec());
    let (first, second) = (snapshot_of(10, &first_data), snapshot_of(20, &second_data));

    node.step(chunk(&first, &first_data, 0, first_data.len()))
        .unwrap();
    let ready = node.ready();
    let update = ready.snapshot.expect("snapshot I is installed");
    assert!(update.restore && update.meta.index == 10);

    // J streams in while I is restored: its chunks are stored, but the last one is held back.
    node.step(chunk(&second, &second_data, 0, 8)).unwrap();
    node.step(chunk(&second, &second_data, 8, second_data.len()))
        .unwrap();
    let ready = node.ready();
    assert_eq!(
        ready.snapshot, None,
        "no second restore while the first is pending"
    );
    assert_eq!(
        ready.received_chunks.len(),
        1,
        "only the chunk before the last is stored"
    );
    let answers: Vec<(u64, u64, bool)> = ready
        .messages_after_persist
        .iter()
        .filter_map(|m| match &m.body {
            MessageBody::InstallSnapshotResponse(r) => Some((r.snapshot_index, r.next_offset, r.rejected)),
            _ => None,
        })
        .collect();
    assert_eq!(
        answers,
        vec![(20, 8, false), (20, 8, false)],
        "the leader learns to send the last chunk again"
    );

    // Once the restore of I is reported, the last chunk of J completes J.
    node.on_applied(10);
    node.step(chunk(&second, &second_data, 8, second_data.len()))
        .unwrap();
    let ready = node.ready();
    let update = ready.snapshot.expect("snapshot J is installed");
    assert!(update.restore && update.meta.index == 20);
}
