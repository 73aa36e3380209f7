//! A journal is opened only by the node of the cluster that made it: another cluster's or
//! another node's identity is refused with a typed error, and nothing on disk changes.

use raft_core::{Entry, LogStorage, LogWrite};
use raft_storage_file::{IdentityMismatch, JournalStorage, OpenError, StoreIdentity};

const NODE_1: StoreIdentity = StoreIdentity {
    cluster_id: 10,
    node_id: 1,
};

async fn create_with_entries(dir: &std::path::Path, n: u64) {
    let mut storage = JournalStorage::open(dir, NODE_1)
        .await
        .expect("new journal opens");
    let entries = (1..=n).map(|i| Entry::command(1, i, format!("e{i}"))).collect();
    storage
        .persist(LogWrite {
            entries,
            ..LogWrite::default()
        })
        .await
        .expect("persist");
}

async fn assert_owner_still_opens(dir: &std::path::Path, n: usize) {
    let mut storage = JournalStorage::open(dir, NODE_1).await.expect("the owner opens");
    assert_eq!(storage.load().await.expect("load").entries.len(), n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_another_clusters_journal_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    create_with_entries(dir.path(), 3).await;
    let other_cluster = StoreIdentity {
        cluster_id: 11,
        node_id: 1,
    };
    let refused = JournalStorage::open(dir.path(), other_cluster).await;
    match refused {
        Err(OpenError::Identity(mismatch)) => {
            assert_eq!(
                mismatch,
                IdentityMismatch::Cluster {
                    found: 10,
                    expected: 11
                }
            );
            assert!(mismatch.to_string().contains("cluster 10, not 11"), "{mismatch}");
        }
        other => panic!("another cluster's journal must be refused, not {other:?}"),
    }
    assert_owner_still_opens(dir.path(), 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_another_nodes_journal_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    create_with_entries(dir.path(), 2).await;
    let node_2 = StoreIdentity {
        cluster_id: 10,
        node_id: 2,
    };
    let refused = JournalStorage::open(dir.path(), node_2).await;
    assert!(
        matches!(
            refused,
            Err(OpenError::Identity(IdentityMismatch::Node {
                found: 1,
                expected: 2
            }))
        ),
        "{refused:?}"
    );
    assert_owner_still_opens(dir.path(), 2).await;
}
