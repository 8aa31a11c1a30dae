#!/usr/bin/env bash
# Installs the Debian packages the tests need, only when one is missing (apt-get is slow).
#   libgl1 ... libice6:  what the opencv-python (GUI) wheel and its Qt xcb plugin link
#                        against (read off `ldd`; the rest of Qt ships inside the wheel)
#   docker.io, docker-compose, debootstrap: the compose stack's end-to-end test (an
#                        engine, Compose v1 where v2 is missing, and `make docker-base`)
#   xvfb, xdotool, imagemagick: the GUI test (a virtual screen, key presses, screenshots)
#   nghttp2-client, iproute2, openssl: h2load as a load generator, network namespaces
#                        and tc for network profiles, and certificates for make claims
#   nginx, libnginx-mod-stream: make scale's balancers (HTTP, grpc_pass, and TCP)
#   vde2:                wirefilter, the link emulator where the kernel has no netem
#   kubernetes-client:   kubectl kustomize, to render the manifests (only when no kubectl)
set -euo pipefail
packages=(libgl1 libglib2.0-0 libx11-6 libxext6 libxcb1 libsm6 libice6
  docker.io docker-compose debootstrap xvfb xdotool imagemagick nghttp2-client iproute2 openssl
  nginx libnginx-mod-stream vde2)
command -v kubectl >/dev/null || packages+=(kubernetes-client)
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
