"""An S3 remote against moto's S3 server (an emulator of the S3 HTTP API: no real S3
server can be installed here); datmo's S3 code names nothing specific to it."""

from __future__ import annotations

from pathlib import Path

import datmo.core.remote.s3 as s3_module
from remote.test_folder import fsck_clean, ls


def test_push_clone_pull_and_fsck_over_s3(
    cli, project, finished_run, s3_env, tmp_path, monkeypatch
):
    rid = finished_run()
    url = f"s3://{s3_env.bucket}/team/{tmp_path.name}"
    ep = ("--endpoint-url", s3_env.endpoint)
    assert cli("remote", "add", "cloud", url, *ep).exit_code == 0
    pushed = cli("push")
    assert pushed.exit_code == 0, pushed.output
    assert "nothing to push" in cli("push").stdout
    checked = cli("fsck", "--remote", "cloud")
    assert checked.exit_code == 0, checked.output
    monkeypatch.chdir(tmp_path)
    cloned = cli("clone", url, "copy", *ep)
    assert cloned.exit_code == 0, cloned.output
    monkeypatch.chdir(tmp_path / "copy")
    assert ls(cli)[rid]["origin"] == "origin"
    fsck_clean(tmp_path / "copy")
    assert cli("rerun", rid[:8], "--verify").exit_code == 0
    assert cli("push").exit_code == 0  # the rerun goes back, its code in a new git bundle
    monkeypatch.chdir(project)
    pulled = cli("pull")
    assert pulled.exit_code == 0 and "pulled 1 run(s)" in pulled.stdout, pulled.output
    fsck_clean(project)


def test_missing_credentials_are_one_line(
    cli, project, finished_run, s3_env, monkeypatch, tmp_path
):
    finished_run()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    cli("remote", "add", "cloud", f"s3://{s3_env.bucket}/x", "--endpoint-url", s3_env.endpoint)
    refused = cli("push")
    assert refused.exit_code == 1 and "no AWS credentials" in refused.stderr, refused.output


def test_the_s3_code_names_no_emulator():
    source = Path(s3_module.__file__).read_text().lower()
    assert "moto" not in source
