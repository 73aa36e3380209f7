//! The QUIC transport: an endpoint per node, a connection to each peer, streams of frames.
//!
//! **Sending.** Each peer has a task that owns the connection to it and two queues: one for
//! snapshot chunks and one for everything else. The task opens one unidirectional stream per
//! queue, so a chunk being written never holds back a heartbeat or a vote. It writes what has
//! queued up in one go (batching), gives each write [`QuicConfig::send_timeout`], and after a
//! failure reconnects with exponential backoff, dropping what was queued meanwhile (Raft resends
//! what matters). [`Transport::send`] never waits: a full queue refuses the message.
//!
//! **Receiving.** Every stream starts with a [`Hello`](crate::wire::Hello). The receiver checks
//! the protocol version, the cluster id, that it is the addressee, that the sender is a
//! configured peer and that the sender's certificate (already verified against the CA by
//! rustls) names that sender. Every message must then say it is from that peer and for this
//! node. Anything else (a malformed, truncated or oversized frame, an unknown kind, a wrong
//! cluster, version or node) is logged with its typed [`WireError`] and the stream is closed;
//! the node carries on.
//!
//! **Bounded, whatever a peer sends.** A certificate holder could otherwise pin memory or slots:
//! * the first frame of a stream may be no longer than a hello, so nothing large is held before
//!   the sender has said who it is;
//! * a frame's bytes are reserved from the inbox's byte budget ([`QuicConfig::inbox_bytes`])
//!   when its length arrives, before its body is read, and returned when the node takes the
//!   message: received data never holds more than the budget, and a full budget is
//!   backpressure, not loss;
//! * once a frame has begun, the rest must come within [`QuicConfig::frame_read_timeout`], and
//!   a connection must identify itself with a good hello within it too;
//! * four streams per connection, [`QuicConfig::max_connections_per_peer`] connections per peer
//!   (a new one closes the oldest, so a restarted peer always gets in) and
//!   [`QuicConfig::max_incoming_connections`] in all;
//! * refused connections are logged at most once a second, with a count of those suppressed.
//!
//! **Restarts.** The endpoint's stateless-reset key and its connection-id key are derived from
//! the node's private key (HKDF, one key per purpose), so a restarted node recognizes the connection ids its earlier self
//! issued, resets its peers' stale connections at once, and they reconnect. A node restarted
//! in the same process can bind its address again as soon as [`QuicTransport::close`] returns:
//! it waits until the endpoint and every connection have let go of the socket.

use std::collections::{BTreeMap, VecDeque};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use raft_core::{ClusterId, Inbox, Message, MessageBody, NodeId, Transport, TransportError};
use rustls_pki_types::{CertificateDer, ServerName};
use thiserror::Error;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::certs::{node_name, NodeTls};
use crate::socket::Released;
use crate::wire::{
    check_hello, decode_body, encode_hello, encode_message, frame_length, Frame, Hello, WireError,
    HELLO_FRAME_BYTES, LENGTH_BYTES, PROTOCOL_VERSION,
};

/// The ALPN protocol name both ends must offer.
const ALPN: &[u8] = b"raft/1";
/// Application error code for a stream closed over bad input.
const BAD_INPUT: u32 = 1;
/// Bytes of queued messages a sender gathers into one stream write.
const BATCH_BYTES: usize = 1 << 20;

/// A node's QUIC transport settings.
#[derive(Clone, Debug)]
pub struct QuicConfig {
    /// This node.
    pub node_id: NodeId,
    /// The cluster; peers of another cluster are refused.
    pub cluster_id: ClusterId,
    /// The address to listen on (ignored by [`QuicTransport::start_on`], which takes a socket).
    pub listen: SocketAddr,
    /// Where each peer listens. Messages to other ids are refused with `UnknownPeer`, and
    /// connections from other ids are closed.
    pub peers: BTreeMap<NodeId, SocketAddr>,
    /// The CA, this node's certificate and its key.
    pub tls: NodeTls,
    /// The largest frame sent or accepted (default 32 MiB; it must hold the largest entry).
    pub max_frame_bytes: usize,
    /// How long a write to a peer may take before the connection is dropped (default 5 s).
    pub send_timeout: Duration,
    /// How long a connection attempt may take (default 2 s).
    pub connect_timeout: Duration,
    /// The round trip QUIC assumes before it has measured one (default 10 ms; QUIC's own
    /// default is 333 ms, for the internet). It times the handshake's retransmissions: a node
    /// that dials a peer not listening yet (the cluster is starting) tries again after about
    /// three of these, doubling, instead of after a second. Once a round trip is measured, the
    /// measurement rules; on a wide-area cluster set it near the real round trip.
    pub initial_rtt: Duration,
    /// The longest wait between reconnection attempts (default 1 s; it starts at 20 ms).
    pub max_reconnect_backoff: Duration,
    /// Messages queued per peer, snapshot chunks apart (default 4,096).
    pub queue_capacity: usize,
    /// Snapshot chunks queued per peer (default 8).
    pub snapshot_queue_capacity: usize,
    /// Messages received but not yet taken from the inbox before the streams wait (default 8,192).
    pub inbox_capacity: usize,
    /// Bytes of frames being read and of messages received but not yet taken from the inbox
    /// (default 64 MiB; at least `max_frame_bytes`). A frame's bytes are reserved from this
    /// budget when its length prefix arrives, before its body is read, and returned when the
    /// node takes the message: whatever peers send, received data never holds more memory than
    /// this. When it is spent, streams wait (backpressure).
    pub inbox_bytes: usize,
    /// Once the first byte of a frame (or a stream's hello) has arrived, the rest must arrive
    /// within this time, or the stream is closed (default 10 s). A peer cannot hold a stream, or
    /// the budget it reserved, by sending a byte at a time.
    pub frame_read_timeout: Duration,
    /// Incoming connections open at once from one peer (default 4). A peer that opens another
    /// one closes its oldest: a restarted peer's new connection always gets in.
    pub max_connections_per_peer: usize,
    /// Incoming connections open at once in all (default 64). Connections beyond it are refused
    /// before their handshake.
    pub max_incoming_connections: usize,
    /// A connection with nothing received for this long is dropped (default 5 s; keep-alives are
    /// sent at a fifth of it).
    pub idle_timeout: Duration,
}

