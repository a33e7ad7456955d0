"""Takes docs/img/ui-*.png (see scripts/ui-screenshots.sh)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

TRAIN = """\
import datmo, math, random
lr = datmo.config("lr", 0.1)
layers = datmo.config("layers", 2)
random.seed(int(lr * 1000) + layers)
for step in range(2000):
    noise = random.gauss(0, 0.02)
    loss = 2.2 * math.exp(-lr * step / (150 * layers ** 0.5)) + 0.1 / layers + noise
    datmo.log_metrics(step=step, loss=loss, acc=max(0.0, 1 - loss / 2.4))
datmo.log_metrics(val_acc=max(0.0, 1 - loss / 2.3))
open("model.txt", "w").write("weights")
"""


def main(out: Path) -> None:
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="datmo-shots-"))
    env = {**os.environ, "HOME": str(work / "home"), "GIT_CONFIG_GLOBAL": "/dev/null"}
    datmo = [shutil.which("datmo") or "datmo"]

    def run(*args: str) -> str:
        done = subprocess.run([*datmo, *args], cwd=work / "p", env=env, capture_output=True,
                              text=True, check=True)
        return done.stdout

    (work / "p").mkdir(parents=True)
    (work / "p" / "train.py").write_text(TRAIN)
    run("init", "--name", "demo")
    for lr, layers, msg in [(0.5, 2, "baseline"), (1.0, 2, "faster"), (2.0, 4, "deeper net")]:
        run("run", "--executor", "local", "-c", f"lr={lr}", "-c", f"layers={layers}", "-m", msg,
            "--tag", "demo", "python3 train.py")
    run("sweep", "python3 train.py", "--executor", "local", "-c", "lr=0.25,0.5,1,2",
        "-c", "layers=2,4", "--objective", "val_acc:max", "--parallel", "2")
    proc = subprocess.Popen([*datmo, "ui", "--no-browser", "--port", "0"], cwd=work / "p",
                            env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    url = ""
    while not url:
        m = re.search(r"http://\S+", proc.stdout.readline())
        url = m[0] if m else ""
    from playwright.sync_api import sync_playwright

    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"),
                                        args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(url)
            page.wait_for_selector("#runs tbody tr")
            page.screenshot(path=str(out / "ui-runs.png"))
            first = page.get_attribute('#runs tbody tr:last-child', "data-id")
            page.goto(url.split("?")[0] + f"#/run/{first}")
            page.wait_for_selector('.chartbox[data-key="loss"][data-series]')
            page.screenshot(path=str(out / "ui-run.png"))
            page.goto(url.split("?")[0] + "#/runs?filter=tag%3Ddemo")
            page.wait_for_selector("#runs tbody tr")
            for box in page.query_selector_all("#runs tbody input[type=checkbox]"):
                box.check()
            page.click("#compare-selected")
            page.wait_for_selector("#overlay[data-series]")
            page.select_option("#metric", "loss")
            page.wait_for_selector("#parallel canvas")
            page.wait_for_timeout(800)
            page.screenshot(path=str(out / "ui-compare.png"), full_page=True)
            page.goto(url.split("?")[0] + "#/sweeps")
            page.click("#sweeps a")
            page.wait_for_selector("#sweep-parallel canvas")
            page.wait_for_timeout(800)
            page.screenshot(path=str(out / "ui-sweep.png"), full_page=True)
            browser.close()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
        shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {out}/ui-runs.png, ui-run.png, ui-compare.png, ui-sweep.png")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/img"))
