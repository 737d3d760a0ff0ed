#!/usr/bin/env bash
# Local Kafka (KRaft) built from Maven Central jars: one node, or a 3-node cluster.
#
#   infra/kafka.sh install   fetch the broker's runtime jars into $COFI_CACHE/kafka/lib (once)
#   infra/kafka.sh start [--sasl-ssl]
#                            install if needed, format storage once, start the broker, wait until
#                            ready; --sasl-ssl (or KAFKA_SASL_SSL_PORT) adds a SASL_SSL listener;
#                            --acls (or KAFKA_ACLS=1) also turns on the StandardAuthorizer, makes
#                            a SCRAM user per service and applies `python -m cli.acls apply`
#   infra/kafka.sh stop      SIGTERM the broker, SIGKILL after 30 s
#   infra/kafka.sh status    print "running" and exit 0 if the broker port answers, else exit 1
#   infra/kafka.sh wait      wait until a metadata request succeeds (KAFKA_READY_TIMEOUT, default 60 s)
#   infra/kafka.sh client-env
#                            print the KAFKA_* settings a client needs for the SASL_SSL listener
#   infra/kafka.sh cluster-start [N...]   start the 3-node cluster (or only nodes N), wait until ready;
#                                         KAFKA_ACLS=1: the authorizer, users and ACLs as `start --acls`
#   infra/kafka.sh cluster-stop [N...]    SIGTERM every node (or only nodes N), SIGKILL after 30 s
#   infra/kafka.sh cluster-status         one line per node: "node N running|stopped pid port"
#
# Env: COFI_CACHE (default <repo>/.cache), KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (9093),
#      KAFKA_SASL_SSL_PORT (unset: no SASL_SSL listener; --sasl-ssl: KAFKA_PORT+2),
#      KAFKA_SASL_USERNAME (cofi), KAFKA_SASL_PASSWORD (cofi-secret), KAFKA_TLS_STORE_PASSWORD,
#      KAFKA_ACLS (unset), KAFKA_USERS_DIR (a file per service user holding its password;
#      default $COFI_CACHE/kafka/users, missing ones generated), TOPIC_PREFIX (for the ACLs),
#      KAFKA_CLUSTER_PORT (29092: node n listens on +2(n-1), its controller on +2(n-1)+1),
#      KAFKA_CLUSTER_HEAP_OPTS ("-Xms256m -Xmx768m"),
#      KAFKA_BOOTSTRAP_SERVERS (for `wait`; default 127.0.0.1:$KAFKA_PORT), KAFKA_READY_TIMEOUT (60),
#      KAFKA_HEAP_OPTS ("-Xms256m -Xmx1g"), JAVA (java), MVN (mvn), PYTHON (python3),
#      COFI_MAVEN_REPO (Maven local repository; default $COFI_CACHE/m2). See infra/README.md.
set -euo pipefail

INFRA_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$INFRA_DIR/.." && pwd)"
COFI_CACHE="${COFI_CACHE:-$REPO_ROOT/.cache}"
mkdir -p "$COFI_CACHE"
COFI_CACHE="$(cd "$COFI_CACHE" && pwd)"

KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_READY_TIMEOUT="${KAFKA_READY_TIMEOUT:-60}"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g}"
JAVA="${JAVA:-java}"
MVN="${MVN:-mvn}"
# The project's venv when it exists: the probes need its packages (aiokafka, asyncmy).
if [[ -z "${PYTHON:-}" && -x "$REPO_ROOT/.venv/bin/python" ]]; then PYTHON="$REPO_ROOT/.venv/bin/python"; fi
PYTHON="${PYTHON:-python3}"
KAFKA_SASL_SSL_PORT="${KAFKA_SASL_SSL_PORT:-}"
KAFKA_SASL_USERNAME="${KAFKA_SASL_USERNAME:-cofi}"
KAFKA_SASL_PASSWORD="${KAFKA_SASL_PASSWORD:-cofi-secret}"
KAFKA_TLS_STORE_PASSWORD="${KAFKA_TLS_STORE_PASSWORD:-cofi-store}"
KAFKA_ACLS="${KAFKA_ACLS:-}"
KAFKA_CLUSTER_PORT="${KAFKA_CLUSTER_PORT:-29092}"
KAFKA_CLUSTER_HEAP_OPTS="${KAFKA_CLUSTER_HEAP_OPTS:--Xms256m -Xmx768m}"
CLUSTER_NODES=(1 2 3)

