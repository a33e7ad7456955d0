#!/usr/bin/env bash
# GPU check: on a machine with an NVIDIA GPU and PyTorch (no Docker, no network), install
# datmo offline and run a small PyTorch training task through
#   datmo run --executor local --gpu
# then check that the run recorded the GPU model and the metrics logged step by step.
#
# Before, on a machine with network:   make gpu-wheels     (fills .bench/wheels; GPU_PYTHON=3.12)
# On the GPU machine, from the repo:   bash benchmarks/gpu_check.sh [WHEELS_DIR]
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
wheels="${1:-$repo/.bench/wheels}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
say() { printf '[gpu_check] %s\n' "$*"; }

python3 -c "import torch; assert torch.cuda.is_available(), 'CUDA not available'" \
  || { say "FAIL: this machine has no CUDA-capable PyTorch"; exit 1; }
say "torch $(python3 -c 'import torch; print(torch.__version__, torch.cuda.get_device_name(0))')"

# datmo and its dependencies come from the wheels, into a folder of their own on PYTHONPATH:
# a venv made from the machine's Python (often a venv itself) would not see its PyTorch.
python3 -m pip install -q --no-index --no-cache-dir --find-links "$wheels" --target "$work/site" datmo
export PYTHONPATH="$work/site${PYTHONPATH:+:$PYTHONPATH}" PATH="$work/site/bin:$PATH"
say "$(datmo version)"

mkdir "$work/proj" && cd "$work/proj"
cat > train.py <<'PY'
import time
import torch
import datmo

torch.manual_seed(0)
dev = torch.device("cuda")
x = torch.randn(4096, 64, device=dev)
w_true = torch.randn(64, 1, device=dev)
y = x @ w_true + 0.01 * torch.randn(4096, 1, device=dev)
model = torch.nn.Linear(64, 1).to(dev)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
datmo.log_config(lr=0.1, device=torch.cuda.get_device_name(0))
start = time.time()
for step in range(200):
    opt.zero_grad()
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward()
    opt.step()
    if step % 20 == 0 or step == 199:
        datmo.log_metrics(step=step, loss=loss.item())
torch.save(model.state_dict(), "model.pt")
print(f"final_loss: {loss.item():.6f}")
print(f"train_seconds: {time.time() - start:.3f}")
PY
datmo init --name gpu-check >/dev/null
datmo run --executor local --gpu -m "gpu check" "python3 train.py"
datmo ls --format json > runs.json
python3 - "$work/proj" <<'PY'
import json, pathlib, sys
root = pathlib.Path(sys.argv[1])
run = json.loads((root / "runs.json").read_text())[0]
series = json.loads((root / ".datmo" / "run-data" / run["id"] / "series.json").read_text())
checks = {
    "status SUCCESS": run["status"] == "SUCCESS",
    "GPU model recorded": bool(run["gpus"]) and all("NVIDIA" in g or "H1" in g or "H2" in g or "A1" in g for g in run["gpus"]),
    "loss logged at 11 steps": len(series.get("loss", [])) == 11,
    "steps in order": [s[0] for s in series.get("loss", [])] == list(range(0, 200, 20)) + [199],
    "final loss is the last value": run["metrics"].get("loss") == series["loss"][-1][1],
    "output metric captured": "final_loss" in run["metrics"],
    "config logged": run["config"].get("lr") == 0.1,
    "after snapshot": bool(run["after_snapshot_id"]),
}
print(json.dumps({"gpus": run["gpus"], "metrics": run["metrics"], "duration_s": run["duration_s"]}, indent=2))
for name, ok in checks.items():
    print(f"[gpu_check] {'ok  ' if ok else 'FAIL'} {name}")
sys.exit(0 if all(checks.values()) else 1)
PY

# --gpus picks by index; an index past the last GPU is refused before the task starts.
n="$(nvidia-smi -L | wc -l)"
out="$(datmo run --executor local --gpus 0 "python3 -c 'import torch; print(\"seen:\", torch.cuda.device_count())'")"
grep -q "seen: 1" <<<"$out" || { say "FAIL --gpus 0 did not give the task one GPU: $out"; exit 1; }
say "ok   --gpus 0 gives the task one GPU"
set +e
datmo run --executor local --gpus "$n" "touch ran.txt" 2>refused.txt
rc=$?
set -e
if [[ $rc -ne 125 || -e ran.txt ]]; then say "FAIL --gpus $n (past the last GPU): exit $rc"; exit 1; fi
say "ok   --gpus $n refused before the task (exit 125): $(cat refused.txt)"
[[ "$(datmo ls --format json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" == 2 ]] \
  || { say "FAIL the refused run left a record"; exit 1; }
say "ok   no record left by the refused run"

# A two-run sweep, one GPU each: a queue worker hands out the GPUs and each run records
# the one it held and the model it ran on.
datmo sweep --executor local --num-gpus 1 --parallel 2 \
  "python3 -c 'import os, torch; print(\"cvd:\", os.environ[\"CUDA_VISIBLE_DEVICES\"], torch.cuda.device_count())'" \
  -c "i=range(2)" >sweep.out
datmo ls --format json > runs.json
python3 - <<'PY'
import json, sys
runs = [r for r in json.load(open("runs.json")) if r.get("sweep_id")]
checks = {
    "two sweep runs": len(runs) == 2,
    "both SUCCESS": all(r["status"] == "SUCCESS" for r in runs),
    "each held one GPU": all(len(r["queue"].get("gpus") or []) == 1 for r in runs),
    "each recorded its GPU model": all(r["gpus"] for r in runs),
}
for name, ok in checks.items():
    print(f"[gpu_check] {'ok  ' if ok else 'FAIL'} {name}")
sys.exit(0 if all(checks.values()) else 1)
PY
say "PASS"
