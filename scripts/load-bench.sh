#!/usr/bin/env bash
# Load benchmark of `keyhold serve` (not a test): CLIENTS concurrent clients
# for SECONDS on each backend — the embedded defaults (SQLite and a blob
# folder, one process) and PostgreSQL + a Garage S3 bucket (two processes,
# clients spread over both) — printing requests/s, p50/p99 latency per
# operation, errors and each server's peak memory. Exits non-zero if any
# request failed. The generator is crates/keyhold/examples/load.rs.
#
# Usage: scripts/load-bench.sh [CLIENTS] [SECONDS]   (default 64 60)
# Needs PostgreSQL's binaries and Garage, as the tests do (.ci/run installs
# both).
set -euo pipefail
cd "$(dirname "$0")/.."
clients=${1:-64}
seconds=${2:-60}
if [[ $clients == -h || $clients == --help ]]; then
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
fi
cargo build --release --quiet -p keyhold --bin keyhold --example load
status=0
for backend in embedded postgres-s3; do
    target/release/examples/load "$backend" "$clients" "$seconds" 2> >(grep -v '^keyhold serving' >&2) || status=1
    echo
done
exit $status
