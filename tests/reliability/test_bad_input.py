"""Generated bad input to the CLI (hypothesis): config values, ids, ports, sizes, GPUs,
paths with '..', odd Unicode, long names, missing and unreadable files.

The property: no input gives a traceback or an 'unexpected error'; a failure is one
line on stderr ('datmo: error: ...', or click's own usage error) with a non-zero exit,
and leaves the store as it was."""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reliability import failure_problems, report, store_digest, tree_contents

UID = GID = 4242
SETTINGS = settings(
    deadline=None,
    database=None,  # its folder would land in the project and change what is snapshotted
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,  # the same inputs on every run: a failure here reproduces
)
TRIED: dict[str, int] = {}


def count(name: str) -> None:
    TRIED[name] = TRIED.get(name, 0) + 1


@pytest.fixture(scope="module", autouse=True)
def figures() -> Iterator[None]:
    yield
    report("bad input", total=sum(TRIED.values()), **TRIED)


# -- strategies ---------------------------------------------------------------------------------

# What argv can hold: any character but NUL, plus the lone surrogates Python makes of
# bytes that are not UTF-8 (os.fsdecode of a Latin-1 argument, say).
argv_char = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
plain = st.text(argv_char)
undecodable = st.binary(min_size=1, max_size=12).map(
    lambda b: (b.replace(b"\0", b"") or b"\xff").decode("utf-8", "surrogateescape")
)
tricky = st.sampled_from(
    [
        "",
        " ",
        "-",
        "--",
        "\n",
        "a\nb",
        "\t",
        "..",
        "../..",
        "/",
        "~",
        "\u202e",
        "\ufeff",
        "e\u0301",
        "\U0001f600",
        "\\",
        "'",
        '"',
        "%s",
        "{}",
        "=",
        ":",
    ]
)
words = st.one_of(plain, undecodable, tricky, st.text(argv_char, min_size=300, max_size=3000))
hexish = st.text("0123456789abcdefABCDEF", min_size=0, max_size=60)
big_number = st.integers(1, 500).map(lambda n: "9" * n)


def config_item() -> st.SearchStrategy[str]:
    nested = st.integers(1, 200_000).map(lambda n: "x=" + "[" * n + "]" * (n % 3))
    numbers = st.one_of(big_number, st.floats().map(repr)).map(lambda v: f"n={v}")
    sep = st.sampled_from(["=", ":", "", "=="])
    pair = st.tuples(words, sep, words).map(lambda t: "".join(t))
    special = st.sampled_from(["=x", ":x", "a=NaN", "a=Infinity", "a=-Infinity", "a=1e999"])
    return st.one_of(pair, nested, numbers, special, words)


def fails_cleanly(r: Any, before: str, root: Path, args: tuple[str, ...]) -> None:
    """The property, for one command's result."""
    text = r.stdout + r.stderr
    assert "Traceback" not in text and "unexpected error" not in text, (args, text[-500:])
    if r.exit_code == 0:
        return
    problems = failure_problems(r.exit_code, r.stdout, r.stderr)
    assert not problems, (args, problems)
    assert store_digest(root) == before, (args, "a failed command changed the store")


@pytest.fixture
def seeded_project(project: Path, cli: Callable[..., Any], tree: Any) -> Path:
    tree(project, {"a.py": "print(1)\n", "config.json": '{"lr": 0.1}'})
    assert cli("snapshot", "create", "-m", "start").exit_code == 0
    outside = project.parent / "outside"
    tree(outside, {"x.txt": "outside\n", "sub": {"y.txt": "y\n"}})
    return project


# -- properties ---------------------------------------------------------------------------------


