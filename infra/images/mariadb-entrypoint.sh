#!/bin/bash
# The MariaDB image built from Debian (infra/images.sh): the part of the official mariadb
# image's entrypoint that docker-compose.yml uses. On an empty data directory: the database
# MARIADB_DATABASE, its user MARIADB_USER (passwords from MARIADB_*_FILE or MARIADB_*), then the
# scripts of /docker-entrypoint-initdb.d (*.sh sourced, with docker_process_sql; *.sql run).
set -euo pipefail
DATADIR=/var/lib/mysql
SOCKET=/run/mysqld/mysqld.sock
READY=/run/mysqld/ready
if [[ "${1:-}" == -* ]]; then set -- mariadbd "$@"; fi

file_env() { # file_env VAR: VAR, or the content of the file named by VAR_FILE
  local var="$1" file_var="${1}_FILE"
  if [[ -n "${!file_var:-}" ]]; then export "$var"="$(< "${!file_var}")"; fi
}

docker_process_sql() { # the official entrypoint's helper, for the init scripts
  mariadb --protocol=socket --socket="$SOCKET" -uroot -p"$MARIADB_ROOT_PASSWORD" "$@"
}

sql_escape() { local s="${1//\\/\\\\}"; echo "${s//\'/\\\'}"; }

initialise() {
  file_env MARIADB_PASSWORD; file_env MARIADB_ROOT_PASSWORD
  : "${MARIADB_ROOT_PASSWORD:?MARIADB_ROOT_PASSWORD(_FILE) is required}"
  mariadb-install-db --user=mysql --datadir="$DATADIR" --skip-test-db \
    --auth-root-authentication-method=normal >/dev/null
  "$@" --user=mysql --skip-networking --socket="$SOCKET" &
  local pid=$! i
  for i in $(seq 60); do
    mariadb-admin --protocol=socket --socket="$SOCKET" -uroot ping >/dev/null 2>&1 && break
    kill -0 "$pid" || { echo "mariadb: the server died during initialisation" >&2; exit 1; }
    sleep 1
  done
  local root user
  root="$(sql_escape "$MARIADB_ROOT_PASSWORD")"
  mariadb --protocol=socket --socket="$SOCKET" -uroot <<EOSQL
ALTER USER 'root'@'localhost' IDENTIFIED BY '${root}';
CREATE USER 'root'@'%' IDENTIFIED BY '${root}';
GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;
EOSQL
  if [[ -n "${MARIADB_DATABASE:-}" ]]; then
    docker_process_sql -e "CREATE DATABASE IF NOT EXISTS \`${MARIADB_DATABASE}\`"
  fi
  if [[ -n "${MARIADB_USER:-}" ]]; then
    user="$(sql_escape "${MARIADB_PASSWORD:-}")"
    docker_process_sql <<EOSQL
CREATE USER '${MARIADB_USER}'@'%' IDENTIFIED BY '${user}';
GRANT ALL ON \`${MARIADB_DATABASE}\`.* TO '${MARIADB_USER}'@'%';
EOSQL
  fi
  local f
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sh) echo "mariadb: sourcing $f"; # shellcheck disable=SC1090
        . "$f" ;;
      *.sql) echo "mariadb: running $f"; docker_process_sql --database="${MARIADB_DATABASE:-mysql}" < "$f" ;;
    esac
  done
  mariadb-admin --protocol=socket --socket="$SOCKET" -uroot -p"$MARIADB_ROOT_PASSWORD" shutdown
  wait "$pid" || true
}

rm -f "$READY"
mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld "$DATADIR"
if [[ "$1" == mariadbd && ! -d "$DATADIR/mysql" ]]; then initialise "$@"; fi
touch "$READY"
exec "$@" --user=mysql