impl QuicConfig {
    /// Settings with the defaults above.
    pub fn new(
        node_id: NodeId,
        cluster_id: ClusterId,
        listen: SocketAddr,
        peers: BTreeMap<NodeId, SocketAddr>,
        tls: NodeTls,
    ) -> Self {
        QuicConfig {
            node_id,
            cluster_id,
            listen,
            peers,
            tls,
            max_frame_bytes: 32 << 20,
            send_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            initial_rtt: Duration::from_millis(10),
            max_reconnect_backoff: Duration::from_secs(1),
            queue_capacity: 4096,
            snapshot_queue_capacity: 8,
            inbox_capacity: 8192,
            inbox_bytes: 64 << 20,
            frame_read_timeout: Duration::from_secs(10),
            max_connections_per_peer: 4,
            max_incoming_connections: 64,
            idle_timeout: Duration::from_secs(5),
        }
    }
}

/// The transport could not start.
#[derive(Debug, Error)]
pub enum QuicError {
    /// The TLS material was refused.
    #[error("invalid TLS configuration: {0}")]
    Tls(String),
    /// The UDP socket could not be bound or used.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A setting is out of range.
    #[error("invalid transport setting: {0}")]
    Config(String),
}

/// Sends messages over QUIC. Clones share the endpoint; [`shutdown`](Self::shutdown) stops it.
#[derive(Clone)]
pub struct QuicTransport {
    shared: Arc<Shared>,
}

struct Shared {
    node_id: NodeId,
    /// Taken out at shutdown, so that the socket is released once the tasks holding clones end.
    endpoint: Mutex<Option<quinn::Endpoint>>,
    /// Resolves once the endpoint and every connection have let go of the socket; taken by the
    /// first [`QuicTransport::close`] to wait for it.
    released: Mutex<Option<Released>>,
    peers: Mutex<BTreeMap<NodeId, PeerQueues>>,
    config: QuicConfig,
    closed: AtomicBool,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// The inbox's byte budget ([`QuicConfig::inbox_bytes`]).
    budget: Arc<Semaphore>,
    /// Incoming connections open now, of every peer and of none yet.
    incoming: AtomicUsize,
    /// The incoming connections each peer has identified itself on, oldest first.
    identified: Mutex<BTreeMap<NodeId, VecDeque<quinn::Connection>>>,
    /// Refused connections, logged at most once a second.
    refusals: RateLimitedLog,
}

struct PeerQueues {
    messages: mpsc::Sender<Message>,
    chunks: mpsc::Sender<Message>,
}

/// A received message and its share of the inbox's byte budget, returned when it is taken.
type Received = (Message, OwnedSemaphorePermit);

/// Receives the messages addressed to this node.
pub struct QuicInbox {
    rx: mpsc::Receiver<Received>,
}

impl std::fmt::Debug for QuicTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuicTransport")
            .field("node_id", &self.shared.node_id)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for QuicInbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuicInbox").finish_non_exhaustive()
    }
}

fn tls_error(e: impl std::fmt::Display) -> QuicError {
    QuicError::Tls(e.to_string())
}

/// How many packets that ask for an acknowledgement a peer may receive before it must send one
/// (the QUIC acknowledgement frequency extension); see [`quic_configs`].
const ACK_ELICITING_THRESHOLD: u32 = 10;