@settings(SETTINGS, max_examples=120)
@given(
    items=st.lists(st.tuples(st.sampled_from(["-c", "-s"]), config_item()), min_size=1, max_size=3)
)
def test_config_and_metric_values(
    seeded_project: Path, cli: Callable[..., Any], items: list[tuple[str, str]]
) -> None:
    count("config")
    args = ("snapshot", "create", "-m", "config", *[x for pair in items for x in pair])
    before = store_digest(seeded_project)
    fails_cleanly(cli(*args), before, seeded_project, args)


ID_COMMANDS = [
    ("snapshot", "inspect"),
    ("snapshot", "checkout"),
    ("snapshot", "delete"),
    ("snapshot", "update"),
    ("snapshot", "diff"),
    ("logs",),
    ("stop",),
    ("rerun",),
    ("delete",),
    ("environment", "set"),
    ("environment", "delete"),
    ("environment", "build"),
]


@settings(SETTINGS, max_examples=150)
@given(command=st.sampled_from(ID_COMMANDS), ref=st.one_of(words, hexish))
def test_ids(
    seeded_project: Path, cli: Callable[..., Any], command: tuple[str, ...], ref: str
) -> None:
    count("ids")
    args = (*command, ref, *(["-m", "x"] if command[-1] == "update" else []))
    if command[-1] == "diff":
        args = (*args, ref)
    before = store_digest(seeded_project)
    fails_cleanly(cli(*args), before, seeded_project, args)


def port_text() -> st.SearchStrategy[str]:
    num = st.one_of(st.integers(-5, 70000).map(str), big_number, st.just(""))
    ip = st.sampled_from(["127.0.0.1", "0.0.0.0", "1", "::1", "256.1.1.1", "localhost", ""])
    proto = st.sampled_from(["", "/tcp", "/udp", "/sctp", "/"])
    shaped = st.one_of(
        st.tuples(num, proto).map("".join),
        st.tuples(num, st.just(":"), num, proto).map("".join),
        st.tuples(ip, st.just(":"), num, st.just(":"), num, proto).map("".join),
    )
    return st.one_of(shaped, words)


def memory_text() -> st.SearchStrategy[str]:
    unit = st.sampled_from(["", "b", "k", "m", "g", "t", "kb", "gib", "x", "G", " g"])
    number = st.one_of(big_number, st.floats(allow_nan=True).map(repr), st.integers().map(str))
    return st.one_of(st.tuples(number, unit).map("".join), words)


def gpus_text() -> st.SearchStrategy[str]:
    listed = st.lists(st.one_of(st.integers(-2, 99).map(str), words), max_size=4)
    return st.one_of(listed.map(",".join), st.sampled_from(["all", "ALL", "0,0", "\u0661"]), words)


RUN_OPTIONS = {
    "-p": port_text(),
    "--memory": memory_text(),
    "--gpus": gpus_text(),
    "--cpus": st.one_of(st.floats().map(repr), big_number, words),
    "--data": st.one_of(words, st.sampled_from(["/var/run/docker.sock", ".>x", "..>..", ".:rw"])),
    "-e": st.one_of(words, st.tuples(words, st.just("="), words).map("".join)),
    "--executor": st.one_of(st.sampled_from(["docker", "local"]), words),
}


@settings(SETTINGS, max_examples=200)
@given(
    options=st.lists(
        st.sampled_from(sorted(RUN_OPTIONS)).flatmap(
            lambda o: st.tuples(st.just(o), RUN_OPTIONS[o])
        ),
        min_size=1,
        max_size=4,
    )
)
def test_run_options(
    seeded_project: Path, cli: Callable[..., Any], options: list[tuple[str, str]]
) -> None:
    """Ports, sizes, GPUs, CPUs, data mounts, variables. The environment named does not
    exist, so even well-formed options end in a clean refusal before anything is made."""
    count("run options")
    flat = [x for pair in options for x in pair]
    args = ("run", "--environment", "ffffffff", *flat, "true")
    before = store_digest(seeded_project)
    r = cli(*args)
    assert r.exit_code != 0, (args, r.output)
    fails_cleanly(r, before, seeded_project, args)


