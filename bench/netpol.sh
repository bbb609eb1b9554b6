#!/usr/bin/env bash
# NetworkPolicy benchmark: N policies over N pods (pods simulated as IPs in
# throwaway namespaces, two real pods on a bridge): time to program them all,
# time to add one policy when N exist, and TCP connection rate/latency between
# the two real pods with 0 and with N unrelated policies.
# Writes bench/results/netpol.json and prints a short table. Needs root and nft.
# Usage: bench/netpol.sh [N] [SECONDS_PER_CONNECT_RUN]   (default 1000 policies, 1 s runs x 5 rounds)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
cargo run --quiet --release -p podnet-agent --example netpol_bench -- \
  --policies "${1:-1000}" --seconds "${2:-1}" --out bench/results/netpol.json
