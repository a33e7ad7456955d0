"""What `datmo remote add` accepts, and the one line it gives for what it refuses."""

from __future__ import annotations

import json

import pytest

from datmo.core.remote.url import FOLDER, S3, SSH, parse


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ssh://me:secret@host/srv/p", "password"),
        ("ssh://-oProxyCommand=touch%20x@host/srv/p", "begins with '-'"),
        ("ssh://-oProxyCommand=x/srv/p", "begins with '-'"),
        ("ssh://host", "absolute path"),
        ("ssh://host:notaport/srv", "port"),
        ("me@host:srv/p", "scp"),
        ("http://example.com/x", "scheme"),
        ("s3://AB/x", "bucket"),
        ("s3://key:secret@bucket/x", "credentials"),
        ("s3://bucket/a/../b", "'..'"),
        ("", "empty"),
        ("/tmp/x\n", "control"),
    ],
)
def test_bad_urls_are_refused_with_one_line(cli, project, url, why):
    result = cli("remote", "add", "r1", url)
    assert result.exit_code == 2, result.output
    assert why in result.stderr and result.stderr.count("\n") == 1
    assert json.loads((project / ".datmo/project.json").read_text())["remotes"] == {}
    assert "secret" not in (project / ".datmo/project.json").read_text()


def test_good_urls():
    assert parse("ssh://me@gpu-1.lab:2222/srv/p").__dict__ | {} == {
        "kind": SSH,
        "text": "ssh://me@gpu-1.lab:2222/srv/p",
        "path": "/srv/p",
        "host": "gpu-1.lab",
        "user": "me",
        "port": 2222,
        "bucket": None,
    }
    s3 = parse("s3://my-bucket/team/proj/")
    assert (s3.kind, s3.bucket, s3.path) == (S3, "my-bucket", "team/proj")
    folder = parse("shared/remote", cwd="/work")
    assert (folder.kind, folder.path) == (FOLDER, "/work/shared/remote")
    assert parse("file:///mnt/nfs/p").path == "/mnt/nfs/p"


def test_remote_names_and_endpoint_rules(cli, project, tmp_path):
    assert cli("remote", "add", "cafe", str(tmp_path)).exit_code == 2  # reads as an id
    assert cli("remote", "add", "-x", str(tmp_path)).exit_code == 2
    ep = cli("remote", "add", "r1", str(tmp_path), "--endpoint-url", "http://127.0.0.1:9000")
    assert ep.exit_code == 2 and "s3://" in ep.stderr
    bad = cli("remote", "add", "r1", "s3://bkt/p", "--endpoint-url", "http://k:s@127.0.0.1:9000")
    assert bad.exit_code == 2 and "credentials" in bad.stderr
    assert (
        cli("remote", "add", "r1", "s3://bkt/p", "--endpoint-url", "http://127.0.0.1:9").exit_code
        == 0
    )
    dup = cli("remote", "add", "r1", str(tmp_path))
    assert dup.exit_code == 1 and "exists" in dup.stderr
    assert cli("remote", "rm", "nope").exit_code == 1
    assert cli("push", "nope-such-id").exit_code == 1  # neither a remote nor an id


def test_no_remote_says_how_to_add_one(cli, project):
    result = cli("push")
    assert result.exit_code == 1 and "datmo remote add" in result.stderr
