#!/usr/bin/env bash
# Cluster DNS benchmark: dnsperf against podnet-dns and against unbound
# serving the same records as static local data, same machine, same run,
# inside a throwaway network namespace (nothing leaves it). Also the memory
# of podnet-dns holding 10,000 services and 10,000 pods.
#
#   bench/dns/run.sh            # JSON to bench/dns/result.json + a table
#   DURATION=10 SERVICES=10000 PODS=10000 bench/dns/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${DURATION:-10}
SERVICES=${SERVICES:-10000}
PODS=${PODS:-10000}
LATENCY_QPS=${LATENCY_QPS:-20000}
OUTSTANDING=${OUTSTANDING:-200}
NS=pdnsbench-$$
WORK=$(mktemp -d /tmp/pdnsbench.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

for tool in dnsperf unbound ip; do
  command -v "$tool" >/dev/null || { echo "missing $tool (scripts/install-deps.sh installs it)" >&2; exit 1; }
done
cargo build --release -q -p podnet-dns --example bench_server
BIN=${CARGO_TARGET_DIR:-target}/release/examples/bench_server

ip netns add "$NS"
ip -n "$NS" link set lo up
in_ns() { ip netns exec "$NS" "$@"; }

# podnet-dns on 127.0.0.1:5353, forwarding to unbound on 127.0.0.1:5300.
ip netns exec "$NS" "$BIN" 127.0.0.1:5353 127.0.0.1:5300 "$SERVICES" "$PODS" "$WORK" > "$WORK/server.json" &
PIDS+=($!); PODNET_PID=$!
for _ in $(seq 1 600); do [ -s "$WORK/server.json" ] && break; sleep 0.1; done
[ -s "$WORK/server.json" ] || { echo "podnet-dns bench server did not start" >&2; exit 1; }

cat > "$WORK/unbound.conf" <<CONF
server:
  interface: 127.0.0.1@5300
  port: 5300
  do-daemonize: no
  num-threads: 2
  so-reuseport: yes
  chroot: ""
  username: ""
  directory: "$WORK"
  pidfile: ""
  use-syslog: no
  logfile: ""
  verbosity: 0
  do-ip6: no
  access-control: 127.0.0.0/8 allow
  include: "$WORK/zone.conf"
remote-control:
  control-enable: no
CONF
ip netns exec "$NS" unbound -d -c "$WORK/unbound.conf" &
PIDS+=($!); UNBOUND_PID=$!
for _ in $(seq 1 100); do
  in_ns dig +time=1 +tries=1 +short -p 5300 @127.0.0.1 fwd1.example.org A | grep -q . && break; sleep 0.1
done
in_ns dig +short -p 5353 @127.0.0.1 svc1.ns1.svc.cluster.local A | grep -q . || { echo "podnet-dns does not answer" >&2; exit 1; }

percentiles() { # dnsperf -v output -> "p50_ms p99_ms"
  awk '$1 == ">" {print $NF}' "$1" | sort -g | awk '{a[NR]=$1} END {if (NR==0) {print "0 0"; exit}; printf "%.3f %.3f\n", a[int(NR*0.5)]*1000, a[int(NR*0.99)]*1000}'
}
throughput() { # port file -> "qps lost"  (unthrottled, -q OUTSTANDING in flight)
  in_ns dnsperf -s 127.0.0.1 -p "$1" -d "$2" -l "$DURATION" -c 4 -T 1 -q "$OUTSTANDING" > "$WORK/perf.txt" 2>&1 || true
  local qps lost
  qps=$(awk '/Queries per second:/ {print $4}' "$WORK/perf.txt")
  lost=$(awk '/Queries lost:/ {print $3}' "$WORK/perf.txt")
  echo "${qps:-0} ${lost:-0}"
}
latency_at_max() { # port file -> "qps p50_ms p99_ms": unthrottled, every reply timed
  # (-v costs the client time, so this QPS is a little below the plain run's).
  in_ns dnsperf -s 127.0.0.1 -p "$1" -d "$2" -l 5 -c 4 -T 1 -q "$OUTSTANDING" -v > "$WORK/max.txt" 2>&1 || true
  local qps
  qps=$(awk '/Queries per second:/ {print $4}' "$WORK/max.txt")
  echo "${qps:-0} $(percentiles "$WORK/max.txt")"
}
latency() { # port file -> "p50_ms p99_ms" at a fixed rate
  in_ns dnsperf -s 127.0.0.1 -p "$1" -d "$2" -l 5 -Q "$LATENCY_QPS" -c 2 -T 1 -v > "$WORK/lat.txt" 2>&1 || true
  percentiles "$WORK/lat.txt"
}

declare -A R
for server in podnet-dns unbound; do
  port=5353; [ "$server" = unbound ] && port=5300
  for mix in cluster mixed; do
    read -r qps lost < <(throughput "$port" "$WORK/queries-$mix.txt")
    read -r maxqps maxp50 maxp99 < <(latency_at_max "$port" "$WORK/queries-$mix.txt")
    read -r p50 p99 < <(latency "$port" "$WORK/queries-$mix.txt")
    R["$server/$mix"]="$qps $lost $p50 $p99 $maxqps $maxp50 $maxp99"
  done
done
RSS_SERVING=$(awk '/VmRSS:/ {print $2}' /proc/$PODNET_PID/status 2>/dev/null || echo 0)
# The process started by `ip netns exec` is the bench server itself (exec).

python3 - "$WORK/server.json" "$RSS_SERVING" "$DURATION" "$LATENCY_QPS" \
  "${R[podnet-dns/cluster]}" "${R[podnet-dns/mixed]}" "${R[unbound/cluster]}" "${R[unbound/mixed]}" "$OUTSTANDING" <<'PY' | tee bench/dns/result.json
import json, sys
server = json.load(open(sys.argv[1]))
rss_serving = int(sys.argv[2]); duration = int(sys.argv[3]); latency_qps = int(sys.argv[4]); outstanding = int(sys.argv[9])
def parse(text):
    qps, lost, p50, p99, maxqps, maxp50, maxp99 = text.split()
    return {"qps": float(qps), "lost": int(lost),
            "p50_ms_at_fixed_rate": float(p50), "p99_ms_at_fixed_rate": float(p99),
            "qps_timed_run": float(maxqps), "p50_ms_at_max": float(maxp50), "p99_ms_at_max": float(maxp99)}
runs = {"podnet-dns": {"cluster": parse(sys.argv[5]), "mixed": parse(sys.argv[6])},
        "unbound": {"cluster": parse(sys.argv[7]), "mixed": parse(sys.argv[8])}}
result = {
    "tool": "dnsperf -c 4 -q %d (throughput; latency at max: same with -v), -Q %d -c 2 -v (latency at a fixed rate)" % (outstanding, latency_qps),
    "fixed_rate_qps": latency_qps,
    "outstanding_at_max": outstanding,
    "duration_s": duration,
    "runs": runs,
    "ratio_podnet_to_unbound": {m: round(runs["podnet-dns"][m]["qps"] / max(runs["unbound"][m]["qps"], 1), 3) for m in ("cluster", "mixed")},
    "memory": {"services": server["services"], "pods": server["pods"], "endpoints": server["endpoints"],
               "rss_mb_at_start": round(server["rss_before_kib"] / 1024, 1),
               "rss_mb_after_snapshot_untrimmed": round(server.get("rss_untrimmed_kib", 0) / 1024, 1),
               "rss_mb_after_snapshot": round(server["rss_after_snapshot_kib"] / 1024, 1),
               "rss_mb_serving": round(rss_serving / 1024, 1)},
}
print(json.dumps(result, indent=2))
PY
python3 - bench/dns/result.json <<'PY' >&2
import json, sys
r = json.load(open(sys.argv[1]))
print("\n%-11s %-8s %10s %7s | at max (-q %d): %7s %8s | at %d QPS: %8s %8s" % ("server", "names", "max QPS", "lost", r["outstanding_at_max"], "p50 ms", "p99 ms", r["fixed_rate_qps"], "p50 ms", "p99 ms"))
for s, mixes in r["runs"].items():
    for m, v in mixes.items():
        print("%-11s %-8s %10.0f %7d | %22.3f %8.3f | %16.3f %8.3f" % (s, m, v["qps"], v["lost"], v["p50_ms_at_max"], v["p99_ms_at_max"], v["p50_ms_at_fixed_rate"], v["p99_ms_at_fixed_rate"]))
print("ratio podnet-dns/unbound: cluster %.2f, mixed %.2f" % (r["ratio_podnet_to_unbound"]["cluster"], r["ratio_podnet_to_unbound"]["mixed"]))
m = r["memory"]
print("memory with %d services, %d pods (%d endpoints): %.1f MB after snapshot, %.1f MB serving" % (m["services"], m["pods"], m["endpoints"], m["rss_mb_after_snapshot"], m["rss_mb_serving"]))
PY
