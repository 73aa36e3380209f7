//! In-process transport for `raft-core` over tokio channels, with fault injection.
//!
//! A [`MemNetwork`] is a router shared by the nodes of a test cluster. Each node registers and
//! gets a [`MemTransport`] (to send) and a [`MemInbox`] (to receive). The test controls the faults:
//!
//! * per-message: drop probability, duplication probability, and a random delay in a range
//!   (random delays reorder messages), all drawn from a seeded generator;
//! * per-link: [`isolate`](MemNetwork::isolate) a node, [`partition`](MemNetwork::partition) the
//!   cluster into groups, [`cut`](MemNetwork::cut) one direction of one link, and
//!   [`heal`](MemNetwork::heal) everything.
//!
//! The generator makes the *decisions* repeatable for a given sequence of sends; the order of
//! sends itself depends on tokio's scheduling. Bit-for-bit replay is the job of the deterministic
//! simulator, which drives `raft-core` directly.
//!
//! ```
//! use raft_core::{Heartbeat, Inbox, Message, MessageBody, Transport};
//! use raft_net_mem::MemNetwork;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let network = MemNetwork::new(42);
//! let (to_2, _inbox_1) = network.register(1);
//! let (_to_1, mut inbox_2) = network.register(2);
//! let heartbeat = Message { from: 1, to: 2, term: 1, body: MessageBody::Heartbeat(Heartbeat { commit: 0, round: 0 }) };
//! to_2.send(heartbeat.clone())?;
//! assert_eq!(inbox_2.recv().await, Some(heartbeat));
//! # Ok::<(), raft_core::TransportError>(())
//! # }).unwrap();
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use raft_core::{Inbox, Message, NodeId, SeededRng, Transport, TransportError};
use tokio::sync::mpsc;
use tracing::trace;

/// Random faults applied to every message.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    /// Probability in `[0, 1]` that a message is lost.
    pub drop_probability: f64,
    /// Probability in `[0, 1]` that a message is delivered twice.
    pub duplicate_probability: f64,
    /// Each delivery is delayed by a uniformly random duration in this range (inclusive); a range
    /// wider than zero reorders messages.
    pub delay: (Duration, Duration),
}

impl Faults {
    /// No faults: every message is delivered once, at once, in order.
    pub fn none() -> Self {
        Self::default()
    }
}

/// Counters of what the network did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetworkStats {
    /// Messages handed to a recipient's inbox (each duplicate counts).
    pub delivered: u64,
    /// Messages lost to random drops.
    pub dropped: u64,
    /// Messages stopped by a partition, isolation or cut link.
    pub blocked: u64,
    /// Extra copies delivered.
    pub duplicated: u64,
}

#[derive(Debug)]
struct Router {
    inboxes: BTreeMap<NodeId, mpsc::UnboundedSender<Message>>,
    faults: Faults,
    isolated: BTreeSet<NodeId>,
    /// Blocked directed links (from, to).
    cuts: BTreeSet<(NodeId, NodeId)>,
    rng: SeededRng,
    stats: NetworkStats,
}

impl Router {
    fn chance(&mut self, probability: f64) -> bool {
        probability > 0.0 && self.rng.chance(probability)
    }

    fn delay(&mut self) -> Duration {
        let (low, high) = self.faults.delay;
        if high <= low {
            return low;
        }
        let span = (high - low).as_nanos() as u64;
        low + Duration::from_nanos(self.rng.below(span + 1))
    }

    fn blocked(&self, from: NodeId, to: NodeId) -> bool {
        self.isolated.contains(&from) || self.isolated.contains(&to) || self.cuts.contains(&(from, to))
    }
}

/// The shared router of an in-process cluster. Clones share the same network.
#[derive(Clone, Debug)]
pub struct MemNetwork {
    router: Arc<Mutex<Router>>,
}

