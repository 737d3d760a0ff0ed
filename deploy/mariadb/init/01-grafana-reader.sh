# Sourced by the mariadb image's entrypoint once, when it initialises the data directory:
# Grafana reads the tracker's tables and views through a user that cannot write them. The
# password is the grafana_db_password secret (docker-compose.yml), never a literal here.
# (Sourced, not executed: keep this file without the executable bit.)
grafana_password="$(cat /run/secrets/grafana_db_password)"
grafana_password="${grafana_password//\\/\\\\}"
grafana_password="${grafana_password//\'/\\\'}"
docker_process_sql --database=mysql <<EOSQL
CREATE USER IF NOT EXISTS 'grafana'@'%' IDENTIFIED BY '${grafana_password}';
GRANT SELECT ON \`${MARIADB_DATABASE}\`.* TO 'grafana'@'%';
EOSQL
unset grafana_password
