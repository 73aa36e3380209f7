//! The exhaustive checker on the real core: within CI's bounds the correct core holds in every
//! interleaving, and each planted bug within reach is found, on a shortest trace that replays to
//! the same violation; the correct core passes the very bounds that found it.

use raft_sim::checker::{
    check, decode_actions, encode_actions, opening, replay, CheckFailure, CheckOptions, CheckReport, Goal,
    ReplayEnd,
};
use raft_sim::PlantedBug;

/// Timers fire by action and writes are durable at once: the shallow mode for bugs of votes,
/// commits and configurations, which need no crash between a write and its fsync.
fn shallow() -> CheckOptions {
    CheckOptions {
        tick_to_timeout: true,
        instant_disk: true,
        max_drops: 0,
        max_crashes: 0,
        max_proposals: 0,
        ..CheckOptions::default()
    }
}

fn print_report(what: &str, report: &CheckReport) {
    println!(
        "{what}: {} states, {} transitions, {:.1?} ({:.0} states/s), depth {}{}",
        report.states,
        report.transitions,
        report.elapsed,
        report.states_per_second(),
        report.levels.last().map_or(0, |l| l.depth),
        if report.exhausted() { ", exhausted" } else { "" }
    );
}

/// Checks `bug` under `options`: it must be found, its trace must replay to the same violation,
/// and the correct core must pass the same bounds to the same depth.
fn finds(bug: PlantedBug, options: CheckOptions) -> CheckFailure {
    let planted = CheckOptions {
        planted_bug: Some(bug),
        ..options.clone()
    };
    let failure = match check(&planted) {
        Err(failure) => *failure,
        Ok(report) => panic!("the checker missed {bug:?}: {report:?}"),
    };
    println!("{bug:?}: {failure}");
    let (_, end) = replay(&planted, &failure.actions);
    assert_eq!(
        end,
        ReplayEnd::Violated(failure.violation.clone()),
        "{bug:?} replays"
    );
    let correct = CheckOptions {
        max_depth: failure.depth,
        ..options
    };
    let report = check(&correct)
        .unwrap_or_else(|f| panic!("the correct core failed the bounds that found {bug:?}: {f}"));
    assert!(
        report.complete,
        "the correct core's search stopped at the state budget"
    );
    print_report("  the correct core, same bounds", &report);
    failure
}

#[test]
fn correct_core_holds_in_every_interleaving_of_three_nodes_within_ci_bounds() {
    // Three voters, two terms, one proposal, one crash, one lost message, single ticks, writes
    // that wait for their fsync: every state within 13 actions.
    let options = CheckOptions {
        max_depth: 13,
        ..CheckOptions::default()
    };
    let report = check(&options).unwrap_or_else(|f| panic!("{f}"));
    print_report("three nodes", &report);
    assert!(report.complete);
    assert!(report.states > 1_000_000, "{report:?}");
    let grew = report
        .levels
        .windows(2)
        .all(|w| w[1].total_states > w[0].total_states);
    assert!(grew, "every depth adds states: {report:?}");
}

#[test]
fn correct_core_holds_in_every_interleaving_of_three_nodes_over_three_terms() {
    // Timers fire by action and writes are durable at once, so ten actions reach three terms.
    let options = CheckOptions {
        max_depth: 10,
        max_term: 3,
        max_proposals: 1,
        max_crashes: 1,
        ..shallow()
    };
    let report = check(&options).unwrap_or_else(|f| panic!("{f}"));
    print_report("three nodes, three terms, shallow", &report);
    assert!(report.complete);
    assert!(report.states > 1_000_000, "{report:?}");
}

#[test]
fn correct_core_holds_with_pre_vote_check_quorum_reads_and_a_transfer() {
    let options = CheckOptions {
        max_depth: 9,
        pre_vote: true,
        check_quorum: true,
        max_reads: 1,
        max_transfers: 1,
        max_drops: 1,
        max_crashes: 1,
        max_proposals: 1,
        ..shallow()
    };
    let report = check(&options).unwrap_or_else(|f| panic!("{f}"));
    print_report("pre-vote, check-quorum, a read, a transfer", &report);
    assert!(report.complete);
    assert!(report.states > 500_000, "{report:?}");
}

#[test]
fn correct_core_holds_in_every_reachable_state_of_one_node_with_a_crash() {
    // Twelve ticks close the space: past them nothing new can happen.
    let options = CheckOptions {
        nodes: 1,
        max_depth: 60,
        max_term: 3,
        max_ticks: 12,
        max_proposals: 2,
        max_crashes: 2,
        max_reads: 1,
        ..CheckOptions::default()
    };
    let report = check(&options).unwrap_or_else(|f| panic!("{f}"));
    print_report("one node", &report);
    assert!(
        report.exhausted(),
        "the bounds close the space of one node: {report:?}"
    );
}

#[test]
fn checker_finds_a_second_vote_in_one_term() {
    let failure = finds(PlantedBug::GrantSecondVoteInTerm, shallow());
    assert!(failure.depth <= 4, "{failure}");
}

#[test]
fn checker_finds_a_vote_for_a_candidate_with_a_stale_log() {
    let failure = finds(PlantedBug::SkipUpToDateLogCheck, shallow());
    assert!(
        failure.violation.to_string().contains("leader completeness"),
        "{failure}"
    );
}

#[test]
fn checker_finds_a_membership_change_without_the_joint_configuration() {
    let options = CheckOptions {
        max_membership_changes: 1,
        ..shallow()
    };
    finds(PlantedBug::SkipJointConsensus, options);
}

