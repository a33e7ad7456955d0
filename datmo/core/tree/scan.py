"""Walk a project and sort every path into code, files, or left out.

- Left out (`Skipped`, each pruned folder reported once): the defaults below,
  then the root's .datmoignore, then `extra_rules`, all in gitignore syntax
  with the last match winning, so `!.env` in .datmoignore asks for a default
  back. Virtual environments are found by content, not name: a folder holding
  `pyvenv.cfg` (venv, virtualenv >= 20, uv) or `conda-meta/` (conda). A
  folder named `venv` or `env` without them is captured: `env/` is a common
  package name, and a name alone would silently drop someone's code.
- Code: what git would track given the project's .gitignore files (at any
  depth, each relative to its folder) and at most `threshold` bytes.
  `.git/info/exclude` and global excludes are not read: the user's own git
  settings must not change what datmo stores.
- Files: everything else present (gitignored or larger than `threshold`).

Symlinks are never followed: a link is an entry (code unless gitignored),
even one to a folder. A nested git repository is captured by content; only
its `.git` is left out. Folders themselves are not entries, so an empty
folder is not captured (as in git).
"""

from __future__ import annotations

import os
import stat
from bisect import bisect_left
from dataclasses import dataclass, field
from pathlib import Path

from datmo.core.tree.ignore import IgnoreRules, Pattern
from datmo.core.util.memory import gc_paused
from datmo.core.util.probe import is_venv
from datmo.errors import DatmoError, NotFound

CODE, FILE = "code", "file"

# As if written at the top of .datmoignore; each group's source is its reason.
_DEFAULTS = {
    "version control": (".git",),  # at any depth, folder or file (submodules, worktrees)
    "datmo store": ("/.datmo",),
    "cache folder": ("__pycache__/", ".ipynb_checkpoints/", "node_modules/"),
    "may hold secrets": (
        ".env",
        ".env.*",
        "!.env.example",  # these three are templates, meant to be shared
        "!.env.sample",
        "!.env.template",
        "*.pem",
        "id_rsa*",
        "id_dsa*",
        "id_ecdsa*",
        "id_ed25519*",
        ".netrc",
    ),
}
DEFAULT_RULES = IgnoreRules(
    tuple(
        p
        for reason, lines in _DEFAULTS.items()
        for p in IgnoreRules.parse("\n".join(lines), source=reason).patterns
    )
)
DATMOIGNORE = ".datmoignore"
OPTION_REASON = "excluded by option"  # the reason for a pattern from `extra_rules`

_IFMT, _IFREG, _IFLNK, _IFDIR = 0o170000, stat.S_IFREG, stat.S_IFLNK, stat.S_IFDIR


@dataclass(frozen=True, slots=True)
class Entry:
    path: str  # posix relpath from the project root
    st: os.stat_result  # lstat result (symlinks are not followed)
    category: str  # CODE or FILE


@dataclass(frozen=True, slots=True)
class Skipped:
    path: str  # posix relpath; a folder is reported once, not each file inside
    reason: str


# A listed folder: its path ("" for the root), its children's names (sorted), which
# of them are folders, and its entries (in the same order). What a tree stamp
# (stamp.py) checks again later.
Listed = tuple[str, list[str], list[str], list[Entry]]


@dataclass
class ScanResult:
    entries: list[Entry]  # sorted by path
    skipped: list[Skipped]  # sorted by path
    folders: list[Listed] = field(default_factory=list)  # in no particular order
    venvs: list[str] = field(default_factory=list)  # folders left out as virtual environments
    # False when the walk met something a stamp cannot vouch for later: a path that
    # vanished mid-walk, an unreadable one, a fifo, socket or device, or a rules file
    # (.gitignore, .datmoignore) that is itself left out.
    stable: bool = True


def datmo_rules(root: Path, extra_rules: str = "") -> IgnoreRules:
    """The defaults, then the root's .datmoignore, then `extra_rules`."""
    path = os.path.join(root, DATMOIGNORE)
    text = ""
    if os.path.isfile(path) and not os.path.islink(path):
        try:
            text = _read_text(path)
        except OSError as err:
            # Going on without it could store what the user asked us to keep out.
            raise DatmoError(f"cannot read {path}: {err.strerror}; fix its permissions") from None
    return (
        DEFAULT_RULES
        + IgnoreRules.parse(text, source=DATMOIGNORE)
        + IgnoreRules.parse(extra_rules, source=OPTION_REASON)
    )


def scan(root: Path, threshold: int = 1 << 20, extra_rules: str = "") -> ScanResult:
    """Classify every path under `root`; see the module docstring for the rules."""
    top = os.fspath(root)
    if not os.path.isdir(top):
        raise NotFound(f"project folder not found: {top}")
    return _Walk(top, threshold, datmo_rules(root, extra_rules)).run()


