#!/usr/bin/env bash
# Headless Chromium for the web page's browser tests (Debian's `chromium` package).
#
#   infra/chromium.sh install   apt-get install chromium if no chromium is on PATH (idempotent)
#   infra/chromium.sh path      print the browser's path, exit 1 when there is none
#
# Env: COFI_CACHE (default <repo>/.cache; the apt log goes there).
set -euo pipefail

INFRA_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$INFRA_DIR/.." && pwd)"
COFI_CACHE="${COFI_CACHE:-$REPO_ROOT/.cache}"
mkdir -p "$COFI_CACHE"

die() { echo "chromium.sh: $*" >&2; exit 1; }

find_browser() {
  local n
  for n in chromium chromium-browser; do
    if command -v "$n" >/dev/null 2>&1; then command -v "$n"; return 0; fi
  done
  return 1
}

cmd_install() {
  find_browser >/dev/null && return 0
  [[ "$(id -u)" == 0 ]] || die "chromium is missing; install Debian's chromium package (needs root)"
  local log="$COFI_CACHE/apt-chromium.log" rc=0
  export DEBIAN_FRONTEND=noninteractive
  echo "chromium.sh: installing Debian's chromium (slow, once; log: $log)"
  apt_install() {
    apt-get -o DPkg::Lock::Timeout=900 install -y -q --no-install-recommends chromium >>"$log" 2>&1
  }
  if ! apt_install; then
    apt-get -o DPkg::Lock::Timeout=900 update -q >>"$log" 2>&1 || true
    apt_install || rc=$?
  fi
  if [[ "$rc" != 0 ]]; then tail -n 30 "$log" >&2; die "apt-get install chromium failed (log: $log)"; fi
  find_browser >/dev/null || die "chromium still missing after install"
}

case "${1:-}" in
  install) cmd_install ;;
  path) find_browser ;;
  *) die "usage: infra/chromium.sh {install|path}" ;;
esac
