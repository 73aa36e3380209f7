//! The apply task: owns the state machine, applies committed entries in order and answers the
//! proposals waiting for them, builds and restores snapshots, and serves reads once their index
//! is applied.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use metrics::Histogram;
use raft_core::{
    EntryPayload, Index, SnapshotChecksum, SnapshotMeta, SnapshotSink, SnapshotStore, SnapshotWrite,
    StateMachine, StateMachineError, StorageError, Term,
};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{info_span, Instrument};

use crate::error::{ProposeError, ReadError};
use crate::metrics::ApplyMetrics;

use super::snapshot_check::verify_snapshot;
use super::types::{Applied, AppliedIndex, ApplyJob, PendingQuery, ReplyTo, Waiter};

/// A snapshot being built: the bytes go to the store, their checksum is kept on the way.
struct ChecksummedSink {
    sink: Box<dyn SnapshotSink>,
    checksum: SnapshotChecksum,
}

#[async_trait::async_trait]
impl SnapshotWrite for ChecksummedSink {
    async fn write(&mut self, data: Bytes) -> Result<(), StorageError> {
        self.checksum.update(&data);
        self.sink.write(data).await
    }
}

/// Builds a snapshot of the state after `index` into the store.
async fn build_snapshot<M: StateMachine, St: SnapshotStore>(
    state_machine: &mut M,
    snapshots: &St,
    index: Index,
) -> Result<Applied, StateMachineError> {
    let as_state_machine_error = |error| StateMachineError::storage(index, error);
    let sink = snapshots.create(index).await.map_err(as_state_machine_error)?;
    let mut writer = ChecksummedSink {
        sink,
        checksum: SnapshotChecksum::new(),
    };
    state_machine.snapshot(&mut writer).await?;
    let ChecksummedSink { sink, checksum } = writer;
    sink.finish().await.map_err(as_state_machine_error)?;
    Ok(Applied::SnapshotBuilt {
        index,
        size: checksum.size(),
        checksum: checksum.value(),
    })
}

/// Replaces the state machine's state with the snapshot `meta` describes, once its bytes check
/// out.
async fn restore_snapshot<M: StateMachine, St: SnapshotStore>(
    state_machine: &mut M,
    snapshots: &St,
    meta: &SnapshotMeta,
) -> Result<(), StateMachineError> {
    let index = meta.index;
    verify_snapshot(snapshots, meta)
        .await
        .map_err(|error| StateMachineError::storage(index, error))?;
    let mut reader = snapshots
        .open(index)
        .await
        .map_err(|error| StateMachineError::storage(index, error))?;
    state_machine.restore(index, reader.as_mut()).await
}

/// The proposals waiting for their entries to be applied, in the order of their indexes (two
/// may share an index: a later leader's entry can take the place of an earlier one's).
struct Waiters {
    waiting: VecDeque<(Waiter, Instant)>,
    timeout: Duration,
    /// Where the time from acceptance to result goes, when metrics are on.
    commit_latency: Option<Histogram>,
}

impl Waiters {
    fn add(&mut self, accepted: Vec<Waiter>) {
        for waiter in accepted {
            let deadline = waiter.accepted_at + self.timeout;
            let index = waiter.index;
            if self.waiting.back().is_none_or(|(last, _)| last.index <= index) {
                self.waiting.push_back((waiter, deadline));
            } else {
                // A new leader's index below an older proposal's: keep the order by index.
                let at = self.waiting.partition_point(|(w, _)| w.index <= index);
                self.waiting.insert(at, (waiter, deadline));
            }
        }
    }

    /// Answers every proposal at or below `index`: with `response` if it is the entry at `index`
    /// in `term`, otherwise it was dropped (another leader's entry took its place).
    ///
    /// With metrics on, `answered_at` is the time the answers of this batch are counted at: read
    /// once, at the first answer (one clock read per batch, not per proposal).
    fn decide(&mut self, index: Index, term: Term, response: &Bytes, answered_at: &mut Option<Instant>) {
        let (timeout, latency) = (self.timeout, self.commit_latency.as_ref());
        answer_up_to(&mut self.waiting, index, |waiter, deadline| {
            if waiter.index == index && waiter.term == term {
                if let Some(latency) = &latency {
                    // Accepted at its deadline less the timeout.
                    let now = *answered_at.get_or_insert_with(Instant::now);
                    let waited = (now + timeout).saturating_duration_since(deadline);
                    latency.record(waited.as_secs_f64());
                }
                Ok(response.clone())
            } else {
                Err(ProposeError::Dropped)
            }
        });
    }

