//! The spans a user waits in: `raft.propose` (with the index its command got), `raft.read`,
//! `raft.election` (with its outcome) and `raft.snapshot.build`, seen by a subscriber.
//!
//! One test per file: the subscriber is global to the process.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Cluster;
use raft_node::raft_core::Membership;
use raft_node::{NodeConfig, ReadConsistency};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// A span's fields, as text.
type SpanFields = BTreeMap<String, String>;

/// Every span opened: its name and its fields, by span id.
#[derive(Clone, Default)]
struct Recorded(Arc<Mutex<BTreeMap<u64, (String, SpanFields)>>>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_string(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Recorded {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        let mut spans = self.0.lock().expect("not poisoned");
        spans.insert(id.into_u64(), (attrs.metadata().name().to_string(), fields));
    }
    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        let mut spans = self.0.lock().expect("not poisoned");
        if let Some((_, fields)) = spans.get_mut(&id.into_u64()) {
            values.record(&mut Fields(fields));
        }
    }
}

impl Recorded {
    /// The fields of every span called `name`.
    fn named(&self, name: &str) -> Vec<SpanFields> {
        let spans = self.0.lock().expect("not poisoned");
        spans
            .values()
            .filter(|(n, _)| n == name)
            .map(|(_, f)| f.clone())
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proposals_reads_elections_and_snapshots_run_in_spans_that_say_what_happened() {
    let recorded = Recorded::default();
    let subscriber = tracing_subscriber::registry().with(recorded.clone());
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber in this process");

    let membership = Membership::voters([1, 2, 3]).expect("membership");
    let cluster = Cluster::start(9, membership, |id| {
        NodeConfig::new(id).with_tick_interval(Duration::from_millis(5))
    })
    .await;
    let leader = &cluster.leader;
    let leader_id = leader.id();
    let reply = leader.propose(&b"x"[..]).await.expect("commits");
    leader
        .read(&b"q"[..], ReadConsistency::Linearizable)
        .await
        .expect("reads");
    let snapshot = leader.snapshot().await.expect("snapshot");

    let proposals = recorded.named("raft.propose");
    assert_eq!(proposals.len(), 1, "{proposals:?}");
    // The echo state machine answers with the command's index: the span recorded the same one.
    let index = String::from_utf8(reply.to_vec()).expect("an index");
    assert_eq!(proposals[0].get("index"), Some(&index), "{proposals:?}");
    assert_eq!(proposals[0].get("node"), Some(&leader_id.to_string()));

    let reads = recorded.named("raft.read");
    assert_eq!(reads.len(), 1);
    assert_eq!(
        reads[0].get("consistency").map(String::as_str),
        Some("Linearizable")
    );

    let elections = recorded.named("raft.election");
    let won: Vec<_> = elections
        .iter()
        .filter(|e| e.get("outcome").map(String::as_str) == Some("won"))
        .collect();
    assert!(!won.is_empty(), "an election span says who won: {elections:?}");
    assert!(won.iter().any(|e| e.get("node") == Some(&leader_id.to_string())));

    let builds = recorded.named("raft.snapshot.build");
    assert!(
        builds
            .iter()
            .any(|b| b.get("index") == Some(&snapshot.index.to_string()) && b.contains_key("bytes")),
        "{builds:?}"
    );
    cluster.shutdown().await;
}