def rescan_folder(
    root: Path, rel: str, threshold: int, extra_rules: str = ""
) -> tuple[Listed, list[Skipped], list[str]] | None:
    """One folder classified as a full scan would: (its listing, what it leaves out, the
    subfolders a scan would walk into). For an incremental capture (update.py), which
    redoes only the folders that changed. The rules that apply come down from the root
    through each folder above, as the walk brings them. None when the folder cannot be
    judged alone: gone, unreadable, left out or a virtual environment now."""
    walk = _Walk(os.fspath(root), threshold, datmo_rules(root, extra_rules))
    return walk.one(rel)


def _read_text(path: str) -> str:
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "surrogateescape")


# O_NOFOLLOW: a folder swapped for a symlink mid-walk must not lead us outside.
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a fifo named .gitignore must not hang the walk.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


@dataclass(frozen=True, slots=True)
class _Folder:
    """A folder to list: where it is and what applies inside it."""

    path: str  # absolute
    rel: str  # "" for the root
    git: IgnoreRules | None  # the .gitignore rules from above, if any
    ignored: bool  # gitignored itself: everything inside is FILE
    vouched: bool  # re-included by '!': not checked for a virtual environment
    rules: IgnoreRules  # the datmo rules from above


# A listed folder: runs of entries, each followed by the subfolder that comes
# next in sorted order (None after the last run).
_Listing = list[tuple[list[Entry], "_Folder | None"]]


