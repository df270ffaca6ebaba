#!/usr/bin/env bash
# Times `keyhold sync` against `restic backup` on the same data, in one run,
# and prints MB/s, files/s, peak memory and the ratios.
#
#   scripts/bench-sync.sh [WORKDIR]     (default: a fresh temporary folder)
#
# Data: one 1 GiB random file; 20,000 small files of 1-16 KiB. Keyhold runs
# client and server on this machine over loopback (release build); restic
# backs up to a local repository. Installs restic and GNU time from Debian's
# packages if they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "$2" >/dev/null; }; }
need restic restic
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }

cargo build --release -q -p keyhold
KEYHOLD="$PWD/target/release/keyhold"
WORK="${1:-$(mktemp -d)}"
mkdir -p "$WORK"
cd "$WORK"
echo "working in $WORK"

# Data sets.
if [ ! -f big/1GiB.bin ]; then
  mkdir -p big
  head -c $((1024 * 1024 * 1024)) /dev/urandom > big/1GiB.bin
fi
if [ ! -d small ]; then
  python3 - <<'PY'
import os, random
random.seed(7)
for i in range(20000):
    d = f"small/d{i % 100:03d}"
    os.makedirs(d, exist_ok=True)
    with open(f"{d}/f{i:05d}.bin", "wb") as f:
        f.write(os.urandom(random.randint(1024, 16384)))
PY
fi
sync

# measure LABEL CMD...: wall seconds and peak RSS (KiB) into $WALL / $RSS.
measure() {
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o time.out "$@" > /dev/null 2> cmd.err || { echo "$label failed:"; cat cmd.err; exit 1; }
  read -r WALL RSS < time.out
  printf '  %-34s %8.2f s  %7d MiB peak\n' "$label" "$WALL" "$((RSS / 1024))"
}

# Keyhold server.
rm -rf srv homes folders
"$KEYHOLD" serve --listen 127.0.0.1:0 --data srv > serve.out 2> serve.err &
SERVER_PID=$!
trap 'kill $SERVER_PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q listening serve.out 2>/dev/null && break; sleep 0.05; done
export KEYHOLD_SERVER=$(awk '/listening/{print $2}' serve.out)
KEYHOLD_HOME=homes/a "$KEYHOLD" -q init --recovery-key-file rk > /dev/null
KEYHOLD_HOME=homes/b KEYHOLD_RECOVERY_KEY=$(cat rk) "$KEYHOLD" -q recover
KEYHOLD_HOME=homes/c KEYHOLD_RECOVERY_KEY=$(cat rk) "$KEYHOLD" -q recover
mkdir -p folders/b folders/c

export RESTIC_PASSWORD=bench RESTIC_CACHE_DIR="$WORK/restic-cache"
rm -rf restic-repo restic-cache
restic init -q -r restic-repo

GIB=1073741824
echo "1 GiB random file"
measure "keyhold push" env KEYHOLD_HOME=homes/a "$KEYHOLD" -q sync big
K_PUSH=$WALL; K_PUSH_RSS=$RSS
measure "keyhold pull" env KEYHOLD_HOME=homes/b "$KEYHOLD" -q sync folders/b
K_PULL=$WALL
measure "restic backup" restic -q -r restic-repo backup big
R_PUSH=$WALL; R_PUSH_RSS=$RSS

echo "20,000 small files (1-16 KiB)"
measure "keyhold push" env KEYHOLD_HOME=homes/a "$KEYHOLD" -q sync small --collection small
K_SMALL=$WALL
measure "keyhold pull" env KEYHOLD_HOME=homes/c "$KEYHOLD" -q sync folders/c --collection small
K_SMALL_PULL=$WALL
measure "keyhold unchanged re-sync" env KEYHOLD_HOME=homes/a "$KEYHOLD" -q sync small --collection small
K_RESYNC=$WALL
measure "restic backup" restic -q -r restic-repo backup small
R_SMALL=$WALL
measure "restic unchanged re-run" restic -q -r restic-repo backup small
R_RESYNC=$WALL

python3 - "$K_PUSH" "$K_PULL" "$R_PUSH" "$K_SMALL" "$K_SMALL_PULL" "$R_SMALL" "$K_RESYNC" "$R_RESYNC" "$K_PUSH_RSS" "$R_PUSH_RSS" <<'PY'
import sys
kp, kl, rp, ks, ksl, rs, kr, rr, kmem, rmem = map(float, sys.argv[1:])
mb = 1073741824 / 1e6
print()
print(f"{'measure':34} {'keyhold':>12} {'restic':>12} {'ratio':>8} {'goal':>6}")
print(f"{'1 GiB push, MB/s':34} {mb/kp:12.0f} {mb/rp:12.0f} {rp/kp:8.2f} {'4x':>6}")
print(f"{'1 GiB pull, MB/s':34} {mb/kl:12.0f} {'-':>12} {'-':>8}")
print(f"{'20k files push, files/s':34} {20000/ks:12.0f} {20000/rs:12.0f} {rs/ks:8.2f} {'4x':>6}")
print(f"{'20k files pull, files/s':34} {20000/ksl:12.0f} {'-':>12} {'-':>8}")
print(f"{'20k unchanged re-sync, s':34} {kr:12.2f} {rr:12.2f} {rr/kr:8.2f} {'4x':>6}")
print(f"{'1 GiB push peak memory, MiB':34} {kmem/1024:12.0f} {rmem/1024:12.0f}")
PY
