"""A remote on an ssh host, through the system's `ssh` (its agent, config and known_hosts).

Nothing but a POSIX shell, tar and git is needed on the host. Objects and records travel
as one tar stream per push into tmp/ on the host, hashed as they are read here (only
bytes that match their name leave; ssh's MAC keeps them intact on the way); the host's
shell moves them into place only once the whole stream has arrived and been synced:
objects first, then records, a kind at a time. Pulls hash every object on arrival.
The code history is a bare repository that `git push`/`git fetch` reach over the same ssh.

`$DATMO_SSH_COMMAND` replaces `ssh` (as GIT_SSH_COMMAND does for git); datmo adds only
BatchMode (never a password prompt) and never weakens host-key checking.
"""

from __future__ import annotations

import functools
import os
import shlex
import subprocess
import tarfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from blake3 import blake3

from datmo.core.remote import gitcode, tarstream
from datmo.core.remote.layout import (
    KINDS,
    META,
    DamagedRemote,
    Item,
    Progress,
    RemoteError,
    meta_bytes,
    object_key,
    parse_meta,
    parse_object_key,
    parse_record_key,
)
from datmo.core.remote.sshscripts import (
    _ALL_OBJECTS,
    _CREATE,
    _GIT_STATE,
    _LIST,
    _MISSING,
    _RECEIVE,
    _SYNC,
    _TAR_OUT,
    _UNLOCK,
)
from datmo.errors import CorruptStore, DatmoError, DiskFull

if TYPE_CHECKING:
    from datmo.core.remote.url import RemoteURL
    from datmo.core.shadowgit.repo import ShadowRepo
    from datmo.core.storage.objects import ObjectStore

CHUNK = 1 << 20
MUX_PREFIX = "datmo-ssh-"  # a command's private folder for its ssh connection's socket
STALE_MUX_S = 60.0  # older than this, with no master answering: left by a killed datmo


