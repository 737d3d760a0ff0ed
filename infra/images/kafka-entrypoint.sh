#!/bin/bash
# The Kafka image built from Debian (infra/images.sh): configured like the official
# apache/kafka image, by KAFKA_* variables (KAFKA_LOG_DIRS -> log.dirs; "__" -> "_",
# "___" -> "-") and CLUSTER_ID; storage is formatted on the first start.
set -euo pipefail
KAFKA_HOME=/opt/kafka
PROPS="$KAFKA_HOME/config/server.properties"
: "${CLUSTER_ID:?CLUSTER_ID is required}"
: > "$PROPS"
# Settings of the JVM, not of the broker.
skip=" KAFKA_HEAP_OPTS KAFKA_JVM_PERFORMANCE_OPTS KAFKA_OPTS KAFKA_LOG4J_OPTS KAFKA_FORMAT_ARGS "
while IFS='=' read -r name value; do
  [[ "$name" == KAFKA_* && "$skip" != *" $name "* ]] || continue
  key="${name#KAFKA_}"; key="${key,,}"
  key="${key//___/-}"; key="${key//__/@}"; key="${key//_/.}"; key="${key//@/_}"
  printf '%s=%s\n' "$key" "$value" >> "$PROPS"
done < <(env)
CP="$KAFKA_HOME/libs/*"
LOG4J="-Dlog4j2.configurationFile=$KAFKA_HOME/config/log4j2.xml"
# KAFKA_FORMAT_ARGS: more arguments for the first format (e.g. --add-scram ...).
# shellcheck disable=SC2086
java $LOG4J -cp "$CP" kafka.tools.StorageTool format --cluster-id="$CLUSTER_ID" -c "$PROPS" \
  --ignore-formatted ${KAFKA_FORMAT_ARGS:-}
# shellcheck disable=SC2086
exec java ${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g} $LOG4J ${KAFKA_OPTS:-} -cp "$CP" kafka.Kafka "$PROPS"
