#!/usr/bin/env bash
# `make docker-engine` / `make docker-engine-stop`: a Docker engine on a host with no
# service manager running one (a container, a CI runner, this lab's machines).
#
#   start   when no engine answers: containerd, then dockerd on it, in the background;
#           returns once `docker info` answers. Does nothing when one already answers.
#   stop    stops the engine `start` started (by the PIDs it wrote), nothing else.
#
# Where systemd runs, use it instead: `sudo systemctl start docker`.
set -euo pipefail

STATE=${FACEWIRE_ENGINE_DIR:-/run/facewire-engine}
CONTAINERD_SOCKET=/run/containerd/containerd.sock

die() { echo "docker-engine: $*" >&2; exit 1; }

# Poll $1 (a command) for up to $2 seconds; fail with $3.
wait_for() {
  local deadline=$((SECONDS + $2))
  until eval "$1" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "$3"
    sleep 0.2  # polling another process's start-up
  done
}

launch() {  # name, command...: started in its own session, logging to $STATE/name.log
  local name=$1; shift
  setsid "$@" >"$STATE/$name.log" 2>&1 < /dev/null &
  echo $! >"$STATE/$name.pid"
}

start() {
  if docker info >/dev/null 2>&1; then
    echo "docker-engine: an engine already answers; nothing started"
    return
  fi
  [ "$(id -u)" -eq 0 ] || die "starting dockerd needs root (sudo make docker-engine)"
  for tool in containerd dockerd docker; do
    command -v "$tool" >/dev/null || die "no $tool (Debian: apt-get install docker.io)"
  done
  mkdir -p "$STATE"
  if [ ! -S "$CONTAINERD_SOCKET" ] || ! ctr version >/dev/null 2>&1; then
    launch containerd containerd
    wait_for "[ -S $CONTAINERD_SOCKET ]" 30 \
      "containerd did not start in 30 s; see $STATE/containerd.log"
  fi
  launch dockerd dockerd --containerd="$CONTAINERD_SOCKET" --storage-driver=overlay2
  wait_for "docker info" 60 "dockerd did not answer in 60 s; see $STATE/dockerd.log"
  echo "docker-engine: started (logs and PIDs in $STATE; make docker-engine-stop stops it)"
}

stop_one() {  # name: SIGTERM, up to 30 s, then SIGKILL
  local pidfile=$STATE/$1.pid pid
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    local deadline=$((SECONDS + 30))
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do
      sleep 0.2  # polling the process's exit
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  fi
  rm -f "$pidfile"
}

stop() {
  if [ ! -f "$STATE/dockerd.pid" ] && [ ! -f "$STATE/containerd.pid" ]; then
    echo "docker-engine: no engine started by make docker-engine; nothing stopped"
    return
  fi
  stop_one dockerd
  stop_one containerd
  echo "docker-engine: stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) die "usage: $0 start|stop" ;;
esac
