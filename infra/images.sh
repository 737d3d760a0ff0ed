#!/usr/bin/env bash
# Container images built here from Debian's packages, for a machine that reaches Debian's mirror
# but no container registry: debootstrap one bookworm root with every image's packages and the
# project's entrypoints, `podman import` it once, and derive each image from it by its
# entrypoint and user (one debootstrap instead of five: minutes that `make test` cannot spare).
# Each image is built once: an existing image, or the cached root tarball under
# $COFI_CACHE/images, is reused (idempotent).
#
#   infra/images.sh install           apt-get install podman, runc, aardvark-dns, debootstrap and
#                                     docker-compose where podman or debootstrap is missing
#   infra/images.sh build [NAME...]   build the images (default: all); NAME is one of
#                                     base kafka mariadb prometheus alertmanager
#   infra/images.sh app               the cofi image (the Dockerfile on the base image) as
#                                     docker-compose.yml names it, cofi:latest
#   infra/images.sh background        install, build and app, niced, in the background (`make
#                                     test` starts it first; the compose boot test waits for it):
#                                     its state in $COFI_CACHE/images/build.status (running, ok
#                                     or failed), its output in build.log
#   infra/images.sh env               print the compose variables that select these images
#   infra/images.sh list              print every image's name and whether it exists
#
# base: python3 with pip in a venv on PATH (the Dockerfile's BASE_IMAGE); kafka: Debian's
# openjdk-17 plus the broker jars of infra/kafka.sh install; mariadb: Debian's mariadb-server with
# an entrypoint doing what the official image's does for docker-compose.yml; prometheus and
# alertmanager: Debian's packages. Grafana is not in Debian: the stack here runs without it.
#
# Env: COFI_CACHE (default <repo>/.cache), DEBIAN_MIRROR (http://deb.debian.org/debian),
#      DEBIAN_SUITE (bookworm), CONTAINERS_CONF (default infra/containers.conf),
#      EXTRA_CA_DIR (/usr/local/share/ca-certificates: its *.crt are trusted in the base image).
set -euo pipefail

INFRA_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$INFRA_DIR/.." && pwd)"
COFI_CACHE="${COFI_CACHE:-$REPO_ROOT/.cache}"
mkdir -p "$COFI_CACHE/images/debs"
COFI_CACHE="$(cd "$COFI_CACHE" && pwd)"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$INFRA_DIR/containers.conf}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DEBIAN_SUITE="${DEBIAN_SUITE:-bookworm}"
IMAGES_DIR="$COFI_CACHE/images"
EXTRA_CA_DIR="${EXTRA_CA_DIR:-/usr/local/share/ca-certificates}"
FILES="$INFRA_DIR/images"
ALL=(base kafka mariadb prometheus alertmanager)

die() { echo "images.sh: $*" >&2; exit 1; }

image_name() { echo "localhost/cofi-$1:$DEBIAN_SUITE"; }

packages() { # the Debian packages of each image, beyond debootstrap's minbase
  case "$1" in
    base) echo "python3,python3-venv,python3-pip,ca-certificates" ;;
    kafka) echo "openjdk-17-jre-headless" ;;
    mariadb) echo "mariadb-server,mariadb-client" ;;
    prometheus) echo "prometheus" ;;
    alertmanager) echo "prometheus-alertmanager" ;;
    *) die "unknown image '$1' (one of: ${ALL[*]})" ;;
  esac
}

changes() { # Containerfile lines on the shared root: what the official image's Dockerfile sets
  case "$1" in
    base) printf '%s\n' "ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
      "ENV LANG=C.UTF-8" 'CMD ["python3"]' ;;
    kafka) printf '%s\n' 'ENTRYPOINT ["/opt/kafka/bin/entrypoint.sh"]' "USER 1000" ;;
    mariadb) printf '%s\n' 'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]' 'CMD ["mariadbd"]' \
      "ENV PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" ;;
    prometheus) printf '%s\n' 'ENTRYPOINT ["/usr/bin/prometheus"]' "USER nobody" "WORKDIR /prometheus" ;;
    alertmanager) printf '%s\n' 'ENTRYPOINT ["/usr/bin/prometheus-alertmanager"]' "USER nobody" ;;
  esac
}

