"""Fixtures for the dashboard: a project with real runs, a real `datmo ui` process, and
Debian's headless Chromium driven by Playwright (required when CI is set)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
XSS = "<img src=x onerror=alert(1)>"
TRAIN = """\
import datmo, math
lr = datmo.config("lr", 0.1)
for i in range(300):
    loss = math.exp(-lr * i / 30) + 0.01 * math.sin(i)
    datmo.log_metrics(step=i, loss=loss, acc=1 - math.exp(-lr * i / 40))
open("model.txt", "w").write("weights %s" % lr)
open("page.html", "w").write("<script>document.title='pwned'</script>")
open("curve.svg", "w").write(
    '<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4">'
    '<script>alert(1)</script><rect width="4" height="4"/></svg>'
)
"""


def env_for(home: Path) -> dict[str, str]:
    """What the autouse isolated_home fixture sets, for module-wide processes."""
    env = dict(os.environ)
    env.update(
        HOME=str(home),
        GIT_CONFIG_GLOBAL="/dev/null",
        GIT_CONFIG_NOSYSTEM="1",
        GIT_AUTHOR_NAME="Test",
        GIT_AUTHOR_EMAIL="test@example.invalid",
        GIT_COMMITTER_NAME="Test",
        GIT_COMMITTER_EMAIL="test@example.invalid",
        PYTHONPATH=os.pathsep.join(p for p in [str(REPO), os.environ.get("PYTHONPATH", "")] if p),
    )
    env.pop("DATMO_DEBUG", None)
    return env


def datmo_cmd() -> list[str]:
    exe = shutil.which("datmo")
    return [exe] if exe else [sys.executable, "-m", "datmo"]


def datmo(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [*datmo_cmd(), *args], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


@dataclass
class Project:
    root: Path
    env: dict[str, str]
    runs: dict[str, str]  # lr -> run id

    def datmo(self, *args: str) -> subprocess.CompletedProcess[str]:
        return datmo(self.root, self.env, *args)


@pytest.fixture(scope="module")
def ui_project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """Three finished runs of a training script (lr 0.1, 0.3, 0.5; the same seed), one
    with a message that is an XSS attempt."""
    root = tmp_path_factory.mktemp("uiproj")
    env = env_for(tmp_path_factory.mktemp("home"))
    datmo(root, env, "init", "--name", "ui")
    (root / "train.py").write_text(TRAIN)
    runs = {}
    for lr in ("0.1", "0.3", "0.5"):
        message = XSS if lr == "0.3" else f"lr {lr}"
        out = datmo(
            root,
            env,
            "run",
            "--executor",
            "local",
            "-c",
            f"lr={lr}",
            "-c",
            "seed=7",
            "-m",
            message,
            "python3 train.py",
        )
        runs[lr] = re.search(r"run ([0-9a-f]{8})", out.stdout + out.stderr)[1]  # type: ignore[index]
    import json

    listed = json.loads(datmo(root, env, "ls", "--format", "json").stdout)
    full = {r["id"][:8]: r["id"] for r in listed}
    return Project(root, env, {lr: full[short] for lr, short in runs.items()})


@dataclass
class Served:
    proc: subprocess.Popen[str]
    url: str  # with ?token=
    base: str
    token: str
    port: int


def serve(root: Path, env: dict[str, str], *extra: str) -> Served:
    proc = subprocess.Popen(
        [*datmo_cmd(), "ui", "--no-browser", "--port", "0", *extra],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.time() + 30
    while time.time() < deadline:
        line = proc.stdout.readline()
        m = re.search(r"(http://[^/]+)/\?token=([0-9a-f]+)", line)
        if m:
            port = int(m[1].rsplit(":", 1)[1])
            return Served(proc, m[0], m[1], m[2], port)
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"datmo ui did not start: {proc.stderr.read() if proc.stderr else ''}")


def stop(served: Served) -> tuple[int, str, str]:
    served.proc.send_signal(signal.SIGINT)
    out, err = served.proc.communicate(timeout=20)
    return served.proc.returncode, out, err


@pytest.fixture(scope="module")
def served(ui_project: Project) -> Iterator[Served]:
    s = serve(ui_project.root, ui_project.env)
    yield s
    code, _, _ = stop(s)
    assert code == 0


CHROMIUM = ("chromium", "chromium-browser", "google-chrome")


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium (scripts/browser.sh installs it); in CI its absence fails."""
    found = next((p for name in CHROMIUM if (p := shutil.which(name))), None)
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        found = None
    if found is None:
        message = "no chromium (or no playwright) here: run 'make sysdeps' and 'make install'"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser: Any, served: Served) -> Iterator[Any]:
    """A fresh browser tab signed in through the printed URL. page.dialogs and
    page.errors collect any alert() and script error: both must stay empty."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.dialogs, tab.errors = [], []
    tab.on("dialog", lambda d: (tab.dialogs.append(d.message), d.dismiss()))
    tab.on("pageerror", lambda e: tab.errors.append(str(e)))
    tab.goto(served.url)
    tab.wait_for_selector("#runs tbody tr")
    yield tab
    context.close()


# Per color of the dashboard's palette, how many canvas pixels are drawn in it: a chart
# with N series shows N of the colors (axes and grid are grey).
COLOR_PIXELS = """([box, colors]) => {
  const c = box.querySelector('canvas');
  if (!c) return [];
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  const rgb = colors.map((h) => [1, 3, 5].map((i) => parseInt(h.slice(i, i + 2), 16)));
  const n = rgb.map(() => 0);
  for (let i = 0; i < d.length; i += 4) {
    if (d[i + 3] < 200) continue;
    rgb.forEach(([r, g, b], j) => {
      if (Math.abs(d[i] - r) + Math.abs(d[i + 1] - g) + Math.abs(d[i + 2] - b) < 60) n[j]++;
    });
  }
  return n;
}"""
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd"]
