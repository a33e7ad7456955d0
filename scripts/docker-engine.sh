#!/usr/bin/env bash
# Makes sure a Docker engine answers: installs Debian's docker.io and starts dockerd
# in the background when none does. Used by `make test` and `make demo`.
set -euo pipefail
answers() { timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }
answers && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "no Docker engine answers; start one (or run as root so datmo's scripts can)" >&2
  exit 1
fi
if ! command -v dockerd >/dev/null; then
  echo "installing Debian's docker.io ..." >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
fi
log=/var/log/datmo-dockerd.log
echo "starting dockerd (log: $log) ..." >&2
nohup dockerd >"$log" 2>&1 &
for _ in $(seq 1 60); do
  answers && exit 0
  sleep 1
done
echo "dockerd did not answer within 60 s; last log lines:" >&2
tail -n 20 "$log" >&2
exit 1
