//! Interaction scripts: multi-step stories of a cluster of cores, each a text file in
//! `tests/testdata/`, in the manner of etcd-io/raft's `testdata/*.txt`.
//!
//! A file is a list of commands; after each comes `----` and what the command printed. The test
//! runs every command against the synchronous test network of `tests/support` and compares what
//! it prints with the file, so a story fails as soon as the behaviour it shows changes.
//! `REWRITE=1 cargo test -p raft-core --test interaction` rewrites the expected output (read the
//! diff before committing it); `RUN=<file>` runs one file.
//!
//! Commands (node ids are numbers; lists are written `(1,2,3)`):
//!
//! | command | does |
//! |---|---|
//! | `cluster voters=(1,2,3) [learners=(4)] [pre-vote=false] [check-quorum=false] [max-entries=N] [hold-partial-appends=true] [snapshot-after=N keep=N chunk=N]` | a new cluster |
//! | `campaign N` | ticks node N alone until it campaigns (in a new term, if it was campaigning) |
//! | `tick N [count=K]` | ticks node N (once, or K times) |
//! | `propose N text` | proposes a command on node N |
//! | `stabilize` | handles every node's ready and delivers every message, until nothing is left |
//! | `process-ready N...` | handles the ready of the listed nodes |
//! | `deliver [from=N] [to=N] [count=K] [drop]` | delivers (or drops) the queued messages that match (the first K) |
//! | `partition a=(1,2) b=(3,4,5)` | cuts every link between the named groups |
//! | `isolate N` / `heal` | cuts every link of node N / restores every link |
//! | `crash N` / `restart N` | stops node N, losing nothing (its writes were durable) / starts it from its storage |
//! | `change-membership N voters=(..) [learners=(..)]` | a membership change on node N |
//! | `transfer N to=M` | a leadership transfer from node N to node M |
//! | `read-index N id=K` | a linearizable read on node N |
//! | `compact N` | node N takes a snapshot of what it applied now |
//! | `status` / `membership` / `log [N]` / `applied N` | every node's status / configuration / stored log / what a node applied |
//!
//! With `RAFT_TIMELINE_DIR=<dir>`, each story also writes its timeline there as `<file>.jsonl`
//! (the `raft-timeline` format: roles, terms, commits, faults; one time unit per ready handled
//! or batch delivered), for `raft-timeline draw` to turn into a picture.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use datadriven::TestCase;
use raft_core::{Config, EntryPayload, Membership, Message, NodeId, Role};
use support::{config, Net};

/// One script's world: the test network, who may talk to whom, and how nodes are configured.
struct Script {
    net: Net,
    membership: Membership,
    settings: Settings,
    /// Links that drop every message, both ways.
    cut: BTreeSet<(NodeId, NodeId)>,
    /// Crashed nodes (their storage stays in `net.stored`).
    down: BTreeSet<NodeId>,
    /// The story's timeline, as JSON lines.
    timeline: TimelineLog,
}

/// Records a story as `raft-timeline` JSON lines: each node's role, term and commit index when
/// they change, and the faults the script injects. (raft-core depends on no sibling crate, so the
/// lines are written here by hand; `raft-timeline` reads them.)
#[derive(Default)]
struct TimelineLog {
    clock: u64,
    seen: BTreeMap<NodeId, (Role, u64, u64, bool)>,
    lines: Vec<String>,
}

