//! The client side of exactly-once sessions: [`SessionClient`] registers a session, numbers its
//! requests and retries each with the same sequence number on timeouts and leader changes,
//! following the leader hint, until the replicated [`Sessions`](crate::Sessions) table answers.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use raft_core::NodeId;
use thiserror::Error;
use tokio::time::Instant;

use crate::error::ProposeError;
use crate::node::RaftNode;
use crate::sessions::{SessionCommand, SessionId, SessionResponse};

/// Where a [`SessionClient`] finds the nodes it may talk to.
pub trait NodeDirectory: Send + Sync {
    /// The ids of the nodes.
    fn node_ids(&self) -> Vec<NodeId>;
    /// The running node `id`, if any.
    fn node(&self, id: NodeId) -> Option<Arc<RaftNode>>;
}

/// Why a session request has no result.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ClientError {
    /// The session expired (or was closed): the request was not applied. Open a new session.
    #[error("the session expired; the request was not applied")]
    SessionExpired,
    /// No leader applied the request before the client's deadline; it may still be applied, and
    /// retrying with [`SessionClient::retry`] stays exactly-once.
    #[error("no result before the deadline; retrying is safe")]
    Timeout,
    /// The command can never be proposed (too large).
    #[error("the command was refused: {0}")]
    Refused(ProposeError),
    /// The state machine answered something the session layer does not understand.
    #[error("unexpected response from the state machine: {0}")]
    BadResponse(String),
}

/// A client session: numbers its requests and retries each until applied, exactly once.
///
/// The node runtime's state machine must be wrapped in [`Sessions`](crate::Sessions); the
/// directory says where the nodes are (`raft_kv::MemCluster` is one).
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use raft_node::{ClientError, NodeDirectory, RaftNode, SessionClient};
///
/// /// A cluster of one node.
/// struct OneNode(Arc<RaftNode>);
///
/// impl NodeDirectory for OneNode {
///     fn node_ids(&self) -> Vec<u64> {
///         vec![self.0.id()]
///     }
///     fn node(&self, id: u64) -> Option<Arc<RaftNode>> {
///         (id == self.0.id()).then(|| self.0.clone())
///     }
/// }
///
/// async fn append_exactly_once(node: Arc<RaftNode>) -> Result<bytes::Bytes, ClientError> {
///     let mut client = SessionClient::register(Arc::new(OneNode(node)), Duration::from_secs(10)).await?;
///     // Retried across timeouts and leader changes, applied once.
///     client.propose(&b"x"[..]).await
/// }
/// ```
pub struct SessionClient<D> {
    directory: Arc<D>,
    session: SessionId,
    /// The sequence number of the last request started.
    sequence: u64,
    /// The last request's command, kept for [`retry`](Self::retry).
    pending: Option<Bytes>,
    leader: Option<NodeId>,
    deadline: Duration,
}

impl<D: NodeDirectory> SessionClient<D> {
    /// Opens a session through the cluster's leader, trying for at most `deadline` per request.
    pub async fn register(directory: Arc<D>, deadline: Duration) -> Result<Self, ClientError> {
        let mut client = SessionClient {
            directory,
            session: 0,
            sequence: 0,
            pending: None,
            leader: None,
            deadline,
        };
        // Registering twice (after a lost answer) only leaves an unused session to expire.
        match client.submit(SessionCommand::Register.encode()).await? {
            SessionResponse::Registered { session } => client.session = session,
            other => return Err(ClientError::BadResponse(format!("{other:?}"))),
        }
        Ok(client)
    }

    /// The session's id.
    pub fn session(&self) -> SessionId {
        self.session
    }

    /// Applies `command` exactly once and returns the state machine's response.
    pub async fn propose(&mut self, command: impl Into<Bytes>) -> Result<Bytes, ClientError> {
        self.sequence += 1;
        self.pending = Some(command.into());
        self.retry().await
    }

    /// Tries the last request again (after [`ClientError::Timeout`]) with the same sequence number.
    pub async fn retry(&mut self) -> Result<Bytes, ClientError> {
        let Some(command) = self.pending.clone() else {
            return Err(ClientError::BadResponse("no request to retry".into()));
        };
        let request = SessionCommand::Request {
            session: self.session,
            sequence: self.sequence,
            command,
        };
        let response = self.submit(request.encode()).await?;
        match response {
            SessionResponse::Applied(reply) => {
                self.pending = None;
                Ok(reply)
            }
            SessionResponse::UnknownSession | SessionResponse::Closed => Err(ClientError::SessionExpired),
            other => Err(ClientError::BadResponse(format!("{other:?}"))),
        }
    }

    /// Proposes `envelope` until some leader applies it, following leader hints.
    async fn submit(&mut self, envelope: Bytes) -> Result<SessionResponse, ClientError> {
        let deadline = Instant::now() + self.deadline;
        let mut candidates = Vec::new();
        loop {
            let target = self.leader.take().or_else(|| {
                if candidates.is_empty() {
                    candidates = self.directory.node_ids();
                    candidates.reverse();
                }
                candidates.pop()
            });
            let outcome = match target.and_then(|id| self.directory.node(id)) {
                Some(node) => node.propose(envelope.clone()).await,
                None => Err(raft_core::ProposeError::NotLeader { leader_hint: None }.into()),
            };
            match outcome {
                Ok(reply) => {
                    self.leader = target;
                    return SessionResponse::decode(&reply)
                        .map_err(|e| ClientError::BadResponse(e.to_string()));
                }
                Err(error @ ProposeError::Refused(raft_core::ProposeError::EntryTooLarge { .. })) => {
                    return Err(ClientError::Refused(error))
                }
                // Not the leader, busy or transferring: nothing was proposed; follow the hint.
                Err(error @ ProposeError::Refused(_)) => self.leader = error.leader_hint(),
                // Outcome unknown or certainly not applied: the same sequence number makes a
                // retry safe either way.
                Err(
                    ProposeError::Timeout
                    | ProposeError::Stopped
                    | ProposeError::Superseded
                    | ProposeError::Dropped,
                ) => {}
            }
            if Instant::now() >= deadline {
                return Err(ClientError::Timeout);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