def path_text() -> st.SearchStrategy[str]:
    parts = st.lists(
        st.one_of(st.sampled_from(["..", ".", "outside", "x.txt", "sub", "a.py", ""]), words),
        min_size=1,
        max_size=5,
    ).map("/".join)
    dest = st.one_of(st.just(""), parts.map(lambda p: ">" + p))
    return st.tuples(parts, dest).map("".join)


@settings(SETTINGS, max_examples=150)
@given(
    option=st.sampled_from(["--paths", "--config-file", "--stats-file", "--to", "--data"]),
    path=path_text(),
)
def test_paths(seeded_project: Path, cli: Callable[..., Any], option: str, path: str) -> None:
    """Paths with '..', missing files, odd names. What succeeds must stay inside the project
    (or the folder --to names), and the working tree is never touched."""
    count("paths")
    if path.startswith("../outside>") or path in ("..", "../"):
        path = "missing/" + path  # storing the folder that holds the project is too slow here
    root = seeded_project
    sid = json.loads((root / ".datmo" / "current.json").read_text())["id"]
    if option == "--to":
        args: tuple[str, ...] = ("snapshot", "checkout", sid, "--to", f"../exports/{path}")
        args += ("a.py",) if len(path) % 2 else ()
    elif option == "--data":
        args = ("run", "--environment", "ffffffff", "--data", path, "true")
    else:
        args = ("snapshot", "create", "-m", "paths", option, path)
    before, work = store_digest(root), tree_contents(root)
    outside_before = tree_contents(root.parent / "outside")
    r = cli(*args)
    fails_cleanly(r, before, root, args)
    assert tree_contents(root) == work
    assert tree_contents(root.parent / "outside") == outside_before
    shutil.rmtree(root.parent / "exports", ignore_errors=True)


