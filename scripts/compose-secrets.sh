#!/usr/bin/env bash
# Make the secret files docker-compose.yml reads, where they are missing (never overwrites):
# random passwords for the database, its root, Grafana's admin, Grafana's and the progress
# page's database readers, the progress page's visitors, the alert webhooks' token (give it to
# the pager's relay), each Kafka user (kafka_<user>: the admin and those of shared/acl_plan.py),
# the Kafka EXTERNAL listener's TLS: a CA (kafka_ca.pem, for the clients outside; its key is
# not kept) and the broker's PKCS12 keystore for localhost, 127.0.0.1 and KAFKA_EXTERNAL_HOST
# (openssl), and an empty LLM API key (write yours into it), under SECRETS_DIR (default ./secrets,
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
  web_auth_password alert_webhook_token kafka_tls_password \
  kafka_admin kafka_upload kafka_distributor kafka_gpu_stage kafka_llm_stage kafka_tracker kafka_operator; do
  if [[ ! -e "$DIR/$name" ]]; then
    random >"$DIR/$name"
    echo "wrote $DIR/$name"
  fi
done
if [[ ! -e "$DIR/llm_api_key" ]]; then
  : >"$DIR/llm_api_key"
  echo "wrote $DIR/llm_api_key (empty: put the LLM API's key in it, or leave it empty for none)"
fi
if [[ ! -e "$DIR/kafka_keystore" ]]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  san="DNS:localhost,IP:127.0.0.1${KAFKA_EXTERNAL_HOST:+,DNS:$KAFKA_EXTERNAL_HOST}"
  (
    cd "$tmp"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -sha256 -subj "/CN=cofi Kafka CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -keyout ca.key -out ca.pem
    openssl req -newkey rsa:2048 -nodes -subj "/CN=${KAFKA_EXTERNAL_HOST:-localhost}" \
      -keyout broker.key -out broker.csr
    printf '%s\n' "subjectAltName=$san" "extendedKeyUsage=serverAuth" \
      "keyUsage=critical,digitalSignature,keyEncipherment" "basicConstraints=CA:FALSE" >broker.ext
    openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 825 -sha256 \
      -extfile broker.ext -out broker.pem
    openssl pkcs12 -export -in broker.pem -inkey broker.key -certfile ca.pem -name kafka \
      -passout "file:$DIR/kafka_tls_password" -out broker.p12
  ) >/dev/null 2>&1 || { echo "compose-secrets.sh: openssl could not make the Kafka TLS files" >&2; exit 1; }
  # 644 like the others: the broker's user reads it through compose's mount (its password does
  # not sit beside it in the container's environment: deploy/kafka/start.sh reads a secret).
  install -m 644 "$tmp/ca.pem" "$DIR/kafka_ca.pem"
  install -m 644 "$tmp/broker.p12" "$DIR/kafka_keystore"
  echo "wrote $DIR/kafka_keystore and $DIR/kafka_ca.pem (the CA the upload system trusts)"
fi
