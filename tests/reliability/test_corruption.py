"""A damaged store: truncated, emptied, garbled and wrongly typed records, stored files,
shadow-git objects and the run index. Every command that meets the damage names it in
one line (no traceback, non-zero exit), and `datmo fsck` finds it."""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from reliability import REPO, context, failure_problems, report, supervisors, wait_until

MiB = 1 << 20
DAMAGE = ("truncate", "empty", "garble")
TALLY: dict[str, int] = {"cases": 0, "commands": 0, "contract_broken": 0}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One project built once: snapshots S1 (with a 1 MiB stored file) and S2 (without it),
    a finished local run R (whose hidden after snapshot is now current), the built-in
    environment, and an index."""
    from conftest import run_datmo, write_tree

    root = tmp_path_factory.mktemp("corrupt") / "proj"
    root.mkdir()
    old_cwd, old_path = os.getcwd(), os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), old_path) if p)
    os.chdir(root)
    try:

        def ok(*args: str) -> str:
            r = run_datmo(*args)
            assert r.exit_code == 0, r.output
            return r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""

        ok("init", "--name", "corrupt")
        write_tree(root, {"a.py": "print(1)\n", "big.bin": os.urandom(MiB + 100)})
        s1 = ok("snapshot", "create", "-m", "one")
        (root / "big.bin").unlink()  # so that checking out S1 must restore it
        write_tree(root, {"a.py": "print(2)\n", "b.py": "x = 2\n"})
        s2 = ok("snapshot", "create", "-m", "two")
        ok("run", "--executor", "local", "echo hello")
        # its supervisor closes the index last: copies must not race that
        assert wait_until(lambda: not supervisors(root), 30)
        store = context(root).store
        run_id = store.list_ids("runs")[0]
        current = store.read_pointer("current.json")
        s1_doc = store.read_entity("snapshots", s1)
        env_id = s1_doc["environment_id"]
        manifest = json.loads(store.objects.read_bytes(s1_doc["files_id"]))
        big = manifest["files"]["big.bin"][0]
        blob = store.git.read_tree(s1_doc["code_id"])["a.py"][1]
        cur_tree = store.read_entity("snapshots", current)["code_id"]
        yield {
            "root": root,
            "s1": s1,
            "s2": s2,
            "run": run_id,
            "current": current,
            "env": env_id,
            "manifest": s1_doc["files_id"],
            "big": big,
            "blob": blob,
            "tree": cur_tree,
        }
    finally:
        os.chdir(old_cwd)
        if old_path is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old_path
    totals = " ".join(f"{k}={v}" for k, v in TALLY.items())
    print(f"\nRELIABILITY corruption: {totals}", flush=True)


@pytest.fixture
def damaged_copy(
    template: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    root = tmp_path / "proj"
    shutil.copytree(template["root"], root, symlinks=True)
    monkeypatch.chdir(root)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    return {**template, "root": root}


def git_object(root: Path, sha: str) -> Path:
    return root / ".datmo" / "git" / "objects" / sha[:2] / sha[2:]


def file_object(root: Path, digest: str) -> Path:
    return root / ".datmo" / "objects" / digest[:2] / digest[2:]


def damage(path: Path, how: str) -> None:
    os.chmod(path, 0o644)  # stored objects are read-only; root writes them anyway
    data = path.read_bytes()
    if how == "truncate":
        data = data[: len(data) // 2]
    elif how == "empty":
        data = b""
    else:  # garble: the middle third replaced by bytes that are neither JSON nor UTF-8
        rng = random.Random(len(data))
        third = max(1, len(data) // 3)
        noise = bytes(rng.choice(range(0x80, 0x100)) for _ in range(third))
        data = data[:third] + noise + data[2 * third :]
    path.write_bytes(data)


# target -> (the file to damage, the token its error must name, commands that meet it)
def targets(t: dict[str, Any]) -> dict[str, tuple[Path, str, list[tuple[str, ...]]]]:
    root, d = t["root"], t["root"] / ".datmo"
    s1, s2, run, cur = t["s1"], t["s2"], t["run"], t["current"]
    outside = str(root.parent / "exported")
    return {
        "snapshot record": (
            d / "snapshots" / f"{s1}.json",
            s1,
            [
                ("snapshot", "inspect", s1),
                ("snapshot", "checkout", s1),
                ("snapshot", "diff", s1, s2),
                ("snapshot", "ls"),
                ("snapshot", "delete", s1),
            ],
        ),
        "current snapshot record": (
            d / "snapshots" / f"{cur}.json",
            cur,
            [
                ("status",),
                ("snapshot", "create", "-m", "after damage"),
                ("snapshot", "ls", "--all"),
                ("run", "--executor", "local", "true"),
            ],
        ),
        "run record": (
            d / "runs" / f"{run}.json",
            run,
            # (`datmo ls` answers from the index, which still holds the last good copy)
            [("logs", run), ("delete", run), ("rerun", run), ("stop", run)],
        ),
        "environment record": (
            d / "environments" / f"{t['env']}.json",
            t["env"],
            [
                ("environment", "ls"),
                ("snapshot", "create", "-m", "after damage"),
                ("run", "--executor", "local", "true"),
            ],
        ),
        "project.json": (
            d / "project.json",
            "project.json",
            [("status",), ("snapshot", "create", "-m", "x"), ("environment", "ls")],
        ),
        "current.json": (
            d / "current.json",
            "current.json",
            [("status",), ("snapshot", "ls"), ("snapshot", "create", "-m", "after damage")],
        ),
        "stored file": (
            file_object(root, t["big"]),
            t["big"][:12],
            [("snapshot", "checkout", s1, "--to", outside), ("snapshot", "checkout", s1)],
        ),
        "file manifest": (
            file_object(root, t["manifest"]),
            t["manifest"][:12],
            [("snapshot", "diff", s1, s2), ("snapshot", "checkout", s1)],
        ),
        "git blob": (
            git_object(root, t["blob"]),
            t["blob"][:12],
            [("snapshot", "checkout", s1, "--to", outside), ("snapshot", "checkout", s1)],
        ),
        "git tree": (
            git_object(root, t["tree"]),
            t["tree"][:12],
            [("status",), ("snapshot", "checkout", s1), ("snapshot", "diff", s2, cur)],
        ),
    }


TARGETS = (
    "snapshot record",
    "current snapshot record",
    "run record",
    "environment record",
    "project.json",
    "current.json",
    "stored file",
    "file manifest",
    "git blob",
    "git tree",
)


def meet(cli: Callable[..., Any], commands: list[tuple[str, ...]], token: str) -> list[str]:
    broken = []
    for args in commands:
        r = cli(*args)
        TALLY["commands"] += 1
        problems = failure_problems(r.exit_code, r.stdout, r.stderr)
        if token not in r.stderr:
            problems.append(f"does not name {token}")
        if problems:
            TALLY["contract_broken"] += 1
            broken.append(f"datmo {' '.join(args)}: {'; '.join(problems)}: {r.output[-300:]!r}")
    return broken


@pytest.mark.parametrize("how", DAMAGE)
@pytest.mark.parametrize("target", TARGETS)
def test_damage_is_named_by_every_command_and_found_by_fsck(
    damaged_copy: dict[str, Any], cli: Callable[..., Any], target: str, how: str
) -> None:
    path, token, commands = targets(damaged_copy)[target]
    damage(path, how)
    TALLY["cases"] += 1
    broken = meet(cli, commands, token)
    r = cli("fsck")
    TALLY["commands"] += 1
    if "Traceback" in r.output or "unexpected error" in r.output or r.exit_code == 0:
        broken.append(f"fsck: exit {r.exit_code}: {r.output[-300:]!r}")
    elif token not in r.output:
        broken.append(f"fsck does not name {token}: {r.output[-300:]!r}")
    assert not broken, "\n".join(broken)


WRONG_TYPES: list[tuple[str, str, Any]] = [
    ("snapshots", "code_id", 12),
    ("snapshots", "files_id", None),
    ("snapshots", "config", "not a mapping"),
    ("snapshots", "created_at", None),
    ("runs", "status", 7),
    ("runs", "supervisor", "nobody"),
    ("runs", "options", []),
    ("environments", "files", ["Dockerfile"]),
]


@pytest.mark.parametrize(("kind", "key", "value"), WRONG_TYPES)
def test_record_with_a_wrongly_typed_field_is_named_and_found(
    damaged_copy: dict[str, Any], cli: Callable[..., Any], kind: str, key: str, value: Any
) -> None:
    """Valid JSON, wrong shape (a hand edit, another tool): still no traceback anywhere."""
    t = damaged_copy
    entity = {"snapshots": t["current"], "runs": t["run"], "environments": t["env"]}[kind]
    path = t["root"] / ".datmo" / kind / f"{entity}.json"
    doc = json.loads(path.read_text())
    doc[key] = value
    path.write_text(json.dumps(doc))
    TALLY["cases"] += 1
    commands = {
        "snapshots": [("status",), ("snapshot", "ls", "--all"), ("snapshot", "inspect", entity)],
        "runs": [("ls",), ("logs", entity), ("stop", entity), ("rerun", entity)],
        "environments": [("environment", "ls"), ("run", "--executor", "local", "true")],
    }[kind]
    broken = []
    for args in commands:
        r = cli(*args)
        TALLY["commands"] += 1
        if "Traceback" in r.output or "unexpected error" in r.output:
            TALLY["contract_broken"] += 1
            broken.append(f"datmo {' '.join(args)}: {r.output[-300:]!r}")
    r = cli("fsck")
    if r.exit_code == 0 or "unexpected error" in r.output or entity[:8] not in r.output:
        broken.append(f"fsck: exit {r.exit_code}: {r.output[-300:]!r}")
    assert not broken, "\n".join(broken)


def test_damaged_index_is_rebuilt_not_trusted(
    damaged_copy: dict[str, Any], cli: Callable[..., Any]
) -> None:
    """The index is derived: listing rebuilds it, whatever happened to the file."""
    root = damaged_copy["root"]
    index = root / ".datmo" / "index.sqlite"
    outcomes = []
    for how in DAMAGE:
        for suffix in ("-wal", "-shm"):
            Path(f"{index}{suffix}").unlink(missing_ok=True)
        assert cli("ls").exit_code == 0
        damage(index, how)
        found = cli("fsck")
        listed = cli("ls", "--format", "json")
        assert "Traceback" not in listed.output and "unexpected error" not in listed.output, (
            how,
            listed.output,
        )
        assert listed.exit_code == 0, (how, listed.output)
        assert [r["id"] for r in json.loads(listed.stdout)] == [damaged_copy["run"]]
        outcomes.append(f"{how}:{'found' if found.exit_code else 'rebuilt'}")
    report("damaged index", outcomes=",".join(outcomes))


def test_a_checkout_stopped_by_a_damaged_object_does_not_wedge_the_project(
    damaged_copy: dict[str, Any], cli: Callable[..., Any]
) -> None:
    """A stored file that fails its hash check half-way through a checkout must leave the
    project usable: other commands work and another snapshot can be checked out."""
    t = damaged_copy
    damage(file_object(t["root"], t["big"]), "garble")
    first = cli("snapshot", "checkout", t["s1"])
    assert first.exit_code != 0 and t["big"][:12] in first.stderr, first.output
    listed = cli("snapshot", "ls")
    assert listed.exit_code == 0, listed.output
    back = cli("snapshot", "checkout", t["s2"], "--force")
    assert back.exit_code == 0, back.output
