"""`datmo snapshot create/ls/inspect/diff/update/delete` through the CLI, as users call it."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from blake3 import blake3

MiB = 1 << 20
REPO = Path(__file__).resolve().parents[2]


# -- helpers --------------------------------------------------------------------------


def create(cli: Any, *args: str) -> str:
    r = cli("snapshot", "create", *args)
    assert r.exit_code == 0, r.output
    sid = r.stdout.strip()
    assert len(sid) >= 8 and all(c in "0123456789abcdef" for c in sid), r.stdout
    return sid


def record(root: Path, sid: str) -> dict[str, Any]:
    return json.loads((root / ".datmo" / "snapshots" / f"{sid}.json").read_text())


def records(root: Path) -> list[str]:
    return sorted(p.stem for p in (root / ".datmo" / "snapshots").glob("*.json"))


def inspect(cli: Any, sid: str) -> dict[str, Any]:
    r = cli("snapshot", "inspect", sid, "--format", "json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    return rows[0] if isinstance(rows, list) else rows


def ls_json(cli: Any, *args: str) -> list[dict[str, Any]]:
    r = cli("snapshot", "ls", "--format", "json", *args)
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert isinstance(rows, list)
    return rows


def objects(root: Path) -> list[Path]:
    """Every stored object (two-hex-character folders, as docs/storage.md lays them out)."""
    base = root / ".datmo" / "objects"
    return [f for d in base.iterdir() if len(d.name) == 2 and d.is_dir() for f in d.iterdir()]


def has_object(root: Path, data: bytes) -> bool:
    digest = blake3(data).hexdigest()
    return (root / ".datmo" / "objects" / digest[:2] / digest[2:]).is_file()


def code_paths(root: Path, sid: str) -> dict[str, str]:
    """path -> git mode of what the shadow repository holds as code for a snapshot."""
    out = subprocess.run(
        ["git", "--git-dir", str(root / ".datmo" / "git"), "ls-tree", "-r", REF + sid],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result = {}
    for line in out.splitlines():
        meta, _, path = line.partition("\t")
        result[path] = meta.split()[0]
    return result


REF = "refs/datmo/snapshots/"


def exported(cli: Any, sid: str, dest: Path) -> dict[str, Any]:
    """Everything a snapshot holds, as written by `checkout --to`: path -> bytes or link."""
    r = cli("snapshot", "checkout", sid, "--to", str(dest))
    assert r.exit_code == 0, r.output
    return tree_of(dest)


def tree_of(root: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for folder, dirs, files in os.walk(root):
        if ".datmo" in dirs and Path(folder) == root:
            dirs.remove(".datmo")
        for name in files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            full = os.path.join(folder, name)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            if os.path.islink(full):
                out[rel] = ("link", os.readlink(full))
            else:
                out[rel] = Path(full).read_bytes()
    return out


def store_bytes(root: Path) -> int:
    return sum(
        os.lstat(os.path.join(d, f)).st_size for d, _, fs in os.walk(root / ".datmo") for f in fs
    )


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


# -- create: ids, typed config and metrics ----------------------------------------------


def test_create_prints_the_id_of_a_new_record(project, cli, tree):
    tree(project, {"train.py": "print('hi')\n"})
    sid = create(cli, "-m", "first")
    assert records(project) == [sid]
    rec = record(project, sid)
    assert rec["id"] == sid
    assert rec["message"] == "first"
    assert (project / ".datmo" / "current.json").is_file()


def test_config_and_metrics_keep_their_types(project, cli, tree):
    tree(project, {"train.py": "x = 1\n"})
    sid = create(
        cli, "-m", "typed", "-l", "best",
        "-c", "lr=0.01", "-c", "name=resnet", "-c", "epochs:10", "-c", "aug=true",
        "-s", "acc=0.91", "-s", "loss:1e-3", "-s", "note=fine tuned",
    )  # fmt: skip
    snap = inspect(cli, sid)
    assert snap["label"] == "best"
    cfg, met = snap["config"], snap["metrics"]
    assert cfg == {"lr": 0.01, "name": "resnet", "epochs": 10, "aug": True}
    assert isinstance(cfg["lr"], float) and isinstance(cfg["epochs"], int)
    assert met == {"acc": 0.91, "loss": 0.001, "note": "fine tuned"}
    assert isinstance(met["acc"], float)


def test_config_and_metrics_from_json_and_yaml_files(project, cli, tree, tmp_path):
    outside = tmp_path / "params"
    tree(
        outside,
        {
            "cfg.yaml": "lr: 0.5\nlayers: [64, 32]\nname: mlp\n",
            "stats.json": json.dumps({"acc": 0.8, "epochs_run": 3}),
        },
    )
    tree(project, {"a.py": "a = 1\n"})
    sid = create(
        cli, "-m", "files",
        "--config-file", str(outside / "cfg.yaml"),
        "--stats-file", str(outside / "stats.json"),
        "-c", "lr=0.25",  # an option beats the file
    )  # fmt: skip
    snap = inspect(cli, sid)
    assert snap["config"] == {"lr": 0.25, "layers": [64, 32], "name": "mlp"}
    assert snap["metrics"] == {"acc": 0.8, "epochs_run": 3}


def test_config_json_and_stats_json_in_the_project_root_are_read(project, cli, tree):
    tree(
        project,
        {
            "config.json": json.dumps({"lr": 0.1, "seed": 0}),
            "stats.json": json.dumps({"acc": 0.75}),
            "train.py": "pass\n",
        },
    )
    snap = inspect(cli, create(cli, "-m", "defaults", "-s", "acc=0.9"))
    assert snap["config"] == {"lr": 0.1, "seed": 0}
    assert snap["metrics"] == {"acc": 0.9}


def _strict_json(text: str) -> Any:
    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_a_nan_metric_keeps_records_and_ls_output_valid_json(project, cli, tree):
    # json.dump({"loss": float("nan")}) writes NaN, which no strict JSON reader accepts.
    tree(project, {"train.py": "pass\n", "stats.json": '{"loss": NaN, "acc": 0.5}'})
    r = cli("snapshot", "create", "-m", "diverged", "-s", "best=Infinity")
    assert r.exit_code == 0, r.output
    sid = r.stdout.strip()
    rec = _strict_json((project / ".datmo" / "snapshots" / f"{sid}.json").read_text())
    assert {"loss", "acc", "best"} <= rec["metrics"].keys()
    assert rec["metrics"]["acc"] == 0.5
    rows = _strict_json(cli("snapshot", "ls", "--format", "json").stdout)
    assert rows[0]["id"] == sid


def test_same_state_and_words_give_back_the_current_snapshot(project, cli, tree):
    tree(project, {"a.py": "a = 1\n", "w.bin": os.urandom(2 * MiB)})
    first = create(cli, "-m", "same", "-l", "x", "-c", "lr=0.1", "-s", "acc=0.5")
    again = cli("snapshot", "create", "-m", "same", "-l", "x", "-c", "lr=0.1", "-s", "acc=0.5")
    assert again.exit_code == 0, again.output
    assert again.stdout.strip() == first
    assert records(project) == [first]
    # different words make a new snapshot of the same files
    other = create(cli, "-m", "same", "-l", "x", "-c", "lr=0.2", "-s", "acc=0.5")
    assert other != first
    assert sorted(records(project)) == sorted([first, other])


# -- create: where files go -----------------------------------------------------------------


def test_large_and_gitignored_files_go_to_the_object_store(project, cli, tree):
    big = os.urandom(MiB + 1)
    log = b"epoch 1 loss 0.3\n"
    tree(
        project,
        {".gitignore": "*.log\n", "train.py": "print(1)\n", "model.bin": big, "train.log": log},
    )
    sid = create(cli, "-m", "store")
    assert has_object(project, big)
    assert has_object(project, log)
    code = code_paths(project, sid)
    assert "train.py" in code and ".gitignore" in code
    assert "model.bin" not in code and "train.log" not in code
    assert exported(cli, sid, project.parent / "out") == {
        ".gitignore": b"*.log\n",
        "train.py": b"print(1)\n",
        "model.bin": big,
        "train.log": log,
    }


def test_a_large_file_is_stored_once_however_many_snapshots_hold_it(project, cli, tree):
    big = os.urandom(2 * MiB)
    tree(project, {"a.py": "v = 1\n", "model.bin": big})
    create(cli, "-m", "one")
    tree(project, {"a.py": "v = 2\n"})
    create(cli, "-m", "two")
    tree(project, {"copy/model.bin": big})  # same content at another path
    create(cli, "-m", "three")
    assert len(records(project)) == 3
    assert sum(1 for f in objects(project) if f.stat().st_size == len(big)) == 1


def test_re_snapshotting_unchanged_large_files_adds_under_a_megabyte(project, cli, tree):
    tree(project, {"a.py": "v = 1\n", "data/a.bin": os.urandom(4 * MiB)})
    tree(project, {"data/b.bin": os.urandom(3 * MiB)})
    create(cli, "-m", "one")
    before = store_bytes(project)
    tree(project, {"a.py": "v = 2\n"})
    create(cli, "-m", "two")
    tree(project, {"notes.md": "more\n"})
    create(cli, "-m", "three")
    assert store_bytes(project) - before < 1_000_000


def test_defaults_leave_out_vcs_venvs_caches_and_secrets(project, cli, tree):
    tree(
        project,
        {
            "train.py": "import os\n",
            ".git": {"HEAD": "ref: refs/heads/main\n"},
            ".venv": {"pyvenv.cfg": "home = /usr\n", "lib/site.py": "x = 1\n"},
            "pkg": {"mod.py": "y = 2\n", "__pycache__/mod.cpython-311.pyc": b"\0\1"},
            "node_modules": {"left-pad/index.js": "module.exports = 1\n"},
            ".env": "SECRET=1\n",
            "server.pem": "-----BEGIN-----\n",
            "id_rsa": "key\n",
        },
    )
    r = cli("snapshot", "create", "-m", "defaults")
    assert r.exit_code == 0, r.output
    # Only the surprising ones are said; expected ones (.git, caches, venvs) need no note.
    (note,) = r.stderr.splitlines()
    assert note.startswith("skipped: ")
    for shown in (".env", "server.pem", "id_rsa"):
        assert f"{shown} (may hold secrets)" in note, (shown, note)
    for quiet in (".git", ".venv", "__pycache__", "node_modules"):
        assert quiet not in note, (quiet, note)
    record = json.loads(cli("snapshot", "inspect", r.stdout.strip(), "--format", "json").stdout)
    skipped = {p for p, _ in (record[0] if isinstance(record, list) else record)["skipped"]}
    assert {".git", ".venv", "node_modules", ".env"} <= skipped  # the record keeps them all
    held = exported(cli, r.stdout.strip(), project.parent / "out")
    assert sorted(held) == ["pkg/mod.py", "train.py"]


def test_datmoignore_adds_patterns_and_can_bring_a_default_back(project, cli, tree):
    tree(
        project,
        {
            ".datmoignore": "data/\n*.tmp\n!.env\n",
            "train.py": "pass\n",
            "data/raw.csv": "1,2\n",
            "scratch.tmp": "x",
            ".env": "WANTED=1\n",
        },
    )
    r = cli("snapshot", "create", "-m", "ignore")
    assert r.exit_code == 0, r.output
    assert r.stderr == ""  # your own rules leave things out without a word
    held = exported(cli, r.stdout.strip(), project.parent / "out")
    assert sorted(held) == [".datmoignore", ".env", "train.py"]
    assert held[".env"] == b"WANTED=1\n"


def test_a_rename_is_a_change(project, cli, tree):
    tree(project, {"a.py": "same = 1\n"})
    first = create(cli, "-m", "before")
    (project / "a.py").rename(project / "b.py")
    status = cli("status", "--format", "json")
    assert status.exit_code == 0, status.output
    assert json.loads(status.stdout)["clean"] is False
    second = create(cli, "-m", "before")  # same message: only the rename differs
    assert second != first
    diff = json.loads(cli("snapshot", "diff", first, second, "--format", "json").stdout)
    assert diff["code"]["added"] == ["b.py"] and diff["code"]["removed"] == ["a.py"]


def test_a_nested_git_repository_is_captured_by_content(project, cli, tree):
    tree(project, {"main.py": "pass\n", "vendor/lib/util.py": "def f(): pass\n"})
    git(project / "vendor" / "lib", "init", "-q")
    git(project / "vendor" / "lib", "add", "util.py")
    git(project / "vendor" / "lib", "commit", "-qm", "x")
    sid = create(cli, "-m", "nested")
    held = exported(cli, sid, project.parent / "out")
    assert sorted(held) == ["main.py", "vendor/lib/util.py"]


def test_crlf_and_lfs_attributes_come_back_byte_for_byte(project, cli, tree):
    crlf = b"line one\r\nline two\r\n"
    pointer = b"version https://git-lfs.github.com/spec/v1\r\noid sha256:abc\r\nsize 3\r\n"
    attrs = b"* text=auto eol=lf\n*.bin filter=lfs diff=lfs merge=lfs -text\n*.txt ident\n"
    git(project, "init", "-q")
    tree(project, {".gitattributes": attrs, "notes.txt": crlf, "weights.bin": pointer})
    first = create(cli, "-m", "bytes")
    for name in ("notes.txt", "weights.bin", ".gitattributes"):
        (project / name).unlink()
    create(cli, "-m", "gone")
    r = cli("snapshot", "checkout", first)
    assert r.exit_code == 0, r.output
    assert (project / "notes.txt").read_bytes() == crlf
    assert (project / "weights.bin").read_bytes() == pointer
    assert (project / ".gitattributes").read_bytes() == attrs


def test_a_symlink_out_of_the_project_is_stored_as_a_link(project, cli, tree, tmp_path):
    secret = tmp_path / "outside" / "secret.txt"
    tree(secret.parent, {"secret.txt": "not for the snapshot " * 10})
    tree(project, {"a.py": "pass\n", ".gitignore": "logs/\n", "logs/keep": "k"})
    os.symlink(secret, project / "link.txt")
    os.symlink(secret, project / "logs" / "latest")  # gitignored: a file entry, still a link
    first = create(cli, "-m", "link")
    assert code_paths(project, first).get("link.txt") == "120000"
    assert not has_object(project, secret.read_bytes())
    held = exported(cli, first, tmp_path / "out")
    assert held["link.txt"] == ("link", str(secret))
    assert held["logs/latest"] == ("link", str(secret))
    (project / "link.txt").unlink()
    (project / "logs" / "latest").unlink()
    create(cli, "-m", "no link")
    r = cli("snapshot", "checkout", first)
    assert r.exit_code == 0, r.output
    for link in ("link.txt", "logs/latest"):
        assert os.path.islink(project / link)
        assert os.readlink(project / link) == str(secret)
    assert secret.read_text() == "not for the snapshot " * 10


def test_paths_stores_a_file_from_outside_under_dest(project, cli, tree, tmp_path):
    tree(tmp_path / "elsewhere", {"ds.csv": "a,b\n1,2\n", "dir/x.txt": "x"})
    tree(project, {"a.py": "pass\n"})
    sid = create(
        cli, "-m", "extra",
        "--paths", f"{tmp_path / 'elsewhere' / 'ds.csv'}>data/ds.csv",
        "--paths", str(tmp_path / "elsewhere" / "dir"),
    )  # fmt: skip
    held = exported(cli, sid, tmp_path / "out")
    assert held["data/ds.csv"] == b"a,b\n1,2\n"
    assert held["dir/x.txt"] == b"x"


def test_a_project_with_no_files_can_be_snapshotted(project, cli):
    sid = create(cli, "-m", "empty")
    assert records(project) == [sid]
    assert create(cli, "-m", "empty") == sid


# -- ls ---------------------------------------------------------------------------------------


def test_ls_with_no_snapshots(project, cli):
    assert ls_json(cli) == []
    r = cli("snapshot", "ls")
    assert r.exit_code == 0 and r.stdout.strip() != ""


@pytest.fixture
def three(project, cli, tree) -> list[str]:
    """Three snapshots, oldest first; the last is current."""
    ids = []
    for i in range(3):
        tree(project, {"a.py": f"v = {i}\n"})
        ids.append(create(cli, "-m", f"msg {i}", "-c", f"lr={i / 10}", "-s", f"acc={i}"))
    return ids


def test_ls_json_lists_newest_first_with_the_documented_fields(cli, three):
    rows = ls_json(cli)
    assert [r["id"] for r in rows] == three[::-1]
    fields = {"id", "created_at", "message", "label", "config", "metrics"}
    fields |= {"code_id", "environment_id", "files_id"}
    for row in rows:
        assert fields <= row.keys()
    assert rows[0]["message"] == "msg 2" and rows[0]["config"] == {"lr": 0.2}
    assert rows[-1]["metrics"] == {"acc": 0}
    assert [r["created_at"] for r in rows] == sorted((r["created_at"] for r in rows), reverse=True)


def test_ls_table_marks_the_current_snapshot(cli, three):
    r = cli("snapshot", "ls")
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.stdout.splitlines() if any(s[:8] in ln for s in three)]
    assert len(lines) == 3
    assert three[2][:8] in lines[0] and "*" in lines[0]
    assert all("*" not in ln for ln in lines[1:])
    assert [three.index(next(s for s in three if s[:8] in ln)) for ln in lines] == [2, 1, 0]


def test_ls_csv_and_details(cli, three):
    r = cli("snapshot", "ls", "--format", "csv")
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert [row["id"] for row in rows] == three[::-1]
    assert rows[0]["message"] == "msg 2"
    d = cli("snapshot", "ls", "--details")
    assert d.exit_code == 0, d.output
    snap = ls_json(cli)[0]
    assert snap["code_id"][:8] in d.stdout and snap["files_id"][:8] in d.stdout


def test_ls_all_shows_hidden_snapshots(project, cli, three):
    (project / "a.py").write_text("dirty = True\n")
    r = cli("snapshot", "checkout", three[0], "--force")
    assert r.exit_code == 0, r.output
    visible = {row["id"] for row in ls_json(cli)}
    everything = ls_json(cli, "--all")
    assert visible == set(three)
    hidden = [row for row in everything if row["id"] not in visible]
    assert len(hidden) == 1


# -- inspect, diff, update, delete ------------------------------------------------------------


def test_inspect_by_prefix(cli, three):
    r = cli("snapshot", "inspect", three[1][:4])
    assert r.exit_code == 0, r.output
    assert three[1] in r.stdout and "msg 1" in r.stdout
    assert inspect(cli, three[1][:6])["config"] == {"lr": 0.1}


def test_diff_shows_config_metrics_and_code_changes(project, cli, tree):
    tree(project, {"a.py": "a = 1\n", "c.py": "c\n", "w.bin": os.urandom(MiB + 5)})
    first = create(cli, "-m", "one", "-c", "lr=0.01", "-c", "opt=sgd", "-s", "acc=0.8")
    (project / "c.py").unlink()
    tree(project, {"a.py": "a = 2\n", "b.py": "b\n", "w.bin": os.urandom(MiB + 5)})
    second = create(cli, "-m", "two", "-c", "lr=0.02", "-c", "opt=sgd", "-s", "acc=0.9")
    r = cli("snapshot", "diff", first[:6], second[:6])
    assert r.exit_code == 0, r.output
    assert "0.01 -> 0.02" in r.stdout and "0.8 -> 0.9" in r.stdout
    assert "opt" not in r.stdout  # unchanged values are not listed
    for word in ("added", "removed", "changed"):
        assert word in r.stdout
    j = cli("snapshot", "diff", first, second, "--format", "json")
    assert j.exit_code == 0, j.output
    d = json.loads(j.stdout)
    assert d["config"] == {"lr": [0.01, 0.02]}
    assert d["metrics"] == {"acc": [0.8, 0.9]}
    assert d["code"] == {"added": ["b.py"], "removed": ["c.py"], "changed": ["a.py"]}
    assert d["files"]["changed"] == ["w.bin"]


def test_a_file_crossing_the_size_threshold_is_one_changed_file(project, cli, tree):
    tree(project, {"data.csv": "1,2\n"})  # small: code
    first = create(cli, "-m", "small")
    tree(project, {"data.csv": "1,2\n" * (MiB // 2)})  # over 1 MiB: a stored file now
    second = create(cli, "-m", "big")
    d = json.loads(cli("snapshot", "diff", first, second, "--format", "json").stdout)
    assert d["code"] == {"added": [], "removed": [], "changed": []}
    assert d["files"] == {"added": [], "removed": [], "changed": ["data.csv"]}
    back = json.loads(cli("snapshot", "diff", second, first, "--format", "json").stdout)
    assert back["code"]["changed"] == ["data.csv"] and back["files"]["removed"] == []


def test_update_changes_words_and_merges_config_and_metrics(cli, three):
    r = cli(
        "snapshot", "update", three[0][:5], "-m", "renamed", "-l", "best",
        "-c", "extra=yes", "-s", "test_acc=0.7", "-s", "acc=5",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    snap = inspect(cli, three[0])
    assert snap["message"] == "renamed" and snap["label"] == "best"
    assert snap["config"] == {"lr": 0.0, "extra": "yes"}
    assert snap["metrics"] == {"acc": 5, "test_acc": 0.7}
    assert inspect(cli, three[1])["message"] == "msg 1"  # others untouched
    assert cli("snapshot", "update", three[0], "-l", "").exit_code == 0
    assert inspect(cli, three[0])["label"] is None


def test_delete_refuses_the_current_snapshot_without_force(project, cli, three):
    r = cli("snapshot", "delete", three[2])
    assert r.exit_code != 0
    assert three[2] in records(project)
    ok = cli("snapshot", "delete", three[0][:6])
    assert ok.exit_code == 0, ok.output
    assert three[0] not in records(project)
    assert [row["id"] for row in ls_json(cli)] == [three[2], three[1]]
    forced = cli("snapshot", "delete", three[2], "--force")
    assert forced.exit_code == 0, forced.output
    assert records(project) == [three[1]]
    assert [row["id"] for row in ls_json(cli)] == [three[1]]


# -- ids ----------------------------------------------------------------------------------------


def test_an_ambiguous_prefix_lists_the_candidates(project, cli, tree, monkeypatch):
    from datmo.core.controller import snapshot as controller

    real = controller.new_id
    fixed = iter(["abcd1" + "1" * 35, "abcd2" + "2" * 35])

    def new_id() -> str:
        return next(fixed, None) or real()

    monkeypatch.setattr(controller, "new_id", new_id)
    tree(project, {"a.py": "1\n"})
    one = create(cli, "-m", "one")
    tree(project, {"a.py": "2\n"})
    two = create(cli, "-m", "two")
    assert (one[:4], two[:4]) == ("abcd", "abcd")
    r = cli("snapshot", "inspect", "abcd")
    assert r.exit_code != 0
    assert one in r.stderr and two in r.stderr
    assert "Traceback" not in r.output
    assert inspect(cli, "abcd2")["id"] == two


def test_unknown_and_too_short_ids_are_clear_errors(cli, three):
    for bad in ("ffff0000", three[0][:3]):
        r = cli("snapshot", "inspect", bad)
        assert r.exit_code != 0
        assert bad in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1


# -- a real process, interrupted ---------------------------------------------------------------


def _subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def test_ctrl_c_during_create_leaves_no_half_made_record(project, cli, tree):
    tree(project, {f"src/m{i:04d}.py": f"x = {i}\n" * 20 for i in range(1500)})
    for i in range(6):
        tree(project, {f"data/part{i}.bin": os.urandom(6 * MiB)})
    cmd = [sys.executable, "-m", "datmo", "snapshot", "create", "-m", "interrupted"]
    outcomes = []
    for delay in (0.3, 0.7, 1.1):
        proc = subprocess.Popen(
            cmd, cwd=project, env=_subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
        outcomes.append(proc.returncode)
        for path in (project / ".datmo" / "snapshots").glob("*.json"):
            doc = json.loads(path.read_text())  # never half a record
            assert doc["id"] == path.stem
            assert (project / ".datmo" / "git" / REF / doc["id"]).is_file()
        cur = project / ".datmo" / "current.json"
        if cur.exists():
            assert json.loads(cur.read_text())["id"] in records(project)
        # a touched file makes the next try a real new snapshot, not a no-op
        tree(project, {"src/m0000.py": f"x = {delay}\n"})
    assert any(code != 0 for code in outcomes), outcomes  # at least one was really interrupted
    after = cli("snapshot", "ls", "--format", "json")
    assert after.exit_code == 0, after.output
