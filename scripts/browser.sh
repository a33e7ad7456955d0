#!/usr/bin/env bash
# Debian's headless Chromium for the dashboard's browser tests (tests/ui, -m browser) and
# scripts/ui-screenshots.sh; Playwright (the dev extra) drives it by its path. No browser
# is ever downloaded: only the distribution's package. Only root can install.
set -euo pipefail
command -v chromium >/dev/null && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "please install chromium and chromium-driver (the browser tests need them)" >&2
  exit 0
fi
echo "installing chromium chromium-driver ..." >&2
for try in 1 2; do
  if apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq chromium chromium-driver >/dev/null; then
    exit 0
  fi
  [ "$try" = 1 ] && sleep 10  # apt's lock may be busy: once more
done
echo "could not install chromium" >&2
exit 1
