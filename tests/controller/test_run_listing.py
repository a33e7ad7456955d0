"""`datmo ls`: columns, JSON fields, --sort, --filter, --limit, and the SQLite index
that is derived from the run records (rebuilt when missing, stale or damaged)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
REQUIRED = {
    "id",
    "command",
    "status",
    "exit_code",
    "environment_id",
    "image_id",
    "config",
    "metrics",
    "started_at",
    "ended_at",
    "duration_s",
    "before_snapshot_id",
    "after_snapshot_id",
}
# name -> (config, output of the task); made oldest first.
RUNS = {
    "A": (["lr=0.1", "layers=2"], "echo 'acc: 0.80'; echo 'loss: 1.5'"),
    "B": (["lr=0.01", "layers=4"], "echo 'acc: 0.95'; echo 'loss: 0.3'"),
    "C": (["lr=0.01", "layers=3"], "echo 'acc: 0.90'; echo 'loss: 2.5'; exit 3"),
    "D": (["lr=0.001", "acc=0.99"], "true"),  # `acc` only in config; no metrics at all
}


def _datmo(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "datmo", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        HOME=str(home),
        GIT_CONFIG_GLOBAL="/dev/null",
        GIT_CONFIG_NOSYSTEM="1",
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
    )
    return env


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """One project with four runs, shared by the read-only tests below (real processes)."""
    base = tmp_path_factory.mktemp("listing")
    root, home = base / "proj", base / "home"
    root.mkdir()
    home.mkdir()
    env = _env(home)
    assert _datmo("init", "--name", "listing", cwd=root, env=env).returncode == 0
    ids = {}
    for name, (config, command) in RUNS.items():
        args = [a for c in config for a in ("-c", c)]
        done = _datmo("run", "--executor", "local", *args, command, cwd=root, env=env)
        assert done.returncode == (3 if name == "C" else 0), done.stderr
    listing = json.loads(_datmo("ls", "--format", "json", cwd=root, env=env).stdout)
    for doc, name in zip(listing, reversed(RUNS), strict=True):
        ids[name] = doc["id"]
    return root, ids


@pytest.fixture
def listed(made: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    root, ids = made
    monkeypatch.chdir(root)
    return ids


def names(cli: Callable[..., Any], ids: dict[str, str], *args: str) -> list[str]:
    result = cli("ls", "--format", "json", *args)
    assert result.exit_code == 0, result.output
    by_id = {v: k for k, v in ids.items()}
    return [by_id[doc["id"]] for doc in json.loads(result.stdout)]


def test_runs_as_recorded(listed: dict[str, str], cli: Callable[..., Any]) -> None:
    docs = {d["id"]: d for d in json.loads(cli("ls", "--format", "json").stdout)}
    a, c, d = docs[listed["A"]], docs[listed["C"]], docs[listed["D"]]
    assert a["config"] == {"lr": 0.1, "layers": 2}
    assert a["metrics"] == {"acc": 0.8, "loss": 1.5}
    assert (c["status"], c["exit_code"]) == ("FAILED", 3)
    assert d["metrics"] == {}


def test_newest_first(listed: dict[str, str], cli: Callable[..., Any]) -> None:
    assert names(cli, listed) == ["D", "C", "B", "A"]


def test_table_columns(listed: dict[str, str], cli: Callable[..., Any]) -> None:
    # A column per config and metric key; `acc` is both (D's config), so both are named.
    result = cli("ls")
    assert result.exit_code == 0, result.output
    header, _rule, *rows = result.stdout.strip().splitlines()
    want = ["id", "status", "command", "config.acc", "layers", "lr", "metrics.acc", "loss"]
    assert header.split() == [*want, "started", "duration"]
    assert len(rows) == 4
    assert rows[0].startswith(listed["D"][:8])
    assert "FAILED (3)" in rows[1]
    assert rows[2].split()[:3] == [listed["B"][:8], "SUCCESS", "echo"]
    assert " 0.95 " in rows[2] and " 0.01 " in rows[2]


def test_json_fields(listed: dict[str, str], cli: Callable[..., Any]) -> None:
    docs = json.loads(cli("ls", "--format", "json").stdout)
    for doc in docs:
        assert doc.keys() >= REQUIRED, REQUIRED - doc.keys()
        assert isinstance(doc["config"], dict)
        assert isinstance(doc["metrics"], dict)
        assert "env" not in doc or not any("TOKEN" in k for k in doc["env"])


def test_csv(listed: dict[str, str], cli: Callable[..., Any]) -> None:
    result = cli("ls", "--format", "csv")
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("id,")
    assert len(lines) == 5


@pytest.mark.parametrize(
    ("sort", "order"),
    [
        ("metrics.acc", ["B", "C", "A", "D"]),  # runs without the value come last
        ("metrics.acc:asc", ["A", "C", "B", "D"]),
        ("loss:asc", ["B", "A", "C", "D"]),
        ("loss", ["C", "A", "B", "D"]),
        ("config.layers", ["B", "C", "A", "D"]),
    ],
)
def test_sort(listed: dict[str, str], cli: Callable[..., Any], sort: str, order: list[str]) -> None:
    assert names(cli, listed, "--sort", sort) == order


def test_a_bare_key_that_is_both_config_and_metric_is_refused(
    listed: dict[str, str], cli: Callable[..., Any]
) -> None:
    for option in ("--sort", "--filter"):
        result = cli("ls", option, "acc" if option == "--sort" else "acc>0.85")
        assert result.exit_code == 2
        assert result.stderr.strip() == (
            "datmo: error: 'acc' is both a config key and a metric; write config.acc or metrics.acc"
        )


def test_sort_with_ties(listed: dict[str, str], cli: Callable[..., Any]) -> None:
    by_lr = names(cli, listed, "--sort", "lr:asc")  # B and C tie on lr
    assert by_lr[0] == "D" and by_lr[3] == "A" and set(by_lr[1:3]) == {"B", "C"}
    by_code = names(cli, listed, "--sort", "exit_code")
    assert by_code[0] == "C" and set(by_code[1:]) == {"A", "B", "D"}


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("metrics.acc>0.85", {"B", "C"}),
        ("config.acc>0.85", {"D"}),
        ("lr=0.01", {"B", "C"}),
        ("lr==0.01", {"B", "C"}),
        ("lr!=0.01", {"A", "D"}),
        ("loss<1.5", {"B"}),
        ("loss<=1.5", {"A", "B"}),
        ("loss>=2.5", {"C"}),
        ("loss > 2", {"C"}),
        ("metrics.acc>0.85 and lr=0.01", {"B", "C"}),
        ("lr=0.01 and metrics.acc>0.92 or lr=0.1", {"A", "B"}),
        ("lr=0.1 OR lr=0.001", {"A", "D"}),
        ("status=FAILED", {"C"}),
        ("status=FAILED or loss<1", {"B", "C"}),
        ("status!=FAILED and config.layers>=3", {"B"}),
        ("exit_code=3", {"C"}),
        ("exit_code=0", {"A", "B", "D"}),
        ("config.layers>2 and status=SUCCESS", {"B"}),
        ("metrics.nosuch>1", set()),
    ],
)
def test_filter(
    listed: dict[str, str], cli: Callable[..., Any], expr: str, expected: set[str]
) -> None:
    assert set(names(cli, listed, "--filter", expr)) == expected


def test_limit(listed: dict[str, str], cli: Callable[..., Any]) -> None:
    assert names(cli, listed, "--limit", "2") == ["D", "C"]
    assert names(cli, listed, "--sort", "metrics.acc", "--limit", "1") == ["B"]
    assert names(cli, listed, "--filter", "lr=0.01", "--sort", "loss:asc", "--limit", "1") == ["B"]
    assert names(cli, listed, "--limit", "10") == ["D", "C", "B", "A"]


@pytest.mark.parametrize(
    "args",
    [
        ["--filter", "acc ~ 0.5"],
        ["--filter", "acc"],
        ["--filter", "and"],
        ["--filter", "acc>0.5 and"],
        ["--filter", "acc>[1,2]"],
        ["--sort", "acc:sideways"],
        ["--sort", ":asc"],
        ["--limit", "0"],
    ],
)
def test_bad_listing_options(
    listed: dict[str, str], cli: Callable[..., Any], args: list[str]
) -> None:
    result = cli("ls", *args)
    assert result.exit_code != 0
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.output
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("expr", "says"),
    [
        ("loss>>0.9", "'>>' is not an operator; did you mean '>'?"),
        ("loss=>0.9", "'=>' is not an operator; did you mean '>='?"),
        ("loss>1 && lr>2", "join conditions with 'and' and 'or', not && and ||"),
        ("lr=0.01, layers=5", "join conditions with 'and' or 'or', not commas"),
        ("loss >", "has no value after '>'"),
        ("loss>abc", "'>' compares numbers, and 'abc' is not one"),
        ("tag>x", "tags take = or != and a name"),
    ],
)
def test_garbage_filters_are_refused_with_what_is_wrong(
    listed: dict[str, str], cli: Callable[..., Any], expr: str, says: str
) -> None:
    result = cli("ls", "--filter", expr)
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and says in result.stderr, result.stderr
    assert result.stdout == ""


def test_an_unknown_key_is_warned_about_naming_the_known_ones(
    listed: dict[str, str], cli: Callable[..., Any]
) -> None:
    result = cli("ls", "--filter", "los<1", "--format", "json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == []
    assert "warning: no run has 'los'" in result.stderr
    for key in ("layers", "lr", "loss"):
        assert key in result.stderr
    quiet = cli("ls", "--filter", "loss<1", "--format", "json")
    assert quiet.stderr == ""  # a known key: no warning


def test_the_fields_ls_shows_can_be_filtered_and_sorted(
    listed: dict[str, str], cli: Callable[..., Any]
) -> None:
    assert set(names(cli, listed, "--filter", "duration_s>=0")) == {"A", "B", "C", "D"}
    assert set(names(cli, listed, "--filter", "message=null")) == {"A", "B", "C", "D"}
    assert names(cli, listed, "--sort", "created_at:asc") == ["A", "B", "C", "D"]
    assert len(names(cli, listed, "--sort", "duration_s")) == 4
    assert set(names(cli, listed, "--filter", "created_at>2000-01-01")) == {"A", "B", "C", "D"}


# -- the index ---------------------------------------------------------------------------------


@pytest.fixture
def indexed(
    made: tuple[Path, dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A private copy of the four-run project, for tests that damage or edit its store."""
    root = tmp_path / "copy"
    shutil.copytree(made[0], root, symlinks=True)
    monkeypatch.chdir(root)
    return root


