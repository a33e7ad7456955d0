#!/usr/bin/env bash
# The main job, end to end, on a copy of examples/quickstart:
# init, two snapshots with different config and metrics, an unchanged re-snapshot, list,
# diff, status, checkout.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/datmo-demo.XXXXXX")"
trap 'rm -rf "$work" "$work-remote" "$work-clone" "$work.datmo"' EXIT
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
# The run's config is config.json with -c over it: the task gets exactly what the run
# records (here the file itself is rewritten with the -c values, as DVC's --set-param does).
show datmo run --executor "$executor" -c lr=0.05 -c epochs=4 -m "small steps" --tag baseline "python3 train.py"
show cat config.json
# {KEY} in the command is the config value, quoted as one shell word.
show datmo run --executor "$executor" -c lr=0.8 -c epochs=4 -m "big steps" "python3 train.py --note {lr}"
show datmo ls
show datmo ls --sort test_acc --filter "lr>0.1" --format json
big=$(datmo ls --filter "lr=0.8" --format json | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["id"][:8])')
small=$(datmo ls --filter "tag=baseline" --format json | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["id"][:8])')
# A run's id names its after snapshot: compare two runs' results directly.
show datmo snapshot diff "$small" "$big"
show datmo tag "$big" best
# The same run again, from its before snapshot, in a copy of its own: did it reproduce?
show datmo rerun "$small" --verify
# Share: push to a folder remote (a mounted share; ssh:// and s3:// work alike), then
# clone it elsewhere, as a teammate would, and reproduce a run there with one command.
show datmo remote add origin "$work-remote"
show datmo push
show datmo push
show datmo clone "$work-remote" "$work-clone"
(cd "$work-clone" && show datmo ls && show datmo rerun "$big" --verify)
show datmo bundle create "$work.datmo" "$big"
show datmo delete "$small"
show datmo gc --grace 0
echo
echo "demo finished: snapshots, a diff, a checkout round trip, runs with config, a rerun,"
echo "a push to a folder remote and a rerun from a clone of it"
