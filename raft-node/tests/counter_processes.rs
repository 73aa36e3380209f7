//! The tutorial's second half, as a reader would run it: the `counter_node` example as three
//! processes on loopback QUIC with mutual TLS. One leads; `add` on it counts, `add` on a follower
//! names the leader, and `get` on every node reads the count.
//!
//! The example is built by `cargo test` (which builds every example); this test runs that binary.

use std::io::{BufRead, BufReader, Write};
use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

/// The example's binary, beside this test's in the target directory.
fn example_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let binary = profile_dir.join("examples").join("counter_node");
    assert!(
        binary.exists(),
        "{} is missing: `cargo test -p raft-node --features quic` builds it (running a single \
         test target does not build the examples)",
        binary.display()
    );
    binary
}

/// One node's process: its standard input, and its output lines as they come.
struct NodeProcess {
    id: u64,
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

impl NodeProcess {
    fn send(&mut self, command: &str) {
        writeln!(self.stdin, "{command}").expect("the node reads its input");
        self.stdin.flush().expect("flushed");
    }

    /// The next line that satisfies `wanted`, within `timeout`; the lines skipped are returned
    /// in the failure message.
    fn expect_line(&self, wanted: impl Fn(&str) -> bool, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if wanted(&line) => return line,
                Ok(line) => seen.push(line),
                Err(_) => break,
            }
        }
        panic!(
            "node {} never printed the line wanted; it printed {seen:?}",
            self.id
        );
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(binary: &PathBuf, id: u64, dir: &std::path::Path, peers: &str) -> NodeProcess {
    let mut child = Command::new(binary)
        .args(["run", &id.to_string()])
        .arg(dir)
        .args(["--peers", peers])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the example starts");
    let stdin = child.stdin.take().expect("piped");
    let stdout = child.stdout.take().expect("piped");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    NodeProcess {
        id,
        child,
        stdin,
        lines,
    }
}

/// Three loopback UDP ports that were free a moment ago.
fn free_ports() -> Vec<u16> {
    let sockets: Vec<UdpSocket> = (0..3)
        .map(|_| UdpSocket::bind("127.0.0.1:0").expect("a loopback port"))
        .collect();
    sockets
        .iter()
        .map(|s| s.local_addr().expect("bound").port())
        .collect()
}

#[test]
fn three_counter_processes_elect_a_leader_count_and_read() {
    let binary = example_binary();
    let dir = std::env::temp_dir().join(format!("raft-counter-processes-{}", std::process::id()));
    let made = Command::new(&binary)
        .arg("certs")
        .arg(&dir)
        .output()
        .expect("certs runs");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    for file in ["ca.pem", "node-1.pem", "node-1.key", "node-3.key"] {
        assert!(dir.join(file).exists(), "{file} written");
    }

    let peers = free_ports()
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let started = Instant::now();
    let mut nodes: Vec<NodeProcess> = (1..=3).map(|id| spawn(&binary, id, &dir, &peers)).collect();
    for node in &nodes {
        node.expect_line(|l| l.contains("listens on"), Duration::from_secs(20));
    }

    // Every node announces the leader it learns of; they agree.
    let announced: Vec<String> = nodes
        .iter()
        .map(|n| n.expect_line(|l| l.contains(" leads term "), Duration::from_secs(20)))
        .collect();
    let leader: u64 = announced[0]
        .split_whitespace()
        .nth(1)
        .and_then(|id| id.parse().ok())
        .expect("node N leads term T");
    assert!(
        announced.iter().all(|l| l == &announced[0]),
        "the nodes name one leader: {announced:?}"
    );

    eprintln!("node {leader} leads, {:?} after the start", started.elapsed());
    let at = |id: u64| (id - 1) as usize;
    for count in 1..=3 {
        nodes[at(leader)].send("add");
        nodes[at(leader)].expect_line(|l| l == format!("count is now {count}"), Duration::from_secs(10));
    }
    let follower = (1..=3).find(|&id| id != leader).expect("a follower");
    nodes[at(follower)].send("add");
    nodes[at(follower)].expect_line(
        |l| l == format!("not the leader: node {leader} leads"),
        Duration::from_secs(10),
    );
    for node in &mut nodes {
        node.send("get");
        node.expect_line(|l| l == "count is 3", Duration::from_secs(10));
    }

    // One follower stops; the other two are a majority and still count.
    nodes[at(follower)].send("quit");
    wait_for_exit(&mut nodes[at(follower)]);
    nodes[at(leader)].send("add");
    nodes[at(leader)].expect_line(|l| l == "count is now 4", Duration::from_secs(10));

    for node in nodes.iter_mut().filter(|n| n.id != follower) {
        node.send("quit");
        wait_for_exit(node);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Waits (10 s at most) for the node's process to exit after `quit`, and checks it exited 0.
fn wait_for_exit(node: &mut NodeProcess) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = node.child.try_wait().expect("waits") {
            assert!(status.success(), "node {} exited with {status}", node.id);
            return;
        }
        assert!(Instant::now() < deadline, "node {} did not exit on quit", node.id);
        std::thread::sleep(Duration::from_millis(20));
    }
}
