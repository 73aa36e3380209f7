//! The client API's routes (axum): key-value reads and writes, sessions, status and membership
//! operations. The table of routes and statuses is in [`api`](crate::api).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use raft_core::{Membership, NodeId, Role};
use raft_node::{
    ChangeMembershipError, ProposeError, RaftNode, ReadConsistency, ReadError, RunState, SessionCommand,
    SessionLimits, SessionResponse, SnapshotError, TransferError,
};
use serde::Deserialize;
use tracing::debug;

use crate::api::{
    AddNodeRequest, Consistency, ErrorReply, MemberAddress, MemberInfo, MembershipReply, NodeRequest,
    NodeStatusReply, ReadReply, SessionLimitsRequest, SessionReply, SnapshotReply, WriteOp, WriteReply,
    WriteRequest,
};
use crate::config::Tuning;
use crate::kv::{KvCommand, KvReply, KvResponse};

/// What the handlers share.
pub(crate) struct ApiState {
    pub(crate) node: Arc<RaftNode>,
    pub(crate) cluster_id: u64,
    pub(crate) tuning: Tuning,
}

/// `GET /metrics`: the node's metrics in the Prometheus text format.
async fn prometheus_metrics() -> Response {
    match crate::metrics::prometheus() {
        Some(handle) => (
            [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        None => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics_unavailable",
            "this process records metrics with another recorder",
        )
        .into_response(),
    }
}

/// The router of the client API.
pub(crate) fn router(state: Arc<ApiState>) -> Router {
    let limit = state.tuning.max_request_bytes;
    Router::new()
        .route("/v1/kv", get(get_key).post(write))
        .route("/v1/scan", get(scan))
        .route("/v1/sessions", post(open_session))
        .route("/v1/status", get(status))
        .route("/v1/cluster/add", post(add_node))
        .route("/v1/cluster/promote", post(promote_node))
        .route("/v1/cluster/remove", post(remove_node))
        .route("/v1/cluster/transfer", post(transfer))
        .route("/v1/cluster/snapshot", post(snapshot))
        .route("/v1/cluster/sessions", post(configure_sessions))
        .route("/metrics", get(prometheus_metrics))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// The answer to a route the API does not have.
pub(crate) async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such route; see the API table in the docs",
    )
}

/// A failure, as an HTTP status and an [`ErrorReply`].
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    body: ErrorReply,
    /// Close the connection after the answer (the request body was left unread).
    close: bool,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            body: ErrorReply {
                error: code.into(),
                message: message.into(),
                leader: None,
                leader_client: None,
            },
            close: false,
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
    }

    /// Not the leader: 421 with the leader's client address, or 503 when no leader is known.
    fn not_leader(state: &ApiState, hint: Option<NodeId>) -> Self {
        match hint {
            Some(leader) => {
                let mut error = Self::new(
                    StatusCode::MISDIRECTED_REQUEST,
                    "not_leader",
                    format!("node {} is not the leader; node {leader} is", state.node.id()),
                );
                error.body.leader = Some(leader);
                error.body.leader_client = client_address(&state.node.status().membership, leader);
                error
            }
            None => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_leader",
                "no leader is known yet (an election may be under way); retry",
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.close {
            let close = [(axum::http::header::CONNECTION, "close")];
            return (self.status, close, Json(self.body)).into_response();
        }
        (self.status, Json(self.body)).into_response()
    }
}

fn client_address(membership: &Membership, id: NodeId) -> Option<SocketAddr> {
    membership
        .addresses
        .get(&id)
        .and_then(|a| MemberAddress::decode(a))
        .map(|a| a.client)
}

fn body_error(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        // The rest of the body is not read: tell the client not to reuse the connection.
        let mut error = ApiError::too_large(format!("the request body is over the limit: {rejection}"));
        error.close = true;
        error
    } else {
        ApiError::new(rejection.status(), "bad_request", rejection.body_text())
    }
}

