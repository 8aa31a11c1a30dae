#!/usr/bin/env bash
# Installs the Debian packages facewire needs, only when one is missing (apt-get is slow).
#   ./scripts/system-deps.sh            everything the tests need (make test)
#   ./scripts/system-deps.sh link ...   only the named groups (a make target's own needs)
# Groups:
#   gui:     libgl1 ... libice6: what the opencv-python (GUI) wheel and its Qt xcb plugin
#            link against (read off `ldd`); xvfb, xdotool, imagemagick: a virtual screen,
#            key presses and screenshots for the GUI test
#   docker:  docker.io, docker-compose, debootstrap: an engine, Compose v1 where v2 is
#            missing, and `make docker-base`
#   link:    iproute2 (namespaces, tc) and vde2 (wirefilter, the link engine where the
#            kernel has no netem): network profiles, make linkcheck
#   h2load:  nghttp2-client, the second load generator
#   tls:     openssl, certificates for make claims and make attack
#   nginx:   nginx, libnginx-mod-stream: make scale's balancers (HTTP, grpc_pass, TCP)
#   kubectl: kubernetes-client, kubectl kustomize for the manifests (only when no kubectl)
#   browser: chromium, headless, to check that the API docs pages render offline
set -euo pipefail
declare -A groups=(
  [gui]="libgl1 libglib2.0-0 libx11-6 libxext6 libxcb1 libsm6 libice6 xvfb xdotool imagemagick"
  [docker]="docker.io docker-compose debootstrap"
  [link]="iproute2 vde2"
  [h2load]="nghttp2-client"
  [tls]="openssl"
  [nginx]="nginx libnginx-mod-stream"
  [kubectl]="kubernetes-client"
  [browser]="chromium"
)
wanted=("$@")
[ ${#wanted[@]} -eq 0 ] && wanted=(gui docker link h2load tls nginx kubectl browser)
packages=()
for group in "${wanted[@]}"; do
  [ -n "${groups[$group]:-}" ] || { echo "system-deps: unknown group $group" >&2; exit 2; }
  [ "$group" = kubectl ] && command -v kubectl >/dev/null && continue
  read -ra names <<<"${groups[$group]}"
  packages+=("${names[@]}")
done
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
