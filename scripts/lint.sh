#!/usr/bin/env bash
# Lint and type-check with the venv's tools and the settings in pyproject.toml ([tool.ruff], [tool.mypy]):
#   ruff check src tests, ruff format --check src, mypy src.
# Runs all three even when one fails, prints a summary line per tool, and exits non-zero if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
VENV="${MOXIN_VENV:-.venv}"
for tool in ruff mypy; do
    if [ ! -x "$VENV/bin/$tool" ]; then
        echo "error: $VENV/bin/$tool not found; install the dev extra: $VENV/bin/pip install -e '.[dev]'" >&2
        exit 2
    fi
done
failed=()
step() {
    local name="$1"; shift
    echo "== $name"
    if "$@"; then echo "-- $name: ok"; else echo "-- $name: FAILED"; failed+=("$name"); fi
}
step "ruff check" "$VENV/bin/ruff" check --output-format concise src tests
step "ruff format" "$VENV/bin/ruff" format --check src
step "mypy" "$VENV/bin/mypy" src
if [ "${#failed[@]}" -gt 0 ]; then
    echo "lint failed: ${failed[*]}" >&2
    exit 1
fi
echo "lint: all clean"
