#!/usr/bin/env bash
# Back up or restore the tracker's MariaDB database (docs/operations.md, "Backup and restore").
#
#   scripts/db-backup.sh dump    FILE   a consistent dump (one transaction, InnoDB) to FILE, as SQL
#   scripts/db-backup.sh restore FILE   load FILE into the database (it must exist; it may be empty)
#
# The database is DATABASE_URL's (mysql+asyncmy://user:password@host:port/name); the password
# may come from DATABASE_PASSWORD_FILE. The dump holds the tables, their rows, the dashboards'
# views and Alembic's version, so a restored database needs no migration.
set -euo pipefail
die() { echo "db-backup.sh: $*" >&2; exit 2; }
[[ $# == 2 ]] || die "usage: scripts/db-backup.sh {dump|restore} FILE"
action="$1" file="$2"
[[ -n "${DATABASE_URL:-}" ]] || die "DATABASE_URL is unset"
eval "$(python3 - "$DATABASE_URL" <<'PY'
import shlex, sys
from urllib.parse import unquote, urlsplit
u = urlsplit(sys.argv[1])
if u.scheme.split("+")[0] not in ("mysql", "mariadb"):
    sys.exit(f"db-backup.sh: {u.scheme}: only MariaDB/MySQL URLs (SQLite: copy the file)")
q = shlex.quote
print(f"DB_HOST={q(u.hostname or '127.0.0.1')} DB_PORT={u.port or 3306}")
print(f"DB_USER={q(unquote(u.username or ''))} DB_PASS={q(unquote(u.password or ''))}")
print(f"DB_NAME={q(u.path.lstrip('/'))}")
PY
)"
if [[ -n "${DATABASE_PASSWORD_FILE:-}" ]]; then DB_PASS="$(cat "$DATABASE_PASSWORD_FILE")"; fi
[[ -n "$DB_NAME" ]] || die "DATABASE_URL names no database"
# The password goes through the environment, never the command line (ps shows that).
export MYSQL_PWD="$DB_PASS"
conn=(--host="$DB_HOST" --port="$DB_PORT" --user="$DB_USER" --protocol=TCP)
case "$action" in
  dump)
    tmp="$file.partial"
    mariadb-dump "${conn[@]}" --single-transaction --quick --hex-blob --routines --triggers \
      --default-character-set=utf8mb4 "$DB_NAME" >"$tmp"
    mv "$tmp" "$file"
    echo "dumped $DB_NAME to $file ($(wc -c <"$file") bytes)"
    ;;
  restore)
    [[ -s "$file" ]] || die "$file is missing or empty"
    mariadb "${conn[@]}" --default-character-set=utf8mb4 "$DB_NAME" <"$file"
    echo "restored $DB_NAME from $file"
    ;;
  *) die "usage: scripts/db-backup.sh {dump|restore} FILE" ;;
esac
