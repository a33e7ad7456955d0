"""The shadow repository at PROJECT/.datmo/git: datmo's own git dir for the project's code.

Objects and refs are written in Python: a git process per file would cost more than a whole
snapshot may. A few objects are written loose (a file each); past LOOSE_LIMIT in one batch the
rest go into one pack (pack.py), as git's own transfer.unpackLimit decides. Git runs only for
init, fsck, gc and reading packed objects, and always through ShadowRepo.run, which strips the
user's git environment and settings from it.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import zlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from datmo.core.shadowgit import format as gitformat
from datmo.core.shadowgit.pack import PackWriter
from datmo.core.shadowgit.refs import Refs, oserror
from datmo.core.storage.fsutil import (
    Owner,
    atomic_write_bytes,
    chown,
    fsync_dir,
    makedirs,
    mkstemp,
    pending,
)
from datmo.errors import CorruptStore, DatmoError

if TYPE_CHECKING:  # subprocess costs ~4 ms to import, and most commands never run git
    import subprocess

    _Proc = subprocess.CompletedProcess[bytes]

GIT_ENV_DROP = "GIT_"  # every inherited variable with this prefix is removed for git children
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
# Top priority: git never converts, filters or expands stored bytes (CRLF, git-lfs, ident...).
ATTRIBUTES = b"* -text -eol -filter -ident -working-tree-encoding -export-ignore -export-subst\n"
CONFIG = {
    "core.bare": "false",  # with core.worktree: a person can look inside with plain git
    "core.logAllRefUpdates": "false",  # datmo keeps its own history; reflogs would only grow
    "core.autocrlf": "false",
    "core.attributesFile": "/dev/null",  # else ~/.config/git/attributes is read, config or not
    "core.excludesFile": "/dev/null",
    "core.hooksPath": "/dev/null",
    "core.fsync": "committed",  # git >= 2.36: what gc writes (packs, packed-refs) is durable
    "gc.auto": "0",  # datmo decides when to gc, under its project lock
}
_HEX40 = re.compile(r"[0-9a-f]{40}")
_READ_ONLY = {"archive", "cat-file", "fsck", "for-each-ref", "log", "ls-tree", "rev-parse", "show"}
_ENV = {"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1", "GIT_ATTR_NOSYSTEM": "1"}
_ENV |= {"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
# Loose objects a batch writes before the rest go into a pack: git's transfer.unpackLimit.
LOOSE_LIMIT = 100
_NO_GIT = "git is not installed; install git (https://git-scm.com/downloads) and try again"


def clean_env() -> dict[str, str]:
    """The environment git children get: no inherited GIT_* variables, no user settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith(GIT_ENV_DROP)} | _ENV


