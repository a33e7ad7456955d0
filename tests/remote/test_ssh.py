"""An ssh remote against a real sshd on a loopback port, with host-key checking on."""

from __future__ import annotations

from pathlib import Path

from test_folder import fsck_clean, ls


def test_push_clone_pull_and_fsck_over_ssh(
    cli, project, finished_run, ssh_remote, tmp_path, monkeypatch
):
    rid = finished_run()
    url = ssh_remote("proj")
    assert cli("remote", "add", "lab", url).exit_code == 0
    pushed = cli("push")
    assert pushed.exit_code == 0, pushed.output
    assert "pushed 1 run(s)" in pushed.stdout
    assert "nothing to push" in cli("push").stdout
    checked = cli("fsck", "--remote", "lab")
    assert checked.exit_code == 0, checked.output
    monkeypatch.chdir(tmp_path)
    cloned = cli("clone", url, "copy")
    assert cloned.exit_code == 0, cloned.output
    monkeypatch.chdir(tmp_path / "copy")
    assert ls(cli)[rid]["origin"] == "origin"
    fsck_clean(tmp_path / "copy")
    verified = cli("rerun", rid[:8], "--verify")
    assert verified.exit_code == 0, verified.output
    # a new run in the clone travels back
    assert cli("push").exit_code == 0
    monkeypatch.chdir(project)
    pulled = cli("pull", "lab")
    assert pulled.exit_code == 0 and "pulled 1 run(s)" in pulled.stdout, pulled.output
    fsck_clean(project)


def test_an_unknown_host_key_is_refused(cli, project, finished_run, sshd, tmp_path, monkeypatch):
    finished_run()
    config = Path(sshd.ssh_command.split("-F ", 1)[1])
    strict = tmp_path / "ssh_config"
    strict.write_text(
        config.read_text().replace("UserKnownHostsFile", "UserKnownHostsFile /dev/null #")
    )
    monkeypatch.setenv("DATMO_SSH_COMMAND", f"ssh -F {strict}")
    cli("remote", "add", "lab", sshd.url(tmp_path / "never"))
    refused = cli("push")
    assert refused.exit_code == 1, refused.output
    assert "cannot reach" in refused.stderr and "Host key verification failed" in refused.stderr
    assert not (tmp_path / "never").exists()
