#!/usr/bin/env bash
# Service proxy benchmark, nftables and iptables mode side by side, in
# throwaway network namespaces: time to program N services × 2 endpoints,
# adding one service when N exist, one endpoint change when N exist,
# first-connection latency to a ClusterIP (smallest vs largest N) and the
# planner's memory. Writes bench/results/services.json and prints a table.
# Needs root, nft, iptables-restore.
# Usage: bench/services.sh [SIZES] [MODES] [REPEATS] [NFT_SHARDS]
#   (default 100,1000,10000, nftables,iptables, 5, 16; e.g. NFT_SHARDS=16,1
#   adds a run with every service in one table, to compare layouts)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
cargo run --quiet --release -p podnet-agent --example proxy_bench -- \
  --sizes "${1:-100,1000,10000}" --modes "${2:-nftables,iptables}" --repeats "${3:-5}" \
  --nft-shards "${4:-16}" --out bench/results/services.json
