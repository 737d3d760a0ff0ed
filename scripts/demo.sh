#!/usr/bin/env bash
# Start what the demo needs (and only stop what this run started), then run `cofi demo`.
#   DB=sqlite (default): the tracker's embedded SQLite under .cache/demo; no root, no database
#                        server, only the broker is started.
#   DB=mariadb:          the local MariaDB of infra/mariadb.sh (installed with apt if missing),
#                        or DATABASE_URL when it is set.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-$PWD/.venv/bin/python}"
export PYTHON
DB="${DB:-sqlite}"
case "$DB" in
  sqlite) needs=(kafka) ;;
  mariadb) needs=(kafka mariadb) ;;
  *) echo "demo.sh: DB must be sqlite or mariadb, not '$DB'" >&2; exit 2 ;;
esac
started=()
cleanup() {
  for svc in "${started[@]}"; do infra/"$svc".sh stop || true; done
}
trap cleanup EXIT
for svc in "${needs[@]}"; do
  if ! infra/"$svc".sh status >/dev/null 2>&1; then
    echo "starting $svc"
    infra/"$svc".sh start
    started+=("$svc")
  fi
done
if [[ "$DB" == sqlite ]]; then
  mkdir -p .cache/demo
  # One file the tracker writes and the page and `cofi status` read, kept after the demo.
  DATABASE_URL="sqlite+aiosqlite:///$PWD/.cache/demo/cofi.db"
else
  DATABASE_URL="${DATABASE_URL:-$(infra/mariadb.sh url)}"
fi
export DATABASE_URL
"$PYTHON" -m cli demo "$@"
