#!/usr/bin/env bash
# One command for CI and developers: checks Keyhold's test vectors (docs/spec/vectors) with the
# Python second implementation (SECURITY.md G9). Creates the virtualenv on first use.
# Exit status is non-zero if any unit test or supported vector fails.
set -euo pipefail
cd "$(dirname "$0")"

python="${PYTHON:-python3}"
if [[ ! -x .venv/bin/python ]]; then
    "$python" -m venv .venv
fi
# Pinned versions: a no-op (no download) once they are installed.
.venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt

echo "== spec points the vectors do not exercise"
.venv/bin/python -m unittest test_spec_gaps

echo "== vectors"
exec .venv/bin/python verify_vectors.py "$@"
