"""Project-level verbs: open (for a command), init, status, cleanup."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datmo.core.entity.base import new_id, utcnow
from datmo.core.entity.project import Project
from datmo.core.storage.project import BACKUP, JOURNAL, ProjectContext, find_project, find_root
from datmo.core.storage.store import DATMO_DIR, Store
from datmo.errors import CorruptStore, DatmoError, NotFound, ProjectNotFound

if TYPE_CHECKING:  # every command opens a project here: keep its imports few
    from datmo.core.entity.snapshot import Snapshot
    from datmo.core.tree.state import Changes


def open_project(start: Path | None = None, recover: bool = True) -> ProjectContext:
    """The project holding start (default: cwd), ready for a command."""
    ctx = find_project(start)
    if recover and ctx.store.path(*JOURNAL).exists():
        # A checkout that was killed half-way is finished before anything else reads the tree.
        from datmo.core.controller import checkout

        checkout.recover_if_needed(ctx)
    return ctx


@dataclass
class InitResult:
    ctx: ProjectContext
    created: bool
    gitignore_updated: bool


def init(
    folder: Path,
    name: str | None,
    description: str | None,
    force: bool = False,
    executor: str | None = None,
    project_id: str | None = None,
) -> InitResult:
    """Create `.datmo` in folder, or update the project there, keeping its id. executor:
    where its runs go by default (docker when an engine answers, else local); project_id:
    the id a new project takes (a clone is the same project)."""
    root = Path(os.path.abspath(folder))
    home = Path(os.path.expanduser("~")).resolve()
    if not force and root.resolve() in (home, Path("/")):
        raise DatmoError(
            f"refusing to make {root} a project: a snapshot would try to store everything in it; "
            "make a project folder, or pass --force"
        )
    try:
        outer = find_root(root)
    except ProjectNotFound:
        outer = None
    if outer is not None and outer != root and not force:
        raise DatmoError(
            f"{root} is inside the datmo project {outer}; run datmo there, or pass --force to "
            "start a separate project here"
        )
    store = Store(root)
    ctx = ProjectContext(root, store)
    if store.exists():
        from datmo.core.controller.checkout import recover_if_needed

        recover_if_needed(ctx)
    store.create_layout()
    with store.lock():
        # Decided under the lock: two inits make one project. A record lost with its backup
        # kept is the same project again.
        created = not store.exists() and not store.path(BACKUP).is_file()
        now = utcnow()
        if created:
            from datmo.core.executor.engine import engine_answers

            project = Project(
                id=project_id or new_id(),
                name=name or root.name or "project",
                description=description or "",
                created_at=now,
                updated_at=now,
                default_executor=executor or ("docker" if engine_answers() else "local"),
            )
        else:
            try:
                project = ctx.info
            except (CorruptStore, NotFound) as e:
                if isinstance(e, CorruptStore) and not force:
                    raise DatmoError(
                        f"{store.dir}/project.json is damaged; 'datmo init --force' (or "
                        "'datmo fsck --repair') rebuilds it from its backup, keeping every "
                        "snapshot and run"
                    ) from None
                project, _ = ctx.recovered_info()
            changes: dict[str, str] = {"updated_at": now}
            if name:
                changes["name"] = name
            if description is not None:
                changes["description"] = description
            if executor:
                changes["default_executor"] = executor
            project = project.evolve(**changes)
        ctx.save_info(project)
        if not store.git.exists():
            store.git.init()
    return InitResult(ctx, created, _ignore_in_git(root, store))


def _ignore_in_git(root: Path, store: Store) -> bool:
    """Add .datmo/ to the project's .gitignore when the project is in a git repository."""
    if not any((folder / ".git").exists() for folder in (root, *root.parents)):
        return False
    gitignore = root / ".gitignore"
    text = gitignore.read_text(encoding="utf-8", errors="replace") if gitignore.exists() else ""
    lines = {line.strip() for line in text.splitlines()}
    if lines & {".datmo", ".datmo/", "/.datmo", "/.datmo/"}:
        return False
    sep = "" if not text or text.endswith("\n") else "\n"
    with open(gitignore, "a", encoding="utf-8") as f:
        f.write(f"{sep}{DATMO_DIR}/\n")
    from datmo.core.storage.fsutil import chown

    if store.owner and not text:
        chown(gitignore, store.owner)
    return True


@dataclass
class Status:
    project: Project
    current: Snapshot | None
    code: Changes
    files: Changes
    config_changed: bool
    metrics_changed: bool
    config_keys: dict[str, list[Any]] = field(default_factory=dict)  # key: [then, now]
    metric_keys: dict[str, list[Any]] = field(default_factory=dict)


def _changed_keys(then: dict[str, Any], path: Path) -> dict[str, list[Any]]:
    """Which keys of config.json (or stats.json) differ from the current snapshot's."""
    from datmo.core.util import params

    try:
        now = params.load_mapping(path, path.name) if path.is_file() else {}
    except DatmoError:
        return {}  # a file that does not parse: status still says it changed
    keys = sorted(then.keys() | now.keys())
    return {k: [then.get(k), now.get(k)] for k in keys if then.get(k, ...) != now.get(k, ...)}


def status(ctx: ProjectContext) -> Status:
    from datmo.core.controller.checkout import unsaved_changes
    from datmo.core.tree.state import same_content, split_changes

    u = unsaved_changes(ctx)
    if not u.changes:
        return Status(ctx.info, u.current, u.changes, u.changes, False, False)
    code, files = split_changes(u.base, u.work, same_content(ctx.store))
    touched = set(code.added + code.removed + code.changed + files.added)
    touched |= set(files.removed + files.changed)
    config_changed, metrics_changed = "config.json" in touched, "stats.json" in touched
    then = u.current
    return Status(
        ctx.info,
        then,
        code,
        files,
        config_changed,
        metrics_changed,
        _changed_keys(then.config if then else {}, ctx.root / "config.json")
        if config_changed
        else {},
        _changed_keys(then.metrics if then else {}, ctx.root / "stats.json")
        if metrics_changed
        else {},
    )


def cleanup(ctx: ProjectContext) -> None:
    """Remove `.datmo` entirely: every snapshot, object and record."""
    with ctx.store.lock():
        import shutil

        shutil.rmtree(ctx.store.dir)