class ShadowRepo(Refs):
    def __init__(self, gitdir: Path, worktree: Path, owner: Owner | None = None) -> None:
        self.gitdir = Path(gitdir).resolve()  # real paths: git matches safe.directory against them
        self.worktree = Path(worktree).resolve()
        self.owner = owner
        self._objects = self.gitdir / "objects"
        self._objects_s = os.fspath(self._objects)
        self._pending: list[Path] = []  # loose objects written but not yet fsynced (see sync)
        self._pack: PackWriter | None = None  # this batch's objects past LOOSE_LIMIT
        self._packs: tuple[int | None, list[bytes]] = (None, [])  # pack dir mtime, .idx contents

    def exists(self) -> bool:
        return (self.gitdir / "HEAD").is_file() and self._objects.is_dir()

    def init(self) -> None:
        makedirs(self.gitdir.parent, self.owner)
        # --template= : no sample hooks, no description, nothing from the system template dir.
        self._git("init", "--quiet", "--template=", "--initial-branch=master")
        # Relative, so the project folder can be moved; run() passes --work-tree anyway.
        settings = {**CONFIG, "core.worktree": os.path.relpath(self.worktree, self.gitdir)}
        for key, value in settings.items():
            self._git("config", key, value)
        self._hand_over()
        makedirs(self.gitdir / "info", self.owner)
        atomic_write_bytes(self.gitdir / "info" / "attributes", ATTRIBUTES, self.owner)
        atomic_write_bytes(self.gitdir / "info" / "exclude", b"/.datmo/\n", self.owner)
        self.write_tree({})  # the empty tree must exist for snapshots of empty projects
        self.sync()

    def run(
        self,
        *args: str,
        input: bytes | None = None,
        check: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> _Proc:
        """git on this repository; env: variables to add (a push's GIT_SSH_COMMAND)."""
        try:
            return self._git(*args, input=input, check=check, env=env)
        finally:
            if not args or args[0] not in _READ_ONLY:  # those write nothing in the git dir
                self._hand_over()

    def _hand_over(self) -> None:
        # As root in someone else's project git runs as root too (the owner may not reach a bind
        # mount under /root; safe.directory lets git in); then the git dir is chowned to them.
        if self.owner is None or os.geteuid() != 0 or not self.gitdir.is_dir():
            return
        chown(self.gitdir, self.owner)
        for top, dirs, files in os.walk(self.gitdir):
            for name in dirs + files:
                chown(os.path.join(top, name), self.owner)

    def _git(
        self,
        *args: str,
        input: bytes | None = None,
        check: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> _Proc:
        import subprocess  # here, not at the top: see TYPE_CHECKING above

        g, w = str(self.gitdir), str(self.worktree)
        argv = ["git", "-c", f"safe.directory={g}", "-c", f"safe.directory={w}", "--git-dir", g]
        argv += ["--work-tree", w, *args]
        clean = clean_env()
        try:
            proc = subprocess.run(
                argv,
                input=b"" if input is None else input,  # never wait on datmo's own stdin
                capture_output=True,
                env=clean | dict(env or {}),
                cwd=self.worktree if self.worktree.is_dir() else None,
            )
        except FileNotFoundError as e:  # git itself, or a vanished work tree
            import shutil

            raise DatmoError(_NO_GIT if shutil.which("git") is None else str(e)) from e
        if check and proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip() or f"exit status {proc.returncode}"
            raise DatmoError(f"git {args[0] if args else ''} failed: {err.splitlines()[0]}")
        return proc

    def blob_id(self, data: bytes) -> str:
        return gitformat.object_id(b"blob", data)

    def write_blob(self, data: bytes) -> str:
        return self._write_object(b"blob", data)

    def write_blob_file(self, path: Path | str) -> str:
        """Store a regular file's bytes, or a symlink's target as git does; never follows links."""
        try:  # O_NONBLOCK: a FIFO fails the check below instead of hanging the snapshot
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as e:
            if e.errno not in (errno.ELOOP, errno.EMLINK):  # EMLINK: what the BSDs say here
                raise
            return self.write_blob(os.readlink(os.fsencode(path)))
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise DatmoError(f"cannot save {path}: not a regular file or symlink")
        with open(fd, "rb") as f:
            return self.write_blob(f.read())  # code files are small; peak memory ~2x the file

    def write_tree(
        self, entries: Mapping[str, tuple[str, str]], ids: dict[str, str] | None = None
    ) -> str:
        """Write the nested trees for relpath -> (mode, blob id); return the root tree id.
        ids, if given, gets every folder's tree id."""
        return gitformat.build_trees(entries, self._write_object, ids)

    def write_tree_object(self, body: bytes) -> str:
        """One tree object from its body (entries already in git's order)."""
        return self._write_object(b"tree", body)

    def commit(
        self, tree: str, message: str, parents: Sequence[str] = (), when: datetime | None = None
    ) -> str:
        if missing := [sha for sha in (tree, *parents) if not self.has_object(sha)]:
            raise self._corrupt(missing[0], "is missing")
        return self._write_object(b"commit", gitformat.commit_body(tree, message, parents, when))

    def sync(self) -> None:
        """Make the objects written so far durable and readable; update_ref calls it.

        Loose objects are fsynced in one burst; a pack is finished (one fsync).
        """
        pack, self._pack = self._pack, None
        if pack is not None:
            try:
                pack.finish()
            except OSError as e:
                pack.abort()
                raise oserror(e, f"a pack in {self._objects}") from e
        written, self._pending = self._pending, []
        folders = {p.parent for p in written} | ({self._objects} if written else set())
        later = pending()
        if later is not None:  # made durable at the end of the caller's deferred() block
            later.add(map(os.fspath, written), map(os.fspath, folders))
            return
        for path in written:
            with open(path, "rb") as f:
                os.fsync(f.fileno())
        for folder in folders:
            fsync_dir(folder)  # the new names, and objects/ for any new xx/ folder

    def _loose_path(self, sha: str) -> Path:
        if not _HEX40.fullmatch(sha):  # also keeps a bad id from naming a path outside objects/
            raise ValueError(f"not a git object id: {sha!r}")
        return self._objects / sha[:2] / sha[2:]

    def abort(self) -> None:
        """Drop a pack begun and not finished (its objects were never named by a ref)."""
        pack, self._pack = self._pack, None
        if pack is not None:
            pack.abort()

    def _write_object(self, kind: bytes, body: bytes) -> str:
        header = gitformat.header(kind, len(body))
        h = gitformat.sha1(header)
        h.update(body)
        digest = h.digest()
        sha = digest.hex()
        # Strings, not Paths: this runs once per file of a first snapshot.
        path = f"{self._objects_s}/{sha[:2]}/{sha[2:]}"
        if os.path.exists(path) or self._in_packs(digest):
            return sha
        if self._pack is not None or len(self._pending) >= LOOSE_LIMIT:
            try:
                if self._pack is None:
                    self._pack = PackWriter(self._objects / "pack", self.owner)
                self._pack.add(digest, kind, body)
            except OSError as e:
                raise oserror(e, f"a pack in {self._objects}") from e
            return sha
        z = zlib.compressobj(1)  # level 1: several times faster than git's default, a bit larger
        folder = Path(path).parent
        try:
            makedirs(folder, self.owner)
            # "tmp_obj_": the prefix that git fsck ignores and git prune cleans up after a crash.
            fd, tmp = mkstemp(folder, prefix="tmp_obj_")
            try:
                with open(fd, "wb") as out:
                    out.write(z.compress(header) + z.compress(body) + z.flush())
                    os.fchmod(fd, 0o444)  # like git: objects are immutable
                    if self.owner is not None:
                        os.fchown(fd, self.owner.uid, self.owner.gid)
                os.replace(tmp, path)
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError as e:
            raise oserror(e, f"objects in {self._objects}") from e
        self._pending.append(Path(path))
        return sha

    def has_object(self, sha: str) -> bool:
        return os.path.exists(self._loose_path(sha)) or self._in_packs(bytes.fromhex(sha))

    def _pack_pending(self, sha: str) -> bool:
        return self._pack is not None and bytes.fromhex(sha) in self._pack

    def object_files(self, sha: str) -> list[Path] | None:
        """The files whose presence vouches for an object: its loose file, else every pack
        index (one of them holds it); None when it is not here."""
        loose = self._loose_path(sha)
        if loose.exists():
            return [loose]
        if self._pack_pending(sha):
            self.sync()  # the pack's index must exist to vouch for its objects
        if not self._in_packs(bytes.fromhex(sha)):
            return None
        return sorted((self._objects / "pack").glob("*.idx"))

    def read_object(self, sha: str) -> tuple[str, bytes]:
        return self._read_objects([sha])[sha]

    def read_commit_tree(self, commit: str) -> str:
        kind, body = self.read_object(commit)
        if kind != "commit" or not (m := re.match(rb"tree ([0-9a-f]{40})\n", body)):
            raise self._corrupt(commit, f"is not a valid commit (it is a {kind})")
        return m[1].decode()

    def read_tree(self, tree: str) -> dict[str, tuple[str, str]]:
        """Flattened: relpath -> (mode, blob id). Once packed, one git call per folder depth."""
        out: dict[str, tuple[str, str]] = {}
        level = [("", tree)]
        while level:
            objs = self._read_objects(sha for _, sha in level)
            below: list[tuple[str, str]] = []
            for prefix, sha in level:
                kind, body = objs[sha]
                if kind != "tree":
                    raise self._corrupt(sha, f"is a {kind}, not a tree")
                try:
                    listing = gitformat.parse_tree(body)
                except ValueError:
                    raise self._corrupt(sha, "is a damaged tree") from None
                for mode, name, child in listing:
                    if mode == "40000":
                        below.append((prefix + name + "/", child))
                    else:
                        out[prefix + name] = (mode, child)
            level = below
        return out

    def _read_objects(self, shas: Iterable[str]) -> dict[str, tuple[str, bytes]]:
        """Loose objects in Python; whatever gc packed, in a single `git cat-file --batch`."""
        out: dict[str, tuple[str, bytes]] = {}
        packed: list[str] = []
        wanted = list(dict.fromkeys(shas))
        if self._pack is not None and any(map(self._pack_pending, wanted)):
            self.sync()  # git reads the pack only once it is finished
        for sha in wanted:
            try:
                data = zlib.decompress(self._loose_path(sha).read_bytes())
            except FileNotFoundError:
                packed.append(sha)
                continue
            except zlib.error:
                raise self._corrupt(sha, "is damaged (cannot be decompressed)") from None
            header, _, body = data.partition(b"\0")
            out[sha] = self._verified(sha, header.partition(b" ")[0], body)
        if packed:
            batch = "\n".join(packed).encode() + b"\n"
            proc = self.run("cat-file", "--batch", input=batch, check=False)
            if proc.returncode != 0:  # no repository, or a damaged pack
                why = proc.stderr.decode(errors="replace").partition("\n")[0]
                raise CorruptStore(f"git cannot read {self.gitdir}: {why}; run 'datmo fsck'")
            buf, pos = proc.stdout, 0
            for sha in packed:
                nl = buf.find(b"\n", pos)
                head = buf[pos:nl].split()
                if len(head) != 3:  # "<id> missing"
                    raise self._corrupt(sha, "is missing")
                length = int(head[2])
                out[sha] = self._verified(sha, head[1], buf[nl + 1 : nl + 1 + length])
                pos = nl + 2 + length
        return out

    def _verified(self, sha: str, kind: bytes, body: bytes) -> tuple[str, bytes]:
        # The header is rebuilt, so a wrong size fails too.
        if kind not in gitformat.KINDS or gitformat.object_id(kind, body) != sha:
            raise self._corrupt(sha, "is damaged (its content does not match its id)")
        return kind.decode(), body

    def _corrupt(self, sha: str, why: str) -> CorruptStore:
        return CorruptStore(f"git object {sha} in {self.gitdir} {why}; run 'datmo fsck'")

    def _in_packs(self, digest: bytes) -> bool:
        """In the pack being written, or in a finished pack's .idx; no git process."""
        if self._pack is not None and digest in self._pack:
            return True
        pack_dir = self._objects / "pack"
        mtime = pack_dir.stat().st_mtime_ns if pack_dir.is_dir() else None
        if mtime != self._packs[0]:  # a gc added or removed packs since we last looked
            found = [p.read_bytes() for p in sorted(pack_dir.glob("*.idx"))]
            self._packs = (mtime, [i for i in found if gitformat.is_pack_index(i)])
        return any(gitformat.pack_index_has(idx, digest) for idx in self._packs[1])

    def fsck(self) -> list[str]:
        """Problem lines from `git fsck --full --strict`; [] when sound. Dangling is no problem."""
        args = ("fsck", "--full", "--strict", "--no-dangling", "--no-reflogs", "--no-progress")
        proc = self.run(*args, check=False)
        text = (proc.stdout + proc.stderr).decode(errors="replace")
        lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("notice:")]
        failed = [f"git fsck failed, exit status {proc.returncode}"] if proc.returncode else []
        return lines or failed
