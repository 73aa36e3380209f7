#!/usr/bin/env bash
# The etcd anchor of issue 15: three etcd members on loopback (data in a temporary directory on
# the same disk as `benches/service.sh` uses, plain HTTP between them and to the clients), then
# closed-loop put clients over gRPC (`benches/etcd-anchor`) at each client count. Prints one JSON
# line per count, with the fields of `raft-kv bench --json`. Run it in turn with service.sh:
#
#   apt-get install etcd-server etcd-client protobuf-compiler  # etcd 3.4 on Debian 12; protoc to build
#   (cd benches/etcd-anchor && cargo build --release)  # its own workspace, not the product's
#   ETCD_ANCHOR=benches/etcd-anchor/target/release/etcd-anchor DURATION=8 bash benches/etcd.sh 1 16 256
#   CONNS=16 bash benches/etcd.sh 256                  # the clients share 16 gRPC connections
#                                                      # (default: one per client, up to 64)
#
# Without TLS etcd does less work per request than the service (mutual TLS on both paths), so
# the anchor errs on etcd's side.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
anchor="${ETCD_ANCHOR:-${CARGO_TARGET_DIR:-$here/etcd-anchor/target}/release/etcd-anchor}"
etcd="${ETCD:-etcd}"
duration="${DURATION:-10}"
value_size="${VALUE_SIZE:-128}"
counts=("$@")
[ ${#counts[@]} -eq 0 ] && counts=(1 16 256)
[ -x "$anchor" ] || { echo "no etcd-anchor at $anchor: (cd benches/etcd-anchor && cargo build --release)" >&2; exit 2; }
command -v "$etcd" >/dev/null || { echo "no etcd: apt-get install etcd-server" >&2; exit 2; }
command -v etcdctl >/dev/null || { echo "no etcdctl (it tells when etcd is up): apt-get install etcd-client" >&2; exit 2; }

dir="$(mktemp -d "${TMPDIR:-/tmp}/etcd-bench.XXXXXX")"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

ports=($(python3 - <<'PY'
import socket
held = []
for _ in range(6):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    held.append(s)
print(" ".join(str(s.getsockname()[1]) for s in held))
PY
))
cluster="e1=http://127.0.0.1:${ports[0]},e2=http://127.0.0.1:${ports[1]},e3=http://127.0.0.1:${ports[2]}"
for id in 1 2 3; do
  peer="http://127.0.0.1:${ports[$((id - 1))]}"
  client="http://127.0.0.1:${ports[$((id + 2))]}"
  "$etcd" --name "e$id" --data-dir "$dir/e$id" \
    --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
    --listen-client-urls "$client" --advertise-client-urls "$client" \
    --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token bench \
    --logger zap --log-level warn > "$dir/e$id.log" 2>&1 &
  pids+=($!)
done
endpoints="127.0.0.1:${ports[3]},127.0.0.1:${ports[4]},127.0.0.1:${ports[5]}"
# Wait (at most 30 s) until a put goes through.
ready=0
for _ in $(seq 1 60); do
  if ETCDCTL_API=3 etcdctl --endpoints "$endpoints" put bench-ready yes >/dev/null 2>&1; then ready=1; break; fi
  sleep 0.5
done
[ "$ready" = 1 ] || { echo "etcd did not come up; logs in $dir" >&2; tail -n 5 "$dir"/e*.log >&2; exit 1; }
for clients in "${counts[@]}"; do
  conns="${CONNS:-$((clients < 64 ? clients : 64))}"
  "$anchor" --endpoints "$endpoints" --clients "$clients" --conns "$conns" \
    --duration "$duration" --value-size "$value_size" --keys 10000
done
