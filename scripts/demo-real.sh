#!/usr/bin/env bash
# `make demo-real`: start what it needs (and only stop what this run started), then run the
# real calls through the pipeline on the reference host (python -m real_calls.demo).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-$PWD/.venv/bin/python}"
started=()
cleanup() {
  for svc in "${started[@]}"; do infra/"$svc".sh stop || true; done
}
trap cleanup EXIT
for svc in kafka mariadb; do
  if ! infra/"$svc".sh status >/dev/null 2>&1; then
    echo "starting $svc"
    infra/"$svc".sh start
    started+=("$svc")
  fi
done
DATABASE_URL="${DATABASE_URL:-$(infra/mariadb.sh url)}"
export DATABASE_URL HF_HUB_OFFLINE=1
"$PYTHON" -m real_calls.demo "$@"
