#!/usr/bin/env bash
# Debian's espeak-ng: the non-English voices of the real-call test audio (real_calls/).
# GPL-3, a test-audio tool only: the reference host never runs it.
#
#   infra/espeak.sh install   apt-get install espeak-ng if it is not on PATH (idempotent)
#
# Env: COFI_CACHE (default <repo>/.cache; the apt log goes there).
set -euo pipefail

INFRA_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$INFRA_DIR/.." && pwd)"
COFI_CACHE="${COFI_CACHE:-$REPO_ROOT/.cache}"
mkdir -p "$COFI_CACHE"

die() { echo "espeak.sh: $*" >&2; exit 1; }

cmd_install() {
  command -v espeak-ng >/dev/null 2>&1 && return 0
  [[ "$(id -u)" == 0 ]] || die "espeak-ng is missing; install Debian's espeak-ng package (needs root)"
  local log="$COFI_CACHE/apt-espeak.log" rc=0
  export DEBIAN_FRONTEND=noninteractive
  echo "espeak.sh: installing Debian's espeak-ng (once; log: $log)"
  apt_install() {
    apt-get -o DPkg::Lock::Timeout=900 install -y -q --no-install-recommends espeak-ng >>"$log" 2>&1
  }
  if ! apt_install; then
    apt-get -o DPkg::Lock::Timeout=900 update -q >>"$log" 2>&1 || true
    apt_install || rc=$?
  fi
  if [[ "$rc" != 0 ]]; then tail -n 30 "$log" >&2; die "apt-get install espeak-ng failed (log: $log)"; fi
  command -v espeak-ng >/dev/null 2>&1 || die "espeak-ng still missing after install"
}

case "${1:-}" in
  install) cmd_install ;;
  *) die "usage: infra/espeak.sh install" ;;
esac
