#!/usr/bin/env bash
# Benchmarks of local clusters, all in one run (release build):
#  - `podnet up` 3 nodes until Ready and kubectl answers; pod create -> Running
#    p50/p99 of PODS pods created one after another (each once the previous
#    runs: the unsaturated latency), then PODS pods posted at once (time until
#    all run, and their p50/p99); agent and server RSS with them running
#    (bench/cluster.py -> bench/results/cluster.json)
#  - CNI ADD+DEL: podnet-cni vs the reference bridge + host-local, same run,
#    and ADD and DEL apart, and the kernel's own veth deletion that both DELs
#    pay (cni_bench example -> bench/results/cni.json)
#  - iperf3 pod-to-pod same node / across nodes vs a raw veth pair, and vs
#    the same topology built by hand with no firewall hooks
#    (bench/net.py -> bench/results/net.json)
# Usage: bench/run.sh [PODS]   (default 100 pods)
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --bin podnet --bin podnet-cni --example cni_bench
target="${CARGO_TARGET_DIR:-$PWD/target}"
mkdir -p bench/results
status=0
python3 bench/cluster.py --podnet "$target/release/podnet" --pods "${1:-100}" --out bench/results/cluster.json || status=1
echo
"$target/release/examples/cni_bench" "$target/release/podnet-cni" 100 > bench/results/cni.json || status=1
python3 - <<'PY'
import json
r = json.load(open("bench/results/cni.json"))
print("%-28s %s" % ("metric", "value"))
print("%-28s %s" % ("cni_add_del_podnet_ms", r["add_del_podnet_cni"]))
print("%-28s %s" % ("cni_add_del_reference_ms", r["add_del_reference"]))
print("%-28s %s" % ("ratio (target <= 0.5)", r["ratio_podnet_to_reference"]))
for step in ("add", "del"):
    for plugin in ("podnet_cni", "reference"):
        key = "%s_%s" % (step, plugin)
        print("%-28s %s" % (key + "_ms", r[key]))
print("%-28s %s" % ("kernel_veth_delete_ms", r["kernel_veth_delete"]))
print("%-28s %s" % ("ratio beyond that delete", r["ratio_beyond_kernel_veth_delete"]))
PY
echo
python3 bench/net.py --podnet "$target/release/podnet" --out bench/results/net.json || status=1
exit $status
