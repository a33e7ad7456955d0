"""Code history between the shadow repository and a remote, by git itself.

A folder or ssh remote keeps a bare repository that `git push` and `git fetch` talk to:
git works out what the other side has. S3 and bundle files keep git bundles as objects.
Fetched code lands under refs/datmo/incoming/<id> until its snapshot's record is written;
then the snapshot's own ref replaces it (datmo.core.controller.pull).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from datmo.core.remote.layout import INCOMING, SNAPSHOT_REFS, RemoteError
from datmo.core.shadowgit.repo import ShadowRepo, clean_env
from datmo.errors import DatmoError

CHUNK = 500  # refspecs per `git push` (they go on its command line)
LOCK_WAIT = 2.0  # a live push holds a ref's lock for milliseconds
# The remote's bare repository: durable writes, no hooks, no automatic gc.
BARE_CONFIG = {"core.fsync": "committed", "core.hooksPath": "/dev/null", "gc.auto": "0"}
_QUIET = ("-c", "advice.pushUpdateRejected=false", "-c", "transfer.fsckObjects=true")


def _failed(e: DatmoError, doing: str, where: str) -> RemoteError:
    return RemoteError(f"{doing} {where} failed: {str(e).partition(': ')[2] or e}")


def push(
    git: ShadowRepo,
    url: str,
    refs: Mapping[str, str],
    where: str,
    env: Mapping[str, str] = {},
    unlock: Callable[[], None] | None = None,
) -> None:
    """Each snapshot's commit to refs/datmo/snapshots/<id> of the bare repository at url.

    A push killed while git updated the refs leaves their .lock files behind, and git
    refuses to touch those refs again; unlock removes the ones still there after a wait
    no live push holds a ref lock for, and the push is made again.
    """
    specs = [f"+{sha}:{SNAPSHOT_REFS}{sid}" for sid, sha in sorted(refs.items())]
    for i in range(0, len(specs), CHUNK):
        for attempt in range(3):
            try:
                git.run(
                    *_QUIET, "push", "--quiet", "--no-verify", url, *specs[i : i + CHUNK], env=env
                )
                break
            except DatmoError as e:
                if "cannot lock ref" not in str(e) or attempt == 2:
                    raise _failed(e, "sending code to", where) from None
                if unlock is not None:
                    unlock()
                else:
                    time.sleep(0.2)  # another push held the ref a moment


def stale_locks(folder: Path, wait: float = LOCK_WAIT) -> None:
    """Remove the ref .lock files under folder that are still there after wait seconds."""
    before = set(folder.glob("*.lock")) if folder.is_dir() else set()
    if not before:
        return
    time.sleep(wait)
    for lock in before:
        lock.unlink(missing_ok=True)


def fetch(
    git: ShadowRepo, source: str, sids: Iterable[str], where: str, env: Mapping[str, str] = {}
) -> None:
    """refs/datmo/snapshots/<id> of source (a repository or a bundle file) into INCOMING."""
    lines = "".join(f"+{SNAPSHOT_REFS}{sid}:{INCOMING}{sid}\n" for sid in sorted(set(sids)))
    if not lines:
        return
    args = ("fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--no-auto-gc", "--stdin")
    try:
        git.run(*_QUIET, *args, source, input=lines.encode(), env=env)
    except DatmoError as e:
        raise _failed(e, "fetching code from", where) from None


def make_bundle(git: ShadowRepo, refs: Mapping[str, str], dest: Path) -> None:
    """A git bundle of the snapshots' commits, each under its own snapshot ref."""
    for sid, sha in refs.items():
        if git.read_ref(SNAPSHOT_REFS + sid) != sha:
            git.update_ref(SNAPSHOT_REFS + sid, sha)  # the record names it: put the ref back
    names = "".join(f"{SNAPSHOT_REFS}{sid}\n" for sid in sorted(refs))
    try:
        git.run("bundle", "create", "--quiet", str(dest), "--stdin", input=names.encode())
    except DatmoError as e:
        raise RemoteError(f"cannot write the code's git bundle: {e}") from None


