//! The server's settings: a TOML file (`raft-kv serve --config node.toml`), every field of which a
//! flag can override. Unknown fields are refused, so a typo is an error, not a silent default.
//!
//! ```
//! let config: raft_kv::ServerConfig = toml::from_str(r#"
//!     node_id = 1
//!     cluster_id = 7
//!     data_dir = "/var/lib/raft-kv/1"
//!     peer_listen = "127.0.0.1:7001"
//!     client_listen = "127.0.0.1:8001"
//!     [tls]
//!     ca_cert = "certs/ca.pem"
//!     cert = "certs/node-1.pem"
//!     key = "certs/node-1.key"
//!     [[initial_members]]
//!     id = 1
//!     peer = "127.0.0.1:7001"
//!     client = "127.0.0.1:8001"
//! "#)?;
//! assert_eq!(config.tuning.tick_ms, 10);
//! config.validate()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;

use raft_core::NodeId;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A server's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// This node's id (not 0).
    pub node_id: NodeId,
    /// The cluster's id: peers and data directories of another cluster are refused.
    pub cluster_id: u64,
    /// Where the node keeps its log, snapshots and identity.
    pub data_dir: PathBuf,
    /// What keeps the log and hard state in `data_dir`: `rocksdb` (the default) or `journal`
    /// (one preallocated file synced in place: a quicker sync, the log held in memory). A data
    /// directory keeps the engine it was created with: one of the other engine is refused.
    #[serde(default)]
    pub storage: StorageEngine,
    /// The UDP address of the Raft transport (QUIC with mutual TLS).
    pub peer_listen: SocketAddr,
    /// The TCP address of the client API (HTTPS, client certificates required).
    pub client_listen: SocketAddr,
    /// Certificates.
    pub tls: TlsFiles,
    /// Serve the client API over plain HTTP (only allowed on a loopback address).
    #[serde(default)]
    pub insecure: bool,
    /// The cluster's members at its first start; ignored once the data directory holds state.
    #[serde(default)]
    pub initial_members: Vec<InitialMember>,
    /// Protocol and service tuning.
    #[serde(default)]
    pub tuning: Tuning,
}

/// The storage engine of a node's log and hard state (`storage` in the config file).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StorageEngine {
    /// RocksDB (`raft_node::rocks::RocksStorage`): the log on disk, read back as needed.
    #[default]
    Rocksdb,
    /// A journal of writes (`raft_node::file::JournalStorage`): each write one record synced in
    /// a preallocated file, the log held in memory up to the last compaction.
    Journal,
}

impl StorageEngine {
    /// The directory under the data directory that holds this engine's store.
    pub fn dir_name(self) -> &'static str {
        match self {
            StorageEngine::Rocksdb => "raft",
            StorageEngine::Journal => "raft-journal",
        }
    }

    /// The other engine.
    pub fn other(self) -> StorageEngine {
        match self {
            StorageEngine::Rocksdb => StorageEngine::Journal,
            StorageEngine::Journal => StorageEngine::Rocksdb,
        }
    }
}

/// Certificate files (PEM), made by `raft-kv certs`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The cluster CA's certificate.
    pub ca_cert: PathBuf,
    /// This node's certificate.
    pub cert: PathBuf,
    /// This node's private key.
    pub key: PathBuf,
}

/// A member of the initial configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitialMember {
    /// Its id.
    pub id: NodeId,
    /// Its peer (QUIC) address.
    pub peer: SocketAddr,
    /// Its client API address.
    pub client: SocketAddr,
}

