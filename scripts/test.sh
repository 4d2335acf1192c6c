#!/usr/bin/env bash
# Run the whole test suite. pytest's exit code 5 (no tests collected) is a failure, not a pass.
set -uo pipefail
cd "$(dirname "$0")/.."
VENV="${MOXIN_VENV:-.venv}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
"$VENV/bin/python" -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi
exit "$rc"
