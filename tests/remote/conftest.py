"""Services the remote tests talk to, started here and stopped afterwards, leaving
nothing behind: a real sshd (Debian's openssh-server) on a loopback port with a host key,
a user key and a known_hosts file made for the test; moto's S3 server on a loopback port.
When CI is set a service that cannot start fails the test instead of skipping it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

SSHD = "/usr/sbin/sshd"


def _unavailable(why: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(why)
    pytest.skip(why)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _wait(port: int, proc: subprocess.Popen[Any], what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        if _answers(port):
            return
        time.sleep(0.1)
    proc.kill()
    out = proc.communicate()[1] or b""
    _unavailable(f"{what} did not start: {out.decode(errors='replace')[-500:]}")


@dataclass
class Sshd:
    port: int
    ssh_command: str  # for DATMO_SSH_COMMAND
    user: str

    def url(self, path: Path) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}{path}"


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    if not (os.path.exists(SSHD) and shutil.which("ssh") and shutil.which("ssh-keygen")):
        _unavailable("openssh-server is not installed (make sysdeps installs it)")
    d = tmp_path_factory.mktemp("sshd")
    for name in ("host", "user"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True
        )
    (d / "authorized_keys").write_text((d / "user.pub").read_text())
    port = free_port()
    (d / "sshd_config").write_text(
        f"ListenAddress 127.0.0.1\nPort {port}\nHostKey {d / 'host'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
        "PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n"
        f"PidFile {d / 'sshd.pid'}\n"
    )
    host_key = " ".join((d / "host.pub").read_text().split()[:2])
    (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key}\n")
    (d / "ssh_config").write_text(
        f"Host *\n  IdentityFile {d / 'user'}\n  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {d / 'known_hosts'}\n  GlobalKnownHostsFile /dev/null\n"
    )
    os.chmod(d / "user", 0o600)
    privsep = Path("/run/sshd")  # sshd as root wants its privilege-separation folder
    made = os.geteuid() == 0 and not privsep.exists()
    if made:
        privsep.mkdir(mode=0o755)
    proc = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", str(d / "sshd_config")], stderr=subprocess.PIPE
    )
    try:
        _wait(port, proc, "sshd")
        import pwd

        user = pwd.getpwuid(os.getuid()).pw_name
        yield Sshd(port, f"ssh -F {d / 'ssh_config'}", user)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if made:
            shutil.rmtree(privsep, ignore_errors=True)


@pytest.fixture
def ssh_remote(sshd: Sshd, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[[str], str]:
    """name -> the URL of a new remote folder reached over ssh (DATMO_SSH_COMMAND set)."""
    monkeypatch.setenv("DATMO_SSH_COMMAND", sshd.ssh_command)
    return lambda name: sshd.url(tmp_path / "ssh-remotes" / name)


@dataclass
class S3Server:
    endpoint: str
    bucket: str


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[S3Server]:
    try:
        import boto3
        import moto  # noqa: F401
    except ImportError:
        _unavailable("boto3 and moto[server] are not installed (pip install -e '.[dev]')")
    port = free_port()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        _wait(port, proc, "moto's S3 server")
        endpoint = f"http://127.0.0.1:{port}"
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        client.create_bucket(Bucket="datmo-test")
        yield S3Server(endpoint, "datmo-test")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def s3_env(moto_s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """Credentials for the emulator, as a user would set them."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return moto_s3


@pytest.fixture
def finished_run(cli: Any, tree: Any, project: Path) -> Callable[..., str]:
    """Make a finished local run (its task writes a model file and prints a metric)."""

    def make(value: str = "0.9", size: int = 1_500_000) -> str:
        tree(
            project,
            {
                "train.py": (
                    f"print('acc: {value}')\nopen('model.bin', 'wb').write(b'm' * {size})\n"
                ),
                "data.bin": b"d" * 1_200_000,
            },
        )
        result = cli("run", "--executor", "local", "python train.py")
        assert result.exit_code == 0, result.output
        return next(r for r in _runs(cli) if r["status"] == "SUCCESS" and r["id"] not in made)["id"]

    made: list[str] = []

    def tracked(*args: Any, **kw: Any) -> str:
        rid = make(*args, **kw)
        made.append(rid)
        return rid

    return tracked


def _runs(cli: Any) -> list[dict[str, Any]]:
    import json

    result = cli("ls", "--format", "json")
    assert result.exit_code == 0, result.output
    docs: list[dict[str, Any]] = json.loads(result.stdout)
    return docs
