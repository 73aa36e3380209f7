//! The server's `/metrics`: the node's metrics (the table in [`raft_node::metrics`]) in the
//! Prometheus text format.
//!
//! The server installs a Prometheus recorder once per process, before its node starts, and
//! renders it on each scrape. Histograms are exported with buckets (so they can be summed across
//! nodes): latencies from 50 µs to 10 s, batch sizes in powers of four. If the embedding program
//! installed a recorder of its own first, that one keeps the numbers and `/metrics` says so.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing::warn;

/// Latency buckets, in seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    10.0,
];

/// Size buckets (entries or bytes per batch).
const SIZE_BUCKETS: &[f64] = &[
    1.0,
    4.0,
    16.0,
    64.0,
    256.0,
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
];

/// How often the recorder folds the samples its histograms buffered into their buckets: the
/// buffer holds about this long of samples (a second at a million commits a second is 8 MB).
const UPKEEP: Duration = Duration::from_secs(1);

static RECORDER: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process's Prometheus recorder, installed on first use; `None` if another recorder was
/// installed first.
pub fn prometheus() -> Option<&'static PrometheusHandle> {
    RECORDER.get_or_init(install).as_ref()
}

fn install() -> Option<PrometheusHandle> {
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_entries".into()), SIZE_BUCKETS))
        .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_bytes".into()), SIZE_BUCKETS));
    let builder = match builder {
        Ok(builder) => builder,
        Err(error) => {
            warn!(%error, "the Prometheus buckets are invalid; /metrics is off");
            return None;
        }
    };
    let recorder = builder.build_recorder();
    let handle = recorder.handle();
    if let Err(error) = metrics::set_global_recorder(recorder) {
        warn!(%error, "another metrics recorder is installed; /metrics is off");
        return None;
    }
    let upkeep = handle.clone();
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(UPKEEP);
            upkeep.run_upkeep();
        });
    if let Err(error) = spawned {
        warn!(%error, "no thread for the metrics upkeep; histograms grow until scraped");
    }
    Some(handle)
}
