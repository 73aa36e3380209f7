//! The client protocol's floor: [`FloorServer`], the client API answered at once.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;

use crate::api::{SessionReply, WriteReply, WriteRequest};
use crate::config::{ServerConfig, Tuning};
use crate::http::{not_found, parse_json, write_proposal, ApiError, DRAIN_TIMEOUT};
use crate::server::{serve_clients, ServerError};
use crate::tls::TlsMaterial;

/// The client protocol's floor: a server that takes the client API's sessions and writes over
/// the same HTTP and TLS stack as a node ([`Server`](crate::Server)), reads, checks and encodes
/// each write as a node does before proposing it, and answers at once, with no Raft, no storage
/// and no state machine behind it. What a load generator reaches against it on a machine is the
/// most any service behind this protocol can reach there: the benchmark's ceiling, as the
/// channel floor is the in-memory cluster's (`raft-kv serve-floor`, `FLOOR=1 bash
/// benches/service.sh`). Reads are refused (501, `not_served`): there is no store to read.
///
/// It listens where the config's `client_listen` says, with its TLS material (or plain HTTP
/// with `insecure`), and applies its request limits.
///
/// ```no_run
/// # async fn example(config: raft_kv::ServerConfig) -> Result<(), Box<dyn std::error::Error>> {
/// let floor = raft_kv::FloorServer::start(&config).await?;
/// println!("answering writes at once on {}", floor.client_addr());
/// floor.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct FloorServer {
    client_addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// What the floor's handlers share.
struct FloorState {
    tuning: Tuning,
    /// The last session id and write index handed out.
    issued: AtomicU64,
}

impl FloorState {
    fn next(&self) -> u64 {
        self.issued.fetch_add(1, Ordering::Relaxed) + 1
    }
}

impl FloorServer {
    /// Starts answering on `config.client_listen` (the node's other settings are checked but
    /// not used).
    pub async fn start(config: &ServerConfig) -> Result<FloorServer, ServerError> {
        config.validate()?;
        let acceptor = if config.insecure {
            None
        } else {
            let tls = TlsMaterial::from_files(&config.tls.ca_cert, &config.tls.cert, &config.tls.key)?;
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(tls.server_config()?)))
        };
        let listener = TcpListener::bind(config.client_listen)
            .await
            .map_err(|source| ServerError::Bind {
                addr: config.client_listen,
                source,
            })?;
        let client_addr = listener.local_addr().unwrap_or(config.client_listen);
        let state = Arc::new(FloorState {
            tuning: config.tuning.clone(),
            issued: AtomicU64::new(0),
        });
        let limit = config.tuning.max_request_bytes;
        let router = Router::new()
            .route("/v1/kv", post(write).get(no_reads))
            .route("/v1/sessions", post(open_session))
            .fallback(not_found)
            .layer(DefaultBodyLimit::max(limit))
            .with_state(state);
        info!(
            client = %client_addr,
            tls = acceptor.is_some(),
            "raft-kv floor server: answering sessions and writes at once, with no Raft behind them"
        );
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(serve_clients(config.node_id, listener, acceptor, router, stopped));
        Ok(FloorServer {
            client_addr,
            stop,
            task,
        })
    }

    /// The address it answers on.
    pub fn client_addr(&self) -> SocketAddr {
        self.client_addr
    }

    /// Stops taking connections and lets the requests in flight finish (a few seconds at most).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, self.task).await;
    }
}

/// `POST /v1/sessions`: a new session id, at once.
async fn open_session(State(state): State<Arc<FloorState>>) -> Json<SessionReply> {
    Json(SessionReply {
        session: state.next(),
    })
}

/// `GET /v1/kv`: refused, since there is no store to read.
async fn no_reads() -> ApiError {
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "not_served",
        "the floor server answers sessions and writes only: there is no store behind it to read",
    )
}

/// `POST /v1/kv`: the write read and turned into its proposal as a node does, then answered as
/// if applied at the next index.
async fn write(
    State(state): State<Arc<FloorState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<WriteReply>, ApiError> {
    let request: WriteRequest = parse_json(body)?;
    let proposal = write_proposal(&state.tuning, request)?;
    drop(proposal);
    Ok(Json(WriteReply {
        index: state.next(),
        previous: None,
        value: None,
        swapped: None,
    }))
}