pub(crate) fn parse_json<T: for<'de> Deserialize<'de>>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let body = body.map_err(body_error)?;
    serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("malformed JSON body: {e}")))
}

fn propose_error(state: &ApiState, error: ProposeError) -> ApiError {
    match error {
        ProposeError::Refused(raft_core::ProposeError::NotLeader { leader_hint }) => {
            ApiError::not_leader(state, leader_hint)
        }
        ProposeError::Refused(raft_core::ProposeError::EntryTooLarge { .. }) => {
            ApiError::too_large(error.to_string())
        }
        ProposeError::Refused(_) | ProposeError::Dropped => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("{error}; retry"),
        ),
        ProposeError::Timeout | ProposeError::Superseded => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            format!("{error}; retrying with the same session and sequence is safe"),
        ),
        ProposeError::Stopped => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", error.to_string())
        }
    }
}

fn read_error(state: &ApiState, error: ReadError) -> ApiError {
    match error {
        ReadError::Refused(raft_core::ReadError::NotLeader { leader_hint }) => {
            ApiError::not_leader(state, leader_hint)
        }
        ReadError::Timeout => ApiError::new(StatusCode::GATEWAY_TIMEOUT, "timeout", error.to_string()),
        other => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("{other}; retry"),
        ),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GetParams {
    key: String,
    #[serde(default)]
    consistency: Consistency,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScanParams {
    #[serde(default)]
    prefix: String,
    limit: Option<usize>,
    #[serde(default)]
    consistency: Consistency,
}

fn query_error(rejection: QueryRejection) -> ApiError {
    ApiError::bad_request(rejection.body_text())
}

fn node_consistency(consistency: Consistency) -> ReadConsistency {
    match consistency {
        Consistency::Linearizable => ReadConsistency::Linearizable,
        Consistency::Lease => ReadConsistency::Lease,
        Consistency::Serializable => ReadConsistency::Serializable,
    }
}

async fn read(state: &ApiState, command: KvCommand, consistency: Consistency) -> Result<KvReply, ApiError> {
    let reply = state
        .node
        .read(command.encode(), node_consistency(consistency))
        .await
        .map_err(|e| read_error(state, e))?;
    KvReply::decode(&reply)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))
}

async fn get_key(
    State(state): State<Arc<ApiState>>,
    params: Result<Query<GetParams>, QueryRejection>,
) -> Result<Json<ReadReply>, ApiError> {
    let Query(params) = params.map_err(query_error)?;
    check_key(&state.tuning, &params.key)?;
    let reply = read(&state, KvCommand::Get { key: params.key }, params.consistency).await?;
    match reply.response {
        KvResponse::Value(value) => Ok(Json(ReadReply {
            index: reply.index,
            consistency: params.consistency,
            value,
            entries: None,
            more: None,
        })),
        other => Err(unexpected(other)),
    }
}

async fn scan(
    State(state): State<Arc<ApiState>>,
    params: Result<Query<ScanParams>, QueryRejection>,
) -> Result<Json<ReadReply>, ApiError> {
    let Query(params) = params.map_err(query_error)?;
    if params.prefix.len() > state.tuning.max_key_bytes {
        return Err(ApiError::too_large("the prefix is longer than the longest key"));
    }
    let max = state.tuning.max_scan_limit;
    let limit = params.limit.unwrap_or(max);
    if limit > max {
        return Err(ApiError::bad_request(format!(
            "limit {limit} is over the maximum of {max}"
        )));
    }
    let command = KvCommand::Scan {
        prefix: params.prefix,
        limit,
    };
    let reply = read(&state, command, params.consistency).await?;
    match reply.response {
        KvResponse::Entries { entries, more } => Ok(Json(ReadReply {
            index: reply.index,
            consistency: params.consistency,
            value: None,
            entries: Some(entries),
            more: Some(more),
        })),
        other => Err(unexpected(other)),
    }
}

