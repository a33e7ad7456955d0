"""Fixtures that compose: an isolated home, an initialised project, a tree writer,
and a way to call the CLI in-process through the same error boundary users hit."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from datmo.cli.main import main

UNUSED_UID = 4242
UNUSED_GID = 4242


@pytest.fixture(autouse=True)
def isolated_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Keep every test away from the real home folder and the user's git config."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for k, v in {
        "GIT_AUTHOR_NAME": "Test",
        "GIT_AUTHOR_EMAIL": "test@example.invalid",
        "GIT_COMMITTER_NAME": "Test",
        "GIT_COMMITTER_EMAIL": "test@example.invalid",
    }.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("DATMO_DEBUG", raising=False)
    # `datmo run` starts `python -m datmo.cli.supervise`, which must find this checkout.
    paths = [str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in paths if p))
    return home


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_datmo(*args: str, input: str | None = None) -> Result:
    """Invoke `datmo ARGS` in-process, through main()'s error handling."""
    runner = CliRunner()
    with runner.isolation(input=input) as (out, err, _):
        try:
            main(list(args))
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return Result(code, out.getvalue().decode(), err.getvalue().decode())


def write_tree(root: Path, tree: dict[str, Any]) -> None:
    """{'a.py': 'text', 'data/x.bin': b'bytes', 'sub': {'b.txt': '...'}} -> files."""
    for name, content in tree.items():
        path = root / name
        if isinstance(content, dict):
            path.mkdir(parents=True, exist_ok=True)
            write_tree(path, content)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


@pytest.fixture
def tree() -> Callable[..., None]:
    return write_tree


@pytest.fixture
def cli() -> Callable[..., Result]:
    return run_datmo


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An initialised project folder; the test runs inside it."""
    root = tmp_path / "proj"
    root.mkdir()
    monkeypatch.chdir(root)
    result = run_datmo("init", "--name", "test")
    assert result.exit_code == 0, result.output
    yield root


@pytest.fixture
def foreign_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A project folder owned by an unused uid, as a user's would be (tests run as root)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to chown a folder to another uid")
    root = tmp_path / "theirs"
    root.mkdir()
    os.chown(root, UNUSED_UID, UNUSED_GID)
    monkeypatch.chdir(root)
    yield root


def datmo_subprocess(*args: str, cwd: Path, **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run the real `datmo` as a separate process (smoke tests, kills, concurrency)."""
    exe = shutil.which("datmo")
    cmd = [exe, *args] if exe else [sys.executable, "-m", "datmo", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, **kw)


REPO = Path(__file__).resolve().parent.parent


def imported_modules(args: list[str], cwd: Path) -> set[str]:
    """Modules `python -X importtime -m datmo ARGS` imports (full dotted names)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "datmo", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    names = set()
    for line in p.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "package":  # the header line
                names.add(name)
    assert "datmo.cli.entry" in names  # the parse found real imports
    return names


def _engine_answers() -> bool:
    try:
        out = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            timeout=15,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """A Docker engine must answer; in CI its absence fails the test instead of skipping it."""
    if not _engine_answers():
        message = "no Docker engine answers (scripts/docker-engine.sh starts one)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


SLURM_CONF = Path(os.environ.get("DATMO_SLURM_DIR", "/var/lib/datmo-slurm")) / "slurm.conf"


def _slurm_answers() -> bool:
    env = {**os.environ, "SLURM_CONF": str(SLURM_CONF)}
    try:
        out = subprocess.run(
            ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=15, env=env
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and any(s in out.stdout for s in ("idle", "mix", "alloc"))


@pytest.fixture(scope="session")
def slurm_cluster() -> Path:
    """The one-node Slurm of scripts/slurm.sh must answer (CI: fail, not skip)."""
    if not SLURM_CONF.is_file() or not _slurm_answers():
        message = "no Slurm answers (scripts/slurm.sh start starts one)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return SLURM_CONF


@pytest.fixture
def slurm(slurm_cluster: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Slurm's commands point at the test cluster; jobs of this test are cancelled after."""
    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster))
    yield slurm_cluster
    out = subprocess.run(["squeue", "-h", "-o", "%A %j"], capture_output=True, text=True)
    mine = [line.split()[0] for line in out.stdout.splitlines() if " datmo-" in f" {line}"]
    if mine:
        subprocess.run(["scancel", *sorted(set(mine))], capture_output=True)


def _image(name: str) -> str:
    tag = f"datmo-test/{name}:latest"
    probe = subprocess.run(["docker", "image", "inspect", tag], capture_output=True)
    if probe.returncode != 0:
        build = subprocess.run(
            ["bash", str(REPO / "scripts" / "test-images.sh"), name], capture_output=True, text=True
        )
        if build.returncode != 0:
            pytest.fail(f"could not build {tag}: {build.stderr.strip()[-500:]}")
    return tag


@pytest.fixture(scope="session")
def busybox_image(docker_engine: None) -> str:
    """A few-kB local image with a shell; no registry needed."""
    return _image("busybox")


@pytest.fixture(scope="session")
def jupyter_image(docker_engine: None) -> str:
    """Debian's Jupyter Notebook in a local image (apt inside a debootstrap chroot)."""
    return _image("jupyter")


@pytest.fixture(scope="session")
def python_image(docker_engine: None) -> str:
    """A local Debian image with python3 (debootstrap; built once, then reused)."""
    return _image("python")


@pytest.fixture
def docker_project(project: Path, busybox_image: str) -> Iterator[Path]:
    """A project whose images are all removed afterwards (found by their project label)."""
    yield project
    import json

    from datmo.core.executor import engine

    project_id = json.loads((project / ".datmo" / "project.json").read_text())["id"]
    engine.remove_images(f"datmo.project={project_id}")


def runs(cli: Callable[..., Result]) -> list[dict[str, Any]]:
    """`datmo ls --format json`, checked."""
    import json

    result = cli("ls", "--format", "json")
    assert result.exit_code == 0, result.output
    docs: list[dict[str, Any]] = json.loads(result.stdout)
    return docs


def wait_for(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """check()'s first true value, polled every 0.1 s; the test fails after timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def run_doc(cli: Callable[..., Result], run_id: str) -> dict[str, Any]:
    return next(r for r in runs(cli) if r["id"] == run_id)


@pytest.fixture
def terminal() -> Iterator[Callable[..., Any]]:
    """Start `datmo ARGS` on a pseudo-terminal in the current folder; closed afterwards."""
    from ptyterm import Terminal

    made: list[Terminal] = []

    def start(*args: str) -> Terminal:
        made.append(Terminal(list(args), Path.cwd()))
        return made[-1]

    yield start
    for t in made:
        t.close()
