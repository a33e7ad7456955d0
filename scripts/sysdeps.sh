#!/usr/bin/env bash
# Installs the Debian packages that tests and benchmarks need, when missing.
# (openssh-server's package scripts start no daemon here: there is no systemd.)
# Only root can install; anyone else is told what to install.
set -euo pipefail
need=()
command -v git >/dev/null || need+=(git)
command -v mkfs.xfs >/dev/null || need+=(xfsprogs)
command -v b3sum >/dev/null || need+=(b3sum)
# ssh remotes: the tests start their own sshd on a loopback port (tests/remote/conftest.py)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v rsync >/dev/null || need+=(rsync)  # the reference of the push/pull benchmarks
[ -x /usr/bin/time ] || need+=(time)  # peak memory of a first snapshot (benchmarks/scale.py)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "please install: ${need[*]} (some tests and benchmarks need them)" >&2
  exit 0
fi
echo "installing ${need[*]} ..." >&2
apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
