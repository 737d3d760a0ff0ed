#!/usr/bin/env bash
# promtool, to check and unit-test the Prometheus alert rules of deploy/prometheus/ (Debian's
# `prometheus` package ships it), and amtool, to check deploy/alertmanager/ (Debian's
# `prometheus-alertmanager`); the servers they also ship are never started here.
#
#   infra/promtool.sh install   apt-get install both if promtool or amtool is missing (idempotent)
#   infra/promtool.sh path      print promtool's path, exit 1 when there is none
#
# Env: COFI_CACHE (default <repo>/.cache; the apt log goes there).
set -euo pipefail

INFRA_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$INFRA_DIR/.." && pwd)"
COFI_CACHE="${COFI_CACHE:-$REPO_ROOT/.cache}"
mkdir -p "$COFI_CACHE"

die() { echo "promtool.sh: $*" >&2; exit 1; }

find_promtool() {
  if command -v promtool >/dev/null 2>&1; then command -v promtool; return 0; fi
  [[ -x /usr/bin/promtool ]] && { echo /usr/bin/promtool; return 0; }
  return 1
}

cmd_install() {
  find_promtool >/dev/null && command -v amtool >/dev/null 2>&1 && return 0
  [[ "$(id -u)" == 0 ]] || die "promtool is missing; install Debian's prometheus package (needs root)"
  # Keep the package's postinst from starting a Prometheus server: only promtool is wanted.
  local created_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    created_policy=1
  fi
  local log="$COFI_CACHE/apt-prometheus.log" rc=0
  export DEBIAN_FRONTEND=noninteractive
  echo "promtool.sh: installing Debian's prometheus for promtool (once; log: $log)"
  apt_install() {
    apt-get -o DPkg::Lock::Timeout=900 install -y -q --no-install-recommends prometheus \
      prometheus-alertmanager >>"$log" 2>&1
  }
  if ! apt_install; then
    apt-get -o DPkg::Lock::Timeout=900 update -q >>"$log" 2>&1 || true
    apt_install || rc=$?
  fi
  [[ "$created_policy" == 1 ]] && rm -f /usr/sbin/policy-rc.d
  if [[ "$rc" != 0 ]]; then tail -n 30 "$log" >&2; die "apt-get install prometheus failed (log: $log)"; fi
  find_promtool >/dev/null || die "promtool still missing after install"
  command -v amtool >/dev/null 2>&1 || die "amtool still missing after install"
}

case "${1:-}" in
  install) cmd_install ;;
  path) find_promtool ;;
  *) die "usage: infra/promtool.sh {install|path}" ;;
esac
