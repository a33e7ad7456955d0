"""Bundle files: a round trip through clone and rerun --verify; importing twice changes
nothing; a damaged or hostile bundle is refused whole, and nothing is written outside."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from remote.test_folder import fsck_clean, ls


def store_listing(root: Path) -> list[str]:
    """Every file in .datmo but the derived and scratch ones."""
    skip = {"index.sqlite", "index.sqlite-wal", "index.sqlite-shm", "lock", "cache", "tmp"}
    out = []
    for p in sorted((root / ".datmo").rglob("*")):  # files: an empty objects/xx/ holds nothing
        if p.is_file() and not set(p.relative_to(root / ".datmo").parts) & skip:
            out.append(str(p.relative_to(root)))
    return out


def test_a_bundle_round_trip_reruns_and_verifies(cli, project, finished_run, tmp_path, monkeypatch):
    rid = finished_run()
    made = cli("bundle", "create", str(tmp_path / "results.datmo"), rid[:8])
    assert made.exit_code == 0, made.output
    monkeypatch.chdir(tmp_path)
    cloned = cli("clone", str(tmp_path / "results.datmo"), "fresh")
    assert cloned.exit_code == 0, cloned.output
    monkeypatch.chdir(tmp_path / "fresh")
    assert json.loads(cli("remote", "ls", "--format", "json").stdout) == []  # no remote
    assert ls(cli)[rid]["origin"] == "bundle results.datmo"
    fsck_clean(tmp_path / "fresh")
    verified = cli("rerun", rid[:8], "--verify")
    assert verified.exit_code == 0, verified.output


def test_importing_twice_changes_nothing(cli, project, finished_run, tmp_path, monkeypatch):
    finished_run()
    bundle = tmp_path / "all.datmo"
    assert cli("bundle", "create", str(bundle), "--all").exit_code == 0
    monkeypatch.chdir(tmp_path)
    assert cli("clone", str(bundle), "b").exit_code == 0
    monkeypatch.chdir(tmp_path / "b")
    before = store_listing(tmp_path / "b")
    again = cli("bundle", "import", str(bundle))
    assert again.exit_code == 0 and "nothing new" in again.stdout
    assert store_listing(tmp_path / "b") == before
    # into the project it came from: nothing new either
    monkeypatch.chdir(project)
    assert "nothing new" in cli("bundle", "import", str(bundle)).stdout


def _rewrite(src: Path, dest: Path, change) -> None:
    """Copy a bundle member by member through change(info, data) -> [(info, data)]."""
    with tarfile.open(src) as tin, tarfile.open(dest, "w") as tout:
        for info in tin.getmembers():
            data = tin.extractfile(info).read() if info.isreg() else b""
            for new_info, new_data in change(info, data):
                new_info.size = len(new_data)
                tout.addfile(new_info, io.BytesIO(new_data) if new_info.isreg() else None)


def _bundle_and_fresh(cli, finished_run, tmp_path, monkeypatch) -> Path:
    finished_run()
    assert cli("bundle", "create", str(tmp_path / "good.datmo")).exit_code == 0
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    monkeypatch.chdir(fresh)
    # the same project, empty: an import would add everything
    doc = json.loads((tmp_path / "proj/.datmo/project.json").read_text())
    cli("init", "--name", "test")
    mine = json.loads((fresh / ".datmo/project.json").read_text())
    mine["id"] = doc["id"]
    (fresh / ".datmo/project.json").write_text(json.dumps(mine))
    (fresh / ".datmo/project.backup.json").write_text(json.dumps(mine))
    return fresh


def test_a_damaged_bundle_is_refused_whole(cli, project, finished_run, tmp_path, monkeypatch):
    fresh = _bundle_and_fresh(cli, finished_run, tmp_path, monkeypatch)
    before = store_listing(fresh)

    def flip(info, data):
        if info.name.startswith("objects/") and len(data) > 1000:
            data = data[:500] + bytes([data[500] ^ 1]) + data[501:]
        return [(info, data)]

    _rewrite(tmp_path / "good.datmo", tmp_path / "bad.datmo", flip)
    refused = cli("bundle", "import", str(tmp_path / "bad.datmo"))
    assert refused.exit_code == 3 and "damaged" in refused.stderr, refused.output
    assert "nothing was imported" in refused.stderr
    assert store_listing(fresh) == before
    # a cut-off file too
    raw = (tmp_path / "good.datmo").read_bytes()
    (tmp_path / "cut.datmo").write_bytes(raw[: len(raw) // 2])
    assert cli("bundle", "import", str(tmp_path / "cut.datmo")).exit_code == 3
    assert store_listing(fresh) == before
    assert cli("bundle", "import", str(tmp_path / "good.datmo")).exit_code == 0
    fsck_clean(fresh)


def test_a_bundle_cannot_write_outside_the_project_or_hold_links(
    cli, project, finished_run, tmp_path, monkeypatch
):
    fresh = _bundle_and_fresh(cli, finished_run, tmp_path, monkeypatch)
    before = store_listing(fresh)
    evil = [
        ("../escaped.txt", tarfile.REGTYPE),
        ("/tmp/absolute-datmo-test.txt", tarfile.REGTYPE),
        ("objects/ab/" + "c" * 62, tarfile.SYMTYPE),
        ("records/runs/../../../x.json", tarfile.REGTYPE),
        ("hooks/post-checkout", tarfile.REGTYPE),
    ]
    for i, (name, kind) in enumerate(evil):

        def add(info, data, name=name, kind=kind):
            out = [(info, data)]
            if info.name.startswith("objects/") and kind is not None:
                extra = tarfile.TarInfo(name)
                extra.type = kind
                if kind == tarfile.SYMTYPE:
                    extra.linkname = "/etc/passwd"
                out.append(
                    (extra, b"#!/bin/sh\ntouch /tmp/pwned\n" if kind == tarfile.REGTYPE else b"")
                )
                kind = None  # once
            return out

        path = tmp_path / f"evil{i}.datmo"
        _rewrite(tmp_path / "good.datmo", path, add)
        refused = cli("bundle", "import", str(path))
        assert refused.exit_code == 3, (name, refused.output)
        assert "refused" in refused.stderr or "damaged" in refused.stderr
        assert store_listing(fresh) == before
    assert (
        not (tmp_path / "escaped.txt").exists()
        and not Path("/tmp/absolute-datmo-test.txt").exists()
    )
    assert not Path("/tmp/pwned").exists()


def test_a_bundle_of_another_project_is_refused(cli, project, finished_run, tmp_path, monkeypatch):
    finished_run()
    assert cli("bundle", "create", str(tmp_path / "p.datmo")).exit_code == 0
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.chdir(other)
    cli("init")
    refused = cli("bundle", "import", str(tmp_path / "p.datmo"))
    assert refused.exit_code == 1 and "holds the project" in refused.stderr
    assert list((other / ".datmo" / "runs").iterdir()) == []
    assert cli("bundle", "create", str(tmp_path / "p.datmo")).exit_code == 1  # exists already
