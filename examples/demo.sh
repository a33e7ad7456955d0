#!/usr/bin/env bash
# The main job, end to end, on a copy of examples/quickstart:
# init, two snapshots with different config and metrics, list, diff, status, checkout.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/datmo-demo.XXXXXX")"
trap 'rm -rf "$work"' EXIT
cp -r "$here/quickstart/." "$work/"
cd "$work"
show() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

show datmo init --name quickstart --description "logistic regression demo"
show python3 train.py
first=$(datmo snapshot create -m "baseline" -l baseline)
echo "snapshot: $first"
printf '{"lr": 0.5, "epochs": 10, "seed": 0}\n' > config.json
show python3 train.py
second=$(datmo snapshot create -m "higher learning rate, more epochs" -s notes=tuned)
echo "snapshot: $second"
show datmo snapshot ls
show datmo snapshot diff "${first:0:8}" "${second:0:8}"
show datmo status
show datmo snapshot checkout "${first:0:8}"
show cat config.json stats.json
show datmo snapshot checkout "${second:0:8}" --to "$work-old" model/weights.bin
ls -l "$work-old/model"
rm -rf "$work-old"
show datmo snapshot ls --format json
echo
echo "demo finished: two snapshots, a diff and a checkout round trip"
