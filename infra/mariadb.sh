#!/usr/bin/env bash
# Local MariaDB for the tracker and the tests (Debian's mariadb-server, our own datadir, no init system).
#
#   infra/mariadb.sh install   apt-get install mariadb-server if mariadbd is missing
#   infra/mariadb.sh start     init $COFI_CACHE/mariadb/data once, start mariadbd, wait, ensure user/database
#   infra/mariadb.sh stop      clean shutdown (data persists), bounded wait
#   infra/mariadb.sh status    print "running" and exit 0 if the database accepts logins, else exit 1
#   infra/mariadb.sh wait      wait until it accepts logins (MARIADB_READY_TIMEOUT, default 60 s)
#   infra/mariadb.sh url       print the SQLAlchemy URL (DATABASE_URL when set)
#   infra/mariadb.sh ro-url    print the URL of the read-only user cofi_ro (SELECT only on cofi.*),
#                              the progress page's WEB_DATABASE_URL
#
# Env: COFI_CACHE (default <repo>/.cache), MARIADB_PORT (3306), MARIADB_READY_TIMEOUT (60),
#      MARIADB_STOP_TIMEOUT (60), DATABASE_URL (if set to a mysql/mariadb URL that answers, start does
#      nothing; stop only ever stops the server this script started), PYTHON (python3).
set -euo pipefail

INFRA_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$INFRA_DIR/.." && pwd)"
COFI_CACHE="${COFI_CACHE:-$REPO_ROOT/.cache}"
mkdir -p "$COFI_CACHE"
COFI_CACHE="$(cd "$COFI_CACHE" && pwd)"

MARIADB_PORT="${MARIADB_PORT:-3306}"
MARIADB_READY_TIMEOUT="${MARIADB_READY_TIMEOUT:-60}"
MARIADB_STOP_TIMEOUT="${MARIADB_STOP_TIMEOUT:-60}"
# The project's venv when it exists: the probes need its packages (aiokafka, asyncmy).
if [[ -z "${PYTHON:-}" && -x "$REPO_ROOT/.venv/bin/python" ]]; then PYTHON="$REPO_ROOT/.venv/bin/python"; fi
PYTHON="${PYTHON:-python3}"
APP_USER=cofi
APP_PASS=cofi
APP_DB=cofi
RO_USER=cofi_ro # the progress page's user: SELECT only
RO_PASS=cofi_ro

MDIR="$COFI_CACHE/mariadb"
DATA="$MDIR/data"
INIT_MARKER="$MDIR/data.initialised"
SOCK="$MDIR/mysqld.sock"
PIDFILE="$MDIR/mariadbd.pid"
ERRLOG="$MDIR/mariadb.err"
OUTLOG="$MDIR/mariadbd.out"
OS_USER="$(id -un)"
OWN_URL="mysql+asyncmy://$APP_USER:$APP_PASS@127.0.0.1:$MARIADB_PORT/$APP_DB"
RO_URL="mysql+asyncmy://$RO_USER:$RO_PASS@127.0.0.1:$MARIADB_PORT/$APP_DB"

die() { echo "mariadb.sh: $*" >&2; exit 1; }

find_bin() { # first of the names found on PATH or in /usr/sbin, /usr/bin
  local n
  for n in "$@"; do
    if command -v "$n" >/dev/null 2>&1; then command -v "$n"; return 0; fi
    [[ -x "/usr/sbin/$n" ]] && { echo "/usr/sbin/$n"; return 0; }
    [[ -x "/usr/bin/$n" ]] && { echo "/usr/bin/$n"; return 0; }
  done
  return 1
}

port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

lock() {
  mkdir -p "$MDIR"
  exec 9>"$MDIR/.lock"
  flock -w 600 9 || die "could not take $MDIR/.lock"
}

# --- DATABASE_URL -----------------------------------------------------------------------------
URL_SET=0 URL_HOST="" URL_PORT="" URL_USER="" URL_PASS="" URL_DB=""
if [[ -n "${DATABASE_URL:-}" ]]; then
  eval "$("$PYTHON" - "$DATABASE_URL" <<'EOF'
import shlex, sys
from urllib.parse import urlsplit, unquote
u = urlsplit(sys.argv[1])
if u.scheme.split("+")[0] in ("mysql", "mariadb"):
    q = shlex.quote
    print("URL_SET=1")
    print(f"URL_HOST={q(u.hostname or '127.0.0.1')}")
    print(f"URL_PORT={u.port or 3306}")
    print(f"URL_USER={q(unquote(u.username or ''))}")
    print(f"URL_PASS={q(unquote(u.password or ''))}")
    print(f"URL_DB={q(u.path.lstrip('/'))}")
EOF
)"
fi