POM="$INFRA_DIR/kafka/pom.xml"
LOG4J_CONF="$INFRA_DIR/kafka/log4j2.xml"
READY_PY="$INFRA_DIR/kafka_ready.py"

KDIR="$COFI_CACHE/kafka"
LIB="$KDIR/lib"
MARKER="$LIB/.installed"
DATA="$KDIR/data"
PROPS="$KDIR/server.properties"
PIDFILE="$KDIR/kafka.pid"
LOGFILE="$KDIR/kafka.log"
CLUSTER_ID_FILE="$KDIR/cluster.id"
SCRAM_MARKER="$KDIR/scram.user"
TLS_DIR="$KDIR/tls"
CLIENT_ENV="$KDIR/sasl-ssl.env"
USERS_DIR="${KAFKA_USERS_DIR:-$KDIR/users}"
NODE_ID=1
NODE_PORT="$KAFKA_PORT"
NODE_CONTROLLER_PORT="$KAFKA_CONTROLLER_PORT"
NODE_SASL_SSL_PORT="$KAFKA_SASL_SSL_PORT"
HEAP_OPTS="$KAFKA_HEAP_OPTS"
MAVEN_REPO="${COFI_MAVEN_REPO:-$COFI_CACHE/m2}"

die() { echo "kafka.sh: $*" >&2; exit 1; }

port_open() { # port_open PORT -> 0 if something accepts TCP on 127.0.0.1:PORT
  timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

lock() { # serialise install/start/stop between concurrent invocations
  mkdir -p "$KDIR"
  exec 9>"$KDIR/.lock"
  flock -w 600 9 || die "could not take $KDIR/.lock"
}

is_our_kafka() { # is_our_kafka PID
  [[ -n "${1:-}" && -r "/proc/$1/cmdline" ]] || return 1
  tr '\0' ' ' <"/proc/$1/cmdline" | grep -q "kafka.Kafka $PROPS"
}

kafka_pid() { # prints the pid of the broker started by this script, if alive
  local pid=""
  [[ -f "$PIDFILE" ]] && pid="$(cat "$PIDFILE" 2>/dev/null || true)"
  if is_our_kafka "$pid"; then echo "$pid"; return 0; fi
  # pid file lost or stale: look for the broker running our exact properties file
  pid="$(pgrep -f -- "kafka.Kafka $PROPS" 2>/dev/null | head -n1 || true)"
  if is_our_kafka "$pid"; then echo "$pid"; return 0; fi
  return 1
}

pom_hash() { sha256sum "$POM" | cut -d' ' -f1; }

installed() { [[ -f "$MARKER" && "$(cat "$MARKER")" == "$(pom_hash)" ]]; }

cmd_install() {
  installed && return 0
  command -v "$MVN" >/dev/null || die "maven ($MVN) not found"
  command -v "$JAVA" >/dev/null || die "java ($JAVA) not found"
  rm -rf "$LIB"
  mkdir -p "$LIB" "$MAVEN_REPO"
  local out
  if ! out="$("$MVN" -B -q -f "$POM" -Dmaven.repo.local="$MAVEN_REPO" \
        org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$LIB" 2>&1)"; then
    echo "$out" >&2
    die "maven copy-dependencies failed"
  fi
  ls "$LIB"/kafka_2.13-*.jar >/dev/null 2>&1 || die "no kafka_2.13 jar in $LIB after maven run"
  pom_hash >"$MARKER"
}

write_properties() {
  mkdir -p "$DATA"
  local tmp="$PROPS.tmp"
  # The one-node PLAINTEXT broker; the SASL_SSL listener and the cluster override keys below.
  cat >"$tmp" <<EOF
# Generated by infra/kafka.sh; edits are overwritten on every start.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:${KAFKA_CONTROLLER_PORT}
listeners=PLAINTEXT://127.0.0.1:${KAFKA_PORT},CONTROLLER://127.0.0.1:${KAFKA_CONTROLLER_PORT}
advertised.listeners=PLAINTEXT://127.0.0.1:${KAFKA_PORT}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=${DATA}

# one node: internal topics with replication factor and min ISR 1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
default.replication.factor=1
min.insync.replicas=1

group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
num.partitions=1
num.recovery.threads.per.data.dir=1
log.retention.hours=168
log.segment.bytes=1073741824
EOF
  [[ -n "${CLUSTER_MODE:-}" ]] && cluster_properties "$tmp"
  [[ -n "$NODE_SASL_SSL_PORT" ]] && sasl_ssl_properties "$tmp"
  [[ -n "$KAFKA_ACLS" ]] && acl_properties "$tmp"
  chmod 600 "$tmp" # the SASL_SSL listener's JAAS line holds the PLAIN user's password
  mv "$tmp" "$PROPS"
}

