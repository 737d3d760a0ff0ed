#!/bin/bash
# The compose stack's Kafka entrypoint (docker-compose.yml): the settings that hold a secret are
# read from the secret files here, so that no password is written in the compose file or shown
# by `docker inspect`, then the image's own entrypoint starts the broker from KAFKA_* variables.
# Works with the official apache/kafka image and with the one built from Debian's packages
# (infra/images.sh).
#
#   /run/secrets/kafka_admin          the admin's password: PLAIN on the INTERNAL listener, for
#                                     the broker itself (inter-broker) and the one-shot steps
#   /run/secrets/kafka_tls_password   the EXTERNAL listener's PKCS12 keystore's password
set -euo pipefail
secret() { tr -d '\n' <"/run/secrets/$1"; }
admin=admin # a super user (KAFKA_SUPER_USERS in docker-compose.yml)
admin_password="$(secret kafka_admin)"
tls_password="$(secret kafka_tls_password)"
plain="org.apache.kafka.common.security.plain.PlainLoginModule required"
export KAFKA_LISTENER_NAME_INTERNAL_PLAIN_SASL_JAAS_CONFIG="$plain username=\"$admin\" password=\"$admin_password\" user_$admin=\"$admin_password\";"
export KAFKA_LISTENER_NAME_EXTERNAL_SSL_KEYSTORE_PASSWORD="$tls_password"
export KAFKA_LISTENER_NAME_EXTERNAL_SSL_KEY_PASSWORD="$tls_password"
# For the healthcheck (kafka-topics.sh --command-config), inside this container only.
umask 077
printf '%s\n' "security.protocol=SASL_PLAINTEXT" "sasl.mechanism=PLAIN" \
  "sasl.jaas.config=$plain username=\"$admin\" password=\"$admin_password\";" \
  >/tmp/cofi-admin.properties
if [[ -x /opt/kafka/bin/entrypoint.sh ]]; then exec /opt/kafka/bin/entrypoint.sh; fi
# The official image: its base image's entrypoint, then its own command.
if [[ -x /__cacert_entrypoint.sh ]]; then exec /__cacert_entrypoint.sh /etc/kafka/docker/run; fi
exec /etc/kafka/docker/run
