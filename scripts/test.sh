#!/usr/bin/env bash
# Runs the whole podnet test suite (unit, snapshot, real-kernel and end-to-end
# tests with the real kubectl). Needs root: tests create network namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
# A one-off build gains nothing from incremental state, which doubles the disk
# a clean build needs.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
cargo build --workspace --bins
# The end-to-end tests start the podnet binary built above.
export PODNET_BIN="$PWD/target/debug/podnet"
# Root-only and end-to-end tests fail instead of skipping when something they
# need is missing, so a green run means they really ran.
export PODNET_REQUIRE_PRIVILEGED_TESTS=1
export PATH="$PWD/target/debug:$PATH"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast --test-threads 4 "$@"
else
  cargo test --workspace --no-fail-fast "$@" -- --test-threads 4
fi
