#!/usr/bin/env bash
# Key transparency benchmark (issue #5): directory publish time, proof sizes
# and verification times at 10k and 100k labels (pass other sizes as
# arguments). Release build; prints figures, asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release --locked -q -p keyhold-server --example kt_bench -- "$@"
