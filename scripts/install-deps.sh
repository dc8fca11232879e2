#!/usr/bin/env bash
# Installs everything aiospice and its test suite need on a fresh Debian 12 machine (run as root).
#   scripts/install-deps.sh          runtime only (pip install of the package)
#   scripts/install-deps.sh --test   also the Debian peers and test tools
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
if [[ "${1:-}" == "--test" ]]; then
  pkgs=$(grep -v '^#' "$here/scripts/debian-packages.txt" | tr '\n' ' ')
  missing=$(dpkg-query -W -f='${Package} ${Status}\n' $pkgs 2>/dev/null | grep -v 'install ok installed' | cut -d' ' -f1 || true)
  missing="$missing $(for p in $pkgs; do dpkg-query -W "$p" >/dev/null 2>&1 || echo "$p"; done)"
  if [[ -n "${missing// /}" ]]; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
  fi
  python3 -m pip install -q -e "$here[test]"
else
  python3 -m pip install -q -e "$here"
fi
