#!/usr/bin/env bash
# Builds the local base images the Docker tests use; no registry is needed.
# Reuses images that already exist. Usage: scripts/test-images.sh [python] [busybox]
set -euo pipefail
want=("$@")
[ ${#want[@]} -eq 0 ] && want=(busybox python)

mirror() {
  # The Debian mirror this machine's apt already uses (never hard-coded here).
  local m
  m=$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -n1 || true)
  [ -n "$m" ] || m=$(grep -hsE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | awk '$3 ~ /^[a-z]+$/ {print $2; exit}' || true)
  [ -n "$m" ] || { echo "no Debian mirror found in the apt sources" >&2; exit 1; }
  echo "$m"
}

have() { docker image inspect "$1" >/dev/null 2>&1; }

build_busybox() {
  have datmo-test/busybox:latest && return 0
  command -v busybox >/dev/null || [ -x /bin/busybox ] || {
    apt-get update -qq >/dev/null; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null; }
  local dir; dir=$(mktemp -d)
  mkdir -p "$dir/bin" "$dir/tmp" "$dir/etc"
  cp "$(command -v busybox || echo /bin/busybox)" "$dir/bin/busybox"
  for app in sh true false echo cat sleep ls id env printf touch mkdir rm seq yes head wc; do
    ln -s busybox "$dir/bin/$app"
  done
  echo 'root:x:0:0:root:/root:/bin/sh' > "$dir/etc/passwd"
  tar -C "$dir" -c . | docker import --change 'ENV PATH=/bin' - datmo-test/busybox:latest >/dev/null
  rm -rf "$dir"
  echo "built datmo-test/busybox" >&2
}

build_python() {
  have datmo-test/python:latest && return 0
  command -v debootstrap >/dev/null || {
    apt-get update -qq >/dev/null; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
  local dir; dir=$(mktemp -d)
  debootstrap --variant=minbase --include=python3 bookworm "$dir" "$(mirror)" >/dev/null
  rm -rf "$dir/var/cache/apt/archives"/*.deb "$dir/var/lib/apt/lists"/*
  tar -C "$dir" -c . | docker import --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' - datmo-test/python:latest >/dev/null
  rm -rf "$dir"
  echo "built datmo-test/python" >&2
}

build_jupyter() {
  # Debian's Jupyter Notebook, installed with apt inside the chroot (debootstrap's own
  # --include of it fails while configuring python3-zmq).
  have datmo-test/jupyter:latest && return 0
  command -v debootstrap >/dev/null || {
    apt-get update -qq >/dev/null; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
  local dir; dir=$(mktemp -d)
  debootstrap --variant=minbase --include=python3 bookworm "$dir" "$(mirror)" >/dev/null
  mount -t proc proc "$dir/proc"
  trap 'umount "$dir/proc" 2>/dev/null || true' RETURN
  chroot "$dir" /usr/bin/env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends jupyter-notebook jupyter-core python3-ipykernel >/dev/null
  umount "$dir/proc"
  rm -rf "$dir/var/cache/apt/archives"/*.deb "$dir/var/lib/apt/lists"/*
  tar -C "$dir" -c . | docker import --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' - datmo-test/jupyter:latest >/dev/null
  rm -rf "$dir"
  echo "built datmo-test/jupyter" >&2
}

for w in "${want[@]}"; do "build_$w"; done