/// Client and server QUIC configurations for mutual TLS with the cluster's CA.
fn quic_configs(config: &QuicConfig) -> Result<(quinn::ServerConfig, quinn::ClientConfig), QuicError> {
    let server = config.tls.server_config(ALPN).map_err(tls_error)?;
    let server = QuicServerConfig::try_from(server).map_err(tls_error)?;
    let client = config.tls.client_config(ALPN).map_err(tls_error)?;
    let client = QuicClientConfig::try_from(client).map_err(tls_error)?;

    let mut transport = quinn::TransportConfig::default();
    let idle =
        quinn::IdleTimeout::try_from(config.idle_timeout).map_err(|e| QuicError::Config(e.to_string()))?;
    transport.max_idle_timeout(Some(idle));
    transport.keep_alive_interval(Some(config.idle_timeout / 5));
    transport.initial_rtt(config.initial_rtt);
    // Raft uses two unidirectional streams per connection; two spare.
    transport.max_concurrent_uni_streams(4u32.into());
    transport.max_concurrent_bidi_streams(0u32.into());
    // Ask the peer to acknowledge after more than ACK_ELICITING_THRESHOLD packets (or its ack
    // delay) instead of every other one. A connection carries one node's messages one way (the
    // peer answers on its own connection), so each acknowledgement is a datagram of its own
    // that wakes the sender's process for nothing: with QUIC's default, 2.2 of them per write
    // at one client through the service. A packet that arrives out of order is still
    // acknowledged at once, so loss is detected as quickly as before.
    let mut acks = quinn::AckFrequencyConfig::default();
    acks.ack_eliciting_threshold(ACK_ELICITING_THRESHOLD.into());
    transport.ack_frequency_config(Some(acks));
    let transport = Arc::new(transport);

    let mut server = quinn::ServerConfig::with_crypto(Arc::new(server));
    server.transport_config(transport.clone());
    let mut client = quinn::ClientConfig::new(Arc::new(client));
    client.transport_config(transport);
    Ok((server, client))
}

/// A key for one `purpose`, derived from the node's private key with HKDF-SHA256.
fn derived_key(secret: &[u8], purpose: &'static [u8]) -> Result<ring::hmac::Key, QuicError> {
    let salt = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, b"raft-net-quic endpoint keys v1");
    let info = [purpose];
    let prk = salt.extract(secret);
    let okm = prk
        .expand(&info, ring::hmac::HMAC_SHA256)
        .map_err(|_| QuicError::Config("cannot derive an endpoint key".into()))?;
    Ok(okm.into())
}

impl QuicTransport {
    /// Binds `config.listen` and starts the transport.
    pub fn start(config: QuicConfig) -> Result<(QuicTransport, QuicInbox), QuicError> {
        let socket = UdpSocket::bind(config.listen).map_err(|source| QuicError::Bind {
            addr: config.listen,
            source,
        })?;
        Self::start_on(config, socket)
    }

