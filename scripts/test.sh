#!/usr/bin/env bash
# Install Conclave with its test extras into .venv and run the whole test suite:
#   1. the import-layer contracts (lint-imports) and the types (mypy --strict);
#   2. every test (unit, conformance, integration, gpu — the gpu ones skip without a GPU), slow soak/chaos tests included;
#   3. the Redis-touching tests again against Debian's redis-server (installed with apt-get when possible).
# pip's wheel cache keeps the llama-cpp-python build, so only a machine's first install compiles it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# A machine that compiles llama-cpp-python itself builds a portable AVX2 binary: the -march=native build's AMX
# matrix kernels segfault on multi-token prompts on Sapphire Rapids (seen here). pip's wheel cache is unaffected.
export CMAKE_ARGS=${CMAKE_ARGS:--DGGML_NATIVE=OFF}
if [ ! -x .venv/bin/python ]; then "$PY" -m venv .venv; fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[cpu,dev]'
# The console's browser tests drive Debian's Chromium through Playwright (never a browser Playwright downloads).
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || echo "chromium not installed; the browser tests will skip"
fi

# The python tool runs code only under bubblewrap (its sandbox tests skip, saying so, where it is missing).
if ! command -v bwrap >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null) \
    || echo "bubblewrap could not be installed; the python sandbox tests will say so"
fi

echo "== the layers (import-linter: no upward imports, no cycles) =="
.venv/bin/lint-imports

echo "== types (mypy --strict, the config in pyproject.toml) =="
.venv/bin/mypy conclave

echo "== the whole suite (bundled Valkey) =="
.venv/bin/python -m pytest -q -p no:cacheprovider --durations=15

server=$(command -v redis-server || true)
if [ -z "$server" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null) || true
  server=$(command -v redis-server || true)
fi
if [ -n "$server" ]; then
  echo "== Redis-touching tests against $("$server" --version | head -c 40) =="
  CONCLAVE_TEST_REDIS_SERVER="$server" .venv/bin/python -m pytest -q -p no:cacheprovider -m redis --ignore=tests/browser
else
  echo "redis-server is not installed and cannot be installed here; the Redis tests ran against Valkey only"
fi
