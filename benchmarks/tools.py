"""The programs the benchmarks run: datmo itself, the reference tools, and scratch space."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from benchmarks.harness import ROOT, CommandFailed, Skip, log, run

PYTHON = sys.executable
DVC_VENV = "venv-dvc"
DATMO_VENV = "venv-datmo"
B3SUM = ["b3sum", "--num-threads", "1", "--no-names"]  # the hashing reference, one thread


@dataclass(frozen=True)
class Tools:
    """How to run datmo and the references; every subprocess gets `env`."""

    datmo: tuple[str, ...]  # argv prefix: the console script, or python -m datmo
    python: str  # the interpreter datmo runs on, also for the `import ...` references
    env: dict[str, str]
    how: str  # for the doc

    def datmo_cmd(self, *args: str) -> list[str]:
        return [*self.datmo, *args]

    def python_cmd(self, code: str) -> list[str]:
        return [self.python, "-c", code]


def find_tools(workdir: Path) -> Tools:
    """datmo as users get it: this checkout built into a wheel and installed into the
    benchmark's own virtualenv. The development install (`pip install -e`) would make
    every Python start-up in its venv ~20 ms slower through its import hook, which no
    user pays. If that cannot be done (offline, say), the console script next to this
    python, else python -m datmo. The `import ...` references use the same interpreter.
    """
    drop = ("GIT_", "DATMO_", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    # Every program starts as it does for a user, from compiled bytecode; it is kept
    # under the scratch folder so the suite writes nothing beside the sources.
    env["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
    # The reference repositories must not see the user's git settings either.
    env |= {"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1", "LC_ALL": "C"}
    env |= {"DVC_NO_ANALYTICS": "1"}
    installed, why = _install_wheel(workdir)
    if installed is not None:
        python = str(installed / "bin" / "python")
        script = installed / "bin" / "datmo"
        return Tools((str(script),), python, env, f"console script `{script}` (from a wheel)")
    log(f"datmo from a wheel: {why}; using the development install")
    script = Path(PYTHON).parent / "datmo"
    if script.is_file() and _imports_this_checkout([PYTHON], env):
        return Tools((str(script),), PYTHON, env, f"console script `{script}` ({why})")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    how = f"`{PYTHON} -m datmo` with PYTHONPATH={ROOT} ({why})"
    return Tools((PYTHON, "-m", "datmo"), PYTHON, env, how)


def _install_wheel(workdir: Path) -> tuple[Path | None, str]:
    """A venv with this checkout installed from a wheel: (venv, "") or (None, why)."""
    venv, wheels = workdir / DATMO_VENV, workdir / "wheel-datmo"
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    pip.append("--disable-pip-version-check")
    try:
        remove(wheels)
        run([PYTHON, "-m", "pip", "wheel", "-q", "--no-deps", "-w", wheels, ROOT], timeout=600)
        (wheel,) = wheels.glob("datmo-*.whl")
        if not (venv / "bin" / "python").is_file():
            log(f"creating {venv} for datmo (once; reused by later runs)")
            run([PYTHON, "-m", "venv", "--clear", venv], timeout=300)
        # Its dependencies, the first time, with the dashboard's extra (numpy draws long
        # series), as `pip install 'datmo[ui]'` gives it.
        run([*pip, f"{wheel}[ui]"], timeout=900)
        run([*pip, "--force-reinstall", "--no-deps", wheel], timeout=300)  # this checkout
    except (CommandFailed, subprocess.TimeoutExpired, OSError, ValueError) as e:
        return None, f"not installed ({str(e).strip().splitlines()[-1][:120]})"
    return venv, ""


def _imports_this_checkout(python: list[str], env: dict[str, str]) -> bool:
    code = "import datmo, sys; sys.stdout.write(datmo.__file__)"
    proc = subprocess.run([*python, "-c", code], env=env, capture_output=True, cwd="/")
    return proc.returncode == 0 and Path(proc.stdout.decode()).resolve().is_relative_to(ROOT)


def git(*args: str) -> list[str]:
    ident = ["-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    return ["git", *ident, *args]


def version_of(argv: list[str], env: dict[str, str] | None = None) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, env=env, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    return out.decode(errors="replace").strip().splitlines()[0] if out.strip() else "unknown"


def ensure_dvc(workdir: Path) -> tuple[Path | None, str]:
    """DVC in the benchmark's own virtualenv, installed on first use: (path, "") or (None, why)."""
    venv = workdir / DVC_VENV
    dvc = venv / "bin" / "dvc"
    if dvc.is_file() and version_of([str(dvc), "--version"]) not in ("not found", "unknown"):
        return dvc, ""
    log(f"installing DVC into {venv} (once; reused by later runs)")
    try:
        run([PYTHON, "-m", "venv", "--clear", venv], timeout=300)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
        run([*pip, "--disable-pip-version-check", "dvc"], timeout=1800)
    except (CommandFailed, subprocess.TimeoutExpired) as e:
        return None, f"DVC could not be installed: {str(e).strip().splitlines()[-1][:200]}"
    if not dvc.is_file():
        return None, "DVC installed no `dvc` command"
    return dvc, ""


def du_bytes(path: Path) -> int:
    """Apparent size in bytes, folders included, as `du -sb` counts it."""
    return int(run(["du", "-sb", path]).stdout.split()[0])


def sync() -> None:
    os.sync()


def read_once(path: Path) -> None:
    """Bring a file into the page cache."""
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(8 << 20)
        while f.readinto(buf):
            pass


def remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        # objects in datmo's store and git's are read-only; as root that does not matter,
        # but a normal user needs the folders writable to delete them.
        for top, dirs, _ in os.walk(path):
            for d in dirs:
                with contextlib.suppress(OSError):
                    os.chmod(os.path.join(top, d), 0o755)
        shutil.rmtree(path)


def fs_type(path: Path) -> str:
    try:
        return run(["findmnt", "-no", "FSTYPE", "-T", path]).stdout.decode().strip()
    except (CommandFailed, OSError):
        return "unknown"


@contextlib.contextmanager
def xfs_mount(image: Path, mountpoint: Path, size: int) -> Iterator[Path]:
    """A loop-mounted XFS with reflinks, as a sparse image file; unmounted and deleted after."""
    if shutil.which("mkfs.xfs") is None:
        raise Skip("mkfs.xfs is not installed (apt-get install xfsprogs, or make sysdeps)")
    if os.geteuid() != 0:
        raise Skip("mounting a loop device needs root")
    remove(image)
    mountpoint.mkdir(parents=True, exist_ok=True)
    try:
        with open(image, "wb") as f:
            f.truncate(size)
        run(["mkfs.xfs", "-q", "-f", "-m", "reflink=1", image])
        run(["mount", "-o", "loop", image, mountpoint])
    except CommandFailed as e:
        remove(image)
        raise Skip(f"cannot make a loop-mounted XFS: {str(e)[:200]}") from e
    try:
        yield mountpoint
    finally:
        run(["umount", mountpoint])
        remove(image)
        with contextlib.suppress(OSError):
            mountpoint.rmdir()
