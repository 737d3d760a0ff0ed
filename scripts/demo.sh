#!/usr/bin/env bash
# Start what the demo needs (and only stop what this run started), then run `cofi demo`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-$PWD/.venv/bin/python}"
export PYTHON
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
# The demo runs on the local MariaDB (unset, DATABASE_URL would be the embedded SQLite).
DATABASE_URL="${DATABASE_URL:-$(infra/mariadb.sh url)}"
export DATABASE_URL
"$PYTHON" -m cli demo "$@"
