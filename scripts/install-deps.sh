#!/usr/bin/env bash
# Installs what podnet needs on a Debian/Ubuntu machine (run as root). Idempotent:
# it only installs what is missing.
set -euo pipefail

packages=(
  build-essential pkg-config ca-certificates curl
  iproute2 nftables iptables conntrack ethtool kmod procps util-linux
  runc busybox-static containernetworking-plugins
  nginx-light bind9-dnsutils iputils-ping traceroute tcpdump iperf3 netcat-openbsd
  dnsperf unbound python3 python3-pip python3-yaml python3-venv
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "podnet: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # nginx-light is called nginx on newer releases; fall back when it is not offered.
  if ! apt-get install -y -qq --no-install-recommends "${missing[@]}"; then
    fallback=()
    for p in "${missing[@]}"; do [ "$p" = nginx-light ] && fallback+=(nginx) || fallback+=("$p"); done
    apt-get install -y -qq --no-install-recommends "${fallback[@]}"
  fi
  # Debian starts daemons on install; podnet only needs their binaries.
  for svc in nginx unbound; do
    if command -v systemctl >/dev/null 2>&1; then systemctl disable --now "$svc" >/dev/null 2>&1 || true; fi
  done
fi

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "podnet: installing the Rust toolchain with rustup"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
fi

# The Python `kubernetes` client (from PyPI) for the client-compatibility test.
if ! /opt/podnet-python/bin/python -c "import kubernetes" >/dev/null 2>&1; then
  echo "podnet: installing the Python kubernetes client into /opt/podnet-python"
  /usr/bin/python3 -m venv /opt/podnet-python
  /opt/podnet-python/bin/pip install -q kubernetes
fi

if ! command -v kubectl >/dev/null 2>&1; then
  apt-get install -y -qq kubectl >/dev/null 2>&1 || true
fi
if ! command -v kubectl >/dev/null 2>&1; then
  echo "podnet: kubectl is not installed; end-to-end tests and the demo need it" >&2
  echo "podnet: install it from your distribution or https://kubernetes.io/docs/tasks/tools/" >&2
  exit 1
fi
