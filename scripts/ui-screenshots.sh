#!/usr/bin/env bash
# Screenshots of the dashboard's main pages into docs/img/ (README.md and docs/ui.md show
# them): a demo project with real runs and a sweep, `datmo ui`, Debian's headless Chromium.
# Run by `make screenshots` (needs `make sysdeps` for chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 scripts/ui_screenshots.py "${@:-docs/img}"
