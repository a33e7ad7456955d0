from __future__ import annotations

import importlib.metadata as im
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from datmo.core.tree import envcache, envinfo
from datmo.core.tree.envcache import EnvInfoCache
from datmo.core.tree.envinfo import (
    REQUIREMENTS_HEADER,
    definition_id,
    imports_of,
    platform_facts,
    requirements_for,
)

# --- definition_id -----------------------------------------------------------


def test_definition_id_ignores_line_endings_of_text() -> None:
    lf = {"Dockerfile": b"FROM python:3.11\nRUN pip install x\n", "req.txt": b"a\n"}
    crlf = {"Dockerfile": b"FROM python:3.11\r\nRUN pip install x\r\n", "req.txt": b"a\r\n"}
    cr = {"Dockerfile": b"FROM python:3.11\rRUN pip install x\r", "req.txt": b"a\r"}
    assert definition_id(lf) == definition_id(crlf) == definition_id(cr)
    assert len(definition_id(lf)) == 64


def test_definition_id_changes_with_content_and_names() -> None:
    base = {"Dockerfile": b"FROM python:3.11\n", "a.sh": b"echo hi\n"}
    ids = {
        definition_id(base),
        definition_id({**base, "a.sh": b"echo ho\n"}),
        definition_id({"Dockerfile": base["Dockerfile"], "b.sh": base["a.sh"]}),
        definition_id({"Dockerfile": base["Dockerfile"]}),
        definition_id({}),
    }
    assert len(ids) == 5


def test_definition_id_is_order_independent_and_unambiguous() -> None:
    a = {"x": b"1", "y": b"2"}
    b = {"y": b"2", "x": b"1"}
    assert definition_id(a) == definition_id(b)
    # Moving bytes between name and content must not collide.
    assert definition_id({"ab": b"c"}) != definition_id({"a": b"bc"})


def test_definition_id_does_not_normalise_binary() -> None:
    assert definition_id({"w.bin": b"\0\r\n"}) != definition_id({"w.bin": b"\0\n"})


# --- imports_of --------------------------------------------------------------


def test_imports_of_normal_file() -> None:
    src = b"""
import os, numpy.linalg as la
import a.b.c
from yaml import safe_load
from pkg.sub import thing
try:
    import click
except ImportError:
    click = None

def f():
    import json
"""
    assert imports_of(src) == {"os", "numpy", "a", "yaml", "pkg", "click", "json"}


def test_imports_of_finds_imports_in_every_kind_of_block() -> None:
    src = b"""
class A:
    import a1
    def m(self):
        if x:
            import a2
        else:
            import a3
        for i in y:
            import a4
        else:
            import a5
        while z:
            with open(p) as f:
                import a6
        try:
            import a7
        except* ValueError:
            import a8
        finally:
            import a9
async def g():
    async with c:
        import b1
    async for i in d:
        import b2
match v:
    case 1:
        import b3
f = lambda: __import__("not_a_statement")
s = "import not_code"
"""
    assert imports_of(src) == {f"a{i}" for i in range(1, 10)} | {"b1", "b2", "b3"}
    assert imports_of(b"x = 1\n") == set()


def test_imports_of_skips_relative_imports() -> None:
    src = b"from . import sibling\nfrom .models import net\nfrom ..up import x\nimport real\n"
    assert imports_of(src) == {"real"}


def test_imports_of_unparsable_file_falls_back_to_regex() -> None:
    py2 = b"""import os, numpy as np, pandas.io as pio
from yaml.loader import Loader
from . import local
print "python 2"
    import click
"""
    assert imports_of(py2) == {"os", "numpy", "pandas", "yaml", "click"}


@pytest.mark.parametrize("src", [b"\0\0import x", b"\xff\xfe\x00garbage(((", b"(" * 10000, b""])
def test_imports_of_never_raises(src: bytes) -> None:
    assert isinstance(imports_of(src), set)


# --- requirements_for --------------------------------------------------------