url_is_local() { # DATABASE_URL names the instance this script manages
  [[ "$URL_SET" == 1 && ( "$URL_HOST" == 127.0.0.1 || "$URL_HOST" == localhost ) && "$URL_PORT" == "$MARIADB_PORT" ]]
}

client() { find_bin mariadb mysql || die "mariadb client not found (run: $0 install)"; }

login_ok() { # login_ok HOST PORT USER PASS
  local cli; cli="$(client)"
  MYSQL_PWD="$4" "$cli" --no-defaults --protocol=TCP -h "$1" -P "$2" -u "$3" \
    --connect-timeout=3 -N -B -e 'SELECT 1' >/dev/null 2>&1
}

url_answers() { [[ "$URL_SET" == 1 ]] && login_ok "$URL_HOST" "$URL_PORT" "$URL_USER" "$URL_PASS"; }
own_answers() { login_ok 127.0.0.1 "$MARIADB_PORT" "$APP_USER" "$APP_PASS"; }

# --- our own server ---------------------------------------------------------------------------
is_our_mariadbd() {
  [[ -n "${1:-}" && -r "/proc/$1/cmdline" ]] || return 1
  tr '\0' ' ' <"/proc/$1/cmdline" | grep -q -- "--datadir=$DATA "
}

own_pid() {
  local pid=""
  [[ -f "$PIDFILE" ]] && pid="$(cat "$PIDFILE" 2>/dev/null || true)"
  if is_our_mariadbd "$pid"; then echo "$pid"; return 0; fi
  pid="$(pgrep -f -- "--datadir=$DATA " 2>/dev/null | head -n1 || true)"
  if is_our_mariadbd "$pid"; then echo "$pid"; return 0; fi
  return 1
}

root_sql() { # run SQL as the database root over our socket (socket auth)
  local cli; cli="$(client)"
  "$cli" --no-defaults --socket="$SOCK" -u root -N -B -e "$1"
}

cmd_install() {
  find_bin mariadbd mysqld >/dev/null && find_bin mariadb-install-db mysql_install_db >/dev/null && return 0
  [[ "$(id -u)" == 0 ]] || die "mariadbd is missing; install mariadb-server (needs root)"
  # Keep the package's postinst from starting a system server: we run our own instance.
  local created_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    created_policy=1
  fi
  local log="$COFI_CACHE/apt-mariadb.log" rc=0
  export DEBIAN_FRONTEND=noninteractive
  apt_install() { apt-get -o DPkg::Lock::Timeout=900 install -y -q mariadb-server mariadb-client >>"$log" 2>&1; }
  if ! apt_install; then
    apt-get -o DPkg::Lock::Timeout=900 update -q >>"$log" 2>&1 || true
    apt_install || rc=$?
  fi
  [[ "$created_policy" == 1 ]] && rm -f /usr/sbin/policy-rc.d
  if [[ "$rc" != 0 ]]; then tail -n 30 "$log" >&2; die "apt-get install mariadb-server failed (log: $log)"; fi
  find_bin mariadbd mysqld >/dev/null || die "mariadbd still missing after install"
}

init_datadir() {
  [[ -f "$INIT_MARKER" && -d "$DATA/mysql" ]] && return 0
  local installdb
  installdb="$(find_bin mariadb-install-db mysql_install_db)" || die "mariadb-install-db not found"
  rm -rf "$DATA"
  mkdir -p "$DATA"
  if ! "$installdb" --no-defaults --user="$OS_USER" --datadir="$DATA" \
        --auth-root-authentication-method=socket --auth-root-socket-user="$OS_USER" \
        --skip-test-db >"$MDIR/install-db.log" 2>&1; then
    tail -n 30 "$MDIR/install-db.log" >&2
    die "mariadb-install-db failed (log: $MDIR/install-db.log)"
  fi
  touch "$INIT_MARKER"
}

launch() {
  local server
  server="$(find_bin mariadbd mysqld)" || die "mariadbd not found (run: $0 install)"
  rm -f "$SOCK" "$PIDFILE"
  # The inner shell writes its pid and execs mariadbd (same pid); fd 9 (our lock) is not inherited.
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$PIDFILE" \
    "$server" --no-defaults --user="$OS_USER" --datadir="$DATA" --socket="$SOCK" \
    --port="$MARIADB_PORT" --bind-address=127.0.0.1 --pid-file="$PIDFILE" --log-error="$ERRLOG" \
    --skip-name-resolve --innodb-buffer-pool-size=256M --max-connections=500 \
    --innodb-flush-log-at-trx-commit=2 --character-set-server=utf8mb4 \
    --collation-server=utf8mb4_unicode_ci \
    </dev/null >>"$OUTLOG" 2>&1 9>&- &
  disown || true
}

