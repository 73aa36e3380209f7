//! The client library of the service: talks to any node over HTTPS (or plain HTTP on loopback),
//! follows the leader, and retries until a deadline. Writes go through a session, opened on the
//! first write, and carry a sequence number, so a retry after a timeout, a lost connection or a
//! leader change is applied exactly once.
//!
//! ```no_run
//! use std::time::Duration;
//! use raft_kv::api::Consistency;
//! use raft_kv::client::{Client, ClientOptions};
//!
//! # async fn example() -> Result<(), raft_kv::client::ClientError> {
//! let tls = raft_kv::TlsMaterial::from_files("ca.pem".as_ref(), "client.pem".as_ref(), "client.key".as_ref())?;
//! let mut client = Client::new(
//!     vec!["127.0.0.1:8001".parse().unwrap(), "127.0.0.1:8002".parse().unwrap()],
//!     Some(&tls),
//!     ClientOptions::default(),
//! )?;
//! let written = client.put("greeting", "hello").await?;
//! let read = client.get("greeting", Consistency::Linearizable).await?;
//! assert_eq!(read.value.as_deref(), Some("hello"));
//! assert!(read.index >= written.index);
//! # Ok(())
//! # }
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use thiserror::Error;
use tokio::time::Instant;
use tracing::debug;

use crate::api::{
    AddNodeRequest, Consistency, ErrorReply, MembershipReply, NodeRequest, NodeStatusReply, ReadReply,
    SessionLimitsRequest, SessionReply, SnapshotReply, WriteOp, WriteReply, WriteRequest,
};
use crate::tls::{TlsError, TlsMaterial};

mod connection;

use connection::{ConnectionError, Connections};

/// Why a request has no result.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The TLS material is unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// No endpoint was given.
    #[error("no endpoints given")]
    NoEndpoints,
    /// The server refused the request (a bad request, over a limit, not found, ...). Nothing was
    /// applied.
    #[error("{status}: {} ({})", .reply.message, .reply.error)]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The server's explanation.
        reply: ErrorReply,
    },
    /// No node answered in time. A write may or may not have been applied; retrying it through
    /// the same client stays exactly-once.
    #[error("no answer before the deadline ({last})")]
    Timeout {
        /// The last failure seen.
        last: String,
    },
    /// The request could not be put into HTTP (nothing was sent).
    #[error("cannot send {url}: {detail}")]
    BadRequest {
        /// The request.
        url: String,
        /// Why.
        detail: String,
    },
    /// The server's answer could not be read.
    #[error("unreadable answer from {url}: {detail}")]
    BadAnswer {
        /// The request.
        url: String,
        /// Why.
        detail: String,
    },
}

impl ClientError {
    /// Whether the outcome of a write is unknown (it may have been applied).
    pub fn is_unknown_outcome(&self) -> bool {
        matches!(self, ClientError::Timeout { .. })
    }
}

/// Client settings.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// How long one call may keep retrying (default 10 s).
    pub deadline: Duration,
    /// How long one HTTP request may take (default 6 s: above the server's request timeout).
    pub request_timeout: Duration,
    /// Speak HTTP/2 over TLS (default off: HTTP/1.1; plain HTTP is always HTTP/1.1). With it,
    /// this client and every [`Client::fork`] of it multiplex their requests on one connection
    /// per node, so many closed-loop clients cost the server a few connections and far fewer
    /// system calls.
    pub http2: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            deadline: Duration::from_secs(10),
            request_timeout: Duration::from_secs(6),
            http2: false,
        }
    }
}

/// A client of the key-value service.
#[derive(Debug)]
pub struct Client {
    http: Connections,
    endpoints: Vec<SocketAddr>,
    /// The endpoint to try first: the leader, once known.
    preferred: SocketAddr,
    next_endpoint: usize,
    options: ClientOptions,
    /// The session and the highest sequence number used in it.
    session: Option<(u64, u64)>,
    /// The last write, kept until it has an answer, so a retry reuses its sequence number.
    pending: Option<(WriteOp, u64)>,
}

/// What one attempt came to.
enum Attempt<T> {
    Done(T),
    /// Try again (after following the leader or a pause).
    Retry(String),
}