    /// Answers the proposals covered by a snapshot: which command took their index is unknown.
    fn supersede(&mut self, index: Index) {
        answer_up_to(&mut self.waiting, index, |_, _| Err(ProposeError::Superseded));
    }

    /// Answers with a timeout the proposals past their deadline, and forgets those whose caller
    /// has gone.
    fn expire(&mut self) {
        let now = Instant::now();
        let mut kept = VecDeque::with_capacity(self.waiting.len());
        for (waiter, deadline) in self.waiting.drain(..) {
            if deadline <= now {
                let _ = waiter.reply.send(Err(ProposeError::Timeout));
            } else if !waiter.reply.is_closed() {
                kept.push_back((waiter, deadline));
            }
        }
        self.waiting = kept;
    }
}

/// Answers, in order, every proposal of `waiting` at or below `index` with what `answer` says
/// of it (given the proposal and its deadline).
fn answer_up_to(
    waiting: &mut VecDeque<(Waiter, Instant)>,
    index: Index,
    mut answer: impl FnMut(&Waiter, Instant) -> Result<Bytes, ProposeError>,
) {
    while waiting.front().is_some_and(|(w, _)| w.index <= index) {
        if let Some((waiter, deadline)) = waiting.pop_front() {
            let result = answer(&waiter, deadline);
            let _ = waiter.reply.send(result);
        }
    }
}

/// Runs `work` (building or restoring a snapshot: a pass over the whole state, which a state
/// machine may do without yielding) so that it cannot hold up the runtime's other tasks: on a
/// multi-threaded runtime the apply task's worker hands its other tasks to another worker and
/// runs `work` itself, so the event loops keep their heartbeats while a large snapshot is
/// written. The apply task waits for the snapshot either way; on a current-thread runtime `work`
/// simply runs as it is.
async fn off_the_workers<F: std::future::Future>(work: F) -> F::Output {
    use tokio::runtime::{Handle, RuntimeFlavor};
    let handle = Handle::current();
    if handle.runtime_flavor() == RuntimeFlavor::MultiThread {
        tokio::task::block_in_place(|| handle.block_on(work))
    } else {
        work.await
    }
}

/// Applies committed entries in order and answers the proposals waiting for them (or, past
/// `propose_timeout`, answers them with a timeout); builds and restores snapshots.
///
/// How far it has applied goes into `applied_index`, which the event loop reads each round; a
/// batch applied is reported on `done` as well only while the status is watched (a restored
/// snapshot, a built one and a failure always are).
pub(super) async fn apply_loop<M: StateMachine, St: SnapshotStore>(
    mut state_machine: M,
    snapshots: St,
    propose_timeout: Duration,
    metrics: ApplyMetrics,
    mut jobs: mpsc::UnboundedReceiver<ApplyJob>,
    done: mpsc::UnboundedSender<Result<Applied, StateMachineError>>,
    applied_index: Arc<AppliedIndex>,
) {
    let mut waiters = Waiters {
        waiting: VecDeque::new(),
        timeout: propose_timeout,
        commit_latency: metrics.commit_latency,
    };
    let mut reads: BTreeMap<Index, Vec<PendingQuery>> = BTreeMap::new();
    let mut applied = state_machine.applied_index();
    // One batch's answers, between applying it and answering its proposers (kept for its capacity).
    let mut responses: Vec<(Index, Term, Bytes)> = Vec::new();
    while let Some(job) = jobs.recv().await {
        let entries = match job {
            ApplyJob::Await(accepted) => {
                waiters.add(accepted);
                continue;
            }
            ApplyJob::ExpireWaiters => {
                waiters.expire();
                continue;
            }
            ApplyJob::Read { index, query, reply } => {
                if index <= applied {
                    if !serve_read(&mut state_machine, query, reply, &done).await {
                        return;
                    }
                } else {
                    reads.entry(index).or_default().push((query, reply));
                }
                continue;
            }
            ApplyJob::BuildSnapshot => {
                let span = info_span!(
                    "raft.snapshot.build",
                    index = applied,
                    bytes = tracing::field::Empty
                );
                let build = build_snapshot(&mut state_machine, &snapshots, applied).instrument(span.clone());
                let built = off_the_workers(build).await;
                if let Ok(Applied::SnapshotBuilt { size, .. }) = &built {
                    span.record("bytes", size);
                }
                let failed = built.is_err();
                if done.send(built).is_err() || failed {
                    return;
                }
                continue;
            }
            ApplyJob::Restore(snapshot) => {
                let span = info_span!(
                    "raft.snapshot.restore",
                    index = snapshot.index,
                    bytes = snapshot.size
                );
                let restore = restore_snapshot(&mut state_machine, &snapshots, &snapshot).instrument(span);
                let restored = off_the_workers(restore).await;
                if let Err(error) = restored {
                    let _ = done.send(Err(error));
                    return;
                }
                applied = snapshot.index;
                applied_index.advance(applied);
                waiters.supersede(applied);
                if !serve_reads_up_to(&mut state_machine, &mut reads, applied, &done).await {
                    return;
                }
                if done.send(Ok(Applied::UpTo(applied))).is_err() {
                    return;
                }
                continue;
            }
            ApplyJob::Apply(entries) => entries,
        };
        metrics.batch_entries.record(entries.len() as f64);
        // The whole batch is applied first, then the applied index goes out once and the
        // proposers are answered in one run: each answer wakes a client task (often on another
        // runtime), and answers interleaved with applying spread those wake-ups, and the index's
        // cache line, over the whole batch.
        let mut failure = None;
        for entry in entries.iter() {
            let response = match &entry.payload {
                // Configuration changes are Raft's own business, not the state machine's.
                EntryPayload::Blank | EntryPayload::Membership(_) => Bytes::new(),
                EntryPayload::Command(command) => match state_machine.apply(entry.index, command).await {
                    Ok(response) => response,
                    Err(error) => {
                        failure = Some(error);
                        break;
                    }
                },
            };
            responses.push((entry.index, entry.term, response));
        }
        let last = responses.last().map_or(0, |&(index, _, _)| index);
        // Before the proposers hear of it (see `AppliedIndex::advance`).
        applied = applied.max(last);
        applied_index.advance(applied);
        let mut answered_at = None;
        for (index, term, response) in responses.drain(..) {
            waiters.decide(index, term, &response, &mut answered_at);
        }
        if let Some(error) = failure {
            let _ = done.send(Err(error));
            return;
        }
        if !serve_reads_up_to(&mut state_machine, &mut reads, applied, &done).await {
            return;
        }
        if applied_index.is_watched() && done.send(Ok(Applied::UpTo(last))).is_err() {
            return;
        }
    }
}

