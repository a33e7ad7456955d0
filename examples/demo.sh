#!/usr/bin/env bash
# The main job, end to end, on a copy of examples/quickstart:
# init, two snapshots with different config and metrics, an unchanged re-snapshot, list,
# diff, status, checkout.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/datmo-demo.XXXXXX")"
trap 'rm -rf "$work"' EXIT
cp -r "$here/quickstart/." "$work/"
cd "$work"
# Each command is shown as it must be typed (quoted where the shell needs it), then run.
show() { printf '\n\033[1m$ %s\033[0m\n' "$(python3 -c 'import shlex, sys; print(shlex.join(sys.argv[1:]))' "$@")"; "$@"; }

show datmo init --name quickstart --description "logistic regression demo"
show python3 train.py
first=$(datmo snapshot create -m "baseline" -l baseline)
echo "snapshot: $first"
# Nothing changed: the same id comes back and no duplicate is made (answered in a few tens
# of milliseconds once datmo has kept the answer; see docs/storage.md).
show datmo snapshot create -m "baseline" -l baseline
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

# Runs: the same task twice with different config, in Docker when an engine answers and
# the local base image is there (no registry is needed), otherwise as local processes.
if docker image inspect datmo-test/python:latest >/dev/null 2>&1; then
  executor=docker
  printf 'FROM datmo-test/python:latest\n' > Dockerfile
  echo
  echo "runs use Docker (image datmo-test/python, built by scripts/test-images.sh)"
else
  executor=local
  echo
  echo "runs use the local executor (no Docker engine answers, or no local base image)"
fi
printf '{"lr": 0.05, "epochs": 4, "seed": 1}\n' > config.json
show datmo run --executor "$executor" -c lr=0.05 -m "small steps" "python3 train.py"
printf '{"lr": 0.8, "epochs": 4, "seed": 1}\n' > config.json
show datmo run --executor "$executor" -c lr=0.8 -m "big steps" "python3 train.py"
show datmo ls
show datmo ls --sort test_acc --filter "lr>0.1" --format json
echo
echo "demo finished: snapshots, a diff, a checkout round trip and two runs"
