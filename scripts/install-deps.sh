#!/usr/bin/env bash
# Installs what the project needs on a fresh Debian machine (run as root): the real parts the
# tests and the demo start (etcd, iproute2, ping, openssl, nsenter/unshare, dockerd and a static
# busybox for container images, the Go reference CNI plugins, nftables for policy, iperf3 for its
# benchmark, BIRD 2 for BGP, socat for calico_mesos' shell path, python3 for the isolation tests'
# hostile packets), Node.js if absent, and the npm
# packages. Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(etcd-server etcd-client iproute2 iputils-ping openssl util-linux procps time containernetworking-plugins docker.io busybox-static nftables bird2 iperf3 socat python3)
command -v node >/dev/null 2>&1 || packages+=(nodejs npm)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm ci when node_modules is missing or older than the lock file.
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
