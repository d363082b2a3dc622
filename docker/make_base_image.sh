#!/usr/bin/env bash
# Make the registry-free base image tunix-rt/debian:bookworm from Debian packages (debootstrap + docker import).
#
#   docker/make_base_image.sh [TAG]        # default TAG: tunix-rt/debian:bookworm
#
# These machines reach no container registry (Docker Hub, gcr.io), only PyPI and the Debian mirror, so the
# Dockerfile's public default base cannot be pulled here. This builds an equivalent minimal Debian root file
# system from the apt mirror and imports it; then build the kernel image on it with
#   TUNIX_RT_BASE_IMAGE=tunix-rt/debian:bookworm   (the Dockerfile installs python3 from apt when missing).
# Skips the work when the image already exists. Talks to $DOCKER_HOST, else to the socket of
# docker/start_dockerd.sh. Needs root (debootstrap does).
#
# Environment (optional): TUNIX_RT_DEBIAN_MIRROR (default: the host's first Debian apt source, else
# http://deb.debian.org/debian), TUNIX_RT_DEBIAN_SUITE (default bookworm).
set -euo pipefail

tag="${1:-tunix-rt/debian:bookworm}"
suite="${TUNIX_RT_DEBIAN_SUITE:-bookworm}"
export DOCKER_HOST="${DOCKER_HOST:-unix://${TUNIX_RT_DOCKER_RUN:-/run/tunix-rt-docker}/docker.sock}"

log() { echo "make_base_image: $*" >&2; }

if docker image inspect "$tag" >/dev/null 2>&1; then
  log "$tag exists; nothing to do"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  log "error: debootstrap needs root; run this script as root (or with sudo)"
  exit 1
fi
command -v debootstrap >/dev/null 2>&1 || {
  log "installing debootstrap from apt"
  apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap >&2
}

host_mirror() {
  # deb822 sources first (Debian 12's default), then the one-line format; the first plain Debian mirror wins.
  local uri
  uri=$(awk '/^URIs:/ {print $2}' /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | grep -v -- '-security' | head -n 1 || true)
  if [ -z "$uri" ]; then
    uri=$(awk '$1 == "deb" && $2 !~ /^\[/ {print $2}' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
          2>/dev/null | grep -v -- '-security' | head -n 1 || true)
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}
mirror="${TUNIX_RT_DEBIAN_MIRROR:-$(host_mirror)}"

work=$(mktemp -d "${TMPDIR:-/var/tmp}/tunix-rt-rootfs.XXXXXX")
trap 'rm -rf "$work"' EXIT

log "debootstrap --variant=minbase $suite from $mirror"
debootstrap --variant=minbase "$suite" "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  log "error: debootstrap failed; last log lines:"
  tail -n 20 "$work/debootstrap.log" >&2
  exit 1
}
# Downloaded .debs and package lists only bloat the image; the Dockerfile runs apt-get update itself.
rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*

log "importing as $tag"
# --numeric-owner: file owners must be the root file system's own ids, not the host's names.
tar --numeric-owner -C "$work/rootfs" -c . \
  | docker import --change 'CMD ["/bin/bash"]' --message "debootstrap --variant=minbase $suite $mirror" - "$tag" >&2
log "done: $(docker image inspect --format '{{.Id}} {{.Size}} bytes' "$tag")"