class SshTransport:
    def __init__(self, url: RemoteURL) -> None:
        self.url = url
        self.label = url.text
        self.base = [*shlex.split(os.environ.get("DATMO_SSH_COMMAND") or "ssh")]
        self.base += ["-o", "BatchMode=yes"]
        self.opts = (["-p", str(url.port)] if url.port else []) + (
            ["-l", url.user] if url.user else []
        )
        assert url.host and not url.host.startswith("-")  # url.parse refuses these
        self._dir: str | None = None  # the connection's private folder
        self._mux: list[str] | None = None  # options that reuse the one connection

    # -- running a script on the host -------------------------------------------------
    def _connect(self) -> None:
        """One ssh connection for the whole command: a master (its socket in a private
        folder) that every later ssh, git's included, rides on. It ends in close(), or
        by itself ControlPersist seconds after its last use if datmo was killed."""
        if self._mux is not None:
            return
        import tempfile

        _clean_stale(tempfile.gettempdir())
        self._dir = tempfile.mkdtemp(prefix=MUX_PREFIX)
        path = os.path.join(self._dir, "m")
        argv = [*self.base, "-o", "ControlMaster=yes", "-o", f"ControlPath={path}"]
        argv += ["-o", "ControlPersist=15", *self.opts, "-N", "-f", "--", str(self.url.host)]
        with open(os.path.join(self._dir, "err"), "w+b") as err:
            try:  # stderr to a file: the master keeps it open after ssh -f returns
                code = subprocess.run(
                    argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err
                ).returncode
            except OSError as e:
                raise RemoteError(
                    f"cannot run ssh: {e.strerror or e}; is OpenSSH installed?"
                ) from None
            err.seek(0)
            if code != 0:
                why = err.read()
                self.close()
                raise self._fail(255, why, "connecting")
        self._mux = ["-o", "ControlMaster=no", "-o", f"ControlPath={path}"]

    def _argv(self, script: str) -> list[str]:
        self._connect()
        full = f"R={shlex.quote(self.url.path)}\n{script}"
        ssh = [*self.base, *(self._mux or []), *self.opts]
        return [*ssh, "--", str(self.url.host), "sh -c " + shlex.quote(full)]

    def _fail(self, code: int, err: bytes, doing: str) -> DatmoError:
        lines = err.decode(errors="replace").strip().splitlines()
        why = lines[-1] if lines else f"exit status {code}"
        if code == 255:
            return RemoteError(f"cannot reach {self.label} over ssh: {why}")
        if "No space left" in why or "Disk quota" in why:
            return DiskFull(
                f"the remote {self.label} is full ({why}); free space there and push again: "
                "what was not sent was not recorded there"
            )
        return RemoteError(f"{doing} on {self.label} failed: {why}")

    def _run(self, script: str, doing: str, input: bytes = b"") -> bytes:
        try:
            proc = subprocess.run(self._argv(script), input=input, capture_output=True)
        except OSError as e:
            raise RemoteError(f"cannot run ssh: {e.strerror or e}; is OpenSSH installed?") from None
        if proc.returncode != 0:
            raise self._fail(proc.returncode, proc.stderr, doing)
        return proc.stdout

    def _popen(self, script: str) -> subprocess.Popen[bytes]:
        """A script on the host with all three streams piped to us."""
        try:
            return subprocess.Popen(
                self._argv(script),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except OSError as e:
            raise RemoteError(f"cannot run ssh: {e.strerror or e}") from None

    def _stream_out(self, script: str, names: list[str]) -> subprocess.Popen[bytes]:
        """Start a script whose stdout is a tar stream; names go to its stdin meanwhile."""
        proc = self._popen(script)
        assert proc.stdin is not None
        text = "".join(f"{n}\n" for n in names).encode()

        def feed(pipe: IO[bytes]) -> None:
            try:
                pipe.write(text)
                pipe.close()
            except OSError:
                pass  # ssh died: its exit status says why

        threading.Thread(target=feed, args=(proc.stdin,), daemon=True).start()
        return proc

    def _finish(self, proc: subprocess.Popen[bytes], doing: str) -> None:
        assert proc.stderr is not None
        err = proc.stderr.read()
        if proc.wait() != 0:
            raise self._fail(proc.returncode, err, doing)

    # -- the remote itself ------------------------------------------------------------
    def read_meta(self) -> dict[str, Any] | None:
        out = self._run(f'cat "$R/{META}" 2>/dev/null || echo @none', "reading the remote")
        if out.strip() == b"@none":
            return None
        return parse_meta(out, self.label)

    def create(self, meta: dict[str, Any]) -> dict[str, Any]:
        config = "\n  ".join(
            f'git config --file "$g/config" {k} {shlex.quote(v)}'
            for k, v in gitcode.BARE_CONFIG.items()
        )
        script = _CREATE.format(config=config, sync=_SYNC)
        data = meta_bytes(meta)
        out = self._run(script, "making the remote", data).strip()
        if out == b"@notempty":
            raise RemoteError(
                f"{self.label} is not empty and holds no datmo remote; give an empty or new folder"
            )
        if out == b"@nogit":
            raise RemoteError(f"{self.label}: git is not installed on the host; install it there")
        return parse_meta(out, self.label)

    def record_ids(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {k: set() for k in KINDS}
        for line in self._run(_LIST, "listing records").decode(errors="replace").splitlines():
            found = parse_record_key(line.strip())
            if found:
                out[found[0]].add(found[1])
        return out

    def read_records(self, keys: list[str]) -> dict[str, bytes]:
        if not keys:
            return {}
        proc = self._stream_out(_TAR_OUT, keys)
        assert proc.stdout is not None
        out: dict[str, bytes] = {}
        try:
            with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
                for member in tar:
                    f = tar.extractfile(member) if member.isfile() else None
                    if f is not None and member.name in keys:
                        out[member.name] = f.read()
        except tarfile.TarError:
            pass  # the exit status below says why
        self._finish(proc, "reading records")
        return out

    def missing_objects(self, digests: Iterable[str]) -> set[str]:
        names = "".join(f"{d[:2]}/{d[2:]}\n" for d in digests)
        if not names:
            return set()
        out = self._run(_MISSING, "looking for objects", names.encode())
        return {line.replace("/", "") for line in out.decode().split()}

    # -- sending ----------------------------------------------------------------------
    def send(
        self, objects: list[Item], records: list[tuple[str, bytes]], progress: Progress
    ) -> None:
        script = _RECEIVE.format(sync=_SYNC, kinds=" ".join(KINDS))
        proc = self._popen(script)
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        err_chunks: list[bytes] = []
        reader = threading.Thread(target=lambda: err_chunks.append(proc.stderr.read()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        fd = proc.stdin.fileno()
        try:
            for item in objects:
                tarstream.send_object(fd, item)
            for key, data in records:
                tarstream.send_bytes(fd, key, data)
            tarstream.end(fd)
            proc.stdin.close()
        except CorruptStore:
            proc.kill()  # a torn stream: the host's tar fails and nothing moves into place
            proc.wait()
            raise
        except BrokenPipeError:
            pass  # the host stopped reading: its exit status says why
        out = proc.stdout.read()
        code = proc.wait()
        reader.join()
        if code != 0 or b"@ok" not in out:
            raise self._fail(code or 1, b"".join(err_chunks), "sending objects")

    # -- fetching ---------------------------------------------------------------------
    def fetch_objects(self, digests: list[str], into: ObjectStore, progress: Progress) -> None:
        if not digests:
            return
        wanted = set(digests)
        proc = self._stream_out(_TAR_OUT, [object_key(d) for d in sorted(wanted)])
        assert proc.stdout is not None
        try:
            with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
                for member in tar:
                    digest = parse_object_key(member.name)
                    f = tar.extractfile(member) if member.isfile() else None
                    if f is None or digest not in wanted:
                        continue
                    into.receive(iter(functools.partial(f.read, CHUNK), b""), digest, self.label)
                    wanted.discard(digest)
        except tarfile.TarError:
            pass  # a torn stream: the exit status, or what is missing, says why
        if wanted:
            proc.kill()
            proc.wait()
            first = sorted(wanted)[0]
            raise DamagedRemote(
                f"{len(wanted)} object(s) ({first[:12]}...) could not be fetched from "
                f"{self.label}; run 'datmo fsck --remote' there, and pull again"
            )
        self._finish(proc, "fetching objects")

    # -- code -------------------------------------------------------------------------
    def _git_url(self) -> str:
        host = f"[{self.url.host}]" if ":" in (self.url.host or "") else self.url.host
        user = f"{self.url.user}@" if self.url.user else ""
        port = f":{self.url.port}" if self.url.port else ""
        return f"ssh://{user}{host}{port}{self.url.path}/git"

    def _git_env(self) -> dict[str, str]:
        self._connect()
        ssh = shlex.join([*self.base, *(self._mux or [])])
        return {"GIT_SSH_COMMAND": ssh, "GIT_SSH_VARIANT": "ssh"}

    def push_code(
        self, git: ShadowRepo, refs: dict[str, str], scratch: Path
    ) -> tuple[list[Item], str | None]:
        if refs:
            gitcode.push(git, self._git_url(), refs, self.label, self._git_env(), self._unlock)
        return [], None

    def _unlock(self) -> None:
        self._run(_UNLOCK.format(wait=gitcode.LOCK_WAIT), "clearing stale ref locks")

    def fetch_code(
        self, git: ShadowRepo, wants: dict[str, tuple[str, str | None]], scratch: Path
    ) -> None:
        gitcode.fetch(git, self._git_url(), wants, self.label, self._git_env())

    # -- checking ---------------------------------------------------------------------
    def object_hashes(self) -> Iterator[tuple[str, str | None]]:
        proc = self._stream_out(_ALL_OBJECTS, [])
        assert proc.stdout is not None
        try:
            with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
                for member in tar:
                    digest = parse_object_key(member.name)
                    f = tar.extractfile(member) if member.isfile() else None
                    if digest is None or f is None:
                        continue
                    h = blake3(max_threads=1)
                    while chunk := f.read(CHUNK):
                        h.update(chunk)
                    yield digest, h.hexdigest()
        except tarfile.ReadError:
            pass  # no objects at all: an empty stream
        self._finish(proc, "reading objects")

    def code_problems(self, wants: dict[str, tuple[str, str | None]]) -> list[str]:
        out = self._run(_GIT_STATE, "checking the code repository").decode(errors="replace")
        if out.strip() == "@nogit":
            return [f"{self.label} has no code repository (git/)"] if wants else []
        refs, _, fsck = out.partition("@fsck\n")
        return gitcode.problems(refs, [ln for ln in fsck.splitlines() if ln.strip()], wants)

    def close(self) -> None:
        if self._dir is None:
            return
        if self._mux is not None:
            path = self._mux[-1].partition("=")[2]
            argv = [*self.base, "-o", f"ControlPath={path}", "-O", "exit", "--", str(self.url.host)]
            subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True)
        import shutil

        shutil.rmtree(self._dir, ignore_errors=True)
        self._dir, self._mux = None, None


def _clean_stale(tmp: str) -> None:
    """Remove the connection folders of datmo commands that were killed (their master has
    gone: ControlPersist ends it): ours only, and only once nothing answers there."""
    import shutil
    import socket
    import time

    try:
        entries = [e for e in os.scandir(tmp) if e.name.startswith(MUX_PREFIX)]
    except OSError:
        return
    for e in entries:
        try:
            st = e.stat(follow_symlinks=False)
            if st.st_uid != os.getuid() or time.time() - st.st_mtime < STALE_MUX_S:
                continue
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(os.path.join(e.path, "m"))
            continue  # a master answers: in use
        except OSError:
            shutil.rmtree(e.path, ignore_errors=True)
