"""The shadow repository's refs: loose files under refs/, and git's packed-refs after a gc."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datmo.core.storage.fsutil import Owner, atomic_write_bytes, makedirs
from datmo.errors import CorruptStore, DatmoError, DiskFull

_HEX40 = re.compile(r"[0-9a-f]{40}")
# git check-ref-format, minus rules that datmo's own ref names never come near.
_BAD_REF = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//|/\.|\.lock(/|$)|[/.]$")


def oserror(e: OSError, what: str) -> DatmoError:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFull(f"disk full while writing {what}; free some space and try again")
    return DatmoError(f"cannot write {what}: {e.strerror or e}")


class Refs:
    """Ref reading and writing for ShadowRepo, which provides what is declared here."""

    gitdir: Path
    owner: Owner | None

    if TYPE_CHECKING:

        def has_object(self, sha: str) -> bool: ...
        def sync(self) -> None: ...
        def run(self, *args: str, check: bool = True) -> Any: ...
        def _corrupt(self, sha: str, why: str) -> CorruptStore: ...

    def update_ref(self, name: str, sha: str) -> None:
        path = self._ref_path(name)
        if not self.has_object(sha):  # a ref must never lead to a missing object
            raise self._corrupt(sha, "is missing")
        self.sync()  # the objects must be on disk before a ref can lead to them
        try:
            makedirs(path.parent, self.owner)
            atomic_write_bytes(path, sha.encode() + b"\n", self.owner)
        except OSError as e:
            raise oserror(e, f"ref {name}") from e

    def delete_ref(self, name: str) -> None:
        path = self._ref_path(name)
        if name in self._packed_refs():  # rare (only after gc): let git rewrite packed-refs
            self.run("update-ref", "-d", name)
        path.unlink(missing_ok=True)

    def read_ref(self, name: str) -> str | None:
        try:
            text = self._ref_path(name).read_text("latin-1")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return self._packed_refs().get(name)
        return self._valid_ref(name, text.strip())

    def list_refs(self, prefix: str = "refs/datmo/") -> dict[str, str]:
        refs = {k: v for k, v in self._packed_refs().items() if k.startswith(prefix)}
        base = self.gitdir / "refs" / prefix.removeprefix("refs/").rpartition("/")[0]
        for top, _, files in os.walk(base):
            for fname in files:
                path = Path(top, fname)
                name = path.relative_to(self.gitdir).as_posix()
                # Skip git's *.lock files and the dot-named temp file of an interrupted write.
                if name.startswith(prefix) and fname[0] != "." and not fname.endswith(".lock"):
                    refs[name] = self._valid_ref(name, path.read_text("latin-1").strip())
        return dict(sorted(refs.items()))

    def _ref_path(self, name: str) -> Path:
        if not name.startswith("refs/") or _BAD_REF.search(name):
            raise ValueError(f"bad ref name {name!r}")
        return self.gitdir / name

    def _valid_ref(self, name: str, text: str) -> str:
        if not _HEX40.fullmatch(text):
            raise CorruptStore(f"ref {name} in {self.gitdir} is damaged; run 'datmo fsck'")
        return text

    def _packed_refs(self) -> dict[str, str]:
        try:
            text = (self.gitdir / "packed-refs").read_text("utf-8", "surrogateescape")
        except FileNotFoundError:
            return {}
        # "<id> <name>" lines; skip the header comment and "^<id>" peeled tag values.
        pairs = [ln.partition(" ")[::2] for ln in text.splitlines() if ln[:1] not in ("", "#", "^")]
        return {name: self._valid_ref(name, sha) for sha, name in pairs}
