"""gitignore-syntax matching, faithful to git's dir.c and wildmatch.c.

A rule set compiles once into cheap lookups (exact names, name prefixes and
suffixes) plus one combined regex for names and one for paths: a path costs a few
C-level checks, not one call per pattern.

git compares bytes: `?` matches one byte and `[é]` either of its two bytes.
To agree, patterns and paths are matched in a "byte view" (the UTF-8 bytes
decoded as latin-1, one character per byte). An ASCII string is its own byte
view, so only non-ASCII paths pay for the conversion.

Matching is case-sensitive (git's default on Linux; core.ignorecase is a
per-repository setting that datmo deliberately does not read).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SPECIAL = frozenset("*?[\\")
_NEVER = "(?!)"
_NO_MATCH: dict[str, None] = {}  # its .get is a C-level "never matches"

# ASCII-only, as git's sane ctype: bytes >= 0x80 are in no class.
_CLASSES = {
    "alnum": "0-9A-Za-z",
    "alpha": "A-Za-z",
    "blank": " \\t",
    "cntrl": "\\x00-\\x1f\\x7f",
    "digit": "0-9",
    "graph": "!-~",
    "lower": "a-z",
    "print": " -~",
    "punct": "!-/:-@\\[-`{-~",
    "space": " \\t\\n\\r",
    "upper": "A-Z",
    "xdigit": "0-9A-Fa-f",
}


def byte_view(s: str) -> str:
    """The string's UTF-8 bytes as latin-1 characters (ASCII is unchanged)."""
    if s.isascii():
        return s
    return s.encode("utf-8", "surrogateescape").decode("latin-1")


@dataclass(frozen=True, slots=True, eq=False)
class Pattern:
    """One compiled line. `base`, `fast`, `regex` and `literal` are in byte view."""

    text: str  # the line as written, trailing spaces trimmed
    source: str  # where it came from, e.g. "sub/.gitignore"
    lineno: int
    negated: bool  # '!': re-include
    dir_only: bool  # trailing '/'
    anchored: bool  # has a '/': matched against the path, else the basename
    base: str  # folder of the ignore file, "" for the root
    kind: str  # for basename patterns: "exact", "prefix", "suffix" (fast paths) or "regex"
    fast: str  # the literal for the fast kinds
    regex: str  # full match: the basename, or the root-relative path if anchored
    literal: str  # root-relative literal head of an anchored pattern


_TRAILING_SPACES = re.compile(r"((?:\\.|[^\\])*?) +", re.DOTALL)


def _trim_trailing_spaces(line: str) -> str:
    # dir.c: drop unescaped trailing ' ' (not tabs); '\ ' is kept as a space.
    m = _TRAILING_SPACES.fullmatch(line)
    return m.group(1) if m else line


def _bracket(p: str, i: int) -> tuple[str, int] | None:
    """Translate the class whose '[' is at p[i-1]; None if git aborts on it."""
    n = len(p)
    negated = i < n and p[i] in "!^"
    if negated:
        i += 1
    singles: list[str] = []
    ranges: list[str] = []
    prev = ""
    first = True
    while True:
        # The first member may be ']' (wildmatch's do-while checks after it).
        if i >= n:
            return None
        c = p[i]
        if c == "]" and not first:
            break
        first = False
        if c == "\\":
            i += 1
            if i >= n:
                return None
            c = p[i]
            singles.append(c)
        elif c == "-" and prev and i + 1 < n and p[i + 1] != "]":
            i += 1
            hi = p[i]
            if hi == "\\":
                i += 1
                if i >= n:
                    return None
                hi = p[i]
            if prev <= hi:
                ranges.append(f"{re.escape(prev)}-{re.escape(hi)}")
            c = ""  # a range resets prev, as in wildmatch
        elif c == "[" and i + 1 < n and p[i + 1] == ":":
            end = p.find("]", i + 2)
            if end < 0:
                return None
            name = p[i + 2 : end - 1] if end - 1 >= i + 2 and p[end - 1] == ":" else None
            if name is None:
                singles.append("[")  # no ":]": a plain '[', scanning resumes at ':'
            else:
                if name not in _CLASSES:
                    return None
                ranges.append(_CLASSES[name])
                i = end
                c = ""
        else:
            singles.append(c)
        prev = c
        i += 1
    members = "".join(re.escape(c) for c in singles) + "".join(ranges)
    if negated:
        return f"[^{members}/]", i + 1
    # A class never matches '/', even one that lists it or a range across it.
    return (f"(?!/)[{members}]" if members else _NEVER), i + 1


