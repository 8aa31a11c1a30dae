#!/usr/bin/env bash
# `make docker-base`: a Debian bookworm image with python3-venv, built here with
# debootstrap, for hosts that cannot pull python:3.11-slim-bookworm (no registry, an
# air-gapped host, a mirror only). `make docker-up` uses it whenever it exists.
#
# - Packages come from the mirror apt already uses (read from apt's own configuration),
#   with bookworm-updates and bookworm-security applied when apt has them.
# - This machine's extra CA certificates (/usr/local/share/ca-certificates) go in too,
#   so pip inside a build trusts the same TLS as the host does (a re-signing proxy, say).
# - The root filesystem is cached as a tarball, keyed by this recipe, the mirrors and the
#   certificates: a warm run only re-imports it, or does nothing when the image is current.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${FACEWIRE_BASE_TAG:-facewire-base:bookworm}
RELEASE=bookworm
PACKAGES=python3-venv,ca-certificates
CA_DIR=/usr/local/share/ca-certificates
CACHE=${FACEWIRE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/facewire}
LABEL=org.facewire.base-key

die() { echo "docker-base: $*" >&2; exit 1; }

command -v docker >/dev/null || die "no docker command (Debian: apt-get install docker.io)"
docker info >/dev/null 2>&1 || die "no Docker engine answers (docker info failed)"

# Every deb822 or one-line source apt knows, as "URI SUITE" (indextargets reads the
# configuration itself, so both formats and every sources.list.d file count).
sources=$(apt-get indextargets --no-release-info --format '$(REPO_URI) $(RELEASE)' \
  'Identifier: Packages' 2>/dev/null | awk '$2 ~ /^'"$RELEASE"'(-updates|-security)?$/' | sort -u)
mirror=$(awk -v r="$RELEASE" '$2 == r {print $1; exit}' <<<"$sources")
[ -n "$mirror" ] || die "apt has no '$RELEASE' source to build from (see /etc/apt/sources.list*)"

key=$( {
  cat "$0"
  echo "$sources"
  find "$CA_DIR" -type f -name '*.crt' -print0 2>/dev/null | sort -z | xargs -0r cat
} | sha256sum | cut -c1-16)

current=$(docker image inspect "$IMAGE" --format "{{ index .Config.Labels \"$LABEL\" }}" \
  2>/dev/null || true)
if [ "$current" = "$key" ]; then
  echo "docker-base: $IMAGE is up to date ($key)"
  exit 0
fi

tarball=$CACHE/docker-base-$key.tar
if [ ! -s "$tarball" ]; then
  [ "$(id -u)" -eq 0 ] || die "debootstrap needs root (run: sudo make docker-base)"
  command -v debootstrap >/dev/null || die "no debootstrap (Debian: apt-get install debootstrap)"
  mkdir -p "$CACHE"
  rootfs=$(mktemp -d "${TMPDIR:-/tmp}/facewire-rootfs.XXXXXX")
  echo "docker-base: debootstrap $RELEASE from $mirror (about a minute)"
  log=$rootfs.log
  trap 'rm -rf "$rootfs" "$log"' EXIT
  step() { "$@" >>"$log" 2>&1 || { tail -20 "$log" >&2; die "failed: $*"; }; }
  step debootstrap --variant=minbase --include="$PACKAGES" "$RELEASE" "$rootfs" "$mirror"
  # Security and point-release updates, from the same sources the host uses.
  awk '{print "deb " $1 " " $2 " main"}' <<<"$sources" >"$rootfs/etc/apt/sources.list"
  step chroot "$rootfs" apt-get update
  step chroot "$rootfs" env DEBIAN_FRONTEND=noninteractive apt-get upgrade -y
  step chroot "$rootfs" apt-get clean
  if compgen -G "$CA_DIR/*.crt" >/dev/null; then
    echo "docker-base: adding this machine's CA certificates from $CA_DIR"
    cp -r "$CA_DIR/." "$rootfs$CA_DIR/"
    step chroot "$rootfs" update-ca-certificates
  fi
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
  tar -C "$rootfs" --numeric-owner -cf "$tarball.partial" .
  mv "$tarball.partial" "$tarball"
fi

echo "docker-base: importing $tarball as $IMAGE"
docker import \
  --change "LABEL $LABEL=$key" \
  --change 'ENV LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["python3"]' \
  "$tarball" "$IMAGE" >/dev/null
echo "docker-base: built $IMAGE ($(docker image inspect "$IMAGE" --format '{{.Size}}' \
  | awk '{printf "%.0f MB", $1 / 1e6}')); make docker-up uses it"