    /// Starts the transport on a socket already bound (tests bind port 0 first to learn the
    /// address). Must be called within a tokio runtime.
    pub fn start_on(config: QuicConfig, socket: UdpSocket) -> Result<(QuicTransport, QuicInbox), QuicError> {
        if config.max_frame_bytes > u32::MAX as usize || config.max_frame_bytes < 1024 {
            return Err(QuicError::Config(format!(
                "max_frame_bytes {} must be between 1 KiB and 4 GiB",
                config.max_frame_bytes
            )));
        }
        if config.queue_capacity == 0 || config.snapshot_queue_capacity == 0 || config.inbox_capacity == 0 {
            return Err(QuicError::Config("queue capacities must be at least 1".into()));
        }
        if config.inbox_bytes < config.max_frame_bytes || config.inbox_bytes > u32::MAX as usize {
            return Err(QuicError::Config(format!(
                "inbox_bytes {} must be at least max_frame_bytes ({}) and below 4 GiB",
                config.inbox_bytes, config.max_frame_bytes
            )));
        }
        if config.max_connections_per_peer == 0 || config.max_incoming_connections == 0 {
            return Err(QuicError::Config("connection limits must be at least 1".into()));
        }
        let (server, client) = quic_configs(&config)?;
        // A stateless-reset key derived from the node's key: after a restart, this node can
        // still reset the connections its earlier self had, so peers reconnect at once.
        // Connection ids keyed by the node's key too: the endpoint drops packets whose
        // connection id it cannot have issued, so with a fresh random key a restarted node would
        // silently drop its peers' packets (no reset) until their idle timeout. Both keys come
        // from the private key through HKDF, one per purpose, so neither exposes the other or the
        // private key.
        let secret = config.tls.key.secret_der();
        let reset_key = derived_key(secret, b"stateless reset")?;
        let cid_key = ring::hmac::sign(&derived_key(secret, b"connection ids")?, b"generator key");
        let cid_key = cid_key
            .as_ref()
            .iter()
            .take(8)
            .fold(0u64, |key, byte| (key << 8) | u64::from(*byte));
        let mut endpoint_config = quinn::EndpointConfig::new(Arc::new(reset_key));
        endpoint_config
            .cid_generator(move || Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key)));
        let addr = socket.local_addr().map_err(|source| QuicError::Bind {
            addr: config.listen,
            source,
        })?;
        let runtime = quinn::default_runtime().ok_or_else(|| QuicError::Config("no tokio runtime".into()))?;
        let socket = runtime
            .wrap_udp_socket(socket)
            .map_err(|source| QuicError::Bind { addr, source })?;
        let (socket, released) = crate::socket::watched(socket);
        let mut endpoint =
            quinn::Endpoint::new_with_abstract_socket(endpoint_config, Some(server), socket, runtime)
                .map_err(|source| QuicError::Bind { addr, source })?;
        endpoint.set_default_client_config(client);
        info!(node = config.node_id, %addr, peers = config.peers.len(), "QUIC transport listening");

        let (inbox_tx, inbox_rx) = mpsc::channel(config.inbox_capacity);
        let shared = Arc::new(Shared {
            node_id: config.node_id,
            endpoint: Mutex::new(Some(endpoint.clone())),
            released: Mutex::new(Some(released)),
            peers: Mutex::new(BTreeMap::new()),
            config: config.clone(),
            closed: AtomicBool::new(false),
            tasks: Mutex::new(Vec::new()),
            budget: Arc::new(Semaphore::new(config.inbox_bytes)),
            incoming: AtomicUsize::new(0),
            identified: Mutex::new(BTreeMap::new()),
            refusals: RateLimitedLog::new(),
        });
        let transport = QuicTransport { shared };
        for (&id, &addr) in &config.peers {
            if id != config.node_id {
                transport.add_peer(id, addr);
            }
        }
        let accept = tokio::spawn(accept_connections(transport.shared.clone(), endpoint, inbox_tx));
        transport.shared.tasks().push(accept);
        Ok((transport, QuicInbox { rx: inbox_rx }))
    }

    /// The address the endpoint listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match self.shared.endpoint() {
            Some(endpoint) => endpoint.local_addr(),
            None => Err(std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                "transport is shut down",
            )),
        }
    }

    /// Adds (or moves) a peer: messages to it are sent to `addr`, and its connections accepted.
    pub fn add_peer(&self, id: NodeId, addr: SocketAddr) {
        let Some(endpoint) = self.shared.endpoint() else {
            return;
        };
        let capacity = self.shared.config.queue_capacity;
        let (messages, messages_rx) = mpsc::channel(capacity);
        let (chunks, chunks_rx) = mpsc::channel(self.shared.config.snapshot_queue_capacity);
        // Replacing the queues ends the earlier sender task for this peer.
        self.shared.peers().insert(id, PeerQueues { messages, chunks });
        let task = tokio::spawn(send_to_peer(
            self.shared.clone(),
            endpoint,
            id,
            addr,
            messages_rx,
            chunks_rx,
        ));
        self.shared.tasks().push(task);
    }

    /// Removes a peer: messages to it are refused, its connections are closed, and new ones are
    /// no longer accepted.
    pub fn remove_peer(&self, id: NodeId) {
        self.shared.peers().remove(&id);
        for connection in self.shared.identified().remove(&id).unwrap_or_default() {
            connection.close(BAD_INPUT.into(), b"peer removed");
        }
    }

    /// The peers messages may be sent to and received from.
    pub fn peer_ids(&self) -> Vec<NodeId> {
        self.shared.peers().keys().copied().collect()
    }

    /// Stops the transport: connections close, the inbox ends, `send` returns `Closed`, and the
    /// socket is released as the tasks end.
    ///
    /// The peers learn of the close from the packets it sends, if they leave before the process
    /// exits; [`close`](Self::close) waits for that.
    pub fn shutdown(&self) {
        let _ = self.stop();
    }

    /// [`shutdown`](Self::shutdown), then waits (at most `bound`) until the close has reached
    /// every peer or timed out, so that they drop this node's connections at once instead of
    /// after their idle timeout, and until the socket is closed, so that the address can be
    /// bound again at once (a node restarted in the same process). Returns whether both
    /// happened within `bound`. After a [`shutdown`](Self::shutdown) it still waits for the
    /// socket.
    ///
    /// ```no_run
    /// # async fn stop(transport: raft_net_quic::QuicTransport) {
    /// use std::time::Duration;
    ///
    /// if !transport.close(Duration::from_millis(500)).await {
    ///     eprintln!("some peers will learn of the close from their idle timeout");
    /// }
    /// # }
    /// ```
    pub async fn close(&self, bound: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + bound;
        let (endpoint, tasks) = self.stop();
        let mut in_time = true;
        if let Some(endpoint) = endpoint {
            in_time &= tokio::time::timeout_at(deadline, endpoint.wait_idle())
                .await
                .is_ok();
        }
        // The aborted tasks hold endpoint and connection handles until they are dropped, which
        // happens on their next turn on the runtime: wait for that, then for the socket itself.
        for task in tasks {
            in_time &= tokio::time::timeout_at(deadline, task).await.is_ok();
        }
        let released = self.shared.released_slot().take();
        if let Some(released) = released {
            in_time &= tokio::time::timeout_at(deadline, released).await.is_ok();
        }
        in_time
    }

    /// Closes the endpoint, forgets the connections and aborts the tasks; returns the endpoint
    /// if this call closed it, and the aborted tasks.
    fn stop(&self) -> (Option<quinn::Endpoint>, Vec<JoinHandle<()>>) {
        if self.shared.closed.swap(true, Ordering::SeqCst) {
            return (None, Vec::new());
        }
        self.shared.peers().clear();
        let endpoint = self.shared.endpoint_slot().take();
        if let Some(endpoint) = &endpoint {
            endpoint.close(0u32.into(), b"shutdown");
        }
        // Each connection holds the socket: none may outlive the close in this map.
        self.shared.identified().clear();
        let tasks: Vec<_> = self.shared.tasks().drain(..).collect();
        for task in &tasks {
            task.abort();
        }
        info!(node = self.shared.node_id, "QUIC transport shut down");
        (endpoint, tasks)
    }
}

