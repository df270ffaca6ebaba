#!/usr/bin/env bash
# Every test, as CI runs them (.ci/run installs what they need first):
#  1. the whole workspace on the embedded stores (SQLite and a blob folder),
#     which also runs the server's API tests on PostgreSQL and the scale-out
#     and residency tests on PostgreSQL + Garage;
#  2. the end-to-end suite again with KEYHOLD_TEST_BACKEND=postgres-s3: two
#     `keyhold serve` processes over a real PostgreSQL and a real Garage
#     bucket, devices spread over both. Tests that read or edit the embedded
#     stores directly (hostile_server.rs, residency.rs, the crash loops)
#     belong to pass 1 only; the few such tests in the files below say so
#     and return.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== pass 1: cargo test --workspace --locked"
cargo test --workspace --locked
echo "== pass 2: the end-to-end suite on PostgreSQL + S3, two server processes"
KEYHOLD_TEST_BACKEND=postgres-s3 cargo test --locked -p keyhold \
    --test sync --test devices --test malicious_server --test disclosure