def _listing(cli: Callable[..., Any]) -> list[dict[str, Any]]:
    result = cli("ls", "--format", "json", "--sort", "metrics.acc")
    assert result.exit_code == 0, result.output
    docs: list[dict[str, Any]] = json.loads(result.stdout)
    return docs


def _drop_index(root: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{root}/.datmo/index.sqlite{suffix}").unlink(missing_ok=True)


def test_deleted_index_is_rebuilt(indexed: Path, cli: Callable[..., Any]) -> None:
    before = _listing(cli)
    _drop_index(indexed)
    assert _listing(cli) == before
    assert (indexed / ".datmo" / "index.sqlite").is_file()


def test_garbage_index_is_rebuilt(indexed: Path, cli: Callable[..., Any]) -> None:
    before = _listing(cli)
    _drop_index(indexed)
    (indexed / ".datmo" / "index.sqlite").write_bytes(b"this is not a database\n" * 200)
    assert _listing(cli) == before
    assert cli("ls", "--filter", "status=FAILED").exit_code == 0


def test_truncated_index_is_rebuilt(indexed: Path, cli: Callable[..., Any]) -> None:
    before = _listing(cli)
    path = indexed / ".datmo" / "index.sqlite"
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    data = path.read_bytes()
    path.write_bytes(data[:100] + b"\0" * (len(data) - 100))  # header kept, pages zeroed
    assert _listing(cli) == before


def test_record_copied_in_by_hand_appears(indexed: Path, cli: Callable[..., Any]) -> None:
    before = _listing(cli)
    source = indexed / ".datmo" / "runs" / f"{before[0]['id']}.json"
    doc = json.loads(source.read_text())
    doc["id"] = secrets.token_hex(20)
    doc["metrics"] = {**doc["metrics"], "acc": 0.999}
    (source.parent / f"{doc['id']}.json").write_text(json.dumps(doc))
    after = _listing(cli)
    assert len(after) == len(before) + 1
    assert after[0]["id"] == doc["id"]
    assert [d["id"] for d in cli_filter(cli, "metrics.acc>0.99")] == [doc["id"]]


def test_record_removed_by_hand_disappears(indexed: Path, cli: Callable[..., Any]) -> None:
    before = _listing(cli)
    (indexed / ".datmo" / "runs" / f"{before[-1]['id']}.json").unlink()
    after = _listing(cli)
    assert [d["id"] for d in after] == [d["id"] for d in before[:-1]]


def cli_filter(cli: Callable[..., Any], expr: str) -> list[dict[str, Any]]:
    result = cli("ls", "--format", "json", "--filter", expr)
    assert result.exit_code == 0, result.output
    docs: list[dict[str, Any]] = json.loads(result.stdout)
    return docs
