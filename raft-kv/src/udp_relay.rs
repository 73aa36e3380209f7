//! A UDP relay in front of a node's peer port, under the caller's control: it forwards datagrams
//! both ways, and drops them all, or those of chosen sources, on command. Put one in front of
//! every node (the configuration then lists the relays as the peer addresses) to cut and heal
//! Raft traffic between processes without touching them: a network partition on loopback.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// What the relay lets through.
#[derive(Debug, Default)]
struct Filter {
    /// Drop everything, both ways.
    all: AtomicBool,
    /// Drop datagrams from these sources (and the replies to them).
    sources: Mutex<HashSet<SocketAddr>>,
}

impl Filter {
    fn sources(&self) -> MutexGuard<'_, HashSet<SocketAddr>> {
        self.sources.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn passes(&self, source: SocketAddr) -> bool {
        !self.all.load(Ordering::Relaxed) && !self.sources().contains(&source)
    }
}

/// A relay from a listening address to a target.
#[derive(Debug)]
pub struct UdpRelay {
    listen: SocketAddr,
    filter: Arc<Filter>,
    task: JoinHandle<()>,
}

impl UdpRelay {
    /// Starts relaying datagrams sent to a new loopback port to `target`.
    pub async fn start(target: SocketAddr) -> std::io::Result<UdpRelay> {
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
        let listen = socket.local_addr()?;
        let filter = Arc::new(Filter::default());
        let task = tokio::spawn(relay(socket, target, filter.clone()));
        Ok(UdpRelay { listen, filter, task })
    }

    /// The address to send to instead of the target.
    pub fn addr(&self) -> SocketAddr {
        self.listen
    }

    /// Drops everything (`true`) or nothing but the blocked sources (`false`).
    pub fn block_all(&self, blocked: bool) {
        self.filter.all.store(blocked, Ordering::Relaxed);
    }

    /// Drops the datagrams from `source` and the replies to it.
    pub fn block_source(&self, source: SocketAddr) {
        self.filter.sources().insert(source);
    }

    /// Lets everything through again.
    pub fn heal(&self) {
        self.block_all(false);
        self.filter.sources().clear();
    }
}

impl Drop for UdpRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(socket: Arc<UdpSocket>, target: SocketAddr, filter: Arc<Filter>) {
    // One upstream socket per source, so the target's replies find their way back.
    let mut upstreams: HashMap<SocketAddr, Upstream> = HashMap::new();
    let mut buf = vec![0u8; 65_536];
    loop {
        let Ok((len, source)) = socket.recv_from(&mut buf).await else {
            return;
        };
        if !filter.passes(source) {
            continue;
        }
        let upstream = match upstreams.get(&source) {
            Some(upstream) => upstream.socket.clone(),
            None => {
                let Ok(upstream) = UdpSocket::bind("127.0.0.1:0").await else {
                    continue;
                };
                let upstream = Arc::new(upstream);
                let back = tokio::spawn(replies(upstream.clone(), socket.clone(), source, filter.clone()));
                let entry = Upstream {
                    socket: upstream.clone(),
                    replies: back,
                };
                upstreams.insert(source, entry);
                upstream
            }
        };
        let _ = upstream.send_to(&buf[..len], target).await;
    }
}

/// The socket that relays one source's datagrams, and the task that carries the replies back.
struct Upstream {
    socket: Arc<UdpSocket>,
    replies: JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.replies.abort();
    }
}

async fn replies(upstream: Arc<UdpSocket>, socket: Arc<UdpSocket>, source: SocketAddr, filter: Arc<Filter>) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let Ok(len) = upstream.recv(&mut buf).await else {
            return;
        };
        if filter.passes(source) {
            let _ = socket.send_to(&buf[..len], source).await;
        }
    }
}