fn unexpected(response: KvResponse) -> ApiError {
    match response {
        KvResponse::Invalid(message) => ApiError::bad_request(message),
        other => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("unexpected answer from the store: {other:?}"),
        ),
    }
}

fn check_key(tuning: &Tuning, key: &str) -> Result<(), ApiError> {
    if key.len() > tuning.max_key_bytes {
        return Err(ApiError::too_large(format!(
            "the key is {} bytes, over the limit of {}",
            key.len(),
            tuning.max_key_bytes
        )));
    }
    Ok(())
}

fn check_value(tuning: &Tuning, value: Option<&str>) -> Result<(), ApiError> {
    let len = value.map_or(0, str::len);
    if len > tuning.max_value_bytes {
        return Err(ApiError::too_large(format!(
            "the value is {len} bytes, over the limit of {}",
            tuning.max_value_bytes
        )));
    }
    Ok(())
}

/// The proposal a write request becomes: its key and values checked against the limits, the
/// command encoded, within its session when it names one (the floor server,
/// [`FloorServer`](crate::FloorServer), does this much for each write too).
pub(crate) fn write_proposal(tuning: &Tuning, request: WriteRequest) -> Result<Bytes, ApiError> {
    let command = match request.op {
        WriteOp::Put { key, value } => {
            check_key(tuning, &key)?;
            check_value(tuning, Some(&value))?;
            KvCommand::Put { key, value }
        }
        WriteOp::Delete { key } => {
            check_key(tuning, &key)?;
            KvCommand::Delete { key }
        }
        WriteOp::Append { key, value } => {
            check_key(tuning, &key)?;
            check_value(tuning, Some(&value))?;
            KvCommand::Append { key, value }
        }
        WriteOp::Cas { key, expected, new } => {
            check_key(tuning, &key)?;
            check_value(tuning, expected.as_deref())?;
            check_value(tuning, new.as_deref())?;
            KvCommand::CompareAndSwap { key, expected, new }
        }
    };
    match (request.session, request.sequence) {
        (Some(session), Some(sequence)) if sequence > 0 => Ok(SessionCommand::Request {
            session,
            sequence,
            command: command.encode(),
        }
        .encode()),
        (None, None) => Ok(command.encode()),
        _ => Err(ApiError::bad_request(
            "give both session and sequence (from 1), or neither",
        )),
    }
}

async fn write(
    State(state): State<Arc<ApiState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<WriteReply>, ApiError> {
    let request: WriteRequest = parse_json(body)?;
    let in_session = request.session.is_some();
    let proposal = write_proposal(&state.tuning, request)?;
    let bytes = state
        .node
        .propose(proposal)
        .await
        .map_err(|e| propose_error(&state, e))?;
    let reply_bytes = if in_session {
        match SessionResponse::decode(&bytes) {
            Ok(SessionResponse::Applied(reply)) => reply,
            Ok(SessionResponse::UnknownSession) | Ok(SessionResponse::Closed) => {
                return Err(ApiError::new(
                    StatusCode::GONE,
                    "session_expired",
                    "the session expired or is unknown; the write was not applied: open a new session",
                ))
            }
            Ok(SessionResponse::Superseded { last_sequence }) => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "superseded",
                    format!("the session already applied request {last_sequence}, after this one"),
                ))
            }
            Ok(other) => return Err(ApiError::bad_request(format!("{other:?}"))),
            Err(e) => {
                return Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    e.to_string(),
                ))
            }
        }
    } else {
        bytes
    };
    let reply = KvReply::decode(&reply_bytes)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    let mut answer = WriteReply {
        index: reply.index,
        previous: None,
        value: None,
        swapped: None,
    };
    match reply.response {
        KvResponse::Previous(previous) => answer.previous = previous,
        KvResponse::Value(value) => answer.value = value,
        KvResponse::Swapped { swapped, current } => {
            answer.swapped = Some(swapped);
            answer.value = current;
        }
        other => return Err(unexpected(other)),
    }
    Ok(Json(answer))
}

