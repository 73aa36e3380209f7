//! Under a backlog of proposals, a leader's event loop lets the tasks a round woke run before it
//! starts the next round: on one thread, the followers take in one round's entries before the
//! leader sends the next round's.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Cluster;
use raft_node::mem::MemStorage;
use raft_node::raft_core::{
    Inbox, Index, Membership, Message, MessageBody, NodeId, Transport, TransportError,
};
use raft_node::NodeConfig;

/// An AppendEntries that carried entries, as the leader sent it or a follower took it in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    Sent { to: NodeId, last: Index },
    Received { at: NodeId, last: Index },
}

type Log = Arc<Mutex<Vec<Seen>>>;

fn record(log: &Log, message: &Message, seen: impl Fn(Index) -> Seen) {
    if let MessageBody::AppendEntries(append) = &message.body {
        if let Some(last) = append.entries.last() {
            log.lock().expect("log").push(seen(last.index));
        }
    }
}

/// A transport or an inbox that records the entries it carries into `log`.
struct Recorded<T> {
    inner: T,
    log: Log,
}

impl<T: Transport> Transport for Recorded<T> {
    fn send(&self, message: Message) -> Result<(), TransportError> {
        record(&self.log, &message, |last| Seen::Sent { to: message.to, last });
        self.inner.send(message)
    }

    fn max_message_bytes(&self) -> Option<usize> {
        self.inner.max_message_bytes()
    }
}

impl<I: Inbox> Inbox for Recorded<I> {
    async fn recv(&mut self) -> Option<Message> {
        let message = self.inner.recv().await?;
        record(&self.log, &message, |last| Seen::Received {
            at: message.to,
            last,
        });
        Some(message)
    }

    fn try_recv(&mut self) -> Option<Message> {
        let message = self.inner.try_recv()?;
        record(&self.log, &message, |last| Seen::Received {
            at: message.to,
            last,
        });
        Some(message)
    }
}

#[tokio::test(flavor = "current_thread")]
async fn under_a_backlog_the_followers_take_in_a_round_before_the_leader_sends_the_next() {
    const BACKLOG: u32 = 3000;
    let membership = Membership::voters([1, 2, 3]).expect("membership");
    let log = Log::default();
    let cluster = Cluster::start_wrapped(
        29,
        membership,
        |id| {
            let mut config = NodeConfig::new(id).with_tick_interval(Duration::from_millis(5));
            // Room for the whole backlog: every proposal is queued before the leader's loop runs.
            config.request_queue = BACKLOG as usize + 1;
            config
        },
        |_| MemStorage::new(),
        |transport, inbox| {
            let log = log.clone();
            (
                Recorded {
                    inner: transport,
                    log: log.clone(),
                },
                Recorded { inner: inbox, log },
            )
        },
    )
    .await;
    let leader = cluster.leader.clone();
    let leader_id = leader.id();
    // The leader's first entry, committed: nothing else is in flight.
    leader
        .propose(b"first".to_vec())
        .await
        .expect("the first proposal commits");
    let before = leader.status().raft.commit_index;
    log.lock().expect("log").clear();

    // On this one thread the spawned proposals all run, and queue, before the leader's loop.
    cluster
        .propose_all_at_once(BACKLOG, Duration::from_secs(20))
        .await;

    let seen = log.lock().expect("log").clone();
    for follower in [1, 2, 3].into_iter().filter(|id| *id != leader_id) {
        let first_taken_in = seen
            .iter()
            .position(|s| matches!(s, Seen::Received { at, .. } if *at == follower))
            .expect("the follower took in entries");
        let sent_before: Vec<Index> = seen[..first_taken_in]
            .iter()
            .filter_map(|s| match s {
                Seen::Sent { to, last } if *to == follower => Some(*last),
                _ => None,
            })
            .collect();
        let furthest = sent_before.iter().max().copied().unwrap_or(before);
        // One round takes in at most 1,025 requests (the one that woke the loop and 1,024
        // more), two take 2,050: half the backlog lies between. Without the yield the leader sent
        // all 3,000 before either follower ran.
        assert!(
            furthest > before && furthest < before + (BACKLOG / 2) as Index,
            "follower {follower} first took in entries after the leader had sent up to {furthest} \
             (the backlog started after {before}): {sent_before:?}"
        );
    }
    cluster.shutdown().await;
}