class _Walk:
    def __init__(self, top: str, threshold: int, rules: IgnoreRules) -> None:
        self.top = top
        self.threshold = threshold
        self.rules = rules
        self.skipped: list[Skipped] = []
        self.folders: list[Listed] = []
        self.venvs: list[str] = []
        self.stable = True

    def run(self) -> ScanResult:
        # The walk allocates a few objects per file and makes no cycles; left
        # on, the collector re-scans them all again and again (~20% of the walk).
        with gc_paused():
            entries = self._walk()
        self.skipped.sort(key=lambda s: s.path)
        return ScanResult(entries, self.skipped, self.folders, self.venvs, self.stable)

    def _walk(self) -> list[Entry]:
        first = self._list(_Folder(self.top, "", None, False, True, self.rules))
        if first is None:
            raise DatmoError(f"cannot list the project folder {self.top}; check its permissions")
        # Depth-first, children sorted with folders keyed "name/": that is the
        # sorted order of the full paths, so entries need no final sort.
        entries: list[Entry] = []
        stack = [iter(first)]
        while stack:
            for run, sub in stack[-1]:
                entries += run
                listing = None if sub is None else self._list(sub)
                if listing is not None:
                    stack.append(iter(listing))
                    break
            else:
                stack.pop()
        return entries

    def one(self, rel: str) -> tuple[Listed, list[Skipped], list[str]] | None:
        folder: _Folder | None = _Folder(self.top, "", None, False, True, self.rules)
        for part in rel.split("/") if rel else []:
            assert folder is not None
            folder = self._step(folder, part)
            if folder is None:
                return None
        assert folder is not None
        listing = self._list(folder)
        if listing is None or not self.stable or len(self.folders) != 1:
            return None
        subs = [sub.rel.rpartition("/")[2] for _, sub in listing if sub is not None]
        return self.folders[0], self.skipped, subs

    def _step(self, folder: _Folder, name: str) -> _Folder | None:
        """The folder `name` inside `folder`, with the rules that apply in it: the
        subfolder step of _classify, for one name."""
        rel, prefix = folder.rel, folder.rel + "/" if folder.rel else ""
        try:
            fd = os.open(folder.path, _DIR_FLAGS if rel else _DIR_FLAGS & ~os.O_NOFOLLOW)
        except OSError:
            return None
        try:
            git = folder.git
            if not folder.ignored and _exists_at(fd, ".gitignore"):
                own = IgnoreRules.parse(_read_at(fd, ".gitignore"), rel, _source(rel))
                git = own if git is None else git + own
        finally:
            os.close(fd)
        if git is not None:
            git = git.for_folder(rel) or None
        rules = folder.rules.for_folder(rel)
        live_git = None if folder.ignored else git
        hit = rules.decide([name], prefix, True).get(name)
        if hit is not None and not hit.negated:
            return None  # left out: nothing below it is captured
        sub_ignored = folder.ignored or bool(
            live_git and _hits(live_git.decide([name], prefix, True))
        )
        vouched = hit is not None  # re-included by '!'
        return _Folder(f"{folder.path}/{name}", prefix + name, git, sub_ignored, vouched, rules)

    def _list(self, folder: _Folder) -> _Listing | None:
        """Classify a folder's children; None if it is left out (reported) or gone."""
        # The root may be a symlink (the user named it); nothing below it may.
        flags = _DIR_FLAGS if folder.rel else _DIR_FLAGS & ~os.O_NOFOLLOW
        try:
            fd = os.open(folder.path, flags)
        except FileNotFoundError:
            self.stable = False
            return None
        except OSError as err:
            self._skip(folder.rel, err)
            return None
        try:
            return self._classify(fd, folder)
        finally:
            os.close(fd)

    def _classify(self, fd: int, folder: _Folder) -> _Listing | None:
        rel, ignored, skipped = folder.rel, folder.ignored, self.skipped
        prefix = rel + "/" if rel else ""
        try:
            names = os.listdir(fd)
        except OSError as err:
            self._skip(rel, err)
            return None
        if not folder.vouched and is_venv(fd, names):
            skipped.append(Skipped(rel, "virtual environment"))
            self.venvs.append(rel)
            return None
        names.sort()
        git = folder.git
        # git reads no .gitignore inside an ignored folder, nor through a symlink.
        if not ignored and ".gitignore" in names:
            own = IgnoreRules.parse(_read_at(fd, ".gitignore"), rel, _source(rel))
            git = own if git is None else git + own
        if git is not None:
            git = git.for_folder(rel) or None
        rules = folder.rules.for_folder(rel)
        # Decided once per folder, as if every child were a file (folders are
        # decided again below): usually nothing matches at all.
        left_out = _hits(rules.decide(names, prefix, False))
        if left_out and (".gitignore" in left_out or (not rel and DATMOIGNORE in left_out)):
            self.stable = False  # rules read from a file that is not captured, nor watched
        live_git = None if ignored else git  # inside an ignored folder all is FILE anyway
        gitignored = _hits(live_git.decide(names, prefix, False)) if live_git else {}
        entries, dirs = self._entries(fd, names, prefix, ignored, left_out, gitignored)
        self.folders.append((rel, names, dirs, entries))
        listing: _Listing = []
        if not dirs:
            listing.append((entries, None))
            return listing
        left_out_dirs = rules.decide(dirs, prefix, True)
        gitignored_dirs = _hits(live_git.decide(dirs, prefix, True)) if live_git else {}
        start = 0
        for name in sorted(dirs, key=_dir_key):
            # lstat order is by name; a folder sorts as "name/" among the paths.
            end = bisect_left(entries, prefix + name + "/", lo=start, key=_path)
            run = entries[start:end]
            start = end
            hit = left_out_dirs.get(name)
            if hit is not None and not hit.negated:
                skipped.append(Skipped(prefix + name, hit.source))
                listing.append((run, None))
                continue
            sub_ignored = ignored or name in gitignored_dirs
            vouched = hit is not None  # re-included by '!'
            sub = _Folder(f"{folder.path}/{name}", prefix + name, git, sub_ignored, vouched, rules)
            listing.append((run, sub))
        listing.append((entries[start:], None))
        return listing

    def _entries(
        self,
        fd: int,
        names: list[str],
        prefix: str,
        ignored: bool,
        left_out: dict[str, str],
        gitignored: dict[str, str],
    ) -> tuple[list[Entry], list[str]]:
        """The hot loop: lstat each child; entries for files, names of folders."""
        entries: list[Entry] = []
        dirs: list[str] = []
        threshold, skipped, lstat = self.threshold, self.skipped, os.lstat
        code, file, new = CODE, FILE, Entry
        for name in names:
            try:
                st = lstat(name, dir_fd=fd)  # by name in the open folder: no path to resolve
            except FileNotFoundError:
                self.stable = False
                continue  # deleted while we looked: it is simply not there
            except OSError as err:
                self._skip(prefix + name, err)
                continue
            fmt = st.st_mode & _IFMT
            if fmt == _IFDIR:
                dirs.append(name)
                continue
            if left_out and name in left_out:
                skipped.append(Skipped(prefix + name, left_out[name]))
                continue
            if fmt == _IFREG:
                category = file if ignored or st.st_size > threshold else code
            elif fmt == _IFLNK:
                category = file if ignored else code
            else:
                skipped.append(Skipped(prefix + name, "not a regular file"))
                self.stable = False
                continue
            if gitignored and name in gitignored:
                category = file
            entries.append(new(prefix + name, st, category))
        return entries, dirs

    def _skip(self, rel: str, err: OSError) -> None:
        self.stable = False
        reason = "permission denied" if isinstance(err, PermissionError) else "unreadable"
        self.skipped.append(Skipped(rel, reason))


def _dir_key(name: str) -> str:
    return name + "/"


def _path(entry: Entry) -> str:
    return entry.path


def _hits(decided: dict[str, Pattern]) -> dict[str, str]:
    """The names a pattern leaves out (not re-included), with its source."""
    return {name: p.source for name, p in decided.items() if not p.negated}


def _source(rel: str) -> str:
    return f"{rel}/.gitignore" if rel else ".gitignore"


def _exists_at(fd: int, name: str) -> bool:
    try:
        os.lstat(name, dir_fd=fd)
    except FileNotFoundError:
        return False
    return True


def _read_at(fd: int, name: str) -> str:
    """A regular file's text, read without following a symlink; "" if there is none."""
    try:
        f = os.open(name, _FILE_FLAGS, dir_fd=fd)
    except OSError:
        return ""  # a symlink (ELOOP), or unreadable: git only warns
    with os.fdopen(f, "rb") as stream:
        if not stat.S_ISREG(os.fstat(f).st_mode):
            return ""  # a fifo or device: nothing git would read either
        return stream.read().decode("utf-8", "surrogateescape")
