"""Built-in environment definitions: one folder per template, holding a Dockerfile
(whose first line is `# datmo: <description>`) and any files it copies."""

from __future__ import annotations

import os
import re
from pathlib import Path

from datmo.core.util.probe import folder_stamp
from datmo.errors import NotFound

# The templates ship as package files; a plain path avoids importing importlib.resources.
_HERE = Path(__file__).parent
DESCRIPTION_MARK = "# datmo:"
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*\Z")


def describe(dockerfile: bytes) -> str:
    """The `# datmo: <description>` first line of a Dockerfile, if it has one."""
    first = dockerfile.decode("utf-8", "replace").split("\n", 1)[0].strip()
    return first[len(DESCRIPTION_MARK) :].strip() if first.startswith(DESCRIPTION_MARK) else ""


def available() -> list[tuple[str, str]]:
    """(name, one-line description) of each template, by name."""
    found = []
    for entry in _HERE.iterdir():
        dockerfile = entry.joinpath("Dockerfile")
        if entry.is_dir() and dockerfile.is_file():
            found.append((entry.name, describe(dockerfile.read_bytes())))
    return sorted(found)


def files(name: str) -> dict[str, bytes]:
    """A template's files by relative posix name."""
    folder = _HERE.joinpath(name)
    if not _NAME.match(name) or not folder.joinpath("Dockerfile").is_file():
        known = ", ".join(n for n, _ in available())
        raise NotFound(f"no built-in environment '{name}'; choose one of: {known}")
    found: dict[str, bytes] = {}

    def walk(node: Path, prefix: str) -> None:
        for child in node.iterdir():
            if child.is_dir() and child.name != "__pycache__":
                walk(child, f"{prefix}{child.name}/")
            elif child.is_file():
                found[prefix + child.name] = child.read_bytes()

    walk(folder, "")
    return found


def folder(name: str) -> tuple[str, str]:
    """A template's folder, and the folder its files are named relative to in stamp()."""
    return os.fspath(_HERE.joinpath(name)), os.fspath(_HERE)


def stamp(name: str) -> str:
    """Sizes and modification times of a template's files, in one word: what a cache
    of its id is keyed by (they change only when datmo is installed again or edited)."""
    return folder_stamp(*folder(name))
