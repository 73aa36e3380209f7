//! Proof that the simulator catches known protocol bugs: each is switched on in every node, and
//! the simulator must report an invariant violation within a bounded number of seeds.

use raft_sim::{run_seeds, PlantedBug};

/// Runs seeds from 0 until the first failure, at most `limit` seeds; returns the failing seed and
/// what broke.
fn first_failure(bug: PlantedBug, limit: u64) -> (u64, String) {
    let (_, failures) = run_seeds(0..limit, Some(bug), 2, true);
    let first = failures
        .first()
        .unwrap_or_else(|| panic!("the simulator did not catch {bug:?} in {limit} seeds"));
    println!(
        "{bug:?}: caught at seed {} (step {}): {}",
        first.seed, first.step, first.violation
    );
    (first.seed, first.violation.to_string())
}

#[test]
fn simulator_catches_counting_previous_term_entries_toward_commit() {
    first_failure(PlantedBug::CountPreviousTermTowardCommit, 5000);
}

#[test]
fn simulator_catches_a_second_vote_in_one_term() {
    first_failure(PlantedBug::GrantSecondVoteInTerm, 100);
}

#[test]
fn simulator_catches_acknowledging_before_persisting() {
    first_failure(PlantedBug::AcknowledgeBeforePersist, 500);
}

#[test]
fn simulator_catches_skipping_the_up_to_date_log_check() {
    first_failure(PlantedBug::SkipUpToDateLogCheck, 100);
}

#[test]
fn simulator_catches_a_leader_acting_before_its_vote_is_durable() {
    let (_, violation) = first_failure(PlantedBug::LeadBeforeVoteIsDurable, 2000);
    assert!(violation.contains("election safety"), "{violation}");
}

#[test]
fn simulator_catches_a_snapshot_completed_while_another_is_restored() {
    let (_, violation) = first_failure(PlantedBug::CompleteSnapshotWhileRestoring, 5000);
    assert!(violation.contains("still to be restored"), "{violation}");
}