def _translate(p: str, anchored: bool, first_wild: int) -> str | None:
    """wildmatch as a regex body; None when git would never match it."""
    out: list[str] = []
    n = len(p)
    i = 0
    while i < n:
        c = p[i]
        if c == "*":
            j = i
            while j < n and p[j] == "*":
                j += 1
            # git strips the literal head before calling wildmatch, so a '**'
            # right after it counts as "at the start" (a**/b matches ax/y/b).
            if (
                anchored
                and j - i >= 2
                and (i == 0 or p[i - 1] == "/" or i == first_wild)
                and (j == n or p[j] == "/" or p.startswith("\\/", j))
            ):
                if j == n:
                    out.append(".*")
                    i = j
                elif p[j] == "/":
                    out.append("(?:.*/)?")  # zero or more folders
                    i = j + 1
                else:
                    out.append(".*/")  # '\/' does not get the zero-folder case
                    i = j + 2
                continue
            out.append("[^/]*")
            i = j
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "\\":
            if i + 1 == n:
                return None  # a trailing backslash never matches
            out.append(re.escape(p[i + 1]))
            i += 2
        elif c == "[":
            got = _bracket(p, i + 1)
            if got is None:
                return None
            out.append(got[0])
            i = got[1]
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


def _compile(line: str, base: str, source: str, n: int) -> Pattern | None:
    """dir.c parse_path_pattern + our regex; `line` and `base` in byte view."""
    negated = line.startswith("!")
    p = line[1:] if negated else line
    dir_only = p.endswith("/")
    if dir_only:
        p = p[:-1]
    anchored = "/" in p
    if anchored and p.startswith("/"):
        p = p[1:]
    if p.startswith("**/") and "/" not in p[3:]:
        # '**/name' matches 'name' at any depth: the same as a basename
        # pattern, which is far cheaper to check.
        p, anchored = p[3:], False
    if not p:
        return None
    first_wild = next((i for i, c in enumerate(p) if c in _SPECIAL), len(p))
    body = _translate(p, anchored, first_wild)
    if body is None:
        return None  # can never match, so it can never win either
    head = base + "/" if base else ""
    kind, fast, literal = "regex", "", ""
    if anchored:
        literal = head + p[:first_wild]
        body = re.escape(head) + body
    elif first_wild == len(p):
        kind, fast = "exact", p
    elif p[0] == "*" and len(p) > 1 and not _SPECIAL.intersection(p[1:]):
        kind, fast = "suffix", p[1:]
    elif first_wild == len(p) - 1 and p[-1] == "*":
        kind, fast = "prefix", p[:-1]
    text = line.encode("latin-1").decode("utf-8", "surrogateescape")  # back from byte view
    return Pattern(text, source, n, negated, dir_only, anchored, base, kind, fast, body, literal)


class _Matcher:
    """The patterns that apply to one kind of path (file or folder), as lookups.

    Each lookup answers with the highest pattern index it matches; the highest
    over all of them is git's "last match wins".
    """

    def __init__(self, patterns: tuple[Pattern, ...], is_dir: bool) -> None:
        self.exact: dict[str, int] = {}
        self.prefixes: list[tuple[str, int]] = []
        self.suffixes: list[tuple[str, int]] = []
        name_alts: list[tuple[str, int]] = []
        path_alts: list[tuple[str, int]] = []
        for i, p in enumerate(patterns):
            if p.dir_only and not is_dir:
                continue
            if p.anchored:
                path_alts.append((p.regex, i))
            elif p.kind == "exact":
                self.exact[p.fast] = i
            elif p.kind == "prefix":
                self.prefixes.append((p.fast, i))
            elif p.kind == "suffix":
                self.suffixes.append((p.fast, i))
            else:
                name_alts.append((p.regex, i))
        self.prefixes.reverse()
        self.suffixes.reverse()
        self.prefix_any = tuple(s for s, _ in self.prefixes)
        self.suffix_any = tuple(s for s, _ in self.suffixes)
        self.name_re, self.name_re_idx = _combine(name_alts)
        self.path_re, self.path_re_idx = _combine(path_alts)

    def candidates(self, names: list[str], prefix: str) -> list[str]:
        """The names some pattern may match: a cheap screen, exact for ASCII names.

        `prefix` is in byte view; non-ASCII names always pass, for `best` to decide.
        """
        exact, pre, suf = self.exact, self.prefix_any, self.suffix_any
        match = self.name_re.fullmatch if self.name_re else _NO_MATCH.get
        found = [
            n
            for n in names
            if n in exact or n.startswith(pre) or n.endswith(suf) or match(n) or not n.isascii()
        ]
        if self.path_re is not None:
            path_match, seen = self.path_re.fullmatch, set(found)
            found += [n for n in names if n not in seen and path_match(prefix + n)]
        return found

    def best(self, name: str, path: str) -> int:
        """Index of the last pattern matching (basename, root-relative path), or -1."""
        name, path = byte_view(name), byte_view(path)  # a folder above may be non-ASCII
        best = self.exact.get(name, -1)
        if self.prefix_any and name.startswith(self.prefix_any):
            best = max(best, next(i for s, i in self.prefixes if name.startswith(s)))
        if self.suffix_any and name.endswith(self.suffix_any):
            best = max(best, next(i for s, i in self.suffixes if name.endswith(s)))
        if self.name_re is not None:
            m = self.name_re.fullmatch(name)
            if m is not None:
                best = max(best, self.name_re_idx[m.lastindex or 0])
        if self.path_re is not None:
            m = self.path_re.fullmatch(path)
            if m is not None:
                best = max(best, self.path_re_idx[m.lastindex or 0])
        return best