/// Tuning, with defaults for a LAN.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tuning {
    /// One tick, in milliseconds.
    pub tick_ms: u64,
    /// The base election timeout, in ticks (randomized in [T, 2T)).
    pub election_timeout_ticks: u32,
    /// Heartbeat interval, in ticks.
    pub heartbeat_ticks: u32,
    /// Serve lease reads (needs bounded clock drift).
    pub lease_reads: bool,
    /// Take a snapshot after this many entries since the last one.
    pub snapshot_after_entries: u64,
    /// A snapshot due waits until the log since the last one holds this percentage of that
    /// snapshot's size (0: it never waits), so a large state is not rewritten for every few
    /// writes.
    pub snapshot_min_log_percent: u64,
    /// How long a write may wait to be applied before the client is told the outcome is unknown.
    pub request_timeout_ms: u64,
    /// The longest key, in bytes.
    pub max_key_bytes: usize,
    /// The longest value, in bytes.
    pub max_value_bytes: usize,
    /// The largest request body, in bytes.
    pub max_request_bytes: usize,
    /// The most pairs one scan returns.
    pub max_scan_limit: usize,
    /// A peer connection with nothing received for this long is dropped (keep-alives go at a
    /// fifth of it).
    pub peer_idle_timeout_ms: u64,
    /// The round trip to a peer QUIC assumes before it has measured one: it paces the
    /// handshake's retries to a peer that is not up yet. Near the real round trip is best.
    pub peer_initial_rtt_ms: u64,
    /// At most this many AppendEntries in flight to one follower. A small window batches more
    /// entries into each message under load (the next message waits for an acknowledgement and
    /// takes everything proposed meanwhile); a large one suits long round trips.
    pub max_inflight_messages: usize,
    /// Nagle's rule for AppendEntries (on by default): while one is in flight to a follower, the
    /// next goes only once it is full, so the writes proposed meanwhile travel, sync and are
    /// answered together. Off, each round of writes goes at once (up to `max_inflight_messages`),
    /// which saves waiting up to a round trip when the peers are far apart.
    pub hold_partial_appends: bool,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            tick_ms: 10,
            election_timeout_ticks: 15,
            heartbeat_ticks: 3,
            lease_reads: false,
            snapshot_after_entries: 100_000,
            snapshot_min_log_percent: 100,
            request_timeout_ms: 5_000,
            max_key_bytes: 4 << 10,
            max_value_bytes: 1 << 20,
            max_request_bytes: 2 << 20,
            max_scan_limit: 10_000,
            peer_idle_timeout_ms: 5_000,
            peer_initial_rtt_ms: 10,
            max_inflight_messages: 32,
            hold_partial_appends: true,
        }
    }
}

/// A setting that cannot work.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for these settings (an unknown field, a wrong type).
    #[error("invalid config file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A value is out of range or inconsistent.
    #[error("invalid setting: {0}")]
    Invalid(String),
}

