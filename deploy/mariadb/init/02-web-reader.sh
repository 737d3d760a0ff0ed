# Sourced by the mariadb image's entrypoint once, when it initialises the data directory:
# the progress page (WEB_DATABASE_URL) reads the tracker's tables and views through a user
# that cannot write them. Its password is the web_db_password secret, never a literal here.
# (Sourced, not executed: keep this file without the executable bit.)
web_password="$(cat /run/secrets/web_db_password)"
web_password="${web_password//\\/\\\\}"
web_password="${web_password//\'/\\\'}"
docker_process_sql --database=mysql <<EOSQL
CREATE USER IF NOT EXISTS 'cofi_web'@'%' IDENTIFIED BY '${web_password}';
GRANT SELECT ON \`${MARIADB_DATABASE}\`.* TO 'cofi_web'@'%';
EOSQL
unset web_password