impl Shared {
    fn peers(&self) -> MutexGuard<'_, BTreeMap<NodeId, PeerQueues>> {
        self.peers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn endpoint_slot(&self) -> MutexGuard<'_, Option<quinn::Endpoint>> {
        self.endpoint.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn released_slot(&self) -> MutexGuard<'_, Option<Released>> {
        self.released.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn endpoint(&self) -> Option<quinn::Endpoint> {
        self.endpoint_slot().clone()
    }

    fn tasks(&self) -> MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_peer(&self, id: NodeId) -> bool {
        self.peers().contains_key(&id)
    }

    fn identified(&self) -> MutexGuard<'_, BTreeMap<NodeId, VecDeque<quinn::Connection>>> {
        self.identified.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that `connection` carries a stream from `peer`; closes the peer's oldest
    /// connections beyond the limit.
    fn identify(&self, peer: NodeId, connection: &quinn::Connection) {
        let mut identified = self.identified();
        // Checked under the lock: `stop` sets `closed` before it empties the map, so a
        // connection is either emptied with it or never put back to hold the socket.
        if self.closed.load(Ordering::SeqCst) {
            return;
        }
        let connections = identified.entry(peer).or_default();
        if connections
            .iter()
            .any(|c| c.stable_id() == connection.stable_id())
        {
            return;
        }
        connections.push_back(connection.clone());
        while connections.len() > self.config.max_connections_per_peer {
            if let Some(oldest) = connections.pop_front() {
                debug!(
                    node = self.node_id,
                    peer, "closing a peer's oldest connection over the limit"
                );
                oldest.close(BAD_INPUT.into(), b"too many connections");
            }
        }
    }

    /// Forgets `connection` once it has ended.
    fn forget(&self, connection: &quinn::Connection) {
        let id = connection.stable_id();
        for connections in self.identified().values_mut() {
            connections.retain(|c| c.stable_id() != id);
        }
    }
}

/// A warning that is logged at most once a second, with the count of those suppressed between.
struct RateLimitedLog {
    last: Mutex<Option<std::time::Instant>>,
    suppressed: AtomicUsize,
}

impl RateLimitedLog {
    fn new() -> Self {
        RateLimitedLog {
            last: Mutex::new(None),
            suppressed: AtomicUsize::new(0),
        }
    }

    /// Whether to log now, and how many were suppressed since the last time.
    fn admit(&self) -> Option<usize> {
        let now = std::time::Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        match *last {
            Some(at) if now.duration_since(at) < Duration::from_secs(1) => {
                self.suppressed.fetch_add(1, Ordering::Relaxed);
                None
            }
            _ => {
                *last = Some(now);
                Some(self.suppressed.swap(0, Ordering::Relaxed))
            }
        }
    }
}

impl Transport for QuicTransport {
    fn max_message_bytes(&self) -> Option<usize> {
        // A frame holds a kind byte and the message.
        Some(self.shared.config.max_frame_bytes - 1)
    }

    fn send(&self, message: Message) -> Result<(), TransportError> {
        if self.shared.closed.load(Ordering::Relaxed) {
            return Err(TransportError::Closed);
        }
        let to = message.to;
        let peers = self.shared.peers();
        let Some(queues) = peers.get(&to) else {
            return Err(TransportError::UnknownPeer(to));
        };
        let queue = match message.body {
            MessageBody::InstallSnapshot(_) => &queues.chunks,
            _ => &queues.messages,
        };
        queue.try_send(message).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => TransportError::QueueFull(to),
            mpsc::error::TrySendError::Closed(_) => TransportError::Closed,
        })
    }
}

impl Inbox for QuicInbox {
    async fn recv(&mut self) -> Option<Message> {
        // The permit drops here: the message's bytes go back to the budget.
        self.rx.recv().await.map(|(message, _permit)| message)
    }

    fn try_recv(&mut self) -> Option<Message> {
        self.rx.try_recv().ok().map(|(message, _permit)| message)
    }
}

