#!/usr/bin/env bash
# The key-value service benchmark: three `raft-kv serve` processes on loopback (RocksDB in a
# temporary directory, QUIC with mutual TLS between them, HTTPS with client certificates to
# them), then `raft-kv bench` at each client count. Prints one JSON line per count.
#
#   bash benches/service.sh [CLIENTS...]          # default: 1 16 256
#   RAFT_KV=target/release/raft-kv DURATION=10 VALUE_SIZE=128 bash benches/service.sh 1 16 256
#   CONNECTIONS=4 bash benches/service.sh 256     # the clients share 4 HTTP/2 connections
#   STOP_LEADER_AFTER=3 bash benches/service.sh 16  # SIGTERM the leader 3 s into the run: the
#                                                   # run's max_us is the longest write stall
#   SERVER_WORKERS=1 bash benches/service.sh 1    # each server runs 1 tokio worker thread
#                                                 # (`raft-kv serve --worker-threads`)
#   TUNING='max_inflight_messages = 2' bash benches/service.sh 16  # [tuning] lines for every
#                                                 # server's config file, `;` between settings
#   BENCH_ARGS='--read-percent 100 --consistency serializable' bash benches/service.sh 1
#                                                 # more `raft-kv bench` options
#   STORAGE=journal bash benches/service.sh 1 16  # every server's log in a journal instead of
#                                                 # RocksDB (`storage` in the config file)
#   FLOOR=1 bash benches/service.sh 1 16 256      # one `raft-kv serve-floor` in place of the
#                                                 # three nodes: the same HTTPS and JSON, answered
#                                                 # at once (the client protocol's ceiling)
#   LABEL=after bash benches/service.sh 1 16 256 >> runs.jsonl   # each line names its run
#                                                 # (`raft-bench plot --input runs.jsonl` draws
#                                                 # them beside benches/etcd.sh's lines)
#
# Builds nothing: it runs $RAFT_KV (default: the release binary in $CARGO_TARGET_DIR or target/).
set -euo pipefail
target="${CARGO_TARGET_DIR:-$(dirname "$0")/../target}"
bin="${RAFT_KV:-$target/release/raft-kv}"
duration="${DURATION:-10}"
value_size="${VALUE_SIZE:-128}"
connections=()
[ -n "${CONNECTIONS:-}" ] && connections=(--connections "$CONNECTIONS")
label="${LABEL:-}"
[ -n "${FLOOR:-}" ] && [ -z "$label" ] && label=floor
# More `raft-kv bench` options, split on spaces (reads instead of writes, say).
read -r -a bench_args <<< "${BENCH_ARGS:-}"
workers=()
[ -n "${SERVER_WORKERS:-}" ] && workers=(--worker-threads "$SERVER_WORKERS")
counts=("$@")
[ ${#counts[@]} -eq 0 ] && counts=(1 16 256)
[ -x "$bin" ] || { echo "no raft-kv binary at $bin: cargo build --release -p raft-kv" >&2; exit 2; }

dir="$(mktemp -d "${TMPDIR:-/tmp}/raft-kv-bench.XXXXXX")"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

# Free loopback ports, asked of the kernel (UDP for the peers, TCP for the clients).
ports=($(python3 - <<'PY'
import socket
held = []
for kind in [socket.SOCK_DGRAM] * 3 + [socket.SOCK_STREAM] * 3:
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    held.append(s)
print(" ".join(str(s.getsockname()[1]) for s in held))
PY
))
cd "$dir"
"$bin" certs ca --out certs >/dev/null
for id in 1 2 3; do "$bin" certs node --ca-dir certs --cluster-id 7 --id $id --host 127.0.0.1 --out certs >/dev/null; done
"$bin" certs client --ca-dir certs --name bench --out certs >/dev/null
for id in 1 2 3; do
  {
    echo "node_id = $id"
    echo "cluster_id = 7"
    echo "data_dir = \"data/$id\""
    [ -n "${STORAGE:-}" ] && echo "storage = \"$STORAGE\""
    echo "peer_listen = \"127.0.0.1:${ports[$((id - 1))]}\""
    echo "client_listen = \"127.0.0.1:${ports[$((id + 2))]}\""
    echo "[tls]"
    echo "ca_cert = \"certs/ca.pem\""
    echo "cert = \"certs/node-$id.pem\""
    echo "key = \"certs/node-$id.key\""
    for m in 1 2 3; do
      echo "[[initial_members]]"
      echo "id = $m"
      echo "peer = \"127.0.0.1:${ports[$((m - 1))]}\""
      echo "client = \"127.0.0.1:${ports[$((m + 2))]}\""
    done
    if [ -n "${TUNING:-}" ]; then
      echo "[tuning]"
      echo "${TUNING//;/$'\n'}"
    fi
  } > "node-$id.toml"
  if [ -z "${FLOOR:-}" ]; then
    "$bin" serve --config "node-$id.toml" "${workers[@]}" > "node-$id.log" 2>&1 &
    pids+=($!)
  fi
done
if [ -n "${FLOOR:-}" ]; then
  "$bin" serve-floor --config node-1.toml "${workers[@]}" > node-1.log 2>&1 &
  pids+=($!)
  export RAFT_KV_ENDPOINTS="127.0.0.1:${ports[3]}"
else
  export RAFT_KV_ENDPOINTS="127.0.0.1:${ports[3]},127.0.0.1:${ports[4]},127.0.0.1:${ports[5]}"
fi
export RAFT_KV_CA_CERT=certs/ca.pem RAFT_KV_CERT=certs/client-bench.pem RAFT_KV_KEY=certs/client-bench.key
# Wait (at most 30 s) until a write goes through.
for _ in $(seq 1 60); do
  if "$bin" put bench-ready yes >/dev/null 2>&1; then break; fi
  sleep 0.5
done
"$bin" put bench-ready yes >/dev/null
if [ -n "${STOP_LEADER_AFTER:-}" ]; then
  # One run: stop the leader part-way through it, as a rolling restart does.
  "$bin" bench --clients "${counts[0]}" --duration "$duration" --value-size "$value_size" --keys 10000 --quiet --json "${connections[@]}" "${bench_args[@]}" &
  bench_pid=$!
  sleep "$STOP_LEADER_AFTER"
  leader=$("$bin" cluster status --json | python3 -c '
import json, sys
print(next((n["status"]["id"] for n in json.load(sys.stdin) if (n.get("status") or {}).get("role") == "leader"), ""))')
  [ -n "$leader" ] || { echo "no leader to stop" >&2; exit 1; }
  start=$(date +%s%N)
  kill -TERM "${pids[$((leader - 1))]}"
  wait "${pids[$((leader - 1))]}" || true
  echo "{\"stopped_leader\": $leader, \"exit_ms\": $((($(date +%s%N) - start) / 1000000))}"
  wait "$bench_pid"
  exit 0
fi
for clients in "${counts[@]}"; do
  "$bin" bench --clients "$clients" --duration "$duration" --value-size "$value_size" --keys 10000 --quiet --json --label "$label" "${connections[@]}" "${bench_args[@]}"
done
