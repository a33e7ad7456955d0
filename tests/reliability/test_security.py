"""Escapes and leaks: snapshots and checkouts never write outside the project (symlinks,
'..', forged manifests and trees), symlinks are stored as links, containers get no
privileges, no Docker socket, no view of .datmo, ports on 127.0.0.1 and the project
owner's uid; secret values stay out of .datmo and the logs; secret files stay out of
snapshots unless asked for."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from reliability import (
    child_env,
    context,
    datmo_argv,
    kill_all,
    processes_with,
    report,
    snapshot_contents,
    tree_contents,
)

FINDINGS: dict[str, int] = {}


@pytest.fixture
def elsewhere() -> Iterator[Path]:
    """A folder outside the project (and outside pytest's tmp tree) that must stay empty."""
    path = Path(tempfile.mkdtemp(prefix="datmo-elsewhere-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def create(cli: Callable[..., Any], *args: str) -> str:
    r = cli("snapshot", "create", *args)
    assert r.exit_code == 0, r.output
    return r.stdout.strip().splitlines()[-1]


def remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    else:
        shutil.rmtree(path)


def everything_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


# -- the working tree -------------------------------------------------------------------------


def test_checkout_through_a_project_symlink_never_writes_outside(
    project: Path, cli: Callable[..., Any], tree: Any, elsewhere: Path
) -> None:
    tree(project, {"a.py": "print(1)\n", "out": {"x": "inside\n"}})
    with_folder = create(cli, "-m", "out is a folder")
    shutil.rmtree(project / "out")
    os.symlink(elsewhere, project / "out")
    with_link = create(cli, "-m", "out is a link")
    results = []
    # 1: the current snapshot holds the link; the target holds out/x.
    results.append(cli("snapshot", "checkout", with_folder))
    assert everything_under(elsewhere) == [], "checkout wrote through the link"
    assert (project / "out").is_dir() and not (project / "out").is_symlink()
    # 2: the link is unsaved work: refused, then --force keeps it first.
    results.append(cli("snapshot", "checkout", with_link))
    remove(project / "out")
    os.symlink(elsewhere, project / "out")
    (project / "a.py").write_text("print(2)\n")
    results.append(cli("snapshot", "checkout", with_folder, "--force"))
    assert everything_under(elsewhere) == []
    # 3: the link is ignored, so no snapshot holds it: checkout refuses to replace it.
    (project / ".datmoignore").write_text("out\n")
    remove(project / "out")
    os.symlink(elsewhere, project / "out")
    create(cli, "-m", "ignore out")
    refused = cli("snapshot", "checkout", with_folder, "--force")
    results.append(refused)
    assert everything_under(elsewhere) == []
    assert refused.exit_code != 0 and "out" in refused.stderr, refused.output
    assert os.path.islink(project / "out")
    assert all("Traceback" not in r.output for r in results)
    report("security symlinked folder", checkouts=len(results), written_outside=0)


def forge_snapshot(
    project: Path, files_doc: dict[str, Any] | None, code_tree: str | None, forged_id: str
) -> str:
    """A snapshot record like the current one, with a forged manifest and/or code tree."""
    store = context(project).store
    current = store.read_pointer("current.json")
    doc = store.read_entity("snapshots", current)
    forged = dict(doc, id=forged_id, message="forged", hidden=False)
    if files_doc is not None:
        forged["files_id"] = store.objects.put_bytes(json.dumps(files_doc).encode())
    if code_tree is not None:
        forged["code_id"] = code_tree
        forged["code_commit"] = store.git.commit(code_tree, "forged")
        store.git.update_ref("refs/datmo/snapshots/" + forged["id"], forged["code_commit"])
    store.write_entity("snapshots", forged)
    return forged["id"]


def raw_tree(project: Path, entries: list[tuple[str, bytes, str]]) -> str:
    """A git tree written byte by byte: (mode, name, object id), no checks at all."""
    git = context(project).store.git
    body = b"".join(m.encode() + b" " + n + b"\0" + bytes.fromhex(s) for m, n, s in entries)
    return git._write_object(b"tree", body)


ATTEMPTS = [
    "manifest file ../",
    "manifest link ../",
    "manifest extra ../",
    "tree entry ..",
    "tree name with /",
    "tree link, then a path under it",
]


def escape_attempt(project: Path, elsewhere: Path, attempt: str) -> str:
    """Forge the snapshot for one attempt; its id."""
    store = context(project).store
    blob = store.git.write_blob(b"escaped\n")
    digest = store.objects.put_bytes(b"escaped\n")
    rel_out = os.path.relpath(elsewhere / "x", project)
    sub = raw_tree(project, [("100644", b"x", blob)])
    link_to_outside = store.git.write_blob(str(elsewhere).encode())
    manifest: dict[str, Any] = {"schema_version": 1, "files": {}, "links": {}, "extra": {}}
    files, tree = None, None
    if attempt == "manifest file ../":
        files = {**manifest, "files": {rel_out: [digest, 8, 420]}}
    elif attempt == "manifest link ../":
        files = {**manifest, "links": {rel_out: "x"}}
    elif attempt == "manifest extra ../":
        files = {**manifest, "extra": {rel_out: [digest, 8, 420]}}
    elif attempt == "tree entry ..":
        tree = raw_tree(project, [("40000", b"..", sub)])
    elif attempt == "tree name with /":
        tree = raw_tree(project, [("100644", rel_out.encode(), blob)])
    else:
        tree = raw_tree(project, [("120000", b"evil", link_to_outside), ("40000", b"evil", sub)])
    return forge_snapshot(project, files, tree, f"{ATTEMPTS.index(attempt):040x}")


@pytest.mark.parametrize("attempt", ATTEMPTS)
def test_forged_snapshot_cannot_write_outside(
    project: Path,
    cli: Callable[..., Any],
    tree: Any,
    elsewhere: Path,
    tmp_path: Path,
    attempt: str,
) -> None:
    tree(project, {"a.py": "print(1)\n"})
    create(cli, "-m", "honest")
    forged = escape_attempt(project, elsewhere, attempt)
    parent_before = everything_under(project.parent)
    work = tree_contents(project)
    results = [
        cli("snapshot", "checkout", forged, "--force"),
        cli("snapshot", "checkout", forged, "--to", str(tmp_path / "export")),
    ]
    FINDINGS["forged attempts"] = FINDINGS.get("forged attempts", 0) + len(results)
    assert everything_under(elsewhere) == [], f"{attempt}: wrote {everything_under(elsewhere)}"
    outside = set(everything_under(project.parent)) - set(parent_before)
    outside = {p for p in outside if not p.startswith(("proj/", "export"))}
    assert not outside, f"{attempt}: wrote {outside} next to the project"
    for r in results:
        assert "Traceback" not in r.output and "unexpected error" not in r.output, r.output
    # (extras are written only by --to; a checkout in place leaves them alone)
    refusing = results[1:] if attempt == "manifest extra ../" else results
    for r in refusing:
        assert r.exit_code != 0, f"{attempt}: accepted: {r.output}"
    # refused before anything changed, and the project is still usable afterwards
    status = cli("status")
    assert status.exit_code == 0, f"{attempt}: the refusal wedged the project: {status.output}"
    assert tree_contents(project) == work


def test_symlinks_to_outside_are_stored_as_links(
    project: Path, cli: Callable[..., Any], tree: Any, elsewhere: Path, tmp_path: Path
) -> None:
    secret = b"outside secret 7f3a9c\n"
    (elsewhere / "secret.txt").write_bytes(secret)
    tree(project, {"a.py": "print(1)\n", ".gitignore": "*.lnk\n"})
    os.symlink(elsewhere / "secret.txt", project / "ext.txt")
    os.symlink(elsewhere, project / "extdir")
    os.symlink(elsewhere / "secret.txt", project / "data.lnk")  # a link among the files
    sid = create(cli, "-m", "links")
    store_bytes = b"".join(
        p.read_bytes()
        for p in (project / ".datmo").rglob("*")
        if p.is_file() and not p.is_symlink()
    )
    assert secret not in store_bytes, "the link's target was read into the store"
    stored = snapshot_contents(project, sid, tmp_path)
    assert stored["ext.txt"] == ("link", str(elsewhere / "secret.txt"))
    assert stored["extdir"] == ("link", str(elsewhere))
    assert stored["data.lnk"] == ("link", str(elsewhere / "secret.txt"))
    code = context(project).store.git.read_tree(
        context(project).store.read_entity("snapshots", sid)["code_id"]
    )
    assert code["ext.txt"][0] == "120000"


def test_a_symlinked_python_file_is_not_followed(
    project: Path, cli: Callable[..., Any], tree: Any, elsewhere: Path
) -> None:
    """Its imports are not read either: that would read a file outside the project into
    the snapshot's requirements."""
    (elsewhere / "private.py").write_text("import zz_private_module_4711\n")
    tree(project, {"a.py": "import json\n"})
    os.symlink(elsewhere / "private.py", project / "helper.py")
    sid = create(cli, "-m", "link to a python file")
    store = context(project).store
    requirements = store.objects.read_bytes(store.read_entity("snapshots", sid)["requirements_id"])
    assert b"zz_private_module_4711" not in requirements, requirements.decode()


def test_a_symlinked_python_file_to_a_fifo_does_not_hang_a_snapshot(
    project: Path, tree: Any, elsewhere: Path
) -> None:
    os.mkfifo(elsewhere / "pipe")
    tree(project, {"a.py": "print(1)\n"})
    os.symlink(elsewhere / "pipe", project / "pipe.py")
    try:
        done = subprocess.run(
            datmo_argv("snapshot", "create", "-m", "fifo"),
            cwd=project,
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=20,
        )
        outcome = f"exit {done.returncode}"
    except subprocess.TimeoutExpired:
        outcome = "hung"
    finally:
        kill_all(processes_with(str(project)))
    assert outcome == "exit 0", f"snapshot create {outcome} on a .py symlink to a FIFO"


# -- secrets ------------------------------------------------------------------------------------


def store_holds(project: Path, value: bytes) -> list[str]:
    return [
        str(p.relative_to(project))
        for p in (project / ".datmo").rglob("*")
        if p.is_file() and not p.is_symlink() and value in p.read_bytes()
    ]


def test_secret_values_never_reach_the_store_or_logs(
    project: Path, cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    given = "given-secret-value-1234"
    passed = "passed-secret-value-9999"
    inherited = "inherited-secret-value-5678"
    monkeypatch.setenv("HF_TOKEN", passed)  # passed on with a bare -e HF_TOKEN
    monkeypatch.setenv("GITHUB_TOKEN", inherited)  # a local task inherits it unasked
    r = cli(
        "run",
        "--executor",
        "local",
        "-e",
        f"API_PASSWORD={given}",
        "-e",
        "HF_TOKEN",
        "echo $API_PASSWORD $HF_TOKEN; env",
    )
    assert r.exit_code == 0, r.output
    leaks = {v: store_holds(project, v.encode()) for v in (given, passed, inherited)}
    report("security secrets", leaked_files=sum(len(v) for v in leaks.values()))
    assert not any(leaks.values()), f"secret values in {leaks}"


def test_secret_files_are_left_out_unless_asked_for(
    project: Path, cli: Callable[..., Any], tree: Any, tmp_path: Path
) -> None:
    secrets = {
        ".env": "API_KEY=1\n",
        ".env.local": "API_KEY=2\n",
        "sub/.env": "API_KEY=3\n",
        "id_rsa": "-----BEGIN OPENSSH PRIVATE KEY-----\n",
        "keys/id_ed25519": "-----BEGIN OPENSSH PRIVATE KEY-----\n",
        "keys/server.pem": "-----BEGIN PRIVATE KEY-----\n",
        ".netrc": "machine x login y password z\n",
    }
    tree(project, {"a.py": "print(1)\n", ".env.example": "API_KEY=\n", **secrets})
    sid = create(cli, "-m", "secrets around")
    stored = snapshot_contents(project, sid, tmp_path)
    assert not set(secrets) & set(stored), set(secrets) & set(stored)
    assert ".env.example" in stored
    (project / ".datmoignore").write_text("!.env\n")
    asked = snapshot_contents(project, create(cli, "-m", "with .env"), tmp_path)
    assert asked.get(".env") == b"API_KEY=1\n"
    assert "id_rsa" not in asked


# -- containers ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def inspect(container: str) -> dict[str, Any]:
    out = subprocess.run(["docker", "inspect", container], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    doc: dict[str, Any] = json.loads(out.stdout)[0]
    return doc


@pytest.fixture
def busybox_project(
    foreign_project: Path, busybox_image: str, cli: Callable[..., Any]
) -> Iterator[Path]:
    """A project owned by uid 4242 whose environment is the busybox image."""
    assert cli("init", "--name", "contained").exit_code == 0
    (foreign_project / "Dockerfile").write_text("FROM datmo-test/busybox:latest\n")
    os.chown(foreign_project / "Dockerfile", 4242, 4242)
    yield foreign_project
    info = json.loads((foreign_project / ".datmo" / "project.json").read_text())
    ids = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=datmo.project={info['id']}"],
        capture_output=True,
        text=True,
    ).stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)
    from datmo.core.executor import engine

    engine.remove_images(f"datmo.project={info['id']}")


@pytest.mark.docker
def test_container_contract(busybox_project: Path, cli: Callable[..., Any]) -> None:
    port = free_port()
    r = cli("run", "--executor", "docker", "-d", "-p", f"{port}:80", "sleep 30")
    assert r.exit_code == 0, r.output
    run_id = r.stdout.strip().splitlines()[-1]
    try:
        doc = json.loads((busybox_project / ".datmo" / "runs" / f"{run_id}.json").read_text())
        c = inspect(doc["container_id"])
        host = c["HostConfig"]
        assert host["Privileged"] is False
        assert not host.get("CapAdd")
        assert host.get("NetworkMode") != "host" and host.get("PidMode") != "host"
        assert host.get("IpcMode") != "host"
        sources = [m.get("Source", "") for m in c["Mounts"]]
        assert not [s for s in sources if s.endswith("docker.sock")], sources
        bindings = [b for v in (host.get("PortBindings") or {}).values() for b in v]
        assert bindings and all(b["HostIp"] == "127.0.0.1" for b in bindings), bindings
        assert c["Config"]["User"] == "4242:4242"
        seen = subprocess.run(
            [
                "docker",
                "exec",
                doc["container_id"],
                "sh",
                "-c",
                "ls -A /workspace/.datmo; id -u; ls /var/run/docker.sock 2>&1 || true",
            ],
            capture_output=True,
            text=True,
        ).stdout.split("\n")
        assert seen[0] == "4242", f".datmo is visible in the container: {seen}"
        report(
            "security container",
            privileged=host["Privileged"],
            user=c["Config"]["User"],
            ports=",".join(b["HostIp"] for b in bindings),
            datmo_entries_seen=0,
        )
    finally:
        cli("stop", run_id)


@pytest.mark.docker
def test_data_mounts_never_show_datmo_or_the_docker_socket(
    busybox_project: Path, cli: Callable[..., Any]
) -> None:
    sock = cli("run", "--executor", "docker", "--data", "/var/run/docker.sock", "true")
    assert sock.exit_code != 0 and "Docker socket" in sock.stderr, sock.output
    whole = cli(
        "run",
        "--executor",
        "docker",
        "--data",
        f"{busybox_project}>proj",
        "ls -A /data/proj/.datmo",
    )
    assert "Traceback" not in whole.output
    assert whole.exit_code != 0 or not whole.stdout.strip(), (
        f"the store is visible in the container under /data/proj/.datmo: {whole.stdout!r}"
    )
