#!/usr/bin/env bash
# Installs the Debian 12 packages a group needs, only when some are missing.
# Usage: scripts/setup.sh GROUP...   (groups from scripts/packages.txt: build, test, runtime)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -gt 0 ] || { echo "usage: $0 GROUP... (build|test|runtime)" >&2; exit 2; }
want=()
for group in "$@"; do
  while read -r g pkg; do
    [ "$g" = "$group" ] && want+=("$pkg")
  done < <(grep -v '^#' "$here/packages.txt" | grep -v '^[[:space:]]*$')
done
missing=()
for pkg in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "setup: missing packages: ${missing[*]}; run as root or install them" >&2
  exit 1
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