set_prop() { # set_prop FILE KEY VALUE: the key's one line in FILE is KEY=VALUE (replaced or added)
  awk -v key="$2" 'index($0, key "=") != 1' "$1" >"$1.set" && mv "$1.set" "$1"
  printf '%s=%s\n' "$2" "$3" >>"$1"
}

cluster_properties() { # cluster_properties FILE: node NODE_ID of three, replicated internal topics
  local file="$1" voters="" n
  for n in "${CLUSTER_NODES[@]}"; do
    voters+="${voters:+,}${n}@127.0.0.1:$(cluster_controller_port "$n")"
  done
  sed -i '/^# one node:/d' "$file"
  echo "# three nodes (infra/kafka.sh cluster-start): RF 3 and min ISR 2 everywhere" >>"$file"
  set_prop "$file" node.id "$NODE_ID"
  set_prop "$file" controller.quorum.voters "$voters"
  set_prop "$file" listeners "PLAINTEXT://127.0.0.1:${NODE_PORT},CONTROLLER://127.0.0.1:${NODE_CONTROLLER_PORT}"
  set_prop "$file" advertised.listeners "PLAINTEXT://127.0.0.1:${NODE_PORT}"
  set_prop "$file" offsets.topic.replication.factor 3
  set_prop "$file" offsets.topic.num.partitions 3
  set_prop "$file" transaction.state.log.replication.factor 3
  set_prop "$file" transaction.state.log.min.isr 2
  set_prop "$file" transaction.state.log.num.partitions 3
  set_prop "$file" share.coordinator.state.topic.replication.factor 3
  set_prop "$file" share.coordinator.state.topic.min.isr 2
  set_prop "$file" default.replication.factor 3
  set_prop "$file" min.insync.replicas 2
  set_prop "$file" unclean.leader.election.enable false
}

sasl_ssl_properties() { # sasl_ssl_properties FILE: add the SASL_SSL listener (TLS from $TLS_DIR)
  local file="$1" l=listener.name.sasl_ssl
  local listeners advertised map
  listeners="$(grep '^listeners=' "$file" | cut -d= -f2-)"
  advertised="$(grep '^advertised.listeners=' "$file" | cut -d= -f2-)"
  map="$(grep '^listener.security.protocol.map=' "$file" | cut -d= -f2-)"
  echo "# SASL_SSL listener: PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 over TLS (CA: $TLS_DIR/ca.pem)" >>"$file"
  set_prop "$file" listeners "$listeners,SASL_SSL://127.0.0.1:${NODE_SASL_SSL_PORT}"
  set_prop "$file" advertised.listeners "$advertised,SASL_SSL://127.0.0.1:${NODE_SASL_SSL_PORT}"
  set_prop "$file" listener.security.protocol.map "$map,SASL_SSL:SASL_SSL"
  set_prop "$file" sasl.enabled.mechanisms PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
  set_prop "$file" "$l.sasl.enabled.mechanisms" PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
  set_prop "$file" "$l.plain.sasl.jaas.config" \
    "org.apache.kafka.common.security.plain.PlainLoginModule required user_${KAFKA_SASL_USERNAME}=\"${KAFKA_SASL_PASSWORD}\";"
  set_prop "$file" "$l.scram-sha-256.sasl.jaas.config" "org.apache.kafka.common.security.scram.ScramLoginModule required;"
  set_prop "$file" "$l.scram-sha-512.sasl.jaas.config" "org.apache.kafka.common.security.scram.ScramLoginModule required;"
  set_prop "$file" "$l.ssl.keystore.type" PKCS12
  set_prop "$file" "$l.ssl.keystore.location" "$TLS_DIR/broker.p12"
  set_prop "$file" "$l.ssl.keystore.password" "$KAFKA_TLS_STORE_PASSWORD"
  set_prop "$file" "$l.ssl.key.password" "$KAFKA_TLS_STORE_PASSWORD"
  set_prop "$file" "$l.ssl.truststore.type" PKCS12
  set_prop "$file" "$l.ssl.truststore.location" "$TLS_DIR/truststore.p12"
  set_prop "$file" "$l.ssl.truststore.password" "$KAFKA_TLS_STORE_PASSWORD"
  set_prop "$file" "$l.ssl.client.auth" none
}