wait_ping() { # wait_ping PID: poll the socket until the server answers
  local pid="$1" admin deadline
  admin="$(find_bin mariadb-admin mysqladmin)" || die "mariadb-admin not found"
  deadline=$(( SECONDS + ${MARIADB_READY_TIMEOUT%.*} ))
  until [[ -S "$SOCK" ]] && "$admin" --no-defaults --socket="$SOCK" -u root --connect-timeout=2 ping >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "mariadb.sh: mariadbd (pid $pid) exited during startup; last lines of $ERRLOG:" >&2
      tail -n 30 "$ERRLOG" >&2 || true
      exit 1
    fi
    (( SECONDS < deadline )) || die "mariadbd not answering after ${MARIADB_READY_TIMEOUT}s (log: $ERRLOG)"
    sleep 0.2
  done
}

ensure_app_user() {
  local u h
  local sql="CREATE DATABASE IF NOT EXISTS \`$APP_DB\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;"
  for h in 127.0.0.1 localhost; do
    u="'$APP_USER'@'$h'"
    sql+="CREATE USER IF NOT EXISTS $u IDENTIFIED BY '$APP_PASS';"
    sql+="ALTER USER $u IDENTIFIED BY '$APP_PASS';"
    sql+="GRANT ALL PRIVILEGES ON *.* TO $u WITH GRANT OPTION;"
    u="'$RO_USER'@'$h'"
    sql+="CREATE USER IF NOT EXISTS $u IDENTIFIED BY '$RO_PASS';"
    sql+="ALTER USER $u IDENTIFIED BY '$RO_PASS';"
    sql+="GRANT SELECT ON \`$APP_DB\`.* TO $u;"
  done
  # anonymous accounts would shadow cofi@localhost
  sql+="DROP USER IF EXISTS ''@'localhost';"
  sql+="DROP USER IF EXISTS ''@'$(hostname)';"
  root_sql "$sql" || die "could not create user/database $APP_USER/$APP_DB"
}

cmd_start() {
  if [[ "$URL_SET" == 1 ]] && ! url_is_local; then
    url_answers && return 0
    die "DATABASE_URL points at $URL_HOST:$URL_PORT, which does not answer (unset it to use a local MariaDB)"
  fi
  lock
  local pid
  if pid="$(own_pid)"; then # ours: running or still starting
    wait_ping "$pid"
    ensure_app_user
    return 0
  fi
  if port_open "$MARIADB_PORT"; then
    own_answers && return 0
    url_answers && return 0
    die "port $MARIADB_PORT is taken by a server that does not accept $APP_USER/$APP_PASS (set MARIADB_PORT or DATABASE_URL)"
  fi
  cmd_install
  init_datadir
  launch
  local i
  # mariadbd rewrites its pid file only after InnoDB starts, which can take seconds on a busy
  # machine: find it by pid file or by its data directory.
  pid=""
  for i in $(seq 100); do pid="$(own_pid)" && break; sleep 0.1; done
  [[ -n "$pid" ]] || die "mariadbd did not start (no process for $DATA; see $OUTLOG)"
  wait_ping "$pid"
  ensure_app_user
  own_answers || die "started, but $APP_USER@127.0.0.1:$MARIADB_PORT cannot log in"
}

cmd_stop() {
  lock
  local pid admin i
  pid="$(own_pid)" || return 0 # not ours (or not running): nothing to stop
  admin="$(find_bin mariadb-admin mysqladmin || true)"
  if [[ -z "$admin" ]] || ! "$admin" --no-defaults --socket="$SOCK" -u root --connect-timeout=5 shutdown >/dev/null 2>&1; then
    kill -TERM "$pid" 2>/dev/null || true
  fi
  for (( i = 0; i < ${MARIADB_STOP_TIMEOUT%.*} * 10; i++ )); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "mariadb.sh: mariadbd (pid $pid) still alive after ${MARIADB_STOP_TIMEOUT}s; sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
    for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$PIDFILE"
}

answers() {
  if [[ "$URL_SET" == 1 ]]; then url_answers; else own_answers; fi
}

cmd_status() {
  if answers; then echo running; return 0; fi
  echo stopped; return 1
}

cmd_wait() {
  local deadline=$(( SECONDS + ${MARIADB_READY_TIMEOUT%.*} ))
  until answers; do
    (( SECONDS < deadline )) || die "database not answering after ${MARIADB_READY_TIMEOUT}s"
    sleep 0.5
  done
}

cmd_url() {
  if [[ "$URL_SET" == 1 ]]; then echo "$DATABASE_URL"; else echo "$OWN_URL"; fi
}

case "${1:-}" in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  wait) cmd_wait ;;
  url) cmd_url ;;
  ro-url) echo "$RO_URL" ;;
  *) echo "usage: $0 {install|start|stop|status|wait|url|ro-url}" >&2; exit 2 ;;
esac
