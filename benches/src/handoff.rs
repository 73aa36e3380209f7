//! The host's hand-off time: how long one cache line takes to travel from one thread to another
//! and back.
//!
//! Every write in the closed-loop benchmark crosses between threads several times (the queue
//! in, the oneshot out, the task wake-ups each way, the hand-offs among the nodes' tasks), and
//! each crossing moves cache lines between CPUs. On a virtual machine the cost of that move is
//! not a property of the build: it depends on where the host placed the virtual CPUs, and that
//! changes from one minute to the next. On the 2-vCPU EPYC hosts of `docs/benchmarks.md` the
//! round trip measured here switches between about 100 ns and about 450 ns, and the benchmark's
//! writes/s switch with it. [`handoff_round_trip`] measures it, so that every run can say which
//! mode it ran in.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long the whole measurement may take before it gives up (a host with one CPU, or one so
/// loaded that the other thread rarely runs).
const LIMIT: Duration = Duration::from_secs(2);

/// Spins between clock reads while waiting for the other thread.
const SPINS_PER_CLOCK_READ: u32 = 1 << 12;

/// The mean time of `round_trips` hand-offs of one cache line between two threads and back:
/// the calling thread writes an odd count, a second thread answers with the next even one.
/// `None` when the measurement ran out of its time bound (2 s) or could not start its thread.
///
/// With two spinning threads on a host of two CPUs the scheduler puts them on different CPUs,
/// so this is the cross-CPU time. Leave the host otherwise idle while it runs.
///
/// ```
/// let round_trip = raft_benches::handoff_round_trip(10_000);
/// if let Some(round_trip) = round_trip {
///     println!("a cache line there and back: {} ns", round_trip.as_nanos());
/// }
/// ```
pub fn handoff_round_trip(round_trips: u32) -> Option<Duration> {
    let round_trips = u64::from(round_trips.max(1));
    let line = AtomicU64::new(0);
    let deadline = Instant::now() + LIMIT;
    std::thread::scope(|scope| {
        let answerer = std::thread::Builder::new()
            .name("handoff-probe".into())
            .spawn_scoped(scope, || {
                for turn in 0..round_trips {
                    if !wait_for(&line, 2 * turn + 1, deadline) {
                        return;
                    }
                    line.store(2 * turn + 2, Ordering::Release);
                }
            })
            .ok()?;
        let started = Instant::now();
        let mut completed = true;
        for turn in 0..round_trips {
            line.store(2 * turn + 1, Ordering::Release);
            if !wait_for(&line, 2 * turn + 2, deadline) {
                completed = false;
                break;
            }
        }
        let elapsed = started.elapsed();
        if !completed {
            // Let the answerer see that it is over (it waits for a count that never comes).
            line.store(u64::MAX, Ordering::Release);
        }
        answerer.join().ok()?;
        completed.then(|| elapsed / u32::try_from(round_trips).unwrap_or(u32::MAX))
    })
}

/// Spins until `line` holds `value` (true) or `deadline` passes or the measurement was given up
/// (false).
fn wait_for(line: &AtomicU64, value: u64, deadline: Instant) -> bool {
    let mut spins = 0u32;
    loop {
        let seen = line.load(Ordering::Acquire);
        if seen == value {
            return true;
        }
        if seen == u64::MAX {
            return false;
        }
        std::hint::spin_loop();
        spins += 1;
        if spins == SPINS_PER_CLOCK_READ {
            spins = 0;
            if Instant::now() >= deadline {
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handoff_round_trip_is_measured_where_two_cpus_run_at_once() {
        // Few round trips, so that even a host busy with other tests (each round trip then waits
        // for a scheduler slice, a few ms) finishes well within the 2 s bound.
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let measured = handoff_round_trip(200);
        // Zero round trips are taken as one, so the mean is always of something.
        let single = handoff_round_trip(0);
        if cpus >= 2 {
            let round_trip = measured.expect("two CPUs finish 200 round trips within 2 s");
            assert!(round_trip > Duration::ZERO);
            assert!(single.is_some_and(|one| one > Duration::ZERO));
        } else if let Some(round_trip) = measured {
            // One CPU: the threads take turns by preemption, if at all within the bound.
            assert!(round_trip > Duration::ZERO);
        }
    }
}
