#!/usr/bin/env bash
# The compose stack with whichever Compose this host has: v2 (`docker compose`) or v1
# (`docker-compose`, what Debian 12 ships). COMPOSE="..." picks one by hand.
#
#   scripts/compose.sh up     build, start, and return once both services are healthy;
#                             or fail with the unhealthy service's last log lines
#   scripts/compose.sh down   stop (each service drains), check both exited 0, remove
#   scripts/compose.sh -- ARGS   any compose command, as given (config -q, logs, ps, ...)
#
# `up` runs the containers as you (FACEWIRE_UID/GID default to `id -u`/`id -g`) and
# creates the storage folders as you first, so saves land in ./storage/* owned by you.
# It builds on facewire-base:bookworm (`make docker-base`) when that image exists and
# FACEWIRE_BASE_IMAGE is not set. v1 ignores `up --wait`, so the wait is done here.
set -euo pipefail
cd "$(dirname "$0")/.."

# The services `up` starts and waits for: the pair on published ports, or, with
# FACEWIRE_SERVICES="rest-host grpc-host", the same on the host's network stack.
read -ra SERVICES <<<"${FACEWIRE_SERVICES:-rest grpc}"
ALL_SERVICES=(rest grpc rest-host grpc-host)
# Every profile on for this script's own calls: `up` names its services, and `down` must
# see all of them (Compose v2 ignores services of inactive profiles).
export COMPOSE_PROFILES=host-network
LOCAL_BASE=facewire-base:bookworm
TIMEOUT_S=${FACEWIRE_UP_TIMEOUT_S:-180}

die() { echo "compose: $*" >&2; exit 1; }

if [ -n "${COMPOSE:-}" ]; then
  read -ra COMPOSE_CMD <<<"$COMPOSE"
elif docker compose version >/dev/null 2>&1; then
  COMPOSE_CMD=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  COMPOSE_CMD=(docker-compose)
else
  die "neither Compose v2 ('docker compose') nor v1 ('docker-compose') is installed"
fi
compose() { "${COMPOSE_CMD[@]}" "$@"; }

container() { compose ps -a -q "$1" 2>/dev/null | head -1; }

# "status health restarts", e.g. "running healthy 0" (health is "none" without a check).
state() {
  docker inspect --format \
    '{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}} {{.RestartCount}}' \
    "$1" 2>/dev/null || echo "missing none 0"
}

fail_with_logs() {
  local service=$1 why=$2
  echo "compose: the $service service $why; its last log lines:" >&2
  compose logs --no-color --tail 30 "$service" >&2 || true
  echo "compose: the stack is left as it is for a look; 'make docker-down' removes it" >&2
  exit 1
}

up() {
  docker info >/dev/null 2>&1 || die "no Docker engine answers (docker info failed)"
  export FACEWIRE_UID=${FACEWIRE_UID:-$(id -u)} FACEWIRE_GID=${FACEWIRE_GID:-$(id -g)}
  local storage=${FACEWIRE_STORAGE:-./storage}
  mkdir -p "$storage/rest" "$storage/grpc"
  if [ -z "${FACEWIRE_BASE_IMAGE:-}" ] && docker image inspect "$LOCAL_BASE" >/dev/null 2>&1; then
    export FACEWIRE_BASE_IMAGE=$LOCAL_BASE
    echo "compose: building on $LOCAL_BASE (made by make docker-base)"
  fi
  echo "compose: ${COMPOSE_CMD[*]} up --build -d ${SERVICES[*]}, as $FACEWIRE_UID:$FACEWIRE_GID"
  compose up --build -d "${SERVICES[@]}"
  declare -A restarts
  for service in "${SERVICES[@]}"; do
    id=$(container "$service")
    [ -n "$id" ] || fail_with_logs "$service" "has no container"
    restarts[$service]=$(state "$id" | cut -d' ' -f3)
  done
  local deadline=$((SECONDS + TIMEOUT_S)) waiting
  while :; do
    waiting=()
    for service in "${SERVICES[@]}"; do
      read -r status health count <<<"$(state "$(container "$service")")"
      case "$status/$health" in
        running/healthy) ;;
        */unhealthy) fail_with_logs "$service" "is unhealthy" ;;
        exited/* | dead/* | missing/*) fail_with_logs "$service" "stopped ($status)" ;;
        *) waiting+=("$service") ;;
      esac
      [ "$count" = "${restarts[$service]}" ] || fail_with_logs "$service" "restarted ($status)"
    done
    [ ${#waiting[@]} -eq 0 ] && break
    [ $SECONDS -lt $deadline ] || fail_with_logs "${waiting[0]}" "was not healthy in ${TIMEOUT_S}s"
    sleep 1  # polling the engine's health status of other processes
  done
  echo "compose: ${SERVICES[*]} healthy"
  if [ "${SERVICES[*]}" = "rest grpc" ]; then
    echo "  REST    http://$(compose port rest 8001)"
    echo "  gRPC    $(compose port grpc 50051)"
    echo "  metrics http://$(compose port grpc 9464)/metrics (gRPC), REST's on /metrics"
  fi
  echo "  saves   $storage/rest and $storage/grpc"
}

down() {
  local codes=() failed=0 id code
  if docker info >/dev/null 2>&1; then
    compose stop  # each service's stop_grace_period: SIGTERM, drain, exit
    for service in "${ALL_SERVICES[@]}"; do
      id=$(container "$service")
      [ -n "$id" ] || continue
      code=$(docker inspect --format '{{.State.ExitCode}}' "$id")
      codes+=("$service exited $code")
      [ "$code" = 0 ] || failed=1
    done
  fi
  compose down --remove-orphans
  if [ ${#codes[@]} -gt 0 ]; then
    echo "compose: $(IFS=,; echo "${codes[*]}" | sed 's/,/, /g')"
  fi
  [ $failed -eq 0 ] || die "a service did not drain cleanly (0 is a clean drain)"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  --) shift; compose "$@" ;;
  *) die "usage: $0 up | down | -- COMPOSE-ARGS..." ;;
esac
