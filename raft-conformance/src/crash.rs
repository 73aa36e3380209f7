//! The crash test: a child process writes in a loop and reports each acknowledged write; the parent
//! kills it with SIGKILL at random moments, reopens the store and checks that every acknowledged
//! write is there, nothing is half applied, and the log is consistent.
//!
//! The writes are a deterministic function of a counter kept in the hard state (`commit`), so the
//! parent knows exactly what the store must hold after write `n`: a model replays writes `1..=n`.
//! A kill can land after a write is durable but before its acknowledgement is printed, so the
//! store may be one write ahead of the last acknowledgement, never behind it.
//!
//! `RAFT_CRASH_ITERATIONS` (default 25) sets the number of kills; `RAFT_CRASH_SEED` the seed.
//! SIGKILL stops the process, not the machine: this proves the write path acknowledges only what
//! the store has accepted whole; power loss is the store's sync (each backend's own tests).
//!
//! A backend runs it from a test of its own with `harness = false` in its manifest (the test
//! binary is also the child it kills):
//!
//! ```ignore
//! // tests/crash.rs; Cargo.toml: [[test]] name = "crash", harness = false
//! struct Harness;
//! #[async_trait::async_trait]
//! impl raft_conformance::crash::CrashHarness for Harness {
//!     type Storage = my_backend::Store;
//!     async fn open(dir: &std::path::Path) -> my_backend::Store {
//!         my_backend::Store::open(dir).await.unwrap()
//!     }
//! }
//! fn main() {
//!     raft_conformance::crash::main::<Harness>("my backend")
//! }
//! ```

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use raft_core::{Entry, HardState, Index, LogStorage, LogWrite, StoredLog, Term};

/// Opens a backend's store for the crash test.
#[async_trait::async_trait]
pub trait CrashHarness {
    /// The store under test.
    type Storage: LogStorage;

    /// Opens the store in `dir` (empty the first time, then what the killed child left). Panics
    /// if it cannot: a store that does not reopen after a kill fails the test.
    async fn open(dir: &Path) -> Self::Storage;
}

/// What the store must hold after some number of writes.
#[derive(Clone, Debug, Default)]
struct Model {
    purged_to: Index,
    entries: Vec<Entry>,
    term: Term,
    hard_state: HardState,
}

fn payload(index: Index, term: Term, n: u64) -> Vec<u8> {
    let unit = format!("{index}/{term};");
    unit.repeat(1 + (n % 5) as usize * 40).into_bytes()
}

impl Model {
    fn last_index(&self) -> Index {
        self.purged_to + self.entries.len() as Index
    }

    /// Write number `n` (from 1), given the state after write `n - 1`.
    fn write(&self, n: u64) -> LogWrite {
        let last = self.last_index();
        let mut term = self.term.max(1);
        let mut write = LogWrite::default();
        let (first, count) = match n % 13 {
            // A new leader's entries replace a conflicting suffix.
            4 if last >= self.purged_to + 3 => {
                term += 1;
                (last - 2, 1 + n % 3)
            }
            // A snapshot was taken: purge half the log, and append.
            9 if last >= self.purged_to + 10 => {
                write.purge_to = self.purged_to + (last - self.purged_to) / 2;
                (last + 1, 1 + n % 4)
            }
            _ => (last + 1, 1 + n % 16),
        };
        write.entries = (first..first + count)
            .map(|i| Entry::command(term, i, payload(i, term, n)))
            .collect();
        write.hard_state = Some(HardState {
            term,
            voted_for: Some(1 + n % 3),
            commit: n,
        });
        write
    }

    fn apply(&mut self, write: &LogWrite) {
        if write.purge_to > self.purged_to {
            self.entries.drain(..(write.purge_to - self.purged_to) as usize);
            self.purged_to = write.purge_to;
        }
        if let Some(first) = write.entries.first() {
            self.entries.truncate((first.index - self.purged_to - 1) as usize);
            self.entries.extend(write.entries.iter().cloned());
            self.term = first.term;
        }
        if let Some(hard_state) = write.hard_state {
            self.hard_state = hard_state;
        }
    }