async fn open_session(State(state): State<Arc<ApiState>>) -> Result<Json<SessionReply>, ApiError> {
    let bytes = state
        .node
        .propose(SessionCommand::Register.encode())
        .await
        .map_err(|e| propose_error(&state, e))?;
    match SessionResponse::decode(&bytes) {
        Ok(SessionResponse::Registered { session }) => Ok(Json(SessionReply { session })),
        other => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("unexpected answer to a session registration: {other:?}"),
        )),
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Leader => "leader",
        Role::Follower => "follower",
        Role::Candidate => "candidate",
        Role::PreCandidate => "pre_candidate",
    }
}

async fn status(State(state): State<Arc<ApiState>>) -> Json<NodeStatusReply> {
    let status = state.node.status();
    let m = &status.membership;
    let mut members = Vec::new();
    for id in m.members() {
        let role = if m.voters.contains(&id) {
            "voter"
        } else if m.is_voter(id) {
            "voter (leaving)"
        } else {
            "learner"
        };
        members.push(MemberInfo {
            id,
            role: role.into(),
            address: m.addresses.get(&id).and_then(|a| MemberAddress::decode(a)),
        });
    }
    let raft = &status.raft;
    let role = if status.state == RunState::Running {
        role_name(raft.role)
    } else {
        "stopped"
    };
    Json(NodeStatusReply {
        id: raft.id,
        cluster_id: state.cluster_id,
        role: role.into(),
        term: raft.term,
        leader: raft.leader,
        leader_client: raft.leader.and_then(|l| client_address(m, l)),
        last_index: raft.last_log_index,
        commit_index: raft.commit_index,
        applied_index: raft.applied_index,
        snapshot_index: raft.snapshot_index,
        last_contact_ms: raft
            .leader_contact_ticks
            .map(|ticks| u64::from(ticks).saturating_mul(state.tuning.tick_ms)),
        members,
        joint: m.is_joint(),
    })
}

fn membership_error(state: &ApiState, error: ChangeMembershipError) -> ApiError {
    use raft_core::MembershipChangeError as E;
    match error {
        ChangeMembershipError::Refused(E::NotLeader { leader_hint }) => {
            ApiError::not_leader(state, leader_hint)
        }
        ChangeMembershipError::Refused(E::Invalid(_) | E::Unchanged) => {
            ApiError::bad_request(error.to_string())
        }
        ChangeMembershipError::Refused(E::NotCaughtUp { .. }) => ApiError::new(
            StatusCode::CONFLICT,
            "not_caught_up",
            format!("{error}; retry when it has caught up"),
        ),
        ChangeMembershipError::Timeout => {
            ApiError::new(StatusCode::GATEWAY_TIMEOUT, "timeout", error.to_string())
        }
        other => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("{other}; retry"),
        ),
    }
}

fn membership_reply(membership: &Membership) -> MembershipReply {
    MembershipReply {
        voters: membership.voters.iter().copied().collect(),
        learners: membership.learners.iter().copied().collect(),
        addresses: membership
            .addresses
            .iter()
            .filter_map(|(id, a)| MemberAddress::decode(a).map(|a| (*id, a)))
            .collect(),
    }
}

async fn change(
    state: &ApiState,
    voters: BTreeSet<NodeId>,
    learners: BTreeSet<NodeId>,
    addresses: BTreeMap<NodeId, String>,
) -> Result<Json<MembershipReply>, ApiError> {
    state
        .node
        .change_membership_with_addresses(voters, learners, addresses)
        .await
        .map_err(|e| membership_error(state, e))?;
    Ok(Json(membership_reply(&state.node.status().membership)))
}