impl Client {
    /// A client of the nodes at `endpoints` (any subset of the cluster). `tls`: the CA, the
    /// client certificate and key; `None` talks plain HTTP (servers started with `--insecure`).
    pub fn new(
        endpoints: Vec<SocketAddr>,
        tls: Option<&TlsMaterial>,
        options: ClientOptions,
    ) -> Result<Self, ClientError> {
        let first = *endpoints.first().ok_or(ClientError::NoEndpoints)?;
        // Plain HTTP (servers started with --insecure) is HTTP/1.1 only.
        let tls = tls.map(|tls| tls.client_config(options.http2)).transpose()?;
        Ok(Client {
            http: Connections::new(tls, options.http2, CONNECT_TIMEOUT),
            endpoints,
            preferred: first,
            next_endpoint: 0,
            options,
            session: None,
            pending: None,
        })
    }

    /// Another client of the same nodes with its own session, sharing this one's connections
    /// (with [`ClientOptions::http2`], its requests travel on the same connection as this
    /// client's). It starts from the leader this client knows.
    pub fn fork(&self) -> Client {
        Client {
            http: self.http.fork(),
            endpoints: self.endpoints.clone(),
            preferred: self.preferred,
            next_endpoint: self.next_endpoint,
            options: self.options.clone(),
            session: None,
            pending: None,
        }
    }

    /// The endpoints given.
    pub fn endpoints(&self) -> &[SocketAddr] {
        &self.endpoints
    }

    fn rotate(&mut self) {
        self.next_endpoint = (self.next_endpoint + 1) % self.endpoints.len();
        self.preferred = self.endpoints[self.next_endpoint];
    }

