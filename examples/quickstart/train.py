"""A tiny, dependency-free training script: logistic regression on synthetic data.

Reads hyperparameters from config.json, writes weights to model/weights.bin and
metrics to stats.json, which is what datmo snapshots pick up.
"""

import json
import math
import os
import random
import struct
import sys
from pathlib import Path

# Inside `datmo run`, `import datmo` works with no install (datmo mounts a small module).
if os.environ.get("DATMO_METRICS_FILE"):
    import datmo
else:
    datmo = None

# config.json holds the run's config (datmo writes -c values into it); so does
# datmo.config(), which a script can read instead.
config = json.loads(Path("config.json").read_text())
lr, epochs, seed = config["lr"], config["epochs"], config.get("seed", 0)

rng = random.Random(seed)
dim = 16
true_w = [rng.uniform(-1, 1) for _ in range(dim)]
data = []
for _ in range(400):
    x = [rng.gauss(0, 1) for _ in range(dim)]
    y = 1 if sum(a * b for a, b in zip(x, true_w)) > 0 else 0
    data.append((x, y))
train, test = data[:300], data[300:]

w = [0.0] * dim
if datmo:
    datmo.log_config(lr=lr, epochs=epochs, seed=seed)
for epoch in range(epochs):
    loss = 0.0
    for x, y in train:
        p = 1 / (1 + math.exp(-sum(a * b for a, b in zip(x, w))))
        p = min(max(p, 1e-12), 1 - 1e-12)
        loss -= y * math.log(p) + (1 - y) * math.log(1 - p)
        w = [wi - lr * (p - y) * xi for wi, xi in zip(w, x)]
    if datmo:
        datmo.log_metrics(step=epoch, loss=round(loss / len(train), 5))


def accuracy(rows):
    hits = sum((sum(a * b for a, b in zip(x, w)) > 0) == bool(y) for x, y in rows)
    return hits / len(rows)


stats = {"train_acc": round(accuracy(train), 4), "test_acc": round(accuracy(test), 4)}
Path("stats.json").write_text(json.dumps(stats, indent=2) + "\n")
# A weights file large enough to go to datmo's file store rather than git (over 1 MiB).
Path("model").mkdir(exist_ok=True)
blob = struct.pack(f"{dim}d", *w) * 10000
Path("model/weights.bin").write_bytes(blob)
print(f"lr={lr} epochs={epochs} -> {stats}", *sys.argv[1:])
