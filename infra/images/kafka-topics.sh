#!/bin/bash
# Stands in for the official image's kafka-topics.sh in docker-compose.yml's healthcheck
# (`kafka-topics.sh --bootstrap-server localhost:9092 --list`): the jars of infra/kafka.sh
# have no kafka-tools, so this only checks that the broker's PLAINTEXT port accepts connections,
# which a KRaft broker does once it has started.
set -euo pipefail
server=localhost:9092
while (( $# )); do
  case "$1" in --bootstrap-server) server="$2"; shift 2 ;; *) shift ;; esac
done
host="${server%:*}"; port="${server##*:}"
exec 3<>"/dev/tcp/$host/$port"
