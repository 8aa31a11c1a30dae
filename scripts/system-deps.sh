#!/usr/bin/env bash
# Installs the Debian packages the tests need, only when one is missing (apt-get is slow).
#   libgl1, libglib2.0-0: the opencv-python (GUI) wheel links against them
#   docker-compose:       `docker-compose config -q` validates docker-compose.yml
set -euo pipefail
packages=(libgl1 libglib2.0-0 docker-compose)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
