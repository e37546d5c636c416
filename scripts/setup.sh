#!/usr/bin/env bash
# Installs what metalcast needs on a fresh machine: uv, the locked Python environment, and
# the toolchains the local stack builds its servers with (Java for Kafka, Maven to fetch its
# jars, Go to build MinIO). Safe to run again. pyspark (the bulk pipeline's Spark engine and the
# stack's Spark master and worker) comes with the locked environment and runs on the same Java.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v java >/dev/null || need_apt+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need_apt+=(maven)
command -v go >/dev/null || need_apt+=(golang-go)
command -v setpriv >/dev/null || need_apt+=(util-linux)
# Headless browser for the dashboard test (tests/e2e/api/test_dashboard.py).
command -v chromium >/dev/null || need_apt+=(chromium)
if ((${#need_apt[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq "${need_apt[@]}"
  else
    echo "missing: ${need_apt[*]} (install them, then run this again)" >&2
    exit 1
  fi
fi

if ! command -v uv >/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check 'uv>=0.5,<1'
fi
export UV_PYTHON_DOWNLOADS=never
uv sync --locked --all-packages --quiet
echo "setup done: $(uv run python --version), $(uv --version)"
