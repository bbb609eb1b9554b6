#!/usr/bin/env bash
# Sets up what is missing, builds podnet, brings up a local cluster and runs the
# seed demo: pods on two nodes, a service, DNS.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --bin podnet --bin podnet-cni
install -m 0755 target/release/podnet /usr/local/bin/podnet
install -D -m 0755 target/release/podnet-cni /opt/cni/bin/podnet-cni
podnet up
podnet demo