def bundle_heads(path: Path) -> dict[str, str]:
    """ref -> commit that a git bundle file holds; DatmoError when git cannot read it."""
    code, out, why = plain(["git", "bundle", "list-heads", str(path)])
    if code != 0:
        raise DatmoError(f"its git bundle cannot be read ({why})")
    heads = {}
    for line in out.decode(errors="replace").splitlines():
        sha, _, ref = line.partition(" ")
        heads[ref.strip()] = sha
    return heads


def plain(argv: list[str]) -> tuple[int, bytes, str]:
    """git (or ssh) outside the shadow repository, with the same clean environment:
    (exit status, stdout, the first line of stderr)."""
    import subprocess

    try:
        proc = subprocess.run(argv, capture_output=True, env=clean_env(), stdin=subprocess.DEVNULL)
    except OSError as e:
        return 127, b"", f"cannot run {argv[0]}: {e.strerror or e}"
    lines = proc.stderr.decode(errors="replace").strip().splitlines()
    return proc.returncode, proc.stdout, lines[0] if lines else f"exit status {proc.returncode}"


def complete(path: Path) -> bool:
    """Whether path holds a whole bare repository (what init_bare leaves), not the start
    of one that a kill cut short."""
    return all((path / f).is_file() for f in ("HEAD", "config")) and all(
        (path / d).is_dir() for d in ("objects", "refs")
    )


def init_bare(path: Path) -> None:
    """A bare repository at path (a folder remote's git/), set up as BARE_CONFIG says.
    Its own git process: the shadow repository's --git-dir must not reach it. Made in
    the remote's tmp/ and renamed into place, so that a push killed while git init runs
    leaves no half-made git/ for the next push to mistake for a repository."""
    if complete(path):
        return
    work = path.parent / "tmp" / f"git-{os.getpid()}-{os.urandom(4).hex()}"
    work.parent.mkdir(parents=True, exist_ok=True)
    steps = [["git", "init", "--quiet", "--bare", "--template=", str(work)]]
    steps += [
        ["git", "config", "--file", str(work / "config"), k, v] for k, v in BARE_CONFIG.items()
    ]
    try:
        for argv in steps:
            code, _, why = plain(argv)
            if code != 0:
                raise RemoteError(f"cannot make the code repository {path}: {why}")
        if path.exists() and not complete(path):  # cut short by an older datmo: nothing
            shutil.rmtree(path)  # is pushed into a repository that was never whole
        try:
            os.rename(work, path)
        except OSError:
            if not complete(path):  # else another push made it meanwhile
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def problems(
    refs_text: str, fsck_lines: list[str], wants: Mapping[str, tuple[str, str | None]]
) -> list[str]:
    """What a remote's code history lacks: each snapshot's ref with its commit, and what
    `git fsck` says of the repository."""
    have = {}
    for line in refs_text.splitlines():
        sha, _, ref = line.partition(" ")
        have[ref.strip()] = sha
    out = []
    for sid, (commit, _) in sorted(wants.items()):
        got = have.get(SNAPSHOT_REFS + sid)
        if got != commit:
            out.append(f"snapshot {sid[:8]}: its code ({commit[:12]}) is missing from git/")
    return out + [f"git: {ln}" for ln in fsck_lines if not ln.startswith("notice:")]


def bare_problems(path: Path, wants: Mapping[str, tuple[str, str | None]], where: str) -> list[str]:
    if not (path / "HEAD").is_file():
        return [f"{where} has no code repository (git/)"] if wants else []
    base = ["git", "--git-dir", str(path)]
    code, out, why = plain(
        [*base, "for-each-ref", "--format=%(objectname) %(refname)", SNAPSHOT_REFS]
    )
    if code != 0:
        return [f"git: {why}"]
    fsck_code, fsck_out, fsck_why = plain([*base, "fsck", "--no-dangling", "--no-progress"])
    lines = [ln for ln in fsck_out.decode(errors="replace").splitlines() if ln.strip()]
    if fsck_code != 0 and not lines:
        lines = [fsck_why]
    return problems(out.decode(errors="replace"), lines, wants)