/// Serves the reads whose index is now applied; returns false if the state machine failed.
async fn serve_reads_up_to<M: StateMachine>(
    state_machine: &mut M,
    reads: &mut BTreeMap<Index, Vec<PendingQuery>>,
    applied: Index,
    done: &mpsc::UnboundedSender<Result<Applied, StateMachineError>>,
) -> bool {
    while let Some(ready) = reads.first_entry() {
        if *ready.key() > applied {
            break;
        }
        for (query, reply) in ready.remove() {
            if !serve_read(state_machine, query, reply, done).await {
                return false;
            }
        }
    }
    true
}

/// Answers one read from the state machine; returns false if the state machine failed.
async fn serve_read<M: StateMachine>(
    state_machine: &mut M,
    query: Bytes,
    reply: ReplyTo<Bytes, ReadError>,
    done: &mpsc::UnboundedSender<Result<Applied, StateMachineError>>,
) -> bool {
    match state_machine.query(query).await {
        Ok(answer) => {
            let _ = reply.send(Ok(answer));
            true
        }
        Err(error) => {
            let _ = done.send(Err(error));
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    type Answer = oneshot::Receiver<Result<Bytes, ProposeError>>;

    fn waiter(index: Index, term: Term) -> (Waiter, Answer) {
        let (reply, answer) = oneshot::channel();
        let accepted_at = Instant::now();
        (
            Waiter {
                index,
                term,
                reply,
                accepted_at,
            },
            answer,
        )
    }

    fn waiters(timeout: Duration) -> Waiters {
        Waiters {
            waiting: VecDeque::new(),
            timeout,
            commit_latency: None,
        }
    }

    fn answer(answer: &mut Answer) -> Option<Result<Bytes, ProposeError>> {
        answer.try_recv().ok()
    }

    #[test]
    fn a_proposal_is_answered_with_its_entrys_response_only_if_the_term_matches() {
        let mut all = waiters(Duration::from_secs(60));
        let (first, mut first_answer) = waiter(5, 2);
        let (second, mut second_answer) = waiter(6, 2);
        all.add(vec![first, second]);
        // Another leader's entry took index 5.
        all.decide(5, 3, &Bytes::from_static(b"theirs"), &mut None);
        assert!(matches!(
            answer(&mut first_answer),
            Some(Err(ProposeError::Dropped))
        ));
        assert_eq!(answer(&mut second_answer), None, "index 6 is not decided yet");
        all.decide(6, 2, &Bytes::from_static(b"ours"), &mut None);
        assert_eq!(
            answer(&mut second_answer).and_then(Result::ok),
            Some(Bytes::from_static(b"ours"))
        );
    }

    #[test]
    fn a_new_leaders_lower_index_keeps_the_order_and_both_proposals() {
        let mut all = waiters(Duration::from_secs(60));
        let (old, mut old_answer) = waiter(7, 1);
        all.add(vec![old]);
        // A new leader truncated the log and put its own proposal at index 6, then 7.
        let (six, mut six_answer) = waiter(6, 2);
        let (seven, mut seven_answer) = waiter(7, 2);
        all.add(vec![six, seven]);
        let order: Vec<(Index, Term)> = all.waiting.iter().map(|(w, _)| (w.index, w.term)).collect();
        assert_eq!(order, vec![(6, 2), (7, 1), (7, 2)]);
        all.decide(6, 2, &Bytes::new(), &mut None);
        all.decide(7, 2, &Bytes::from_static(b"new"), &mut None);
        assert!(matches!(answer(&mut six_answer), Some(Ok(_))));
        assert!(matches!(
            answer(&mut old_answer),
            Some(Err(ProposeError::Dropped))
        ));
        assert_eq!(
            answer(&mut seven_answer).and_then(Result::ok),
            Some(Bytes::from_static(b"new"))
        );
        assert!(all.waiting.is_empty());
    }

    #[test]
    fn proposals_covered_by_a_snapshot_are_superseded() {
        let mut all = waiters(Duration::from_secs(60));
        let (covered, mut covered_answer) = waiter(3, 1);
        let (after, mut after_answer) = waiter(9, 1);
        all.add(vec![covered, after]);
        all.supersede(5);
        assert!(matches!(
            answer(&mut covered_answer),
            Some(Err(ProposeError::Superseded))
        ));
        assert_eq!(answer(&mut after_answer), None);
    }

    #[tokio::test(start_paused = true)]
    async fn proposals_past_the_timeout_are_answered_with_a_timeout_and_gone_callers_forgotten() {
        let mut all = waiters(Duration::from_millis(100));
        let (early, mut early_answer) = waiter(1, 1);
        all.add(vec![early]);
        tokio::time::advance(Duration::from_millis(60)).await;
        let (late, mut late_answer) = waiter(2, 1);
        let (gone, gone_answer) = waiter(3, 1);
        all.add(vec![late, gone]);
        drop(gone_answer);
        all.expire();
        assert_eq!(answer(&mut early_answer), None, "60 ms is within the timeout");
        assert_eq!(all.waiting.len(), 2, "the caller that went away is forgotten");
        tokio::time::advance(Duration::from_millis(50)).await;
        all.expire();
        assert!(matches!(
            answer(&mut early_answer),
            Some(Err(ProposeError::Timeout))
        ));
        assert_eq!(answer(&mut late_answer), None, "50 ms old: still waiting");
        tokio::time::advance(Duration::from_millis(60)).await;
        all.expire();
        assert!(matches!(
            answer(&mut late_answer),
            Some(Err(ProposeError::Timeout))
        ));
        assert!(all.waiting.is_empty());
    }

    /// Answers each command with its index and fails at `fail_at`; records, at each entry it
    /// applies, how many of the proposers in `answers` have been answered and the applied index
    /// the event loop would read.
    #[cfg(feature = "mem")]
    struct Recording {
        fail_at: Option<Index>,
        answers: Arc<std::sync::Mutex<Vec<Answer>>>,
        applied_index: Arc<AppliedIndex>,
        /// Per applied entry: (its index, proposers already answered, applied index published).
        seen: Arc<std::sync::Mutex<Vec<(Index, usize, Index)>>>,
        applied: Index,
    }

    #[cfg(feature = "mem")]
    impl Recording {
        fn new(fail_at: Option<Index>, applied_index: &Arc<AppliedIndex>) -> Self {
            Recording {
                fail_at,
                answers: Arc::default(),
                applied_index: applied_index.clone(),
                seen: Arc::default(),
                applied: 0,
            }
        }
    }

    #[cfg(feature = "mem")]
    impl StateMachine for Recording {
        async fn apply(&mut self, index: Index, _command: &Bytes) -> Result<Bytes, StateMachineError> {
            if Some(index) == self.fail_at {
                return Err(StateMachineError {
                    index,
                    source: "refused".into(),
                });
            }
            let answered = (self.answers.lock())
                .expect("the test holds no lock across a panic")
                .iter()
                .filter(|answer| !answer.is_empty())
                .count();
            let published = self.applied_index.get();
            self.seen
                .lock()
                .expect("the test holds no lock across a panic")
                .push((index, answered, published));
            self.applied = index;
            Ok(Bytes::from(index.to_string()))
        }

        async fn query(&mut self, _query: Bytes) -> Result<Bytes, StateMachineError> {
            Ok(Bytes::new())
        }

        async fn snapshot(
            &mut self,
            _snapshot: &mut dyn raft_core::SnapshotWrite,
        ) -> Result<(), StateMachineError> {
            Ok(())
        }

        async fn restore(
            &mut self,
            _index: Index,
            _snapshot: &mut dyn raft_core::SnapshotRead,
        ) -> Result<(), StateMachineError> {
            Ok(())
        }

        fn applied_index(&self) -> Index {
            self.applied
        }
    }

    /// Starts an apply task over `machine`, hands it proposals for the entries 1 to 4 of term 1
    /// (their answers go into `machine.answers`) and then those entries in one batch, and waits
    /// for the task to end; returns what it reported.
    #[cfg(feature = "mem")]
    async fn apply_one_batch_of_four(
        machine: Recording,
    ) -> mpsc::UnboundedReceiver<Result<Applied, StateMachineError>> {
        let (jobs, job_queue) = mpsc::unbounded_channel();
        let (done, reported) = mpsc::unbounded_channel();
        let answers = machine.answers.clone();
        let applied_index = machine.applied_index.clone();
        let task = tokio::spawn(apply_loop(
            machine,
            raft_core::LogStorage::snapshot_store(&raft_storage_mem::MemStorage::new()),
            Duration::from_secs(60),
            ApplyMetrics::new(1, false),
            job_queue,
            done,
            applied_index,
        ));
        let mut accepted = Vec::new();
        for index in 1..=4 {
            let (waiter, answer) = waiter(index, 1);
            accepted.push(waiter);
            answers.lock().unwrap().push(answer);
        }
        jobs.send(ApplyJob::Await(accepted)).unwrap();
        let entries = (1..=4)
            .map(|index| raft_core::Entry::command(1, index, "x"))
            .collect();
        jobs.send(ApplyJob::Apply(entries)).unwrap();
        drop(jobs);
        task.await.unwrap();
        reported
    }

    /// What each proposer of `answers` was answered, `None` for one not answered.
    #[cfg(feature = "mem")]
    fn responses(answers: &std::sync::Mutex<Vec<Answer>>) -> Vec<Option<Result<Bytes, ProposeError>>> {
        answers.lock().unwrap().iter_mut().map(answer).collect()
    }

    /// The apply task applies a whole batch before it answers any of its proposers, and publishes
    /// the applied index once, after the batch and before the answers: no proposer hears of its
    /// entry while the rest of the batch is still being applied, and none hears before the index
    /// covering its entry is out (a read after a write must see the write applied).
    #[cfg(feature = "mem")]
    #[tokio::test]
    async fn a_batch_is_applied_whole_before_its_proposers_are_answered() {
        let applied_index = Arc::new(AppliedIndex::new(0));
        let machine = Recording::new(None, &applied_index);
        let (answers, seen) = (machine.answers.clone(), machine.seen.clone());
        apply_one_batch_of_four(machine).await;
        assert_eq!(
            *seen.lock().unwrap(),
            vec![(1, 0, 0), (2, 0, 0), (3, 0, 0), (4, 0, 0)],
            "(entry, proposers answered, applied index) at each apply"
        );
        assert_eq!(applied_index.get(), 4);
        let expected: Vec<_> = (1..=4u64)
            .map(|index| Some(Ok(Bytes::from(index.to_string()))))
            .collect();
        assert_eq!(
            responses(&answers),
            expected,
            "every proposer answered after the batch"
        );
    }

    /// The apply task answers a batch's proposers after applying it. When the state machine fails
    /// in the middle, the entries applied before the failure are still answered, the applied index
    /// stops at the last of them, the failure is reported, and the rest are never answered (their
    /// proposers see the node stop).
    #[cfg(feature = "mem")]
    #[tokio::test]
    async fn a_failure_in_the_middle_of_a_batch_answers_the_entries_applied_before_it() {
        let applied_index = Arc::new(AppliedIndex::new(0));
        let machine = Recording::new(Some(3), &applied_index);
        let answers = machine.answers.clone();
        let mut reported = apply_one_batch_of_four(machine).await;
        let failure = reported.recv().await.unwrap().err().unwrap();
        assert_eq!(failure.index, 3);
        assert_eq!(applied_index.get(), 2);
        let expected = vec![Some(Ok(Bytes::from("1"))), Some(Ok(Bytes::from("2"))), None, None];
        assert_eq!(responses(&answers), expected, "3 and 4 are never answered");
    }
}
