#!/usr/bin/env bash
# The main job, end to end, on a copy of examples/quickstart:
# init, two snapshots with different config and metrics, an unchanged re-snapshot, list,
# diff, status, checkout; runs, sweeps, the queue, Slurm.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/datmo-demo.XXXXXX")"
trap 'rm -rf "$work" "$work-remote" "$work-clone" "$work.datmo" "$work-big"' EXIT
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

# At scale: 20,000 source files and 200 small images (binary: stored as files, not
# code). The first snapshot writes the code as one git pack; after an edit, only the
# folder that changed is read and stored again.
python3 - "$work-big" <<'PY'
import os, sys
root = sys.argv[1]
for i in range(20000):
    d = os.path.join(root, f"pkg{i // 1000}", f"mod{i // 100 % 10}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"m{i}.py"), "w") as f:
        f.write(f"import os\nVALUE = {i}\n")
os.makedirs(os.path.join(root, "images"))
for i in range(200):
    with open(os.path.join(root, "images", f"{i}.png"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n\0" + os.urandom(2048))
PY
timed() { local t0; t0=$(date +%s.%N); show "$@"; python3 -c "import sys; print(f'  ({float(sys.argv[2]) - float(sys.argv[1]):.2f} s)')" "$t0" "$(date +%s.%N)"; }
(
  cd "$work-big"
  datmo init --name big >/dev/null
  sleep 2  # datmo, like git, distrusts timestamps from the last moments
  timed datmo snapshot create -m "20,000 files"
  echo "VALUE = -1" >> pkg7/mod3/m7301.py
  sleep 2
  timed datmo snapshot create -m "one edit"
  show datmo snapshot inspect "$(datmo snapshot ls --format json | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["id"][:8])')"
)

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
# Charts for a terminal: one HTML file that opens offline (PNG/SVG with datmo[plot]).
show datmo plot "$small" "$big" -o runs.html
# The dashboard: started, one page fetched with the token it printed, stopped.
datmo ui --no-browser --port 0 > ui.out 2>&1 &
ui=$!
for _ in $(seq 50); do grep -q token= ui.out && break; sleep 0.1; done
url=$(grep -o 'http://[^ ]*token=[0-9a-f]*' ui.out)
echo "\$ datmo ui --no-browser --port 0   # prints ${url%%\?*}?token=..."
base=${url%%/\?*}; token=${url##*token=}
echo "  runs the dashboard shows: $(curl -sf -H "X-Datmo-Token: $token" "$base/api/runs?count=1" | python3 -c 'import json, sys; print(json.load(sys.stdin)["total"])')"
echo "  without the token: HTTP $(curl -s -o /dev/null -w '%{http_code}' "$base/api/runs")"
kill -TERM "$ui"; wait "$ui"; rm -f ui.out  # as Ctrl-C: a clean stop
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

# Many runs at once: a grid sweep, two at a time, each run in a working copy of its own
# (your tree is left alone), ranked by its objective; then a Bayesian search (Optuna's
# TPE) over a learning-rate range; then the queue: staged now, run by a worker.
show datmo sweep --executor local "python3 train.py" -c lr=0.05,0.2,0.8 -c epochs=2,4 --parallel 2 --objective test_acc:max
show datmo sweep --executor local "python3 train.py" -c "lr=loguniform(0.01,1)" -c epochs=3 --optimize test_acc:max --trials 6 --parallel 2
show datmo sweep ls
show datmo run --queue --executor local -c lr=0.3 "python3 train.py"
show datmo run --queue --executor local -c lr=0.6 --priority 5 "python3 train.py"
show datmo queue ls
show datmo queue start -j 2

# On a cluster: the same runs through Slurm. Here, a real one-node Slurm on 127.0.0.1
# (scripts/slurm.sh, which make test starts); on your cluster, just --executor slurm.
if [ "$(id -u)" = 0 ] && bash "$here/../scripts/slurm.sh" start >/dev/null 2>&1; then
  export SLURM_CONF=/var/lib/datmo-slurm/slurm.conf
  show datmo run --executor slurm --time 5 -c lr=0.4 -m "on Slurm" "python3 train.py"
  show datmo sweep --executor slurm "python3 train.py" -c lr=0.1,0.4 --parallel 2 --objective test_acc:max
  show datmo ls --limit 4
else
  echo
  echo "(no Slurm here: 'bash scripts/slurm.sh start' as root starts a one-node cluster)"
fi
echo
echo "demo finished: snapshots, a diff, a checkout round trip, a 20,000-file project,"
echo "runs with config, a rerun,"
echo "plots, the dashboard, a push to a folder remote and a rerun from a clone of it,"
echo "sweeps (grid and Bayesian), the queue, and runs on Slurm"