async fn add_node(
    State(state): State<Arc<ApiState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<MembershipReply>, ApiError> {
    let request: AddNodeRequest = parse_json(body)?;
    let m = state.node.status().membership;
    if m.contains(request.id) {
        return Err(ApiError::bad_request(format!(
            "node {} is already a member",
            request.id
        )));
    }
    let mut learners = m.learners.clone();
    learners.insert(request.id);
    let address = MemberAddress {
        peer: request.peer,
        client: request.client,
    };
    let addresses = BTreeMap::from([(request.id, address.encode())]);
    change(&state, m.voters.clone(), learners, addresses).await
}

async fn promote_node(
    State(state): State<Arc<ApiState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<MembershipReply>, ApiError> {
    let request: NodeRequest = parse_json(body)?;
    let m = state.node.status().membership;
    if !m.learners.contains(&request.id) {
        return Err(ApiError::bad_request(format!(
            "node {} is not a learner",
            request.id
        )));
    }
    let mut voters = m.voters.clone();
    voters.insert(request.id);
    let mut learners = m.learners.clone();
    learners.remove(&request.id);
    change(&state, voters, learners, BTreeMap::new()).await
}

async fn remove_node(
    State(state): State<Arc<ApiState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<MembershipReply>, ApiError> {
    let request: NodeRequest = parse_json(body)?;
    let m = state.node.status().membership;
    if !m.contains(request.id) {
        return Err(ApiError::bad_request(format!(
            "node {} is not a member",
            request.id
        )));
    }
    let mut voters = m.voters.clone();
    voters.remove(&request.id);
    let mut learners = m.learners.clone();
    learners.remove(&request.id);
    change(&state, voters, learners, BTreeMap::new()).await
}

async fn transfer(
    State(state): State<Arc<ApiState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<NodeStatusReply>, ApiError> {
    let request: NodeRequest = parse_json(body)?;
    match state.node.transfer_leadership(request.id).await {
        Ok(()) => Ok(status(State(state)).await),
        Err(TransferError::Refused(raft_core::TransferError::NotLeader { leader_hint })) => {
            Err(ApiError::not_leader(&state, leader_hint))
        }
        Err(e @ TransferError::Refused(_)) => Err(ApiError::bad_request(e.to_string())),
        Err(e) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            e.to_string(),
        )),
    }
}

async fn configure_sessions(
    State(state): State<Arc<ApiState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<SessionLimitsRequest>, ApiError> {
    let request: SessionLimitsRequest = parse_json(body)?;
    if request.expire_after_entries == 0 || request.max_sessions == 0 {
        return Err(ApiError::bad_request(
            "expire_after_entries and max_sessions must be positive",
        ));
    }
    let change = SessionCommand::Configure(SessionLimits {
        expire_after_entries: request.expire_after_entries,
        max_sessions: request.max_sessions,
    });
    let bytes = state
        .node
        .propose(change.encode())
        .await
        .map_err(|e| propose_error(&state, e))?;
    match SessionResponse::decode(&bytes) {
        Ok(SessionResponse::Configured(limits)) => Ok(Json(SessionLimitsRequest {
            expire_after_entries: limits.expire_after_entries,
            max_sessions: limits.max_sessions,
        })),
        other => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("unexpected answer to a session configuration: {other:?}"),
        )),
    }
}

async fn snapshot(State(state): State<Arc<ApiState>>) -> Result<Json<SnapshotReply>, ApiError> {
    match state.node.snapshot().await {
        Ok(meta) => Ok(Json(SnapshotReply {
            index: meta.index,
            term: meta.term,
        })),
        Err(e @ SnapshotError::NothingApplied) => {
            Err(ApiError::new(StatusCode::CONFLICT, "refused", e.to_string()))
        }
        Err(e) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            e.to_string(),
        )),
    }
}

/// How long the server waits for requests in flight at shutdown.
pub(crate) const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) fn log_rejected(remote: SocketAddr, error: &dyn std::fmt::Display) {
    debug!(%remote, %error, "client connection refused");
}