impl MemNetwork {
    /// A network without faults whose random choices come from `seed`.
    pub fn new(seed: u64) -> Self {
        MemNetwork {
            router: Arc::new(Mutex::new(Router {
                inboxes: BTreeMap::new(),
                faults: Faults::none(),
                isolated: BTreeSet::new(),
                cuts: BTreeSet::new(),
                rng: SeededRng::new(seed),
                stats: NetworkStats::default(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Router> {
        // Every update under the lock is complete before it can panic; the state stays usable.
        self.router.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Connects node `id`, replacing any earlier registration (as after a restart: messages
    /// queued for the old inbox are lost).
    pub fn register(&self, id: NodeId) -> (MemTransport, MemInbox) {
        let (tx, rx) = mpsc::unbounded_channel();
        self.lock().inboxes.insert(id, tx);
        let transport = MemTransport {
            network: self.clone(),
            from: id,
        };
        (transport, MemInbox { rx })
    }

    /// Disconnects node `id` (as when it crashes); messages to it are refused until it registers
    /// again.
    pub fn unregister(&self, id: NodeId) {
        self.lock().inboxes.remove(&id);
    }

    /// Sets the random faults.
    pub fn set_faults(&self, faults: Faults) {
        self.lock().faults = faults;
    }

    /// Cuts every link to and from `id`.
    pub fn isolate(&self, id: NodeId) {
        self.lock().isolated.insert(id);
    }

    /// Splits the nodes into groups that cannot reach each other (links within a group work).
    pub fn partition(&self, groups: &[&[NodeId]]) {
        let mut router = self.lock();
        for (i, a) in groups.iter().enumerate() {
            for (j, b) in groups.iter().enumerate() {
                if i == j {
                    continue;
                }
                for from in a.iter() {
                    for to in b.iter() {
                        router.cuts.insert((*from, *to));
                    }
                }
            }
        }
    }

    /// Cuts the one-way link from `from` to `to`.
    pub fn cut(&self, from: NodeId, to: NodeId) {
        self.lock().cuts.insert((from, to));
    }

    /// Removes every isolation, partition and cut (random faults stay as set).
    pub fn heal(&self) {
        let mut router = self.lock();
        router.isolated.clear();
        router.cuts.clear();
    }

    /// What the network did so far.
    pub fn stats(&self) -> NetworkStats {
        self.lock().stats
    }

    /// Puts `message` in `inbox` after `delay`. Called with the router unlocked: a send wakes the
    /// recipient's task, which may mean waking a parked worker thread (a system call), and
    /// another node's send must not wait for that on the router's lock.
    fn deliver(inbox: &mpsc::UnboundedSender<Message>, message: Message, delay: Duration) {
        if delay.is_zero() {
            // A closed inbox belongs to a stopped node: the message is lost, as on a network.
            let _ = inbox.send(message);
        } else {
            let inbox = inbox.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = inbox.send(message);
            });
        }
    }

    fn route(&self, message: Message) -> Result<(), TransportError> {
        // The decisions (and the draws of the seeded generator) are made under the lock, in the
        // order of the sends; the deliveries after it.
        let (inbox, duplicate_delay, delay) = {
            let mut router = self.lock();
            let (from, to) = (message.from, message.to);
            let Some(inbox) = router.inboxes.get(&to).cloned() else {
                return Err(TransportError::UnknownPeer(to));
            };
            if router.blocked(from, to) {
                router.stats.blocked += 1;
                trace!(from, to, kind = message.body.kind(), "blocked");
                return Ok(());
            }
            let drop_probability = router.faults.drop_probability;
            if router.chance(drop_probability) {
                router.stats.dropped += 1;
                trace!(from, to, kind = message.body.kind(), "dropped");
                return Ok(());
            }
            let duplicate_probability = router.faults.duplicate_probability;
            let duplicate_delay = if router.chance(duplicate_probability) {
                router.stats.duplicated += 1;
                router.stats.delivered += 1;
                Some(router.delay())
            } else {
                None
            };
            router.stats.delivered += 1;
            (inbox, duplicate_delay, router.delay())
        };
        if let Some(duplicate_delay) = duplicate_delay {
            Self::deliver(&inbox, message.clone(), duplicate_delay);
        }
        // The message itself, not a copy of its entries, on the usual path.
        Self::deliver(&inbox, message, delay);
        Ok(())
    }
}

/// One node's sending side of a [`MemNetwork`].
#[derive(Clone, Debug)]
pub struct MemTransport {
    network: MemNetwork,
    from: NodeId,
}

impl MemTransport {
    /// The node this transport sends for.
    pub fn node_id(&self) -> NodeId {
        self.from
    }
}

impl Transport for MemTransport {
    fn send(&self, message: Message) -> Result<(), TransportError> {
        debug_assert_eq!(message.from, self.from);
        self.network.route(message)
    }
}

/// One node's receiving side of a [`MemNetwork`].
#[derive(Debug)]
pub struct MemInbox {
    rx: mpsc::UnboundedReceiver<Message>,
}

impl Inbox for MemInbox {
    async fn recv(&mut self) -> Option<Message> {
        self.rx.recv().await
    }

    fn try_recv(&mut self) -> Option<Message> {
        self.rx.try_recv().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft_core::{Heartbeat, MessageBody};

    fn heartbeat(from: NodeId, to: NodeId, commit: u64) -> Message {
        Message {
            from,
            to,
            term: 1,
            body: MessageBody::Heartbeat(Heartbeat { commit, round: 0 }),
        }
    }

    fn drain(inbox: &mut MemInbox) -> Vec<u64> {
        let mut seen = Vec::new();
        while let Ok(m) = inbox.rx.try_recv() {
            if let MessageBody::Heartbeat(h) = m.body {
                seen.push(h.commit);
            }
        }
        seen
    }

    #[tokio::test]
    async fn delivers_in_order_without_faults() {
        let net = MemNetwork::new(1);
        let (t1, _) = net.register(1);
        let (_, mut inbox) = net.register(2);
        for i in 0..100 {
            t1.send(heartbeat(1, 2, i)).unwrap();
        }
        assert_eq!(drain(&mut inbox), (0..100).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn unknown_peer_is_an_error() {
        let net = MemNetwork::new(1);
        let (t1, _) = net.register(1);
        assert_eq!(t1.send(heartbeat(1, 9, 0)), Err(TransportError::UnknownPeer(9)));
    }

    #[tokio::test]
    async fn partitions_block_across_groups_and_heal() {
        let net = MemNetwork::new(1);
        let (t1, mut i1) = net.register(1);
        let (t2, mut i2) = net.register(2);
        let (_t3, mut i3) = net.register(3);
        net.partition(&[&[1], &[2, 3]]);
        t1.send(heartbeat(1, 2, 0)).unwrap();
        t2.send(heartbeat(2, 1, 0)).unwrap();
        t2.send(heartbeat(2, 3, 0)).unwrap();
        assert!(drain(&mut i1).is_empty() && drain(&mut i2).is_empty());
        assert_eq!(drain(&mut i3).len(), 1);
        net.heal();
        t1.send(heartbeat(1, 2, 0)).unwrap();
        assert_eq!(drain(&mut i2).len(), 1);
        assert_eq!(net.stats().blocked, 2);
    }

    #[tokio::test]
    async fn one_way_cut_blocks_one_direction() {
        let net = MemNetwork::new(1);
        let (t1, mut i1) = net.register(1);
        let (t2, mut i2) = net.register(2);
        net.cut(1, 2);
        t1.send(heartbeat(1, 2, 0)).unwrap();
        t2.send(heartbeat(2, 1, 0)).unwrap();
        assert!(drain(&mut i2).is_empty());
        assert_eq!(drain(&mut i1).len(), 1);
    }

    #[tokio::test]
    async fn isolation_blocks_every_link_of_a_node() {
        let net = MemNetwork::new(1);
        let (t1, mut i1) = net.register(1);
        let (t2, mut i2) = net.register(2);
        net.isolate(2);
        t1.send(heartbeat(1, 2, 0)).unwrap();
        t2.send(heartbeat(2, 1, 0)).unwrap();
        assert!(drain(&mut i1).is_empty() && drain(&mut i2).is_empty());
    }

    #[tokio::test]
    async fn drop_and_duplicate_decisions_repeat_for_the_same_seed() {
        let run = |seed| {
            let net = MemNetwork::new(seed);
            net.set_faults(Faults {
                drop_probability: 0.3,
                duplicate_probability: 0.2,
                delay: (Duration::ZERO, Duration::ZERO),
            });
            let (t1, _) = net.register(1);
            let (_, mut inbox) = net.register(2);
            for i in 0..200 {
                t1.send(heartbeat(1, 2, i)).unwrap();
            }
            (drain(&mut inbox), net.stats())
        };
        let (a, stats) = run(7);
        assert_eq!((a.clone(), stats), run(7));
        assert_ne!(a, run(8).0);
        assert!(stats.dropped > 30 && stats.dropped < 90, "{stats:?}");
        assert!(stats.duplicated > 10, "{stats:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn random_delays_reorder_messages() {
        let net = MemNetwork::new(3);
        net.set_faults(Faults {
            delay: (Duration::from_millis(1), Duration::from_millis(50)),
            ..Faults::none()
        });
        let (t1, _) = net.register(1);
        let (_, mut inbox) = net.register(2);
        for i in 0..50 {
            t1.send(heartbeat(1, 2, i)).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let seen = drain(&mut inbox);
        assert_eq!(seen.len(), 50);
        assert!(seen.windows(2).any(|w| w[0] > w[1]), "no reordering: {seen:?}");
    }
}
