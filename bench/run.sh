#!/usr/bin/env bash
# Benchmarks of local clusters: `podnet up` time and pod create → Running
# latency. Writes bench/results/cluster.json and prints a short table.
# Usage: bench/run.sh [PODS]   (default 100 pods)
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --bin podnet --bin podnet-cni
mkdir -p bench/results
python3 bench/cluster.py --podnet "$PWD/target/release/podnet" --pods "${1:-100}" --out bench/results/cluster.json
