#!/usr/bin/env bash
# Start a private Docker daemon for tunix-rt rehearsals and print the line that points clients at it.
#
#   eval "$(docker/start_dockerd.sh)"      # sets DOCKER_HOST for this shell
#
# Idempotent: when the daemon already answers on our socket it only prints the export line again.
# The flags follow shared/research/docker.md: these machines are VMs without systemd, where changing the
# firewall is not ours to do, so the daemon creates no bridge and touches no iptables (containers get
# network "none" or "host"), stores images with overlay2, and listens only on a private unix socket.
#
# Environment (all optional):
#   TUNIX_RT_DOCKER_RUN   folder for the socket, pid file, exec root and log (default /run/tunix-rt-docker)
#   TUNIX_RT_DOCKER_DATA  data root: images, layers, build cache (default /var/lib/tunix-rt-docker)
#   TUNIX_RT_DOCKER_WAIT  seconds to wait for the daemon to answer (default 60)
# Needs root (dockerd does). Progress goes to stderr; stdout carries only the export line.
set -euo pipefail

run_dir="${TUNIX_RT_DOCKER_RUN:-/run/tunix-rt-docker}"
data_root="${TUNIX_RT_DOCKER_DATA:-/var/lib/tunix-rt-docker}"
wait_s="${TUNIX_RT_DOCKER_WAIT:-60}"
sock="$run_dir/docker.sock"
host="unix://$sock"

log() { echo "start_dockerd: $*" >&2; }

answers() {
  # Any docker CLI works (the host may have a newer one first in PATH); the API is negotiated.
  DOCKER_HOST="$host" docker info --format '{{.ServerVersion}}' >/dev/null 2>&1
}

if [ -S "$sock" ] && answers; then
  log "dockerd already answers on $host"
  echo "export DOCKER_HOST=$host"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  log "error: dockerd needs root; run this script as root (or with sudo)"
  exit 1
fi

missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
command -v iptables >/dev/null 2>&1 || missing+=(iptables)
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing ${missing[*]} from apt"
  apt-get update -q >&2
  # The postinst's "policy-rc.d denied execution of start" is expected: there is no init system to start it.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi

mkdir -p "$run_dir" "$data_root"
pidfile="$run_dir/dockerd.pid"
if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  # A daemon of ours is alive but not answering yet (just started by a concurrent call): wait for it.
  log "dockerd (pid $(cat "$pidfile")) is starting; waiting"
else
  rm -f "$sock" "$pidfile"
  log "starting dockerd: data root $data_root, socket $sock, log $run_dir/dockerd.log"
  # setsid: the daemon must outlive this script and the shell that ran it.
  setsid dockerd \
    --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false --bridge=none \
    --storage-driver=overlay2 --data-root="$data_root" \
    --exec-root="$run_dir/exec" --pidfile="$pidfile" \
    -H "$host" >>"$run_dir/dockerd.log" 2>&1 </dev/null &
fi

deadline=$((SECONDS + wait_s))
until answers; do
  if [ "$SECONDS" -ge "$deadline" ]; then
    log "error: dockerd did not answer on $host within ${wait_s}s; last log lines:"
    tail -n 20 "$run_dir/dockerd.log" >&2 || true
    exit 1
  fi
  sleep 0.2
done
log "dockerd answers on $host ($(DOCKER_HOST="$host" docker info --format '{{.ServerVersion}} {{.Driver}}'))"
echo "export DOCKER_HOST=$host"
