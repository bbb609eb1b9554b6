#!/usr/bin/env bash
# API server benchmark: a real `podnet server --no-controllers` (release build)
# on a fresh data directory; create PODS pods with CONCURRENCY clients while
# WATCHERS watchers stream them; list them as a Table and as JSON; sample the
# server's RSS. Writes bench/results/api.json and prints a short table.
# Usage: bench/api.sh [PODS] [WATCHERS] [CONCURRENCY]   (default 10000 100 32)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
pods="${1:-10000}"
watchers="${2:-100}"
concurrency="${3:-32}"
# Binaries come from cargo's target directory (CARGO_TARGET_DIR when set).
target="${CARGO_TARGET_DIR:-target}"
cargo build --release --bin podnet -p podnet
cargo build --release -p podnet-apiserver --example api_bench
mkdir -p bench/results
dir="$(mktemp -d /tmp/podnet-api-bench-XXXXXX)"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT
PODNET_LOG=warn "$target/release/podnet" server --no-controllers --data-dir "$dir" --listen 127.0.0.1:0 \
  >"$dir.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
  [ -s "$dir/kubeconfig" ] && break
  sleep 0.1
done
[ -s "$dir/kubeconfig" ] || { echo "the server did not start:"; cat "$dir.log"; exit 1; }
"$target/release/examples/api_bench" --kubeconfig "$dir/kubeconfig" --server-pid "$server_pid" \
  --pods "$pods" --watchers "$watchers" --concurrency "$concurrency" > bench/results/api.json
rm -f "$dir.log"
python3 - bench/results/api.json <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
c, w, m = r["create"], r["watch"], r["server_rss_mib"]
rows = [
    ("creates/s (%d pods, %d clients, %d watchers)" % (r["pods"], r["concurrency"], r["watchers"]), "%.0f" % c["objects_per_second"], ">= 2000"),
    ("create latency p50 / p99 (ms)", "%.1f / %.1f" % (c["p50_ms"], c["p99_ms"]), ""),
    ("create failures", str(c["failures"]), "0"),
    ("watch events seen / expected", "%d / %d" % (w["events_seen"], w["events_expected"]), ""),
    ("watch delivery lag p50 / p99 (ms)", "%.1f / %.1f" % (w["lag_p50_ms"], w["lag_p99_ms"]), ""),
    ("CPU s from first create to last event: server / client (wall)",
     "%s / %s (%s)" % (r["cpu_seconds_create_and_watch"]["server"], r["cpu_seconds_create_and_watch"]["client"], r["cpu_seconds_create_and_watch"]["wall"]), ""),
    ("list %d pods as Table (median ms)" % r["list_table"]["items"], "%.1f" % r["list_table"]["median_ms"], "< 300"),
    ("list as JSON (median ms)", "%.1f" % r["list_json"]["median_ms"], ""),
    ("list as Table, limit=500 chunks (median ms)", "%.1f" % r["list_table_chunked_500"]["median_ms"], ""),
    ("server RSS idle / peak while creating / high-water (MiB)", "%s / %s / %s" % (m["idle"], m["peak_during_create"], m["high_water_mark"]), "< 100"),
]
width = max(len(a) for a, _, _ in rows)
for name, value, goal in rows:
    print("%-*s  %-22s %s" % (width, name, value, goal))
PY