impl TimelineLog {
    /// Advances the clock and records what changed on `net`'s nodes.
    fn sample(&mut self, net: &Net, down: &BTreeSet<NodeId>) {
        self.clock += 1;
        for (id, node) in &net.nodes {
            let status = node.status();
            let now = (status.role, status.term, status.commit_index, down.contains(id));
            let before = self.seen.insert(*id, now);
            if now.3 {
                continue;
            }
            if before.is_none_or(|b| (b.0, b.1, b.3) != (now.0, now.1, now.3)) {
                let role = match now.0 {
                    Role::Follower => "follower",
                    Role::PreCandidate => "pre_candidate",
                    Role::Candidate => "candidate",
                    Role::Leader => "leader",
                };
                self.push(
                    Some(*id),
                    &format!(r#""event":"role","role":"{role}","term":{}"#, now.1),
                );
            }
            if before.is_none_or(|b| b.2 != now.2) {
                self.push(Some(*id), &format!(r#""event":"commit","index":{}"#, now.2));
            }
        }
    }

    /// Records a fault on `node` (or on the cluster).
    fn fault(&mut self, node: Option<NodeId>, fault: &str, detail: &str) {
        let detail = detail.replace('"', "'");
        self.push(
            node,
            &format!(r#""event":"fault","fault":"{fault}","detail":"{detail}""#),
        );
    }

    fn push(&mut self, node: Option<NodeId>, event: &str) {
        let node = node.map(|n| format!(r#","node":{n}"#)).unwrap_or_default();
        self.lines
            .push(format!(r#"{{"time":{}{node},{event}}}"#, self.clock));
    }

    /// Writes the story's timeline into `$RAFT_TIMELINE_DIR/<name>.jsonl`, if that is set.
    fn write(&self, name: &str, voters: &[NodeId]) {
        let Some(dir) = std::env::var_os("RAFT_TIMELINE_DIR") else {
            return;
        };
        let dir = std::path::PathBuf::from(dir);
        std::fs::create_dir_all(&dir).unwrap();
        let voters: Vec<String> = voters.iter().map(ToString::to_string).collect();
        let mut text = format!(
            "{{\"time\":0,\"event\":\"meta\",\"title\":\"{name}\",\"unit\":\"step\"}}\n\
             {{\"time\":0,\"event\":\"membership\",\"voters\":[{}]}}\n",
            voters.join(",")
        );
        for line in &self.lines {
            text.push_str(line);
            text.push('\n');
        }
        std::fs::write(dir.join(format!("{name}.jsonl")), text).unwrap();
    }
}

#[derive(Clone, Copy)]
struct Settings {
    pre_vote: bool,
    check_quorum: bool,
    snapshot_after: u64,
    keep: u64,
    chunk: usize,
    max_entries: usize,
    hold_partial_appends: bool,
}

impl Settings {
    fn config(&self, id: NodeId) -> Config {
        let mut config = config(id)
            .with_pre_vote(self.pre_vote)
            .with_check_quorum(self.check_quorum)
            .with_snapshot_policy(self.snapshot_after, 0, self.keep);
        config.snapshot_chunk_bytes = self.chunk;
        config.max_entries_per_message = self.max_entries;
        config.hold_partial_appends = self.hold_partial_appends;
        config
    }
}

fn ids(case: &mut TestCase, name: &str) -> Vec<NodeId> {
    case.try_take_args(name).unwrap().unwrap_or_default()
}

/// The node ids a command names in its positional arguments (`campaign 1`, `process-ready 1 2`).
fn positional(case: &TestCase) -> Vec<NodeId> {
    let mut found: Vec<NodeId> = case
        .args
        .iter()
        .filter(|(_, values)| values.is_empty())
        .filter_map(|(key, _)| key.parse().ok())
        .collect();
    found.sort_unstable();
    found
}

fn one(case: &TestCase) -> NodeId {
    match positional(case).as_slice() {
        [id] => *id,
        other => panic!("{}: expected one node id, got {other:?}", case.directive),
    }
}

impl Script {
    fn new(case: &mut TestCase) -> Self {
        let voters = ids(case, "voters");
        let learners = ids(case, "learners");
        let settings = Settings {
            pre_vote: case.try_take_arg("pre-vote").unwrap().unwrap_or(true),
            check_quorum: case.try_take_arg("check-quorum").unwrap().unwrap_or(true),
            snapshot_after: case.try_take_arg("snapshot-after").unwrap().unwrap_or(0),
            keep: case.try_take_arg("keep").unwrap().unwrap_or(0),
            chunk: case.try_take_arg("chunk").unwrap().unwrap_or(64),
            max_entries: case.try_take_arg("max-entries").unwrap().unwrap_or(256),
            hold_partial_appends: case
                .try_take_arg("hold-partial-appends")
                .unwrap()
                .unwrap_or(false),
        };
        let mut membership = Membership::voters(voters.clone()).unwrap();
        membership.learners = learners.iter().copied().collect();
        let net = Net::with_membership(membership.clone(), |id| settings.config(id));
        Script {
            net,
            membership,
            settings,
            cut: BTreeSet::new(),
            down: BTreeSet::new(),
            timeline: TimelineLog::default(),
        }
    }

    fn blocked(&self, message: &Message) -> Option<&'static str> {
        if self.down.contains(&message.to) {
            Some("recipient down")
        } else if self.cut.contains(&(message.from, message.to)) {
            Some("partition")
        } else {
            None
        }
    }

    /// Handles `id`'s ready (persisting at once) and prints it.
    fn process(&mut self, id: NodeId, out: &mut String) -> bool {
        if self.down.contains(&id) {
            return false;
        }
        let ready = self.net.process(id);
        let text = ready.describe();
        if text.is_empty() {
            return false;
        }
        self.timeline.sample(&self.net, &self.down);
        let _ = writeln!(out, "> {id} handles its ready");
        for line in text.lines() {
            let _ = writeln!(out, "  {line}");
        }
        true
    }

    /// Delivers (or drops) the queued messages that `keep` selects; prints each.
    fn deliver(
        &mut self,
        out: &mut String,
        keep: impl Fn(&Message) -> bool,
        drop_them: bool,
        count: usize,
    ) -> bool {
        let queued: Vec<Message> = self.net.queue.drain(..).collect();
        let mut chosen = Vec::new();
        for message in queued {
            if chosen.len() < count && keep(&message) {
                chosen.push(message);
            } else {
                self.net.queue.push_back(message);
            }
        }
        if chosen.is_empty() {
            return false;
        }
        let _ = writeln!(out, "> deliver");
        for message in chosen {
            if drop_them {
                let _ = writeln!(out, "  {message} dropped");
                continue;
            }
            if let Some(why) = self.blocked(&message) {
                let _ = writeln!(out, "  {message} lost ({why})");
                continue;
            }
            let _ = writeln!(out, "  {message}");
            let to = message.to;
            if let Some(node) = self.net.nodes.get_mut(&to) {
                node.step(message).unwrap();
            }
        }
        self.timeline.sample(&self.net, &self.down);
        true
    }

    fn stabilize(&mut self, out: &mut String) {
        for _ in 0..1000 {
            let mut busy = false;
            let ids: Vec<NodeId> = self.net.nodes.keys().copied().collect();
            for id in ids {
                busy |= self.process(id, out);
            }
            busy |= self.deliver(out, |_| true, false, usize::MAX);
            if !busy {
                return;
            }
        }
        panic!("the cluster did not stabilize");
    }

    fn status(&self, out: &mut String) {
        for (id, node) in &self.net.nodes {
            if self.down.contains(id) {
                let _ = writeln!(out, "{id}: down");
            } else {
                let _ = writeln!(out, "{}", node.status());
            }
        }
    }

    fn log(&self, id: NodeId, out: &mut String) {
        let (hard_state, entries) = &self.net.stored[&id];
        let vote = hard_state.voted_for.map_or("none".into(), |v| v.to_string());
        let _ = write!(out, "{id}: term={} vote={vote} log:", hard_state.term);
        if let Some(snapshot) = self.net.stored_snapshot.get(&id) {
            let _ = write!(out, " [snapshot {}/t{}]", snapshot.index, snapshot.term);
        }
        if entries.is_empty() {
            let _ = write!(out, " (empty)");
        }
        for entry in entries {
            let what = match &entry.payload {
                EntryPayload::Blank => String::new(),
                EntryPayload::Command(data) => format!(":{}", String::from_utf8_lossy(data)),
                EntryPayload::Membership(_) => ":config".into(),
            };
            let _ = write!(out, " {}/t{}{what}", entry.index, entry.term);
        }
        let _ = writeln!(out);
    }

    fn run(&mut self, case: &mut TestCase) -> String {
        let mut out = String::new();
        match case.directive.as_str() {
            "campaign" => {
                let id = one(case);
                let before = (self.net.node(id).role(), self.net.node(id).term());
                for _ in 0..1000 {
                    self.net.node(id).tick();
                    let now = (self.net.node(id).role(), self.net.node(id).term());
                    if now.0 != Role::Follower && now != before {
                        break;
                    }
                }
                let _ = writeln!(out, "{}", self.net.node(id).status());
            }
            "tick" => {
                let id = one(case);
                let count: u32 = case.try_take_arg("count").unwrap().unwrap_or(1);
                for _ in 0..count {
                    self.net.node(id).tick();
                }
                let _ = writeln!(out, "{}", self.net.node(id).status());
            }
            "propose" => {
                let id = one(case);
                let text = case.input.trim().to_string();
                out.push_str(&answer(self.net.node(id).propose(text.into()), |index| {
                    format!("index {index}")
                }));
            }
            "stabilize" => self.stabilize(&mut out),
            "process-ready" => {
                for id in positional(case) {
                    self.process(id, &mut out);
                }
            }
            "deliver" => {
                let from: Option<NodeId> = case.try_take_arg("from").unwrap();
                let to: Option<NodeId> = case.try_take_arg("to").unwrap();
                let count: usize = case.try_take_arg("count").unwrap().unwrap_or(usize::MAX);
                let drop_them = case.take_flag("drop").unwrap();
                let keep = |m: &Message| from.is_none_or(|f| m.from == f) && to.is_none_or(|t| m.to == t);
                if !self.deliver(&mut out, keep, drop_them, count) {
                    let _ = writeln!(out, "nothing to deliver");
                }
            }
            "partition" => {
                let groups: Vec<Vec<NodeId>> = case
                    .args
                    .values()
                    .filter(|values| !values.is_empty())
                    .map(|values| values.iter().map(|id| id.parse().unwrap()).collect())
                    .collect();
                self.cut.clear();
                for (i, a) in groups.iter().enumerate() {
                    for (j, b) in groups.iter().enumerate() {
                        if i != j {
                            for x in a {
                                for y in b {
                                    self.cut.insert((*x, *y));
                                }
                            }
                        }
                    }
                }
                let sides: Vec<String> = groups.iter().map(|g| format!("{g:?}")).collect();
                self.timeline.fault(None, "partition", &sides.join(" | "));
                let _ = writeln!(out, "cut {} links", self.cut.len() / 2);
            }
            "isolate" => {
                let id = one(case);
                for other in self.net.nodes.keys().copied().filter(|o| *o != id) {
                    self.cut.insert((id, other));
                    self.cut.insert((other, id));
                }
                self.timeline.fault(Some(id), "isolate", "");
                let _ = writeln!(out, "node {id} isolated");
            }
            "heal" => {
                self.cut.clear();
                self.timeline.fault(None, "heal", "");
                let _ = writeln!(out, "every link restored");
            }
            "crash" => {
                let id = one(case);
                self.down.insert(id);
                self.timeline.fault(Some(id), "kill", "");
                let _ = writeln!(out, "node {id} down");
            }
            "restart" => {
                let id = one(case);
                self.down.remove(&id);
                self.timeline.fault(Some(id), "restart", "");
                let settings = self.settings;
                self.net
                    .restart(id, |n| settings.config(n), self.membership.clone());
                let _ = writeln!(out, "{}", self.net.node(id).status());
            }
            "change-membership" => {
                let id = one(case);
                let voters: BTreeSet<NodeId> = ids(case, "voters").into_iter().collect();
                let learners: BTreeSet<NodeId> = ids(case, "learners").into_iter().collect();
                out.push_str(&answer(
                    self.net.node(id).change_membership(voters, learners),
                    |index| format!("configuration entry at index {index}"),
                ));
            }
            "transfer" => {
                let id = one(case);
                let to: NodeId = case.take_arg("to").unwrap();
                self.timeline.fault(Some(id), "transfer", &format!("to {to}"));
                let started = self.net.node(id).transfer_leadership(to);
                out.push_str(&answer(started, |()| format!("transfer to {to} started")));
            }
            "read-index" => {
                let id = one(case);
                let read: u64 = case.take_arg("id").unwrap();
                let asked = self.net.node(id).read_index(read);
                out.push_str(&answer(asked, |()| format!("read {read} asked")));
            }
            "compact" => {
                let id = one(case);
                match self.net.snapshot_now(id) {
                    Some(meta) => {
                        let _ = writeln!(
                            out,
                            "snapshot {}/t{} of {} bytes",
                            meta.index, meta.term, meta.size
                        );
                    }
                    None => {
                        let _ = writeln!(out, "no snapshot taken");
                    }
                }
            }
            "status" => self.status(&mut out),
            "membership" => {
                for (id, node) in &self.net.nodes {
                    let m = node.membership();
                    let _ = write!(out, "{id}: voters={:?}", m.voters.iter().collect::<Vec<_>>());
                    if let Some(outgoing) = &m.outgoing {
                        let _ = write!(out, " outgoing={:?}", outgoing.iter().collect::<Vec<_>>());
                    }
                    let _ = writeln!(out, " learners={:?}", m.learners.iter().collect::<Vec<_>>());
                }
            }
            "log" => {
                let chosen = positional(case);
                let ids: Vec<NodeId> = if chosen.is_empty() {
                    self.net.stored.keys().copied().collect()
                } else {
                    chosen
                };
                for id in ids {
                    self.log(id, &mut out);
                }
            }
            "applied" => {
                let id = one(case);
                let applied: BTreeMap<u64, String> = self.net.applied[&id]
                    .iter()
                    .filter_map(|e| match &e.payload {
                        EntryPayload::Command(data) => {
                            Some((e.index, String::from_utf8_lossy(data).into_owned()))
                        }
                        _ => None,
                    })
                    .collect();
                let _ = writeln!(out, "{id} applied commands: {applied:?}");
            }
            other => panic!("unknown command {other:?}"),
        }
        if out.is_empty() {
            out.push_str("ok\n");
        }
        out
    }
}

/// What a command that the core may refuse printed: `done`'s text, or why it was refused.
fn answer<T, E: std::fmt::Display>(result: Result<T, E>, done: impl FnOnce(T) -> String) -> String {
    match result {
        Ok(value) => done(value) + "\n",
        Err(error) => format!("refused: {error}\n"),
    }
}

#[test]
fn interaction_scripts() {
    let mut files = 0;
    datadriven::walk("tests/testdata", |file| {
        files += 1;
        let mut script: Option<Script> = None;
        file.run(|case| -> String {
            if case.directive == "cluster" {
                let new = Script::new(case);
                let mut out = String::new();
                new.status(&mut out);
                script = Some(new);
                return out;
            }
            let script = script.as_mut().expect("a script starts with `cluster`");
            let out = script.run(case);
            script.timeline.sample(&script.net, &script.down);
            out
        });
        if let Some(script) = &script {
            let name = std::path::Path::new(&file.filename)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let voters: Vec<NodeId> = script.membership.voters.iter().copied().collect();
            script.timeline.write(&name, &voters);
        }
    });
    assert!(files >= 12, "expected at least 12 stories, found {files}");
}
