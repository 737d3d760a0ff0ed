#!/usr/bin/env bash
# Make the secret files docker-compose.yml reads, where they are missing (never overwrites):
# random passwords for the database, its root, Grafana's admin, Grafana's and the progress
# page's database readers, the progress page's visitors, the alert webhooks' token (give it to
# the pager's relay),
# and an empty LLM API key (write yours into it), under SECRETS_DIR (default ./secrets,
# git-ignored). The folder is mode 700; the files 644, because compose (without swarm) mounts
# each file into its containers as it is, and their users (cofi, mysql, grafana) must read it.
#
#   scripts/compose-secrets.sh [SECRETS_DIR]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${1:-${SECRETS_DIR:-$ROOT/secrets}}"
mkdir -p "$DIR"
chmod 700 "$DIR"
umask 022

random() { od -An -N24 -tx1 /dev/urandom | tr -d ' \n'; }

for name in db_password db_root_password grafana_admin_password grafana_db_password web_db_password \
  web_auth_password alert_webhook_token; do
  if [[ ! -e "$DIR/$name" ]]; then
    random >"$DIR/$name"
    echo "wrote $DIR/$name"
  fi
done
if [[ ! -e "$DIR/llm_api_key" ]]; then
  : >"$DIR/llm_api_key"
  echo "wrote $DIR/llm_api_key (empty: put the LLM API's key in it, or leave it empty for none)"
fi