    /// The state after writes `1..=n`.
    fn after(n: u64) -> Model {
        let mut model = Model::default();
        for i in 1..=n {
            let write = model.write(i);
            model.apply(&write);
        }
        model
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// The child: resumes after the last durable write and writes until killed.
fn child<H: CrashHarness>(dir: &Path) {
    runtime().block_on(async {
        let mut storage = H::open(dir).await;
        let stored = storage.load().await.expect("child loads the store");
        let mut n = stored.hard_state.commit;
        let mut model = Model::after(n);
        let mut out = std::io::stdout().lock();
        loop {
            n += 1;
            let write = model.write(n);
            model.apply(&write);
            storage.persist(write).await.expect("persist");
            // Acknowledged: durable before this line is printed.
            writeln!(out, "ack {n}").expect("stdout");
            out.flush().expect("stdout");
        }
    });
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn parent<H: CrashHarness>(name: &str) {
    let iterations: u32 = std::env::var("RAFT_CRASH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(25);
    let seed: u64 = std::env::var("RAFT_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5EED_CAFE);
    println!("crash test ({name}): {iterations} kills, RAFT_CRASH_SEED={seed}");
    let mut rng = Rng(seed | 1);
    let dir = TempDir::new();
    let exe = std::env::current_exe().expect("own executable");
    let mut acknowledged: u64 = 0;
    let mut ahead = 0;
    for iteration in 0..iterations {
        let mut child = Command::new(&exe)
            .arg("child")
            .arg(dir.path())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the child");
        let stdout = child.stdout.take().expect("piped stdout");
        let reader = std::thread::spawn(move || {
            let mut last = None;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(n) = line.strip_prefix("ack ").and_then(|n| n.parse::<u64>().ok()) {
                    last = Some(n);
                }
            }
            last
        });
        std::thread::sleep(Duration::from_millis(20 + rng.next() % 200));
        child.kill().expect("SIGKILL the child");
        let status = child.wait().expect("reap the child");
        assert!(
            !status.success(),
            "the child must die by the signal, not exit: {status}"
        );
        if let Some(last) = reader.join().expect("reader thread") {
            assert!(last >= acknowledged, "acknowledgements go forward");
            acknowledged = last;
        }

        let stored = runtime().block_on(async {
            let mut storage = H::open(dir.path()).await;
            let stored = storage.load().await.expect("load after the kill");
            let last_index = storage.last_index().await.expect("last index");
            (stored, last_index)
        });
        let (stored, last_index): (StoredLog, Index) = stored;
        let n = stored.hard_state.commit;
        assert!(
            n == acknowledged || n == acknowledged + 1,
            "iteration {iteration}: store holds write {n}, but write {acknowledged} was acknowledged \
             (seed {seed})"
        );
        if n > acknowledged {
            ahead += 1;
        }
        let model = Model::after(n);
        assert_eq!(
            stored.hard_state, model.hard_state,
            "iteration {iteration}: hard state (seed {seed})"
        );
        assert_eq!(
            last_index,
            model.last_index(),
            "iteration {iteration}: last index (seed {seed})"
        );
        assert!(
            stored.entries == model.entries,
            "iteration {iteration}: the log after write {n} differs from the model (seed {seed})"
        );
        acknowledged = n;
    }
    assert!(
        acknowledged > u64::from(iterations),
        "the child made too little progress to test anything ({acknowledged} writes)"
    );
    println!(
        "crash test ({name}): ok, {acknowledged} writes, {ahead} kills landed between a write and its acknowledgement"
    );
}

/// A directory under the system's temporary directory, removed when dropped.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let dir = std::env::temp_dir().join(format!("raft-crash-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The crash test's `main`: the child when the test binary runs itself as one, otherwise the
/// parent, which kills a child `RAFT_CRASH_ITERATIONS` times (unless `cargo test`'s filters name
/// other tests). `name` names the store in the output.
pub fn main<H: CrashHarness>(name: &str) {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("child") {
        let dir = args.get(2).expect("child needs the store directory");
        child::<H>(Path::new(dir));
        return;
    }
    // `cargo test` passes filters and flags such as `--nocapture`; a filter that names other
    // tests skips this one.
    let filters: Vec<&String> = args[1..].iter().filter(|a| !a.starts_with('-')).collect();
    if !filters.is_empty()
        && !filters
            .iter()
            .any(|f| "crash_test_acknowledged_writes_survive_sigkill".contains(f.as_str()))
    {
        return;
    }
    parent::<H>(name);
}