    async fn attempt<B: Serialize, T: DeserializeOwned>(
        &mut self,
        method: Method,
        target: SocketAddr,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&B>,
    ) -> Result<Attempt<T>, ClientError> {
        let path_and_query = with_query(path, query);
        let scheme = self.http.scheme();
        let url = || format!("{scheme}://{target}{path_and_query}");
        let body = match body.map(serde_json::to_vec).transpose() {
            Ok(body) => body.map(Bytes::from),
            Err(e) => {
                return Err(ClientError::BadRequest {
                    url: url(),
                    detail: format!("the body does not encode: {e}"),
                })
            }
        };
        let timeout = self.options.request_timeout;
        let answer = match self
            .http
            .send(target, method, &path_and_query, body, timeout)
            .await
        {
            Ok(answer) => answer,
            Err(e @ ConnectionError::Path(_)) => {
                // No endpoint would take it: not worth another try.
                return Err(ClientError::BadRequest {
                    url: url(),
                    detail: e.to_string(),
                });
            }
            Err(e) => {
                let url = url();
                self.rotate();
                return Ok(Attempt::Retry(format!("{url}: {e}")));
            }
        };
        let (status, bytes) = (answer.status, answer.body);
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map(Attempt::Done)
                .map_err(|e| ClientError::BadAnswer {
                    url: url(),
                    detail: e.to_string(),
                });
        }
        let reply: ErrorReply = serde_json::from_slice(&bytes).unwrap_or_else(|_| ErrorReply {
            error: "unknown".into(),
            message: String::from_utf8_lossy(&bytes).into_owned(),
            leader: None,
            leader_client: None,
        });
        match status {
            StatusCode::MISDIRECTED_REQUEST => {
                match reply.leader_client {
                    Some(leader) => self.preferred = leader,
                    None => self.rotate(),
                }
                Ok(Attempt::Retry(reply.message))
            }
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT => {
                if status == StatusCode::SERVICE_UNAVAILABLE {
                    self.rotate();
                }
                Ok(Attempt::Retry(reply.message))
            }
            _ => Err(ClientError::Refused {
                status: status.as_u16(),
                reply,
            }),
        }
    }

    /// Sends a request until it has an answer or the deadline passes, following the leader.
    async fn call<B: Serialize, T: DeserializeOwned>(
        &mut self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let deadline = Instant::now() + self.options.deadline;
        let mut pause = Duration::from_millis(10);
        let mut last = String::from("no attempt");
        for attempt in 0..1000u32 {
            if attempt > 0 {
                if Instant::now() + pause > deadline {
                    break;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(500));
            }
            let target = self.preferred;
            match self.attempt(method.clone(), target, path, query, body).await? {
                Attempt::Done(answer) => return Ok(answer),
                Attempt::Retry(why) => {
                    debug!(%target, path, %why, "retrying");
                    last = why;
                }
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        Err(ClientError::Timeout { last })
    }

    /// Reads a key.
    pub async fn get(&mut self, key: &str, consistency: Consistency) -> Result<ReadReply, ClientError> {
        let query = [("key", key), ("consistency", consistency_name(consistency))];
        self.call::<(), _>(Method::GET, "/v1/kv", &query, None).await
    }

    /// Reads up to `limit` keys starting with `prefix`, in order.
    pub async fn scan(
        &mut self,
        prefix: &str,
        limit: usize,
        consistency: Consistency,
    ) -> Result<ReadReply, ClientError> {
        let limit = limit.to_string();
        let query = [
            ("prefix", prefix),
            ("limit", limit.as_str()),
            ("consistency", consistency_name(consistency)),
        ];
        self.call::<(), _>(Method::GET, "/v1/scan", &query, None).await
    }

    /// Applies a write exactly once: through this client's session, retried with the same
    /// sequence number until it has an answer. After a [`ClientError::Timeout`], calling
    /// [`write`](Self::write) again with the same operation resumes that request.
    pub async fn write(&mut self, op: WriteOp) -> Result<WriteReply, ClientError> {
        let (session, highest) = match self.session {
            Some(s) => s,
            None => {
                let reply: SessionReply = self
                    .call::<(), _>(Method::POST, "/v1/sessions", &[], None)
                    .await?;
                self.session = Some((reply.session, 0));
                (reply.session, 0)
            }
        };
        // A retry of the pending write keeps its number; any other write takes a new one, above
        // every number used so far (the pending one may still be applied: the session then
        // refuses it once a higher number was applied, so it never applies after this one).
        let sequence = match &self.pending {
            Some((pending, sequence)) if *pending == op => *sequence,
            _ => highest + 1,
        };
        self.session = Some((session, highest.max(sequence)));
        self.pending = Some((op.clone(), sequence));
        let request = WriteRequest {
            op,
            session: Some(session),
            sequence: Some(sequence),
        };
        let result = self.call(Method::POST, "/v1/kv", &[], Some(&request)).await;
        match &result {
            Err(e) if e.is_unknown_outcome() => {}
            Err(ClientError::Refused { reply, .. }) if reply.error == "session_expired" => {
                // Not applied: a fresh session may retry it.
                self.session = None;
                self.pending = None;
            }
            _ => self.pending = None,
        }
        result
    }

    /// Sets a key.
    pub async fn put(&mut self, key: &str, value: &str) -> Result<WriteReply, ClientError> {
        self.write(WriteOp::Put {
            key: key.into(),
            value: value.into(),
        })
        .await
    }

    /// Removes a key.
    pub async fn delete(&mut self, key: &str) -> Result<WriteReply, ClientError> {
        self.write(WriteOp::Delete { key: key.into() }).await
    }

    /// Appends to a key's value.
    pub async fn append(&mut self, key: &str, value: &str) -> Result<WriteReply, ClientError> {
        self.write(WriteOp::Append {
            key: key.into(),
            value: value.into(),
        })
        .await
    }

    /// Sets `key` to `new` if its value is `expected`.
    pub async fn cas(
        &mut self,
        key: &str,
        expected: Option<&str>,
        new: Option<&str>,
    ) -> Result<WriteReply, ClientError> {
        self.write(WriteOp::Cas {
            key: key.into(),
            expected: expected.map(str::to_string),
            new: new.map(str::to_string),
        })
        .await
    }

    /// The status of the node at `endpoint` (one attempt, no retries).
    pub async fn status_of(&mut self, endpoint: SocketAddr) -> Result<NodeStatusReply, ClientError> {
        match self
            .attempt::<(), _>(Method::GET, endpoint, "/v1/status", &[], None)
            .await?
        {
            Attempt::Done(status) => Ok(status),
            Attempt::Retry(last) => Err(ClientError::Timeout { last }),
        }
    }

    /// The metrics of the node at `endpoint`, in the Prometheus text format (one attempt).
    pub async fn metrics_of(&mut self, endpoint: SocketAddr) -> Result<String, ClientError> {
        let url = format!("{}://{endpoint}/metrics", self.http.scheme());
        let answer = self
            .http
            .send(
                endpoint,
                Method::GET,
                "/metrics",
                None,
                self.options.request_timeout,
            )
            .await
            .map_err(|e| ClientError::Timeout {
                last: format!("{url}: {e}"),
            })?;
        let (status, text) = (answer.status, String::from_utf8_lossy(&answer.body).into_owned());
        if !status.is_success() {
            return Err(ClientError::BadAnswer {
                url,
                detail: format!("{status}: {text}"),
            });
        }
        Ok(text)
    }

    /// Adds a node as a learner, with its addresses.
    pub async fn add_node(&mut self, request: &AddNodeRequest) -> Result<MembershipReply, ClientError> {
        self.call(Method::POST, "/v1/cluster/add", &[], Some(request))
            .await
    }

    /// Makes a caught-up learner a voter.
    pub async fn promote_node(&mut self, id: u64) -> Result<MembershipReply, ClientError> {
        self.call(
            Method::POST,
            "/v1/cluster/promote",
            &[],
            Some(&NodeRequest { id }),
        )
        .await
    }

    /// Makes learner `id` a voter as soon as it has caught up: retries while the leader refuses
    /// with `not_caught_up`, until `deadline`.
    pub async fn promote_when_caught_up(
        &mut self,
        id: u64,
        deadline: Duration,
    ) -> Result<MembershipReply, ClientError> {
        let until = Instant::now() + deadline;
        loop {
            match self.promote_node(id).await {
                Err(ClientError::Refused { reply, .. })
                    if reply.error == "not_caught_up" && Instant::now() < until =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => return other,
            }
        }
    }

    /// Removes a member.
    pub async fn remove_node(&mut self, id: u64) -> Result<MembershipReply, ClientError> {
        self.call(Method::POST, "/v1/cluster/remove", &[], Some(&NodeRequest { id }))
            .await
    }

    /// Hands leadership to `id`.
    pub async fn transfer_leadership(&mut self, id: u64) -> Result<NodeStatusReply, ClientError> {
        self.call(
            Method::POST,
            "/v1/cluster/transfer",
            &[],
            Some(&NodeRequest { id }),
        )
        .await
    }

    /// Changes the limits on client sessions, through the log (every node applies them at the
    /// same entry); returns the limits in force.
    pub async fn configure_sessions(
        &mut self,
        limits: SessionLimitsRequest,
    ) -> Result<SessionLimitsRequest, ClientError> {
        self.call(Method::POST, "/v1/cluster/sessions", &[], Some(&limits))
            .await
    }

    /// Takes a snapshot on the node at `endpoint` now.
    pub async fn snapshot(&mut self, endpoint: SocketAddr) -> Result<SnapshotReply, ClientError> {
        self.preferred = endpoint;
        self.call::<(), _>(Method::POST, "/v1/cluster/snapshot", &[], None)
            .await
    }
}

/// How long opening a connection (TCP and TLS) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// `path` with `query` appended, form-encoded.
fn with_query(path: &str, query: &[(&str, &str)]) -> String {
    if query.is_empty() {
        return path.to_string();
    }
    let mut encoded = form_urlencoded::Serializer::for_suffix(format!("{path}?"), path.len() + 1);
    encoded.extend_pairs(query);
    encoded.finish()
}

fn consistency_name(consistency: Consistency) -> &'static str {
    match consistency {
        Consistency::Linearizable => "linearizable",
        Consistency::Lease => "lease",
        Consistency::Serializable => "serializable",
    }
}

#[cfg(test)]
mod tests {
    use super::with_query;

    #[test]
    fn a_query_is_form_encoded_after_the_path() {
        assert_eq!(with_query("/v1/status", &[]), "/v1/status");
        assert_eq!(
            with_query("/v1/kv", &[("key", "a b&c=d/é"), ("consistency", "lease")]),
            "/v1/kv?key=a+b%26c%3Dd%2F%C3%A9&consistency=lease"
        );
    }
}