customise() { # customise NAME ROOT: the project's files inside the root
  local name="$1" root="$2"
  case "$name" in
    base) # The build machine's own CAs (an egress proxy's, say): pip in the image build trusts them.
      if compgen -G "$EXTRA_CA_DIR/*.crt" >/dev/null; then
        cp "$EXTRA_CA_DIR"/*.crt "$root/usr/local/share/ca-certificates/"
        chroot "$root" update-ca-certificates >/dev/null
      fi
      chroot "$root" python3 -m venv /opt/venv
      chroot "$root" /opt/venv/bin/python -m pip --version >/dev/null ;;
    kafka)
      [[ -f "$COFI_CACHE/kafka/lib/.installed" ]] \
        || COFI_CACHE="$COFI_CACHE" "$INFRA_DIR/kafka.sh" install
      mkdir -p "$root/opt/kafka/libs" "$root/opt/kafka/bin" "$root/opt/kafka/config" "$root/var/lib/kafka/data"
      cp "$COFI_CACHE"/kafka/lib/*.jar "$root/opt/kafka/libs/"
      cp "$INFRA_DIR/kafka/log4j2.xml" "$root/opt/kafka/config/log4j2.xml"
      install -m 0755 "$FILES/kafka-entrypoint.sh" "$root/opt/kafka/bin/entrypoint.sh"
      install -m 0755 "$FILES/kafka-topics.sh" "$root/opt/kafka/bin/kafka-topics.sh"
      chown -R 1000:1000 "$root/opt/kafka/config" "$root/var/lib/kafka" ;;
    mariadb)
      install -m 0755 "$FILES/mariadb-entrypoint.sh" "$root/usr/local/bin/docker-entrypoint.sh"
      install -m 0755 "$FILES/mariadb-healthcheck.sh" "$root/usr/local/bin/healthcheck.sh"
      # Debian's server listens on 127.0.0.1 only: in a container, the network is the point.
      printf '[mysqld]\nbind-address = 0.0.0.0\nskip-name-resolve\n' \
        >"$root/etc/mysql/mariadb.conf.d/99-container.cnf"
      mkdir -p "$root/docker-entrypoint-initdb.d" "$root/run/mysqld"
      chroot "$root" chown mysql:mysql /run/mysqld /var/lib/mysql
      rm -rf "$root"/var/lib/mysql/* ;;
    prometheus) mkdir -p "$root/prometheus"; chroot "$root" chown nobody:nogroup /prometheus
      # Debian's default storage path, on the volume that compose mounts at /prometheus.
      rm -rf "$root/var/lib/prometheus/metrics2"; ln -s /prometheus "$root/var/lib/prometheus/metrics2" ;;
    alertmanager) mkdir -p "$root/alertmanager"; chroot "$root" chown nobody:nogroup /alertmanager ;;
  esac
}

all_packages() { # every image's packages, for the one root they share
  local name list=()
  for name in "${ALL[@]}"; do list+=("$(packages "$name")"); done
  (IFS=,; echo "${list[*]}")
}

build_root() { # build_root TARBALL: debootstrap, customise for every image, tar (the cache)
  local tarball="$1" root name
  command -v debootstrap >/dev/null || die "debootstrap is missing: apt-get install debootstrap"
  root="$(mktemp -d "$IMAGES_DIR/root.XXXXXX")"
  BUILD_ROOT="$root"
  echo "images.sh: debootstrap $DEBIAN_SUITE with $(all_packages)" >&2
  debootstrap --variant=minbase --include="$(all_packages)" --cache-dir="$IMAGES_DIR/debs" \
    "$DEBIAN_SUITE" "$root" "$DEBIAN_MIRROR" >"$IMAGES_DIR/debootstrap.log" 2>&1 \
    || die "debootstrap failed (see $IMAGES_DIR/debootstrap.log)"
  mount -t proc proc "$root/proc"
  for name in "${ALL[@]}"; do customise "$name" "$root"; done
  umount "$root/proc"
  # Only what a container needs: no package lists or caches.
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/*
  tar --numeric-owner -C "$root" -cf "$tarball.part" . && mv "$tarball.part" "$tarball"
  cleanup
}

BUILD_ROOT=""
cleanup() { # the root being built, if any (also when a step fails)
  [[ -n "$BUILD_ROOT" ]] || return 0
  umount -R "$BUILD_ROOT/proc" 2>/dev/null || true
  rm -rf "$BUILD_ROOT"
  BUILD_ROOT=""
}
trap cleanup EXIT

ROOT_IMAGE="localhost/cofi-root:$DEBIAN_SUITE"

import_root() { # the shared root as an image, built and imported once (under a lock)
  local tarball="$IMAGES_DIR/root-$DEBIAN_SUITE.tar"
  exec 8>"$IMAGES_DIR/.lock-root"; flock 8
  if ! podman image exists "$ROOT_IMAGE"; then
    # Not `[[ ]] || build_root`: errexit is off in such a list, and a failed step must stop it.
    if [[ ! -f "$tarball" ]]; then build_root "$tarball"; fi
    podman import --quiet "$tarball" "$ROOT_IMAGE" >/dev/null
  fi
  exec 8>&-
}

build_one() { # an image: the shared root with the image's entrypoint, user and environment
  local name="$1" image context
  image="$(image_name "$name")"
  if podman image exists "$image"; then echo "images.sh: $image exists" >&2; return 0; fi
  import_root
  context="$(mktemp -d)"
  { echo "FROM $ROOT_IMAGE"; changes "$name"; } >"$context/Containerfile"
  podman build --pull=never --quiet -t "$image" "$context" >/dev/null
  rm -rf "$context"
  echo "images.sh: built $image" >&2
}

cmd_build() {
  local names=("$@")
  (( ${#names[@]} )) || names=("${ALL[@]}")
  [[ "$(id -u)" == 0 ]] || die "debootstrap needs root"
  for name in "${names[@]}"; do packages "$name" >/dev/null; done
  for name in "${names[@]}"; do
    # One build of an image at a time; different images may build concurrently.
    ( trap cleanup EXIT; exec 9>"$IMAGES_DIR/.lock-$name"; flock 9; build_one "$name" )
  done
}

cmd_app() { # what `docker-compose build` makes of the Dockerfile (the same arguments): its layers
  # are then in podman's cache, and the boot's build only checks them
  cmd_build base
  podman build --pull=never --quiet --build-arg "BASE_IMAGE=$(image_name base)" \
    --build-arg "COFI_COMMIT=${COFI_COMMIT:-unknown}" \
    -t docker.io/library/cofi:latest "$REPO_ROOT" >/dev/null
  echo "images.sh: built docker.io/library/cofi:latest" >&2
}

cmd_background() {
  local status="$IMAGES_DIR/build.status"
  echo running >"$status"
  # Niced, and detached from make's output: the test suite runs meanwhile.
  setsid nohup nice -n 19 bash -c '
    if "$0" install && "$0" build && "$0" app; then echo ok >"$1"; else echo failed >"$1"; fi
  ' "$INFRA_DIR/images.sh" "$status" >"$IMAGES_DIR/build.log" 2>&1 </dev/null &
  echo "images.sh: building the images in the background (log: $IMAGES_DIR/build.log)" >&2
}

cmd_install() {
  command -v podman >/dev/null && command -v debootstrap >/dev/null && command -v docker-compose >/dev/null \
    && return 0
  [[ "$(id -u)" == 0 ]] || die "installing podman needs root"
  local log="$IMAGES_DIR/apt.log" rc=0
  # Other installs (mariadb.sh, chromium.sh) may hold dpkg's lock meanwhile: wait for it.
  apt_install() {
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -q podman runc \
      aardvark-dns debootstrap docker-compose >>"$log" 2>&1
  }
  apt_install || rc=$?
  if [[ "$rc" != 0 ]]; then
    apt-get -o DPkg::Lock::Timeout=900 update -q >>"$log" 2>&1 || true
    rc=0; apt_install || rc=$?
  fi
  [[ "$rc" == 0 ]] || die "apt-get install failed (see $log)"
}

cmd_env() {
  echo "COFI_BASE_IMAGE=$(image_name base)"
  echo "KAFKA_IMAGE=$(image_name kafka)"
  echo "MARIADB_IMAGE=$(image_name mariadb)"
  echo "PROMETHEUS_IMAGE=$(image_name prometheus)"
  echo "ALERTMANAGER_IMAGE=$(image_name alertmanager)"
}

cmd_list() {
  local name state
  for name in "${ALL[@]}"; do
    state=missing; podman image exists "$(image_name "$name")" && state=present
    echo "$(image_name "$name") $state"
  done
}

case "${1:-}" in
  install) cmd_install ;;
  build) shift; cmd_build "$@" ;;
  app) cmd_app ;;
  background) cmd_background ;;
  env) cmd_env ;;
  list) cmd_list ;;
  *) die "usage: infra/images.sh install | build [NAME...] | app | background | env | list" ;;
esac