def test_requirements_pin_installed_and_drop_stdlib_and_local() -> None:
    text = requirements_for(["yaml", "click", "os", "json", "mylib", "zz_no_such_mod"], ["mylib"])
    lines = text.splitlines()
    assert lines[0] == REQUIREMENTS_HEADER
    assert f"PyYAML=={im.version('PyYAML')}" in lines
    assert f"click=={im.version('click')}" in lines
    assert "# not installed: zz_no_such_mod" in lines
    assert not any(line.split("==")[0] in ("os", "json", "mylib") for line in lines)
    assert "mylib" not in text
    assert text.endswith("\n")


def test_requirements_are_sorted_case_insensitively_and_deduplicated() -> None:
    # yaml and _yaml both belong to PyYAML.
    text = requirements_for(["yaml", "_yaml", "click", "yaml"])
    pins = [line for line in text.splitlines() if not line.startswith("#")]
    assert pins == [f"click=={im.version('click')}", f"PyYAML=={im.version('PyYAML')}"]


def test_maybe_local_hides_only_what_is_not_installed() -> None:
    text = requirements_for(["utils", "yaml"], maybe_local=["utils", "yaml"])
    assert "utils" not in text  # a sibling module of some project script
    assert "PyYAML==" in text  # a project file named yaml.py cannot hide PyYAML


def _fake_dist(site: Path, name: str, module: str, editable: bool) -> None:
    info = site / f"{name.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.2.3\n")
    (info / "top_level.txt").write_text(f"{module}\n")
    if editable:
        url = {"url": "file:///src/x", "dir_info": {"editable": True}}
        (info / "direct_url.json").write_text(json.dumps(url))


def test_misnamed_dist_info_folder_is_still_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_dist(tmp_path, "Odd-Name", "oddname", editable=False)
    (tmp_path / "Odd_Name-1.2.3.dist-info").rename(tmp_path / "Odd-Name-1.2.3.dist-info")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "Odd-Name==1.2.3" in requirements_for(["oddname"]).splitlines()