#[test]
fn checker_finds_a_single_voter_leading_before_its_vote_is_durable() {
    // One voter, single ticks and real fsyncs: it leads, crashes before the write, and leads the
    // same term again.
    let options = CheckOptions {
        nodes: 1,
        max_depth: 12,
        ..CheckOptions::default()
    };
    let failure = finds(PlantedBug::LeadBeforeVoteIsDurable, options);
    assert!(
        failure.violation.to_string().contains("election safety"),
        "{failure}"
    );
}

#[test]
fn checker_finds_an_acknowledgement_before_the_write_is_durable() {
    // Writes wait for their fsync and a crash loses them; the search starts where node 1 has
    // just been elected (the shortest way there, found by the checker itself).
    let options = CheckOptions {
        tick_to_timeout: true,
        max_drops: 0,
        max_proposals: 0,
        max_ticks: 3,
        max_depth: 20,
        ..CheckOptions::default()
    };
    let prefix = opening(&options, Goal::Leads(1)).unwrap_or_else(|e| panic!("{e}"));
    let failure = finds(
        PlantedBug::AcknowledgeBeforePersist,
        CheckOptions { prefix, ..options },
    );
    assert!(
        failure.violation.to_string().contains("leader completeness"),
        "{failure}"
    );
}

#[test]
fn a_trace_reads_back_as_it_was_written() {
    let text = "t1 T d0 x2 u1 s3 c2 r2 p1 q3 e2 l1:2 m1:5";
    let actions = decode_actions(text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(encode_actions(&actions), text);
    assert!(decode_actions("t1 z9").is_err());
    assert!(decode_actions("m1").is_err());
}

#[test]
fn a_replay_of_a_trace_from_other_options_stops_where_it_stops_making_sense() {
    let options = shallow();
    // Node 1 is elected; then a fourth node ticks, which a three-node cluster does not have.
    let mut actions = opening(&options, Goal::Leads(1)).unwrap_or_else(|e| panic!("{e}"));
    let at = actions.len();
    actions.push(raft_sim::checker::Action::Tick(4));
    let (lines, end) = replay(&options, &actions);
    assert_eq!(end, ReplayEnd::NotPossible(at), "{lines:#?}");
}

#[test]
fn checker_finds_figure_8_counting_replicas_of_an_earlier_term() {
    // Figure 8 needs four elections and nineteen actions: out of reach from the initial state
    // in CI's time (depth 14 alone is 20 million states). The checker finds the shortest way to
    // the figure's opening (a leader whose next entry is of an earlier term, while another node
    // holds a different entry at that index) and explores every continuation from there.
    let options = CheckOptions {
        max_depth: 20,
        max_term: 4,
        max_ticks: 4,
        max_in_flight: 10,
        ..shallow()
    };
    let prefix = opening(&options, Goal::Figure8(1)).unwrap_or_else(|e| panic!("{e}"));
    println!("opening ({} actions): {}", prefix.len(), encode_actions(&prefix));
    let failure = finds(
        PlantedBug::CountPreviousTermTowardCommit,
        CheckOptions { prefix, ..options },
    );
    assert!(
        failure.violation.to_string().contains("leader completeness"),
        "{failure}"
    );
}

#[test]
fn a_search_on_two_threads_sees_the_states_one_thread_sees_and_finds_the_same_depth() {
    let options = CheckOptions {
        max_depth: 11,
        ..CheckOptions::default()
    };
    let one = check(&options).unwrap_or_else(|f| panic!("{f}"));
    let two = check(&CheckOptions {
        threads: 2,
        ..options
    })
    .unwrap_or_else(|f| panic!("{f}"));
    let counts = |r: &CheckReport| r.levels.iter().map(|l| l.total_states).collect::<Vec<_>>();
    assert_eq!(counts(&one), counts(&two));
    let bug = CheckOptions {
        planted_bug: Some(PlantedBug::SkipUpToDateLogCheck),
        ..shallow()
    };
    let alone = check(&bug).map(|_| ()).expect_err("found on one thread");
    let shared = check(&CheckOptions {
        threads: 2,
        ..bug.clone()
    })
    .map(|_| ())
    .expect_err("found on two threads");
    assert_eq!(alone.depth, shared.depth);
    let (_, end) = replay(&bug, &shared.actions);
    assert_eq!(end, ReplayEnd::Violated(shared.violation.clone()));
}

#[test]
fn options_a_cluster_cannot_start_with_are_refused_before_any_search() {
    for options in [
        CheckOptions {
            nodes: 0,
            ..CheckOptions::default()
        },
        CheckOptions {
            heartbeat_ticks: 2,
            election_ticks: 2,
            ..CheckOptions::default()
        },
    ] {
        assert!(options.validate().is_err(), "{options:?}");
        let failure = check(&options).map(|_| ()).expect_err("refused");
        assert_eq!(failure.depth, 0);
        assert!(failure.actions.is_empty());
    }
}

#[test]
fn checker_finds_lease_reads_served_during_a_leadership_transfer() {
    // Leases are safe only with a bound on clock drift: here every node ticks in lockstep. The
    // search starts from a settled cluster (node 2 leads and every node holds its entry).
    let options = CheckOptions {
        lockstep_ticks: true,
        lease_reads: true,
        check_quorum: true,
        max_reads: 1,
        max_transfers: 1,
        max_in_flight: 6,
        max_depth: 16,
        threads: 2,
        ..shallow()
    };
    let prefix = opening(&options, Goal::Replicated(2)).unwrap_or_else(|e| panic!("{e}"));
    let failure = finds(
        PlantedBug::KeepLeaseDuringTransfer,
        CheckOptions { prefix, ..options },
    );
    assert!(
        failure.violation.to_string().contains("linearizable reads"),
        "{failure}"
    );
}