acl_properties() { # acl_properties FILE: nothing without an ACL, but for the super users
  # The PLAINTEXT and CONTROLLER listeners bind the loopback only (127.0.0.1 here; inside the
  # broker's own container in compose): their principal, ANONYMOUS, is the broker itself and
  # the local admin. Every client from outside authenticates on SASL_SSL as its own user.
  echo "# ACLs (--acls): StandardAuthorizer; super users: the admin SCRAM user and the loopback listeners" >>"$1"
  set_prop "$1" authorizer.class.name org.apache.kafka.metadata.authorizer.StandardAuthorizer
  set_prop "$1" super.users "User:${KAFKA_SASL_USERNAME};User:ANONYMOUS"
  set_prop "$1" allow.everyone.if.no.acl.found false
}

service_users() { # the service users of the ACL plan, one a line
  (cd "$REPO_ROOT" && "$PYTHON" -m cli.acls users) || die "python -m cli.acls users failed"
}

ensure_user_passwords() { # a password file per service user: KAFKA_USERS_DIR's, or generated
  [[ -n "$KAFKA_ACLS" ]] || return 0
  mkdir -p "$USERS_DIR"
  chmod 700 "$USERS_DIR"
  local user
  for user in $(service_users); do
    [[ -s "$USERS_DIR/$user" ]] && continue
    (umask 077; openssl rand -hex 24 >"$USERS_DIR/$user")
  done
}

scram_users() { # NAME=PASSWORD of every SCRAM user: the admin, and each service's with --acls
  printf '%s=%s\n' "$KAFKA_SASL_USERNAME" "$KAFKA_SASL_PASSWORD"
  [[ -n "$KAFKA_ACLS" ]] || return 0
  local user
  for user in $(service_users); do printf '%s=%s\n' "$user" "$(cat "$USERS_DIR/$user")"; done
}

apply_acls() { # apply_acls [BOOTSTRAP]: as ANONYMOUS on the loopback PLAINTEXT listener, a super user
  [[ -n "$KAFKA_ACLS" ]] || return 0
  local out bootstrap="${1:-127.0.0.1:$NODE_PORT}"
  if ! out="$(cd "$REPO_ROOT" && KAFKA_BOOTSTRAP_SERVERS="$bootstrap" \
        KAFKA_SECURITY_PROTOCOL=PLAINTEXT "$PYTHON" -m cli.acls apply 2>&1)"; then
    echo "$out" >&2
    die "could not apply the ACLs"
  fi
}

check_sasl_credentials() {
  [[ "$KAFKA_SASL_USERNAME" =~ ^[A-Za-z0-9._-]+$ ]] \
    || die "KAFKA_SASL_USERNAME may hold only letters, digits, '.', '_' and '-'"
  case "$KAFKA_SASL_PASSWORD" in
    "" | *[\"\\\ ,=\]]*) die "KAFKA_SASL_PASSWORD must be set and hold no quote, backslash, space, ',', '=' or ']'" ;;
  esac
}

ensure_tls() { # a CA and the broker's keystore and truststore under $TLS_DIR, made once
  local dir="$TLS_DIR"
  [[ -s "$dir/ca.pem" && -s "$dir/broker.p12" && -s "$dir/truststore.p12" ]] && return 0
  command -v openssl >/dev/null || die "openssl not found"
  command -v keytool >/dev/null || die "keytool not found"
  local tmp out
  tmp="$(mktemp -d "$KDIR/.tls.XXXXXX")"
  if ! out="$( (
    set -e
    cd "$tmp"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -sha256 -subj "/CN=cofi local CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -keyout ca.key -out ca.pem
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout broker.key -out broker.csr
    printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "extendedKeyUsage=serverAuth" \
      "keyUsage=critical,digitalSignature,keyEncipherment" "basicConstraints=CA:FALSE" \
      "authorityKeyIdentifier=keyid,issuer" "subjectKeyIdentifier=hash" >broker.ext
    openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 825 -sha256 \
      -extfile broker.ext -out broker.pem
    openssl pkcs12 -export -in broker.pem -inkey broker.key -certfile ca.pem -name broker \
      -passout "pass:$KAFKA_TLS_STORE_PASSWORD" -out broker.p12
    keytool -importcert -noprompt -alias cofi-ca -file ca.pem -storetype PKCS12 \
      -keystore truststore.p12 -storepass "$KAFKA_TLS_STORE_PASSWORD"
    chmod 600 ca.key broker.key broker.p12
    rm -f broker.csr broker.ext ca.srl
  ) 2>&1 )"; then
    echo "$out" >&2
    rm -rf "$tmp"
    die "could not make the TLS certificates"
  fi
  rm -rf "$dir"
  mv "$tmp" "$dir"
}