def test_editable_installs_are_listed_not_pinned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_dist(tmp_path, "Local-Proj", "localproj", editable=True)
    _fake_dist(tmp_path, "Other-Dist", "otherdist", editable=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    text = requirements_for(["localproj", "otherdist"])
    assert "# editable install, not pinned: Local-Proj" in text.splitlines()
    assert "Other-Dist==1.2.3" in text.splitlines()


# --- platform_facts ----------------------------------------------------------


def test_platform_facts_keys_and_no_hostname() -> None:
    facts = platform_facts()
    assert set(facts) == {"python", "os", "machine", "cpu_count", "gpus"}
    python = facts["python"]
    assert isinstance(python, dict)
    assert python["version"] == ".".join(map(str, sys.version_info[:3]))
    assert python["implementation"].lower() == sys.implementation.name
    assert isinstance(facts["gpus"], list)
    assert isinstance(facts["os"], dict)
    assert set(facts["os"]) == {"system", "release", "pretty_name"}
    dumped = json.dumps(facts)
    host = socket.gethostname()
    if len(host) >= 4:  # a 2-letter hostname like "vm" could match by chance
        assert host not in dumped
    assert "node" not in dumped and "host" not in dumped


def test_gpus_from_nvidia_smi(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda _: "/usr/bin/nvidia-smi")

    def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        assert kw["timeout"] == 5
        return subprocess.CompletedProcess(cmd, 0, "NVIDIA H100 80GB HBM3\nNVIDIA H100 80GB HBM3\n")

    monkeypatch.setattr(subprocess, "run", run)
    assert platform_facts()["gpus"] == ["NVIDIA H100 80GB HBM3"] * 2


def test_gpus_fall_back_to_proc_when_nvidia_smi_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i, model in enumerate(["Tesla T4", "NVIDIA A100-SXM4-40GB"]):
        d = tmp_path / f"0000:0{i}:00.0"
        d.mkdir()
        (d / "information").write_text(f"Model: \t\t {model}\nIRQ:   42\nBus Type: PCIe\n")
    monkeypatch.setattr(envinfo, "_NVIDIA_PROC", tmp_path)
    monkeypatch.setattr("shutil.which", lambda _: "/usr/bin/nvidia-smi")

    def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        raise subprocess.TimeoutExpired(cmd, 5)

    monkeypatch.setattr(subprocess, "run", run)
    assert platform_facts()["gpus"] == ["Tesla T4", "NVIDIA A100-SXM4-40GB"]
    monkeypatch.setattr(envinfo, "_NVIDIA_PROC", tmp_path / "absent")
    assert platform_facts()["gpus"] == []


# --- EnvInfoCache ------------------------------------------------------------


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Count the expensive calls; files are not racy so the stat key alone decides."""
    monkeypatch.setattr(envcache, "_RACY_NS", 0)
    calls = {"imports_of": 0, "requirements_for": 0, "platform_facts": 0}
    for name in calls:
        real = getattr(envinfo, name)

        def wrapper(*a: object, _real: object = real, _name: str = name) -> object:
            calls[_name] += 1
            return _real(*a)  # type: ignore[operator]

        monkeypatch.setattr(envinfo, name, wrapper)
    return calls


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def _scan(root: Path) -> list[tuple[str, os.stat_result]]:
    return sorted((p.relative_to(root).as_posix(), p.lstat()) for p in root.rglob("*.py"))


PROJECT = {
    "train.py": "import yaml\nimport click\nimport mypkg.models\nfrom utils import x\n",
    "mypkg/__init__.py": "from .models import Net\n",
    "mypkg/models.py": "import os\nimport zz_not_here\n",
    "scripts/utils.py": "import json\n",
}


def test_cache_reuses_unchanged_files_and_reparses_changed(
    tmp_path: Path, counted: dict[str, int]
) -> None:
    root, cache_file = tmp_path / "proj", tmp_path / "envinfo.json"
    _write(root, PROJECT)
    reqs, facts = EnvInfoCache(cache_file).compute(root, _scan(root))
    assert counted == {"imports_of": 4, "requirements_for": 1, "platform_facts": 1}
    lines = reqs.splitlines()
    assert f"PyYAML=={im.version('PyYAML')}" in lines and "# not installed: zz_not_here" in lines
    assert not any("mypkg" in line or "utils" in line for line in lines)
    assert set(facts) == {"python", "os", "machine", "cpu_count", "gpus"}

    # A fresh process: nothing re-parsed, nothing recomputed, the file not rewritten.
    before = cache_file.stat().st_mtime_ns
    again = EnvInfoCache(cache_file).compute(root, _scan(root))
    assert again == (reqs, facts)
    assert counted == {"imports_of": 4, "requirements_for": 1, "platform_facts": 1}
    assert cache_file.stat().st_mtime_ns == before

    # One changed file: only it is parsed, and the requirements follow.
    (root / "mypkg/models.py").write_text("import os\n")
    reqs2, _ = EnvInfoCache(cache_file).compute(root, _scan(root))
    assert counted == {"imports_of": 5, "requirements_for": 2, "platform_facts": 1}
    assert "zz_not_here" not in reqs2

    # Same imports after an edit: parsed again, requirements reused from the cache.
    (root / "mypkg/models.py").write_text("import os  # tidy\n")
    EnvInfoCache(cache_file).compute(root, _scan(root))
    assert counted == {"imports_of": 6, "requirements_for": 2, "platform_facts": 1}


def test_cache_notices_same_size_rewrite_with_restored_mtime(
    tmp_path: Path, counted: dict[str, int]
) -> None:
    root, cache_file = tmp_path / "proj", tmp_path / "envinfo.json"
    _write(root, {"a.py": "import yaml\n"})
    cache = EnvInfoCache(cache_file)
    cache.compute(root, _scan(root))
    st = (root / "a.py").stat()
    (root / "a.py").write_text("import nope\n")  # same size
    os.utime(root / "a.py", ns=(st.st_atime_ns, st.st_mtime_ns))  # rsync -t, tar, cp -p
    reqs, _ = cache.compute(root, _scan(root))
    assert counted["imports_of"] == 2  # ctime changed even though mtime was put back
    assert "# not installed: nope" in reqs


def test_recent_files_are_not_trusted_from_cache(
    tmp_path: Path, counted: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(envcache, "_RACY_NS", 3600 * 10**9)
    root = tmp_path / "proj"
    _write(root, {"a.py": "import yaml\n"})
    cache = EnvInfoCache(tmp_path / "envinfo.json")
    cache.compute(root, _scan(root))
    cache.compute(root, _scan(root))
    assert counted["imports_of"] == 2
    assert counted["requirements_for"] == 1  # the import set did not change


def test_cache_recomputes_when_installed_packages_change(
    tmp_path: Path, counted: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, site = tmp_path / "proj", tmp_path / "site"
    _write(root, {"a.py": "import newdist\n"})
    site.mkdir()
    # After sys.path[0] (the script's folder), where installed packages live.
    monkeypatch.setattr(sys, "path", [sys.path[0], str(site), *sys.path[1:]])
    cache = EnvInfoCache(tmp_path / "envinfo.json")
    assert "# not installed: newdist" in cache.compute(root, _scan(root))[0]
    time.sleep(0.01)  # let the folder mtime move on coarse clocks
    _fake_dist(site, "newdist", "newdist", editable=False)
    assert "newdist==1.2.3" in cache.compute(root, _scan(root))[0].splitlines()
    assert counted["imports_of"] == 1
    assert counted["requirements_for"] == 2 and counted["platform_facts"] == 2


def test_cache_does_not_depend_on_the_name_python_was_started_by(
    tmp_path: Path, counted: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    # `datmo` runs the venv's python3, `python -m datmo` its python: one interpreter.
    root = tmp_path / "proj"
    _write(root, {"a.py": "import yaml\n"})
    alias = tmp_path / "python3"
    alias.symlink_to(os.path.realpath(sys.executable))
    cache = EnvInfoCache(tmp_path / "envinfo.json")
    cache.compute(root, _scan(root))
    monkeypatch.setattr(sys, "executable", str(alias))
    EnvInfoCache(tmp_path / "envinfo.json").compute(root, _scan(root))
    assert counted["requirements_for"] == 1 and counted["platform_facts"] == 1
    other = tmp_path / "other-python"
    other.write_bytes(b"")  # another interpreter: its packages may differ
    monkeypatch.setattr(sys, "executable", str(other))
    EnvInfoCache(tmp_path / "envinfo.json").compute(root, _scan(root))
    assert counted["requirements_for"] == 2 and counted["platform_facts"] == 2


def test_symlinked_files_are_always_parsed(tmp_path: Path, counted: dict[str, int]) -> None:
    root, target = tmp_path / "proj", tmp_path / "elsewhere.py"
    root.mkdir()
    target.write_text("import yaml\n")
    (root / "link.py").symlink_to(target)
    cache = EnvInfoCache(tmp_path / "envinfo.json")
    assert "PyYAML==" in cache.compute(root, _scan(root))[0]
    target.write_text("import click\n")  # the link's lstat is unchanged
    assert "click==" in cache.compute(root, _scan(root))[0]
    assert counted["imports_of"] == 2


def test_cache_forgets_deleted_files(tmp_path: Path, counted: dict[str, int]) -> None:
    root, cache_file = tmp_path / "proj", tmp_path / "envinfo.json"
    _write(root, {"a.py": "import yaml\n", "b.py": "import click\n"})
    EnvInfoCache(cache_file).compute(root, _scan(root))
    (root / "b.py").unlink()
    reqs, _ = EnvInfoCache(cache_file).compute(root, _scan(root))
    assert "click" not in reqs
    assert set(json.loads(cache_file.read_text())["files"]) == {"a.py"}


@pytest.mark.parametrize("content", [b"{not json", b"[]", b'{"version": 999}', b'{"version": 1, '])
def test_corrupt_cache_starts_empty(tmp_path: Path, content: bytes) -> None:
    root, cache_file = tmp_path / "proj", tmp_path / "envinfo.json"
    _write(root, {"a.py": "import yaml\n"})
    cache_file.write_bytes(content)
    reqs, _ = EnvInfoCache(cache_file).compute(root, _scan(root))
    assert "PyYAML==" in reqs
    assert json.loads(cache_file.read_text())["version"] == 2


def test_malformed_entries_are_recomputed(tmp_path: Path, counted: dict[str, int]) -> None:
    root, cache_file = tmp_path / "proj", tmp_path / "envinfo.json"
    _write(root, {"a.py": "import yaml\n"})
    bad = {"version": 1, "files": {"a.py": "x"}, "requirements": [], "platform": {"facts": 3}}
    cache_file.write_text(json.dumps(bad))
    reqs, facts = EnvInfoCache(cache_file).compute(root, _scan(root))
    assert "PyYAML==" in reqs and "gpus" in facts
    assert counted == {"imports_of": 1, "requirements_for": 1, "platform_facts": 1}


def test_vanished_file_and_unwritable_cache_do_not_fail(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    _write(root, {"a.py": "import yaml\n", "gone.py": "import click\n"})
    scan = _scan(root)
    (root / "gone.py").unlink()
    reqs, _ = EnvInfoCache(tmp_path / "no" / "such" / "dir" / "c.json").compute(root, scan)
    assert "PyYAML==" in reqs and "click" not in reqs


def test_returned_facts_are_a_copy(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    _write(root, {"a.py": ""})
    cache = EnvInfoCache(tmp_path / "c.json")
    _, facts = cache.compute(root, _scan(root))
    facts["gpus"].append("mutated")  # type: ignore[attr-defined]
    assert "mutated" not in cache.compute(root, _scan(root))[1]["gpus"]  # type: ignore[operator]


def test_summary_answers_when_content_and_packages_are_unchanged(
    tmp_path: Path, counted: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, cache_file = tmp_path / "proj", tmp_path / "envinfo.json"
    _write(root, PROJECT)
    first = EnvInfoCache(cache_file).compute_keyed(root, _scan(root), "tree-1")
    assert counted == {"imports_of": 4, "requirements_for": 1, "platform_facts": 1}
    cache_file.write_bytes(b"not json")  # the per-file part is not even read...
    again = EnvInfoCache(cache_file).compute_keyed(root, _scan(root), "tree-1")
    assert again == first and counted["imports_of"] == 4  # ...when the summary answers

    # New content: the per-file part (rebuilt, as it was damaged) decides again.
    (root / "mypkg/models.py").write_text("import os\n")
    changed, _ = EnvInfoCache(cache_file).compute_keyed(root, _scan(root), "tree-2")
    assert "zz_not_here" not in changed and counted["requirements_for"] == 2

    # Same content, other installed packages: computed again.
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.setattr(sys, "path", [sys.path[0], str(site), *sys.path[1:]])
    EnvInfoCache(cache_file).compute_keyed(root, _scan(root), "tree-2")
    # (The platform facts live apart from the damaged per-file part: computed once more.)
    assert counted["requirements_for"] == 3 and counted["platform_facts"] == 2


@pytest.mark.parametrize("content", [b"", b"{", b"[]", b'{"version": 1, "key": 3}'])
def test_damaged_summary_is_ignored(tmp_path: Path, content: bytes) -> None:
    root, cache_file = tmp_path / "proj", tmp_path / "envinfo.json"
    _write(root, {"a.py": "import yaml\n"})
    want = EnvInfoCache(cache_file).compute_keyed(root, _scan(root), "k")
    (tmp_path / "envinfo.json.summary").write_bytes(content)
    assert EnvInfoCache(cache_file).compute_keyed(root, _scan(root), "k") == want
