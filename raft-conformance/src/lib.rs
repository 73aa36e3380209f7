//! Conformance suites for `raft-core` backends, written once and run by every backend.
//!
//! * [`storage`]: what a [`LogStorage`](raft_core::LogStorage) and its
//!   [`SnapshotStore`](raft_core::SnapshotStore) must do: append, read ranges, term lookup,
//!   truncation of a conflicting suffix, purge, hard state, snapshot metadata and bytes, reopen,
//!   and the edge cases (empty log, first index after a purge, out-of-range reads).
//! * [`transport`]: what a [`Transport`](raft_core::Transport) and its
//!   [`Inbox`](raft_core::Inbox) must do: delivery, ordering per link, large messages, a peer
//!   that restarts, an unknown peer, shutdown.
//!
//! * [`crash`]: a child process writes until it is killed with SIGKILL at random moments; every
//!   write it acknowledged must be there when the store is reopened, and nothing half applied.
//!
//! A backend implements a small harness ([`storage::StorageHarness`] or
//! [`transport::TransportHarness`]) that opens its store or starts its endpoints, and invokes
//! [`storage_suite!`] or [`transport_suite!`] in a test file; each case becomes its own
//! `#[tokio::test]` (the calling crate needs `tokio` with the `macros` and `rt-multi-thread`
//! features as a dev-dependency).
//!
//! ```ignore
//! // tests/conformance.rs of a storage backend
//! raft_conformance::storage_suite!(my_backend::tests::Harness::new());
//! ```

pub mod crash;
pub mod storage;
pub mod transport;