def file_name() -> st.SearchStrategy[str]:
    raw = st.one_of(plain, undecodable, tricky)

    def usable(name: str) -> bool:
        b = name.encode("utf-8", "surrogateescape")
        return 0 < len(b) <= 255 and "/" not in name and "\0" not in name

    long_name = st.integers(200, 255).map(lambda n: "é" * (n // 2))
    return st.one_of(raw, long_name).filter(usable).filter(lambda n: n not in (".", ".."))


@settings(SETTINGS, max_examples=60)
@given(name=file_name(), message=words, label=st.one_of(st.none(), words))
def test_names_messages_and_labels(
    seeded_project: Path,
    cli: Callable[..., Any],
    tmp_path: Path,
    name: str,
    message: str,
    label: str | None,
) -> None:
    """Odd Unicode and long names: a file by that name is stored and comes back byte for
    byte; a message or label is stored as given, or refused in one line."""
    count("names")
    from reliability import snapshot_contents

    root = seeded_project
    path = root / name
    if os.path.lexists(path) or name in (".datmo", ".git"):
        return
    path.write_bytes(b"content of an oddly named file\n")
    try:
        args = ("snapshot", "create", "-m", message, *(["-l", label] if label is not None else []))
        before = store_digest(root)
        r = cli(*args)
        fails_cleanly(r, before, root, args)
        if r.exit_code != 0:
            return
        sid = r.stdout.strip().splitlines()[-1]
        shown = cli("snapshot", "inspect", sid, "--format", "json")
        assert shown.exit_code == 0, shown.output
        doc = json.loads(shown.stdout)[0]
        assert doc["message"] == message
        assert doc["label"] == label or not (label or doc["label"])
        status = cli("status")
        assert status.exit_code == 0 and "nothing changed" in status.stdout, status.output
        stored = snapshot_contents(root, sid, tmp_path)
        skipped = {
            p
            for p, _ in json.loads((root / ".datmo" / "snapshots" / f"{sid}.json").read_text())[
                "skipped"
            ]
        }
        assert stored == {k: v for k, v in tree_contents(root).items() if k not in skipped}
    finally:
        path.unlink()


# -- unreadable files, as an unprivileged user ----------------------------------------------


@pytest.fixture
def their_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A project owned by uid 4242 in a folder that uid can reach (pytest's is root-only)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to act as another user")
    from conftest import run_datmo

    base = Path(tempfile.mkdtemp(prefix="datmo-unreadable-", dir="/tmp"))
    os.chmod(base, 0o755)
    root = base / "proj"
    root.mkdir()
    (root / "a.py").write_text("print(1)\n")
    for p in (base, root, root / "a.py"):
        os.chown(p, UID, GID)
    monkeypatch.chdir(root)
    assert run_datmo("init", "--name", "theirs").exit_code == 0
    assert run_datmo("snapshot", "create", "-m", "start").exit_code == 0
    yield root
    shutil.rmtree(base, ignore_errors=True)


def as_user(root: Path, *args: str) -> tuple[int, str, str]:
    """`datmo ARGS` in a forked child that has dropped to uid 4242 (modules already loaded:
    the interpreter under /root is out of that user's reach)."""
    import yaml  # noqa: F401

    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 70
        try:
            os.setgroups([])
            os.setgid(GID)
            os.setuid(UID)
            os.chdir(root)
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            import sys

            sys.stdout = os.fdopen(1, "w", closefd=False)
            sys.stderr = os.fdopen(2, "w", closefd=False)
            from datmo.cli.main import main

            try:
                main(list(args))
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
    os.close(out_w)
    os.close(err_w)
    with os.fdopen(out_r) as o, os.fdopen(err_r) as e:
        out, err = o.read(), e.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out, err


UNREADABLE = [
    (
        "config file",
        "secret.json",
        ("snapshot", "create", "-m", "x", "--config-file", "secret.json"),
    ),
    ("stats file", "secret.json", ("snapshot", "create", "-m", "x", "--stats-file", "secret.json")),
    ("code file", "locked.py", ("snapshot", "create", "-m", "x")),
    ("data file", "locked.bin", ("snapshot", "create", "-m", "x")),
    (".datmoignore", ".datmoignore", ("snapshot", "create", "-m", "x")),
    ("config.json", "config.json", ("snapshot", "create", "-m", "x")),
    (
        "--paths file",
        "../secret.txt",
        ("snapshot", "create", "-m", "x", "--paths", "../secret.txt"),
    ),
    ("status", "locked.py", ("status",)),
]


@pytest.mark.parametrize(("what", "name", "args"), UNREADABLE, ids=[u[0] for u in UNREADABLE])
def test_unreadable_files(their_project: Path, what: str, name: str, args: tuple[str, ...]) -> None:
    count("unreadable")
    root = their_project
    path = root / name
    path.write_bytes(b"{}" if name.endswith(".json") else b"x" * (2 << 20 if "bin" in name else 8))
    os.chown(path, UID, GID)
    os.chmod(path, 0)
    before = store_digest(root)
    code, out, err = as_user(root, *args)
    text = out + err
    assert "Traceback" not in text and "unexpected error" not in text, (what, text)
    assert code != 0, (what, text)
    assert not failure_problems(code, out, err), (what, err)
    assert any(w in err for w in ("ermission denied", "cannot read", "not readable")), (what, err)
    assert store_digest(root) == before, what


def test_unreadable_folder_is_reported_as_skipped(their_project: Path) -> None:
    count("unreadable")
    locked = their_project / "locked"
    locked.mkdir()
    (locked / "x.py").write_text("x = 1\n")
    for p in (locked, locked / "x.py"):
        os.chown(p, UID, GID)
    os.chmod(locked, 0)
    code, out, err = as_user(their_project, "snapshot", "create", "-m", "x")
    assert "Traceback" not in out + err and "unexpected error" not in out + err
    assert "locked (permission denied)" in err, (code, err)
    os.chmod(locked, stat.S_IRWXU)
