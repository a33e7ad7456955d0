"""Environment definitions from the user's own files (`environment create --paths`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from datmo.errors import NotFound, UsageError


def _clean_name(name: str, spec: str) -> str:
    path = PurePosixPath(name.replace(os.sep, "/"))
    if path.is_absolute() or ".." in path.parts or not path.parts or str(path) == ".":
        raise UsageError(
            f"--paths {spec}: '{name}' is not inside the Dockerfile's folder; "
            "name it there with SRC>DEST"
        )
    return str(path)


def _named_dockerfile(path: Path) -> bool:
    return path.is_file() and "dockerfile" in path.name.lower()


def files_from_paths(specs: Sequence[str], cwd: Path) -> tuple[dict[str, bytes], str]:
    """Files for --paths SRC[>DEST], named from the Dockerfile's folder; a default name."""
    entries: list[tuple[Path, str | None, str]] = []
    for spec in specs:
        src_text, sep, dest = spec.partition(">")
        src = Path(os.path.abspath(cwd / src_text.strip()))
        if not src.exists():
            raise NotFound(f"--paths {spec}: {src} does not exist")
        entries.append((src, dest.strip() if sep else None, spec))
    tops = [i for i, (s, d, _) in enumerate(entries) if (d or s.name) == "Dockerfile"]
    if not tops:  # one gpu.Dockerfile or Dockerfile.dev among them is the Dockerfile
        tops = [i for i, (s, d, _) in enumerate(entries) if d is None and _named_dockerfile(s)]
    if len(tops) != 1 or not entries[tops[0]][0].is_file():
        raise UsageError(
            "--paths must name exactly one Dockerfile (rename one with SRC>Dockerfile), "
            "for example --paths docker/Dockerfile --paths docker/requirements.txt"
        )
    dockerfile, _, spec = entries[tops[0]]
    entries[tops[0]] = (dockerfile, "Dockerfile", spec)
    base = dockerfile.parent
    files: dict[str, bytes] = {}

    def add(path: Path, name: str | None, spec: str) -> None:
        key = _clean_name(os.path.relpath(path, base) if name is None else name, spec)
        data = path.read_bytes()
        if files.get(key, data) != data:
            raise UsageError(f"--paths {spec}: two different files would be named '{key}'")
        files[key] = data

    for src, to, given in entries:
        if not src.is_dir():
            add(src, to, given)
            continue
        for folder, dirs, names in os.walk(src):
            dirs.sort()
            for n in sorted(names):
                path = Path(folder, n)
                rel = path.relative_to(src).as_posix()
                add(path, None if to is None else f"{to}/{rel}", given)
    default = dockerfile.name if dockerfile.name != "Dockerfile" else base.name
    return files, default or "Dockerfile"