/// Why a connection to a peer ended.
#[derive(Debug, Error)]
enum LinkError {
    #[error("connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("write: {0}")]
    Write(#[from] quinn::WriteError),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The queues were dropped: the peer was removed or the transport shut down.
    #[error("peer removed")]
    Removed,
}

/// Owns the connection to one peer: connects, sends both queues, reconnects after failures.
async fn send_to_peer(
    shared: Arc<Shared>,
    endpoint: quinn::Endpoint,
    peer: NodeId,
    addr: SocketAddr,
    mut messages: mpsc::Receiver<Message>,
    mut chunks: mpsc::Receiver<Message>,
) {
    let config = &shared.config;
    let mut backoff = Duration::from_millis(20);
    loop {
        let connection = match connect(&shared, &endpoint, peer, addr).await {
            Ok(connection) => {
                backoff = Duration::from_millis(20);
                connection
            }
            Err(e) => {
                debug!(node = shared.node_id, peer, error = %e, ?backoff, "cannot connect");
                // What queued up meanwhile is stale by the time a connection exists.
                let dropped = drain(&mut messages) + drain(&mut chunks);
                if messages.is_closed() && messages.is_empty() {
                    return;
                }
                if dropped > 0 {
                    debug!(peer, dropped, "dropped messages queued while disconnected");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(config.max_reconnect_backoff);
                continue;
            }
        };
        debug!(node = shared.node_id, peer, "connected");
        let ended = tokio::select! {
            r = send_stream(&shared, &connection, peer, &mut messages) => r,
            r = send_stream(&shared, &connection, peer, &mut chunks) => r,
        };
        let Err(ended) = ended;
        match ended {
            LinkError::Removed => {
                connection.close(0u32.into(), b"peer removed");
                return;
            }
            e => {
                warn!(node = shared.node_id, peer, error = %e, "connection to peer lost; reconnecting");
                connection.close(0u32.into(), b"reconnecting");
            }
        }
    }
}

fn drain(queue: &mut mpsc::Receiver<Message>) -> usize {
    let mut n = 0;
    while queue.try_recv().is_ok() {
        n += 1;
    }
    n
}

async fn connect(
    shared: &Shared,
    endpoint: &quinn::Endpoint,
    peer: NodeId,
    addr: SocketAddr,
) -> Result<quinn::Connection, LinkError> {
    let connecting = endpoint.connect(addr, &node_name(shared.config.cluster_id, peer))?;
    let timeout = shared.config.connect_timeout;
    match tokio::time::timeout(timeout, connecting).await {
        Ok(connection) => Ok(connection?),
        Err(_) => Err(LinkError::Timeout(timeout)),
    }
}

/// Writes one queue to one stream, gathering what has queued up into one write, until the link
/// fails or the queue is dropped (it never ends otherwise).
async fn send_stream(
    shared: &Shared,
    connection: &quinn::Connection,
    peer: NodeId,
    queue: &mut mpsc::Receiver<Message>,
) -> Result<std::convert::Infallible, LinkError> {
    let config = &shared.config;
    let mut stream = connection.open_uni().await?;
    let mut buf = BytesMut::with_capacity(64 << 10);
    encode_hello(
        &Hello {
            version: PROTOCOL_VERSION,
            cluster_id: config.cluster_id,
            from: shared.node_id,
            to: peer,
        },
        &mut buf,
    );
    // The hello goes at once, not with the first message: the peer opens this stream as soon as
    // a later-numbered one (the other queue's) carries data, and closes it if no hello comes
    // within its read deadline. The snapshot stream may have nothing to carry for hours.
    write(config, &mut stream, buf.split().freeze()).await?;
    loop {
        let Some(first) = queue.recv().await else {
            return Err(LinkError::Removed);
        };
        let mut next = Some(first);
        while let Some(message) = next.take() {
            if let Err(e) = encode_message(&message, config.max_frame_bytes, &mut buf) {
                warn!(node = shared.node_id, peer, kind = message.body.kind(), error = %e, "message not sent");
            }
            if buf.len() < BATCH_BYTES {
                next = queue.try_recv().ok();
            }
        }
        write(config, &mut stream, buf.split().freeze()).await?;
    }
}

/// Writes `data` to the stream within the send timeout.
async fn write(config: &QuicConfig, stream: &mut quinn::SendStream, data: Bytes) -> Result<(), LinkError> {
    match tokio::time::timeout(config.send_timeout, stream.write_chunk(data)).await {
        Ok(written) => Ok(written?),
        Err(_) => Err(LinkError::Timeout(config.send_timeout)),
    }
}

/// Accepts connections until the endpoint closes.
async fn accept_connections(shared: Arc<Shared>, endpoint: quinn::Endpoint, inbox: mpsc::Sender<Received>) {
    while let Some(incoming) = endpoint.accept().await {
        let remote = incoming.remote_address();
        let open = shared.incoming.fetch_add(1, Ordering::SeqCst);
        if open >= shared.config.max_incoming_connections {
            shared.incoming.fetch_sub(1, Ordering::SeqCst);
            if let Some(suppressed) = shared.refusals.admit() {
                warn!(node = shared.node_id, %remote, open, suppressed, "refused a connection: too many open");
            }
            incoming.refuse();
            continue;
        }
        let shared = shared.clone();
        let inbox = inbox.clone();
        tokio::spawn(async move {
            match incoming.await {
                Ok(connection) => receive_connection(&shared, connection, inbox).await,
                // A peer without a certificate from our CA, or an expired one, ends here.
                Err(e) => {
                    if let Some(suppressed) = shared.refusals.admit() {
                        warn!(node = shared.node_id, %remote, error = %e, suppressed, "refused a connection");
                    }
                }
            }
            shared.incoming.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// The verified certificate the peer presented.
fn peer_certificate(connection: &quinn::Connection) -> Option<CertificateDer<'static>> {
    let identity = connection.peer_identity()?;
    let chain = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    chain.into_iter().next()
}

async fn receive_connection(
    shared: &Arc<Shared>,
    connection: quinn::Connection,
    inbox: mpsc::Sender<Received>,
) {
    let remote = connection.remote_address();
    let Some(certificate) = peer_certificate(&connection) else {
        warn!(node = shared.node_id, %remote, "connection without a client certificate; closing");
        connection.close(BAD_INPUT.into(), b"no certificate");
        return;
    };
    let certificate = Arc::new(certificate);
    // A connection that has not identified itself with a good hello in time is closed: it would
    // otherwise hold one of the incoming slots for as long as its keep-alives last.
    let unidentified = {
        let (shared, connection) = (shared.clone(), connection.clone());
        tokio::spawn(async move {
            tokio::time::sleep(shared.config.frame_read_timeout).await;
            debug!(node = shared.node_id, remote = %connection.remote_address(), "no hello in time; closing");
            connection.close(BAD_INPUT.into(), b"no hello");
        })
    };
    let mut unidentified = Some(unidentified);
    let (hellos, mut identified) = mpsc::channel::<()>(1);
    loop {
        let stream = tokio::select! {
            stream = connection.accept_uni() => stream,
            Some(()) = identified.recv(), if unidentified.is_some() => {
                if let Some(timer) = unidentified.take() {
                    timer.abort();
                }
                continue;
            }
        };
        let stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                debug!(node = shared.node_id, %remote, error = %e, "incoming connection ended");
                break;
            }
        };
        let (shared, inbox, certificate) = (shared.clone(), inbox.clone(), certificate.clone());
        let (connection, hellos) = (connection.clone(), hellos.clone());
        tokio::spawn(async move {
            let mut stream = stream;
            let identified = |peer| {
                shared.identify(peer, &connection);
                let _ = hellos.try_send(());
            };
            match receive_stream(&shared, &certificate, &mut stream, &inbox, identified).await {
                Ok(()) => {}
                // A peer that stops (or a link that breaks) ends its streams: nothing to refuse.
                Err(e) if e.is_end_of_link() => {
                    debug!(node = shared.node_id, %remote, error = %e, "incoming stream ended with its link")
                }
                Err(e) => {
                    warn!(node = shared.node_id, %remote, error = %e, "closing a stream over bad input");
                    let _ = stream.stop(BAD_INPUT.into());
                }
            }
        });
    }
    if let Some(timer) = unidentified {
        timer.abort();
    }
    shared.forget(&connection);
}

/// Why a received stream was closed.
#[derive(Debug, Error)]
enum ReceiveError {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("read: {0}")]
    Read(#[from] quinn::ReadError),
    #[error("a frame's remaining bytes did not arrive within {0:?}")]
    Slow(Duration),
}

impl ReceiveError {
    /// Whether the stream ended because its connection or its sender did (the peer stopped,
    /// restarted or went silent), not because of anything it sent.
    fn is_end_of_link(&self) -> bool {
        matches!(
            self,
            ReceiveError::Read(quinn::ReadError::ConnectionLost(_) | quinn::ReadError::Reset(_))
        )
    }
}

/// How long a frame may take, and the budget its bytes are reserved from.
struct FrameLimits<'a> {
    max_bytes: usize,
    timeout: Duration,
    budget: &'a Arc<Semaphore>,
}

/// Reads one frame with its share of the budget; `Ok(None)` at a clean end of stream. Waiting for
/// a frame to start has no deadline (a stream may be quiet between messages); once its first
/// byte is in, the rest of the prefix must come within the timeout, and so must the body once its
/// bytes are reserved from the budget.
async fn read_frame(
    stream: &mut quinn::RecvStream,
    limits: &FrameLimits<'_>,
) -> Result<Option<(Frame, OwnedSemaphorePermit)>, ReceiveError> {
    let mut prefix = [0u8; LENGTH_BYTES];
    let first = match stream.read(&mut prefix).await? {
        None => return Ok(None),
        Some(n) => n,
    };
    let slow = |_| ReceiveError::Slow(limits.timeout);
    let got = tokio::time::timeout(limits.timeout, read_exact(stream, &mut prefix[first..]))
        .await
        .map_err(slow)??
        + first;
    if got < LENGTH_BYTES {
        return Err(WireError::Truncated {
            got,
            expected: LENGTH_BYTES,
        }
        .into());
    }
    // Checked against the maximum before a byte of the body is held.
    let len = frame_length(prefix, limits.max_bytes)?;
    let permits = u32::try_from(len).map_err(|_| WireError::Oversized {
        len,
        max: limits.max_bytes,
    })?;
    // Waiting for the budget is this node's backpressure, not the sender's slowness: the body's
    // deadline starts once the bytes are reserved.
    let permit = limits
        .budget
        .clone()
        .acquire_many_owned(permits)
        .await
        .map_err(|_| WireError::Protocol("transport shut down"))?;
    let mut body = vec![0u8; len];
    let got = tokio::time::timeout(limits.timeout, read_exact(stream, &mut body))
        .await
        .map_err(slow)??;
    if got < len {
        return Err(WireError::Truncated { got, expected: len }.into());
    }
    Ok(Some((decode_body(&body)?, permit)))
}

/// Fills `buf` unless the stream ends first; returns the bytes read.
async fn read_exact(stream: &mut quinn::RecvStream, buf: &mut [u8]) -> Result<usize, quinn::ReadError> {
    let mut filled = 0;
    while filled < buf.len() {
        match stream.read(&mut buf[filled..]).await? {
            Some(n) => filled += n,
            None => break,
        }
    }
    Ok(filled)
}

async fn receive_stream(
    shared: &Shared,
    certificate: &CertificateDer<'static>,
    stream: &mut quinn::RecvStream,
    inbox: &mpsc::Sender<Received>,
    identified: impl FnOnce(NodeId),
) -> Result<(), ReceiveError> {
    let config = &shared.config;
    // Nothing but a hello may open a stream, so the first frame may be no longer than one:
    // a peer cannot make the node hold a large buffer before it has said who it is.
    let first = FrameLimits {
        max_bytes: HELLO_FRAME_BYTES,
        timeout: config.frame_read_timeout,
        budget: &shared.budget,
    };
    let hello = match tokio::time::timeout(config.frame_read_timeout, read_frame(stream, &first)).await {
        Err(_) => return Err(ReceiveError::Slow(config.frame_read_timeout)),
        Ok(frame) => match frame? {
            Some((Frame::Hello(hello), _)) => hello,
            Some((Frame::Message(_), _)) => {
                return Err(WireError::Protocol("stream did not start with hello").into())
            }
            None => return Ok(()),
        },
    };
    check_hello(&hello, config.cluster_id, shared.node_id)?;
    let from = hello.from;
    if !shared.is_peer(from) {
        return Err(WireError::WrongNode(format!("node {from} is not a configured peer")).into());
    }
    check_certificate_names(certificate, config.cluster_id, from)?;
    identified(from);
    let limits = FrameLimits {
        max_bytes: config.max_frame_bytes,
        timeout: config.frame_read_timeout,
        budget: &shared.budget,
    };
    while let Some((frame, permit)) = read_frame(stream, &limits).await? {
        let message = match frame {
            Frame::Message(message) => message,
            Frame::Hello(_) => return Err(WireError::Protocol("second hello on a stream").into()),
        };
        // A peer removed while its stream is open is cut off at its next message.
        if !shared.is_peer(from) {
            return Err(WireError::WrongNode(format!("node {from} is no longer a peer")).into());
        }
        if message.from != from || message.to != shared.node_id {
            return Err(WireError::WrongNode(format!(
                "message from {} to {} on a stream from {from} to {}",
                message.from, message.to, shared.node_id
            ))
            .into());
        }
        if inbox.send((message, permit)).await.is_err() {
            // The inbox is gone: the node stopped.
            return Ok(());
        }
    }
    Ok(())
}

/// Checks that the (CA-verified) certificate was issued to node `id` of cluster `cluster_id`.
fn check_certificate_names(
    certificate: &CertificateDer<'static>,
    cluster_id: ClusterId,
    id: NodeId,
) -> Result<(), WireError> {
    let name = node_name(cluster_id, id);
    let not_named =
        |detail: String| WireError::WrongNode(format!("certificate is not valid for {name}: {detail}"));
    let cert = webpki::EndEntityCert::try_from(certificate).map_err(|e| not_named(e.to_string()))?;
    let server_name = ServerName::try_from(name.as_str()).map_err(|e| not_named(e.to_string()))?;
    cert.verify_is_valid_for_subject_name(&server_name)
        .map_err(|e| not_named(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_ended_by_its_link_is_not_bad_input() {
        let lost = ReceiveError::Read(quinn::ReadError::ConnectionLost(quinn::ConnectionError::TimedOut));
        assert!(lost.is_end_of_link());
        let reset = ReceiveError::Read(quinn::ReadError::Reset(0u32.into()));
        assert!(reset.is_end_of_link());
        assert!(!ReceiveError::Slow(Duration::from_secs(10)).is_end_of_link());
        assert!(!ReceiveError::Wire(WireError::Protocol("second hello on a stream")).is_end_of_link());
    }
}