impl ServerConfig {
    /// Reads and parses a config file (not yet validated: flags may still override fields).
    pub fn from_file(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source: Box::new(source),
        })
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.node_id == 0 {
            return invalid("node_id must not be 0".into());
        }
        if self.insecure && !self.client_listen.ip().is_loopback() {
            return invalid(format!(
                "insecure (plain HTTP) is only allowed on a loopback address, not {}",
                self.client_listen
            ));
        }
        let mut ids = BTreeSet::new();
        for member in &self.initial_members {
            if member.id == 0 {
                return invalid("initial member id must not be 0".into());
            }
            if !ids.insert(member.id) {
                return invalid(format!("initial member {} is listed twice", member.id));
            }
        }
        let t = &self.tuning;
        if t.tick_ms == 0 || t.tick_ms > 10_000 {
            return invalid(format!("tuning.tick_ms {} must be in 1..=10000", t.tick_ms));
        }
        if t.heartbeat_ticks == 0 || t.election_timeout_ticks <= t.heartbeat_ticks {
            return invalid(format!(
                "tuning.election_timeout_ticks ({}) must exceed tuning.heartbeat_ticks ({}), which must be at least 1",
                t.election_timeout_ticks, t.heartbeat_ticks
            ));
        }
        if t.max_key_bytes == 0 || t.max_request_bytes < t.max_key_bytes.saturating_add(t.max_value_bytes) {
            return invalid(
                "tuning.max_request_bytes must hold a key of max_key_bytes and a value of max_value_bytes"
                    .into(),
            );
        }
        if !(100..=600_000).contains(&t.peer_idle_timeout_ms) {
            return invalid(format!(
                "tuning.peer_idle_timeout_ms {} must be in 100..=600000",
                t.peer_idle_timeout_ms
            ));
        }
        if t.snapshot_min_log_percent > 10_000 {
            return invalid(format!(
                "tuning.snapshot_min_log_percent {} must be at most 10000",
                t.snapshot_min_log_percent
            ));
        }
        if !(1..=10_000).contains(&t.peer_initial_rtt_ms) {
            return invalid(format!(
                "tuning.peer_initial_rtt_ms {} must be in 1..=10000",
                t.peer_initial_rtt_ms
            ));
        }
        if !(1..=4_096).contains(&t.max_inflight_messages) {
            return invalid(format!(
                "tuning.max_inflight_messages {} must be in 1..=4096",
                t.max_inflight_messages
            ));
        }
        if t.request_timeout_ms == 0 || t.max_scan_limit == 0 {
            return invalid("tuning.request_timeout_ms and max_scan_limit must be positive".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        node_id = 2
        cluster_id = 9
        data_dir = "d"
        peer_listen = "127.0.0.1:1"
        client_listen = "127.0.0.1:2"
        [tls]
        ca_cert = "a"
        cert = "b"
        key = "c"
    "#;

    #[test]
    fn an_unknown_field_is_refused() {
        let text = format!("{MINIMAL}\nelection_timeout = 5\n");
        let error = toml::from_str::<ServerConfig>(&text).unwrap_err();
        assert!(error.to_string().contains("unknown field"), "{error}");
        let text = MINIMAL.replace("[tls]", "[tuning]\nticks = 3\n[tls]");
        assert!(toml::from_str::<ServerConfig>(&text).is_err());
    }

    #[test]
    fn plain_http_off_loopback_is_refused() {
        let mut config: ServerConfig = toml::from_str(MINIMAL).unwrap();
        config.validate().unwrap();
        config.insecure = true;
        config.validate().unwrap();
        config.client_listen = "0.0.0.0:8000".parse().unwrap();
        assert!(config.validate().is_err());
    }

    #[test]
    fn inconsistent_tuning_is_refused() {
        let mut config: ServerConfig = toml::from_str(MINIMAL).unwrap();
        config.tuning.heartbeat_ticks = config.tuning.election_timeout_ticks;
        assert!(config.validate().is_err());
        let mut config: ServerConfig = toml::from_str(MINIMAL).unwrap();
        config.tuning.max_request_bytes = 10;
        assert!(config.validate().is_err());
    }

    #[test]
    fn snapshot_min_log_percent_defaults_to_100_and_is_bounded() {
        let config: ServerConfig = toml::from_str(MINIMAL).unwrap();
        assert_eq!(config.tuning.snapshot_min_log_percent, 100);
        let mut off = config.clone();
        off.tuning.snapshot_min_log_percent = 0;
        assert!(off.validate().is_ok(), "0 turns the floor off");
        let mut wrong = config;
        wrong.tuning.snapshot_min_log_percent = 10_001;
        let error = wrong.validate().unwrap_err().to_string();
        assert!(error.contains("snapshot_min_log_percent"), "{error}");
    }

    #[test]
    fn storage_is_rocksdb_unless_the_file_names_the_journal() {
        let config: ServerConfig = toml::from_str(MINIMAL).unwrap();
        assert_eq!(config.storage, StorageEngine::Rocksdb);
        let text = MINIMAL.replace("data_dir = \"d\"", "data_dir = \"d\"\nstorage = \"journal\"");
        let config: ServerConfig = toml::from_str(&text).unwrap();
        assert_eq!(config.storage, StorageEngine::Journal);
        assert_ne!(
            StorageEngine::Journal.dir_name(),
            StorageEngine::Rocksdb.dir_name()
        );
        let text = MINIMAL.replace("data_dir = \"d\"", "data_dir = \"d\"\nstorage = \"sqlite\"");
        let error = toml::from_str::<ServerConfig>(&text).unwrap_err();
        assert!(error.to_string().contains("unknown variant"), "{error}");
    }

    #[test]
    fn max_inflight_messages_is_read_and_bounded() {
        let config: ServerConfig = toml::from_str(MINIMAL).unwrap();
        assert_eq!(config.tuning.max_inflight_messages, 32);
        let text = format!("{MINIMAL}\n[tuning]\nmax_inflight_messages = 2\n");
        let config: ServerConfig = toml::from_str(&text).unwrap();
        assert_eq!(config.tuning.max_inflight_messages, 2);
        assert!(config.validate().is_ok());
        for wrong in [0, 4_097] {
            let mut config = config.clone();
            config.tuning.max_inflight_messages = wrong;
            let error = config.validate().unwrap_err().to_string();
            assert!(error.contains("max_inflight_messages"), "{error}");
        }
    }

    #[test]
    fn hold_partial_appends_is_on_unless_the_file_turns_it_off() {
        let config: ServerConfig = toml::from_str(MINIMAL).unwrap();
        assert!(config.tuning.hold_partial_appends);
        let text = format!("{MINIMAL}\n[tuning]\nhold_partial_appends = false\n");
        let config: ServerConfig = toml::from_str(&text).unwrap();
        assert!(!config.tuning.hold_partial_appends);
        assert!(config.validate().is_ok());
        let text = format!("{MINIMAL}\n[tuning]\nhold_partial_appends = 1\n");
        let error = toml::from_str::<ServerConfig>(&text).unwrap_err().to_string();
        assert!(error.contains("hold_partial_appends"), "{error}");
    }

    #[test]
    fn peer_initial_rtt_is_read_and_bounded() {
        let config: ServerConfig = toml::from_str(MINIMAL).unwrap();
        assert_eq!(config.tuning.peer_initial_rtt_ms, 10);
        let text = format!("{MINIMAL}\n[tuning]\npeer_initial_rtt_ms = 150\n");
        let config: ServerConfig = toml::from_str(&text).unwrap();
        assert_eq!(config.tuning.peer_initial_rtt_ms, 150);
        assert!(config.validate().is_ok());
        for wrong in [0, 10_001] {
            let mut config = config.clone();
            config.tuning.peer_initial_rtt_ms = wrong;
            let error = config.validate().unwrap_err().to_string();
            assert!(error.contains("peer_initial_rtt_ms"), "{error}");
        }
    }
}
