#!/usr/bin/env bash
# The main job on a fresh Debian machine (root): installs what is missing, builds, starts a local
# etcd inside a simulated host (a network namespace of its own), and runs the demo there: two
# containers wired by the core, a ping matrix, the IPAM blocks. Everything it makes it removes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
npm run --silent build

tag=$(head -c4 /dev/urandom | od -An -tx1 | tr -d ' \n')
host="demo-host-$tag"
containers=("demo-c1-$tag" "demo-c2-$tag")
work=$(mktemp -d)
etcd_pid=""

cleanup() {
  set +e
  if [ -n "$etcd_pid" ]; then kill "$etcd_pid" 2>/dev/null; wait "$etcd_pid" 2>/dev/null; fi
  for ns in "$host" "${containers[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

for ns in "$host" "${containers[@]}"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
# Felix would turn on IPv6 forwarding on a real host; IPv4 forwarding is set per veth by the core.
nsenter --net="/run/netns/$host" sysctl -qw net.ipv6.conf.all.forwarding=1

nsenter --net="/run/netns/$host" etcd --name demo --data-dir "$work/etcd" \
  --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster demo=http://127.0.0.1:2380 --log-level error >"$work/etcd.log" 2>&1 &
etcd_pid=$!
for _ in $(seq 100); do
  nsenter --net="/run/netns/$host" etcdctl --endpoints=http://127.0.0.1:2379 endpoint health >/dev/null 2>&1 && break
  sleep 0.1
done

echo "etcd running in simulated host $host; containers ${containers[*]}"
ETCD_ENDPOINTS=http://127.0.0.1:2379 nsenter --net="/run/netns/$host" \
  node dist/bin/calico-demo "/run/netns/${containers[0]}" "/run/netns/${containers[1]}"