scram_wanted() { # what the SCRAM marker holds once the users' credentials are in the metadata
  scram_users | sha256sum | cut -d' ' -f1
}

format_storage() {
  [[ -f "$DATA/meta.properties" ]] && return 0
  local id out scram=()
  if [[ ! -s "$CLUSTER_ID_FILE" ]]; then
    id="$("$JAVA" -Dlog4j2.configurationFile="$LOG4J_CONF" -cp "$LIB/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1)"
    [[ -n "$id" ]] || die "StorageTool random-uuid printed nothing"
    echo "$id" >"$CLUSTER_ID_FILE"
  fi
  id="$(cat "$CLUSTER_ID_FILE")"
  if [[ -n "$NODE_SASL_SSL_PORT" ]]; then
    # The SCRAM user goes into the first metadata records (one --add-scram per mechanism).
    local pair
    while IFS= read -r pair; do
      scram+=(--add-scram "SCRAM-SHA-256=[name=${pair%%=*},password=${pair#*=}]"
              --add-scram "SCRAM-SHA-512=[name=${pair%%=*},password=${pair#*=}]")
    done < <(scram_users)
  fi
  if ! out="$("$JAVA" -Dlog4j2.configurationFile="$LOG4J_CONF" -cp "$LIB/*" kafka.tools.StorageTool \
        format --cluster-id="$id" -c "$PROPS" --ignore-formatted "${scram[@]}" 2>&1)"; then
    echo "$out" >&2
    die "StorageTool format failed"
  fi
  [[ -f "$DATA/meta.properties" ]] || { echo "$out" >&2; die "format did not write $DATA/meta.properties"; }
  if [[ -n "$NODE_SASL_SSL_PORT" ]]; then scram_wanted >"$SCRAM_MARKER"; else rm -f "$SCRAM_MARKER"; fi
}

ensure_scram_user() { # storage formatted before SASL was on, or another password: alter it live
  [[ -n "$NODE_SASL_SSL_PORT" ]] || return 0
  [[ -f "$SCRAM_MARKER" && "$(cat "$SCRAM_MARKER")" == "$(scram_wanted)" ]] && return 0
  local out mechanism pair
  while IFS= read -r pair; do
    for mechanism in SCRAM-SHA-256 SCRAM-SHA-512; do # one per request: the API refuses two
      if ! out="$("$JAVA" -Dlog4j2.configurationFile="$LOG4J_CONF" -cp "$LIB/*" kafka.admin.ConfigCommand \
            --bootstrap-server "127.0.0.1:$NODE_PORT" --alter --entity-type users \
            --entity-name "${pair%%=*}" --add-config "$mechanism=[password=${pair#*=}]" 2>&1)"; then
        echo "$out" >&2
        die "could not set the $mechanism credentials of ${pair%%=*}"
      fi
    done
  done < <(scram_users)
  scram_wanted >"$SCRAM_MARKER"
}

write_client_env() { # what a client of the SASL_SSL listener sets (infra/kafka.sh client-env)
  [[ -n "$KAFKA_SASL_SSL_PORT" ]] || { rm -f "$CLIENT_ENV"; return 0; }
  local servers
  if [[ -n "${CLUSTER_MODE:-}" ]]; then
    servers="$(for n in "${CLUSTER_NODES[@]}"; do printf '127.0.0.1:%s,' "$((KAFKA_SASL_SSL_PORT + n - 1))"; done)"
    servers="${servers%,}"
  else
    servers="127.0.0.1:$KAFKA_SASL_SSL_PORT"
  fi
  umask 077
  cat >"$CLIENT_ENV" <<EOF
KAFKA_BOOTSTRAP_SERVERS=$servers
KAFKA_SECURITY_PROTOCOL=SASL_SSL
KAFKA_SASL_MECHANISM=SCRAM-SHA-512
KAFKA_SASL_USERNAME=$KAFKA_SASL_USERNAME
KAFKA_SASL_PASSWORD=$KAFKA_SASL_PASSWORD
KAFKA_SSL_CAFILE=$TLS_DIR/ca.pem
EOF
}

launch() {
  [[ -f "$LOGFILE" ]] && mv -f "$LOGFILE" "$LOGFILE.1"
  # setsid detaches from our session; the inner shell writes its own pid and execs java,
  # so the pid file holds the JVM's pid. fd 9 (our lock) is closed for the child.
  # shellcheck disable=SC2086
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$PIDFILE" \
    "$JAVA" $HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$LOG4J_CONF" -cp "$LIB/*" kafka.Kafka "$PROPS" \
    </dev/null >>"$LOGFILE" 2>&1 9>&- &
  disown || true
}

wait_port() { # wait_port PORT PID DEADLINE: until the port answers, failing fast if the JVM dies
  local port="$1" pid="$2" deadline="$3"
  until port_open "$port"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "kafka.sh: broker (pid $pid) exited during startup; last log lines:" >&2
      tail -n 40 "$LOGFILE" >&2 || true
      exit 1
    fi
    (( SECONDS < deadline )) || die "broker port $port not open after ${KAFKA_READY_TIMEOUT}s (log: $LOGFILE)"
    sleep 0.3
  done
}

ready_probe() { # ready_probe BOOTSTRAP SECONDS [kafka_ready.py args...]: PLAINTEXT metadata probe
  local bootstrap="$1" left="$2"; shift 2
  KAFKA_BOOTSTRAP_SERVERS="$bootstrap" KAFKA_READY_TIMEOUT="$left" KAFKA_SECURITY_PROTOCOL=PLAINTEXT \
    "$PYTHON" "$READY_PY" "$@"
}

sasl_probe() { # sasl_probe BOOTSTRAP SECONDS: SCRAM-SHA-512 over the SASL_SSL listener
  KAFKA_BOOTSTRAP_SERVERS="$1" KAFKA_READY_TIMEOUT="$2" KAFKA_SECURITY_PROTOCOL=SASL_SSL \
    KAFKA_SASL_MECHANISM=SCRAM-SHA-512 KAFKA_SASL_USERNAME="$KAFKA_SASL_USERNAME" \
    KAFKA_SASL_PASSWORD="$KAFKA_SASL_PASSWORD" KAFKA_SSL_CAFILE="$TLS_DIR/ca.pem" \
    "$PYTHON" "$READY_PY"
}

seconds_left() { local left=$(( $1 - SECONDS )); (( left > 5 )) || left=5; echo "$left"; }

wait_ready() { # wait_ready BOOTSTRAP [PID]
  local bootstrap="$1" pid="${2:-}" host port deadline
  host="${bootstrap%%,*}"; port="${host##*:}"
  deadline=$(( SECONDS + ${KAFKA_READY_TIMEOUT%.*} ))
  # cheap poll for the port first, failing fast if our JVM dies
  [[ -n "$pid" ]] && wait_port "$port" "$pid" "$deadline"
  ready_probe "$bootstrap" "$(seconds_left "$deadline")" \
    || die "broker at $bootstrap not ready (log: $LOGFILE)"
  if [[ -n "$NODE_SASL_SSL_PORT" ]]; then
    ensure_scram_user
    sasl_probe "127.0.0.1:$NODE_SASL_SSL_PORT" "$(seconds_left "$deadline")" \
      || die "SASL_SSL listener 127.0.0.1:$NODE_SASL_SSL_PORT refused SCRAM-SHA-512 (log: $LOGFILE)"
    apply_acls
  fi
}

prepare_sasl_ssl() {
  [[ -n "$KAFKA_SASL_SSL_PORT" ]] || return 0
  check_sasl_credentials
  ensure_tls
  ensure_user_passwords
}

cmd_start() {
  lock
  local pid
  if port_open "$KAFKA_PORT"; then
    pid="$(kafka_pid || true)"
    flock -u 9
    wait_ready "127.0.0.1:$KAFKA_PORT" "$pid"
    return 0
  fi
  if pid="$(kafka_pid)"; then # ours, still starting up
    flock -u 9
    wait_ready "127.0.0.1:$KAFKA_PORT" "$pid"
    return 0
  fi
  port_open "$KAFKA_CONTROLLER_PORT" && die "controller port $KAFKA_CONTROLLER_PORT is taken by another process (set KAFKA_CONTROLLER_PORT)"
  if [[ -n "$KAFKA_SASL_SSL_PORT" ]] && port_open "$KAFKA_SASL_SSL_PORT"; then
    die "SASL_SSL port $KAFKA_SASL_SSL_PORT is taken by another process (set KAFKA_SASL_SSL_PORT)"
  fi
  cmd_install
  prepare_sasl_ssl
  write_properties
  format_storage
  write_client_env
  rm -f "$PIDFILE"
  launch
  local i
  for i in $(seq 50); do [[ -s "$PIDFILE" ]] && break; sleep 0.1; done
  pid="$(cat "$PIDFILE" 2>/dev/null || true)"
  [[ -n "$pid" ]] || die "broker did not start (no pid file)"
  flock -u 9
  wait_ready "127.0.0.1:$KAFKA_PORT" "$pid"
  if [[ -n "$KAFKA_SASL_SSL_PORT" ]]; then
    echo "kafka.sh: SASL_SSL on 127.0.0.1:$KAFKA_SASL_SSL_PORT; CA $TLS_DIR/ca.pem; client settings in $CLIENT_ENV"
  fi
}

stop_pid() { # stop_pid PID: SIGTERM, SIGKILL after 30 s
  local pid="$1" i
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 300); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "kafka.sh: broker (pid $pid) still alive after 30s; sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
    for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$PIDFILE"
}

cmd_stop() {
  lock
  local pid
  pid="$(kafka_pid)" || {
    rm -f "$PIDFILE"
    port_open "$KAFKA_PORT" && echo "kafka.sh: port $KAFKA_PORT answers but the broker was not started by this script; not stopping it" >&2
    return 0
  }
  stop_pid "$pid"
}

cmd_status() {
  if port_open "$KAFKA_PORT"; then echo running; return 0; fi
  echo stopped; return 1
}

cmd_wait() {
  KAFKA_BOOTSTRAP_SERVERS="${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:$KAFKA_PORT}" \
    KAFKA_READY_TIMEOUT="$KAFKA_READY_TIMEOUT" "$PYTHON" "$READY_PY"
}

cmd_client_env() {
  [[ -s "$CLIENT_ENV" ]] || die "no SASL_SSL listener was started here ($CLIENT_ENV missing)"
  cat "$CLIENT_ENV"
}

# -- the 3-node cluster: $COFI_CACHE/kafka/cluster/node<N>, one JVM per node ------------------
cluster_port() { echo $(( KAFKA_CLUSTER_PORT + 2 * ($1 - 1) )); }
cluster_controller_port() { echo $(( KAFKA_CLUSTER_PORT + 2 * ($1 - 1) + 1 )); }

cluster_node() { # cluster_node N: point the per-node variables at node N
  local n="$1"
  [[ " ${CLUSTER_NODES[*]} " == *" $n "* ]] || die "no cluster node $n (nodes: ${CLUSTER_NODES[*]})"
  CLUSTER_MODE=1
  NODE_ID="$n"
  NODE_PORT="$(cluster_port "$n")"
  NODE_CONTROLLER_PORT="$(cluster_controller_port "$n")"
  NODE_SASL_SSL_PORT="${KAFKA_SASL_SSL_PORT:+$(( KAFKA_SASL_SSL_PORT + n - 1 ))}"
  HEAP_OPTS="$KAFKA_CLUSTER_HEAP_OPTS"
  local dir="$KDIR/cluster/node$n"
  DATA="$dir/data"
  PROPS="$dir/server.properties"
  PIDFILE="$dir/kafka.pid"
  LOGFILE="$dir/kafka.log"
  SCRAM_MARKER="$dir/scram.user"
  CLUSTER_ID_FILE="$KDIR/cluster/cluster.id"
  mkdir -p "$dir"
}

cluster_bootstrap() {
  local n out=""
  for n in "${CLUSTER_NODES[@]}"; do out+="${out:+,}127.0.0.1:$(cluster_port "$n")"; done
  echo "$out"
}

cmd_cluster_start() {
  local nodes=("$@") n pid started=() pids=() running=0
  (( ${#nodes[@]} )) || nodes=("${CLUSTER_NODES[@]}")
  lock
  cmd_install
  prepare_sasl_ssl
  mkdir -p "$KDIR/cluster"
  for n in "${nodes[@]}"; do
    cluster_node "$n"
    kafka_pid >/dev/null && continue
    port_open "$NODE_PORT" && die "node $n: port $NODE_PORT is taken by another process (set KAFKA_CLUSTER_PORT)"
    port_open "$NODE_CONTROLLER_PORT" && die "node $n: controller port $NODE_CONTROLLER_PORT is taken (set KAFKA_CLUSTER_PORT)"
    write_properties
    format_storage
    rm -f "$PIDFILE"
    launch
    started+=("$n")
  done
  CLUSTER_MODE=1 write_client_env
  for n in "${started[@]}"; do
    cluster_node "$n"
    local i
    for i in $(seq 50); do [[ -s "$PIDFILE" ]] && break; sleep 0.1; done
    pid="$(cat "$PIDFILE" 2>/dev/null || true)"
    [[ -n "$pid" ]] || die "node $n did not start (no pid file)"
    pids+=("$pid")
  done
  flock -u 9
  for n in "${CLUSTER_NODES[@]}"; do cluster_node "$n"; kafka_pid >/dev/null && running=$((running + 1)); done
  local deadline=$(( SECONDS + ${KAFKA_READY_TIMEOUT%.*} )) k
  for k in "${!started[@]}"; do
    cluster_node "${started[$k]}"
    wait_port "$NODE_PORT" "${pids[$k]}" "$deadline"
  done
  # Every node we started answers, and the metadata lists every running node as a broker.
  for n in "${nodes[@]}"; do
    cluster_node "$n"
    ready_probe "127.0.0.1:$NODE_PORT" "$(seconds_left "$deadline")" --brokers "$running" \
      || die "node $n not ready: fewer than $running brokers registered (log: $LOGFILE)"
    if [[ -n "$NODE_SASL_SSL_PORT" ]]; then
      ensure_scram_user
      sasl_probe "127.0.0.1:$NODE_SASL_SSL_PORT" "$(seconds_left "$deadline")" \
        || die "node $n: SASL_SSL listener refused SCRAM-SHA-512 (log: $LOGFILE)"
    fi
  done
  # The ACLs live in the cluster's metadata: applied once, through any node.
  [[ -n "$NODE_SASL_SSL_PORT" ]] && apply_acls "$(cluster_bootstrap)"
  return 0
}

cmd_cluster_stop() {
  local nodes=("$@") n pid
  (( ${#nodes[@]} )) || nodes=("${CLUSTER_NODES[@]}")
  lock
  # Send every SIGTERM first: the nodes shut down together, not waiting on each other's quorum.
  local pids=()
  for n in "${nodes[@]}"; do
    cluster_node "$n"
    pid="$(kafka_pid)" || { rm -f "$PIDFILE"; continue; }
    kill -TERM "$pid" 2>/dev/null || true
    pids+=("$n:$pid")
  done
  local entry
  for entry in "${pids[@]}"; do
    cluster_node "${entry%%:*}"
    stop_pid "${entry#*:}"
  done
}

cmd_cluster_status() {
  local n pid state all=0
  for n in "${CLUSTER_NODES[@]}"; do
    cluster_node "$n"
    pid="$(kafka_pid || true)"
    if [[ -n "$pid" ]] && port_open "$NODE_PORT"; then state=running; else state=stopped; all=1; fi
    echo "node $n $state pid=${pid:--} port=$NODE_PORT controller=$NODE_CONTROLLER_PORT dir=$KDIR/cluster/node$n"
  done
  echo "bootstrap $(cluster_bootstrap)"
  return "$all"
}

ACTION="${1:-}"
shift || true
SASL_SSL_WANTED=""
while [[ "$ACTION" == start && "${1:-}" == --* ]]; do
  case "$1" in
    --sasl-ssl) SASL_SSL_WANTED=1 ;;
    --acls) KAFKA_ACLS=1 ;;
    *) die "unknown option $1" ;;
  esac
  shift
done
if [[ -n "$SASL_SSL_WANTED$KAFKA_ACLS" ]]; then # the ACLs' users authenticate on SASL_SSL
  KAFKA_SASL_SSL_PORT="${KAFKA_SASL_SSL_PORT:-$(( KAFKA_PORT + 2 ))}"
  NODE_SASL_SSL_PORT="$KAFKA_SASL_SSL_PORT"
fi
case "$ACTION" in
  install) lock; cmd_install ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  wait) cmd_wait ;;
  client-env) cmd_client_env ;;
  cluster-start) cmd_cluster_start "$@" ;;
  cluster-stop) cmd_cluster_stop "$@" ;;
  cluster-status) cmd_cluster_status ;;
  *) echo "usage: $0 {install|start [--sasl-ssl] [--acls]|stop|status|wait|client-env|cluster-start [N...]|cluster-stop [N...]|cluster-status}" >&2; exit 2 ;;
esac
