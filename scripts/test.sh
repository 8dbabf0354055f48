#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine (root): installs what it needs, then runs the
# type check and every test (unit, real etcd, real network namespaces). Extra arguments go to ava.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
exec node scripts/run-tests.mjs "$@"
