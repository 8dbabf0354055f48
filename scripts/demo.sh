#!/usr/bin/env bash
# The main job on a fresh Debian machine (root): installs what is missing, builds, and runs the
# demo (scripts/demo.ts): a simulated datacenter of network namespaces with a local etcd, two
# agents each with dockerd and the node daemon, on each a CNI task and a Docker container on one
# network and a CNI task on a second, a ping matrix showing the networks isolated from each other,
# and `calicoctl ipam show`. Everything it makes it removes; the machine's own network
# namespace is never touched.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
npm run --silent build
exec node --import tsx scripts/demo.ts