def _may_apply(p: Pattern, prefix: str) -> bool:
    """Whether `p` can match a path that starts with `prefix` ("" or "dir/")."""
    if p.anchored:
        # Its match starts with its literal head: one must extend the other.
        return p.literal.startswith(prefix) or prefix.startswith(p.literal)
    return not p.base or prefix.startswith(p.base + "/")


def _combine(alts: list[tuple[str, int]]) -> tuple[re.Pattern[str] | None, list[int]]:
    # Last pattern first: alternation takes the first branch that fully
    # matches, which is then the last matching pattern; lastindex names it.
    if not alts:
        return None, []
    alts = alts[::-1]
    rx = re.compile("|".join(f"({body})" for body, _ in alts), re.DOTALL)
    return rx, [-1] + [i for _, i in alts]


class IgnoreRules:
    """An ordered list of gitignore patterns; paths are root-relative posix strings.

    Rules from several files combine with `+` (parent first): a later match
    wins, so a nested .gitignore overrides its parents as in git.
    """

    __slots__ = ("_matchers", "_narrowable", "_subsets", "patterns")

    def __init__(self, patterns: tuple[Pattern, ...] = ()) -> None:
        self.patterns = patterns
        self._matchers: list[_Matcher | None] = [None, None]  # [file, folder], built lazily
        self._subsets: dict[tuple[int, ...], IgnoreRules] = {}
        # Only anchored or nested patterns can be dropped for a subfolder.
        self._narrowable = tuple(i for i, p in enumerate(patterns) if p.anchored or p.base)

    @classmethod
    def parse(cls, text: str, base: str = "", source: str = "") -> IgnoreRules:
        """The patterns of one ignore file whose folder is `base` ("" for the root)."""
        raw = byte_view(text)
        if raw.startswith("\xef\xbb\xbf"):  # git skips a UTF-8 BOM
            raw = raw[3:]
        base = byte_view(base.strip("/"))
        patterns: list[Pattern] = []
        for lineno, line in enumerate(raw.split("\n"), 1):
            if line.endswith("\r"):
                line = line[:-1]
            line = line.partition("\0")[0]  # git handles each line as a C string
            if not line or line.startswith("#"):
                continue
            p = _compile(_trim_trailing_spaces(line), base, source, lineno)
            if p is not None:
                patterns.append(p)
        return cls(tuple(patterns))

    def __add__(self, other: IgnoreRules) -> IgnoreRules:
        return IgnoreRules(self.patterns + other.patterns)

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def __repr__(self) -> str:
        return f"IgnoreRules({[p.text for p in self.patterns]!r})"

    def for_folder(self, folder: str) -> IgnoreRules:
        """The subset that can match something inside `folder` (cached).

        The walker narrows once per folder so that, say, '/build' costs
        nothing outside the root and a folder with no live patterns is free.
        """
        if not self._narrowable:
            return self
        prefix = byte_view(folder) + "/" if folder else ""
        patterns = self.patterns
        drop = tuple(i for i in self._narrowable if not _may_apply(patterns[i], prefix))
        if not drop:
            return self
        sub = self._subsets.get(drop)
        if sub is None:
            gone = set(drop)
            sub = IgnoreRules(tuple(p for i, p in enumerate(patterns) if i not in gone))
            self._subsets[drop] = sub
        return sub

    def decide(self, names: list[str], prefix: str, is_dir: bool) -> dict[str, Pattern]:
        """The deciding pattern of each child of one folder that has one.

        `prefix` is the folder's root-relative path plus '/' ("" for the root);
        call it on `for_folder(folder)` rules. One call per folder keeps the
        cost per name to a few C-level checks.
        """
        m = self._matchers[is_dir] or self._build(is_dir)
        out = {}
        for name in m.candidates(names, byte_view(prefix)):
            i = m.best(name, prefix + name)
            if i >= 0:
                out[name] = self.patterns[i]
        return out

    def last_match(self, relpath: str, is_dir: bool) -> Pattern | None:
        """The deciding pattern for one path (its parent folders are not looked at)."""
        folder, _, name = relpath.rpartition("/")
        prefix = relpath[: len(relpath) - len(name)]
        return self.for_folder(folder).decide([name], prefix, is_dir).get(name)

    def match(self, relpath: str, is_dir: bool) -> bool | None:
        """True: ignored; False: re-included by '!'; None: no pattern matches."""
        p = self.last_match(relpath, is_dir)
        return None if p is None else not p.negated

    def _build(self, is_dir: bool) -> _Matcher:
        m = self._matchers[is_dir] = _Matcher(self.patterns, is_dir)
        return m
