"""Push and pull of the 2 GB / 2,000-file project against rsync, in the same run.

- push-folder: the first `datmo push` to an empty folder remote, against `rsync -a` of
  the project's tree to an empty folder followed by `sync` (datmo's push is durable, so
  the reference is made durable too); then `datmo push` with nothing new against an
  `rsync -a` that finds nothing to copy plus `python -c "import click"` (a Python tool
  starts slower than rsync).
- push-ssh: the first push over ssh to a loopback sshd (started here with its own keys)
  against `rsync -a -e ssh` + `sync`.
- pull-clone: `datmo clone` of the folder remote into a fresh folder against `rsync -a`
  of the remote's copy of the tree into an empty folder + `sync`.

Both sides read from the page cache; `sync` runs (untimed) before each figure so none
pays for another's write-back; every repetition starts from an empty destination.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmarks.context import Context
from benchmarks.harness import Row, Section, Skip, fmt_seconds, interleaved, log, run, timed
from benchmarks.tools import read_once, remove, sync
from benchmarks.trees import make_tree, wait_until_settled

SSHD = "/usr/sbin/sshd"


def _need(tool: str) -> None:
    if shutil.which(tool) is None:
        raise Skip(f"{tool} is not installed (make sysdeps installs it)")


def _project(ctx: Context, base: Path) -> Path:
    spec = ctx.sizes.big_tree
    proj = base / "project"
    log(f"remote: writing {spec.describe()}")
    last = make_tree(proj, spec)
    env = ctx.tools.env
    run(ctx.tools.datmo_cmd("init", "--name", "bench"), cwd=proj, env=env)
    wait_until_settled(last)
    run(ctx.tools.datmo_cmd("snapshot", "create", "-m", "tree"), cwd=proj, env=env)
    for path in proj.rglob("*"):
        if path.is_file():
            read_once(path)
    return proj


def _cold(*paths: Path) -> None:
    for p in paths:
        remove(p)
    sync()


def bench_folder(ctx: Context) -> Section:
    _need("rsync")
    base = ctx.workdir / "remote-folder"
    remove(base)
    env, tools = ctx.tools.env, ctx.tools
    proj = _project(ctx, base)
    remote, mirror = base / "remote", base / "mirror"
    run(tools.datmo_cmd("remote", "add", "origin", str(remote)), cwd=proj, env=env)
    section = Section("Push and pull of a 2 GB project, folder remote, against rsync")

    def datmo_push() -> dict[str, float]:
        _cold(remote)
        return {"datmo push": timed(tools.datmo_cmd("push"), cwd=proj, env=env)}

    def rsync_copy() -> dict[str, float]:
        _cold(mirror)
        t = timed(["rsync", "-a", "--exclude", "/.datmo", f"{proj}/", f"{mirror}/"])
        start = time.perf_counter()
        os.sync()
        return {"rsync": t + time.perf_counter() - start}

    reps = ctx.sizes.reps_big
    log(f"remote-folder: first push vs rsync -a + sync ({reps} repetitions)")
    first = interleaved({"datmo push": datmo_push, "rsync": rsync_copy}, reps)
    section.rows.append(
        Row(
            "first push of the project to a folder remote, vs rsync -a + sync",
            "max",
            1.2,
            first.median("datmo push"),
            first.median("rsync"),
            f"rsync -a + sync {fmt_seconds(first.median('rsync'))}",
        )
    )
    # remote and mirror are full now: pushing again and rsync again find nothing new
    run(tools.datmo_cmd("push"), cwd=proj, env=env)
    run(["rsync", "-a", "--exclude", "/.datmo", f"{proj}/", f"{mirror}/"])
    sync()

    def noop_push() -> dict[str, float]:
        return {"datmo noop": timed(tools.datmo_cmd("push"), cwd=proj, env=env)}

    def noop_rsync() -> dict[str, float]:
        r = timed(["rsync", "-a", "--exclude", "/.datmo", f"{proj}/", f"{mirror}/"])
        return {"rsync noop": r, "click": timed(tools.python_cmd("import click"), env=env)}

    log(f"remote-folder: push with nothing new ({ctx.sizes.reps} repetitions)")
    noop = interleaved({"datmo": noop_push, "rsync": noop_rsync}, ctx.sizes.reps)
    ref = noop.median("rsync noop") + noop.median("click")
    section.rows.append(
        Row(
            "push with nothing new, vs rsync -a with nothing to copy + import click",
            "max",
            1.5,
            noop.median("datmo noop"),
            ref,
            f"{fmt_seconds(ref)} = rsync {fmt_seconds(noop.median('rsync noop'))} + import "
            f"click {fmt_seconds(noop.median('click'))}",
        )
    )
    clone, back = base / "clone", base / "back"

    def datmo_clone() -> dict[str, float]:
        _cold(clone)
        return {"datmo clone": timed(tools.datmo_cmd("clone", str(remote), str(clone)), env=env)}

    def rsync_back() -> dict[str, float]:
        _cold(back)
        t = timed(["rsync", "-a", f"{mirror}/", f"{back}/"])
        start = time.perf_counter()
        os.sync()
        return {"rsync back": t + time.perf_counter() - start}

    log(f"remote-folder: pull into a fresh clone vs rsync -a the other way ({reps} repetitions)")
    pull = interleaved({"clone": datmo_clone, "rsync": rsync_back}, reps)
    section.rows.append(
        Row(
            "pull of the project into a fresh clone, vs rsync -a the other way + sync",
            "max",
            1.2,
            pull.median("datmo clone"),
            pull.median("rsync back"),
            f"rsync -a + sync {fmt_seconds(pull.median('rsync back'))}",
        )
    )
    for name, s in (("datmo push", first), ("rsync", first), ("datmo noop", noop)):
        section.details.append(f"{name}: {s.spread(name)}")
    section.details.append(f"datmo clone: {pull.spread('datmo clone')}")
    if not ctx.keep:
        remove(base)
    return section


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _sshd(base: Path) -> Iterator[tuple[str, int, str]]:
    """(ssh command, port, user) of an sshd on 127.0.0.1 with keys made here."""
    if not os.path.exists(SSHD):
        raise Skip("openssh-server is not installed (make sysdeps installs it)")
    d = base / "sshd"
    d.mkdir(parents=True)
    for name in ("host", "user"):
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", d / name])
    (d / "keys").write_text((d / "user.pub").read_text())
    port = _port()
    (d / "sshd_config").write_text(
        f"ListenAddress 127.0.0.1\nPort {port}\nHostKey {d / 'host'}\nAuthorizedKeysFile "
        f"{d / 'keys'}\nPasswordAuthentication no\nStrictModes no\nUsePAM no\n"
        f"PermitRootLogin prohibit-password\nPidFile {d / 'pid'}\n"
    )
    host = " ".join((d / "host.pub").read_text().split()[:2])
    (d / "known").write_text(f"[127.0.0.1]:{port} {host}\n")
    (d / "config").write_text(
        f"Host *\n  IdentityFile {d / 'user'}\n  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {d / 'known'}\n"
    )
    privsep = Path("/run/sshd")
    made = os.geteuid() == 0 and not privsep.exists()
    if made:
        privsep.mkdir()
    proc = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", str(d / "sshd_config")], stderr=subprocess.DEVNULL
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        import pwd

        yield f"ssh -F {d / 'config'}", port, pwd.getpwuid(os.getuid()).pw_name
    finally:
        proc.terminate()
        proc.wait()
        if made:
            shutil.rmtree(privsep, ignore_errors=True)


def bench_ssh(ctx: Context) -> Section:
    _need("rsync")
    base = ctx.workdir / "remote-ssh"
    remove(base)
    tools = ctx.tools
    proj = _project(ctx, base)
    remote, mirror = base / "remote", base / "mirror"
    section = Section("First push of a 2 GB project over ssh (loopback), against rsync -e ssh")
    with _sshd(base) as (ssh, port, user):
        env = {**tools.env, "DATMO_SSH_COMMAND": ssh}
        url = f"ssh://{user}@127.0.0.1:{port}{remote}"
        run(tools.datmo_cmd("remote", "add", "lab", url), cwd=proj, env=env)

        def datmo_push() -> dict[str, float]:
            _cold(remote)
            return {"datmo push": timed(tools.datmo_cmd("push"), cwd=proj, env=env)}

        def rsync_ssh() -> dict[str, float]:
            _cold(mirror)
            argv = ["rsync", "-a", "-e", f"{ssh} -p {port}", "--exclude", "/.datmo"]
            t = timed([*argv, f"{proj}/", f"{user}@127.0.0.1:{mirror}/"])
            start = time.perf_counter()
            os.sync()
            return {"rsync": t + time.perf_counter() - start}

        reps = ctx.sizes.reps_big
        log(f"remote-ssh: first push vs rsync -a -e ssh + sync ({reps} repetitions)")
        got = interleaved({"datmo push": datmo_push, "rsync": rsync_ssh}, reps)
    section.rows.append(
        Row(
            "first push of the project over ssh on loopback, vs rsync -a -e ssh + sync",
            "max",
            1.3,
            got.median("datmo push"),
            got.median("rsync"),
            f"rsync -a -e ssh + sync {fmt_seconds(got.median('rsync'))}",
        )
    )
    section.details += [
        f"datmo push over ssh: {got.spread('datmo push')}",
        f"rsync -e ssh: {got.spread('rsync')}",
    ]
    if not ctx.keep:
        remove(base)
    return section
