#!/usr/bin/env bash
# Fuzzes the parsers of stored objects and server answers with cargo-fuzz
# (fuzz/).
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#   SECONDS_PER_TARGET  how long to fuzz each target (default 600)
#   TARGET...           which targets to run (default: all of them)
#
# Targets run one after the other (the machine has 2 cores). New corpus
# entries land in fuzz/corpus/<target>/ (minimize with
# `cd fuzz && cargo +nightly fuzz cmin -a <target>` before committing them;
# `cargo test -p keyhold-core --test fuzz_corpus` replays them, and
# `-p keyhold-proto` the wire target's); crashing
# inputs land in fuzz/artifacts/<target>/. Exits non-zero if any target
# crashes, hangs or fails to build.
#
# Needs the nightly toolchain (`rustup toolchain install nightly`); installs
# cargo-fuzz if it is missing. Environment: FUZZ_TOOLCHAIN (default nightly),
# FUZZ_TIMEOUT (libFuzzer's per-input limit in seconds, default 300: an
# input at the pinned Argon2id ceiling takes a while), FUZZ_RSS_LIMIT_MB
# (default 4096).
set -euo pipefail

usage() {
    sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'
}

seconds=600
if [[ $# -gt 0 && $1 =~ ^[0-9]+$ ]]; then
    seconds=$1
    shift
elif [[ $# -gt 0 && ($1 == -h || $1 == --help) ]]; then
    usage
    exit 0
fi
if [[ $seconds -lt 1 ]]; then
    echo "fuzz.sh: SECONDS_PER_TARGET must be at least 1" >&2
    exit 2
fi

toolchain=${FUZZ_TOOLCHAIN:-nightly}
timeout=${FUZZ_TIMEOUT:-300}
rss_limit=${FUZZ_RSS_LIMIT_MB:-4096}

cd "$(dirname "$0")/../fuzz"

if ! rustup run "$toolchain" rustc --version >/dev/null 2>&1; then
    echo "fuzz.sh: the $toolchain toolchain is missing; run: rustup toolchain install $toolchain" >&2
    exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

mapfile -t all_targets < <(cargo "+$toolchain" fuzz list)
if [[ $# -gt 0 ]]; then
    targets=("$@")
    for target in "${targets[@]}"; do
        if ! printf '%s\n' "${all_targets[@]}" | grep -qx -- "$target"; then
            echo "fuzz.sh: unknown target '$target'; targets: ${all_targets[*]}" >&2
            exit 2
        fi
    done
else
    targets=("${all_targets[@]}")
fi

# -a: debug assertions, so integer overflow panics instead of wrapping.
cargo "+$toolchain" fuzz build -a

failed=()
for target in "${targets[@]}"; do
    echo "=== fuzzing $target for ${seconds}s" >&2
    mkdir -p "corpus/$target"
    if ! cargo "+$toolchain" fuzz run -a "$target" -- \
        -max_total_time="$seconds" -timeout="$timeout" -rss_limit_mb="$rss_limit" -print_final_stats=1; then
        echo "=== $target FAILED: see fuzz/artifacts/$target/" >&2
        failed+=("$target")
    fi
done

if [[ ${#failed[@]} -gt 0 ]]; then
    echo "fuzz.sh: ${#failed[@]} of ${#targets[@]} targets failed: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz.sh: all ${#targets[@]} targets ran ${seconds}s without a crash" >&2
