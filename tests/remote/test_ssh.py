"""An ssh remote against a real sshd on a loopback port, with host-key checking on."""

from __future__ import annotations

from pathlib import Path

from remote.test_folder import fsck_clean, ls


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


def test_a_push_over_ssh_killed_anywhere_leaves_the_remote_consistent(
    cli, project, finished_run, ssh_remote, tmp_path
):
    import os
    import shutil
    import signal
    import subprocess
    import time

    from reliability import child_env, context, datmo_argv, report, seeded

    from datmo.core.controller import remotecheck

    seed, rng = seeded("ssh push kills")
    ids = {finished_run("0.1"), finished_run("0.2")}
    url = ssh_remote("killed")
    folder = tmp_path / "ssh-remotes" / "killed"
    cli("remote", "add", "lab", url)
    start = time.monotonic()
    assert cli("push").exit_code == 0
    took = time.monotonic() - start
    landed = 0
    for trial in range(6):
        shutil.rmtree(folder)
        proc = subprocess.Popen(
            datmo_argv("push"),
            cwd=project,
            env=child_env(),
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            proc.wait(timeout=rng.uniform(0, took * 1.2))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # datmo, its ssh and git children
            proc.wait()
            landed += 1
        time.sleep(0.3)  # the host's side notices the connection is gone
        found = remotecheck.check(context(project), "lab").problems
        assert [p for p in found if "holds no datmo remote" not in p] == [], (trial, seed)
        assert cli("push").exit_code == 0, trial
        runs = {p.name[:-5] for p in (folder / "records" / "runs").iterdir() if p.name[0] != "."}
        assert runs == ids
    report("ssh push kills", seed=seed, trials=6, killed=landed)
    # A killed push's ssh master ends ControlPersist (15 s) after its last use; then
    # its private folder is the only thing left, and this test removes its own.
    import glob
    import tempfile

    deadline = time.monotonic() + 30
    for folder in glob.glob(os.path.join(tempfile.gettempdir(), "datmo-ssh-*")):
        if os.stat(folder).st_mtime < start - 1:
            continue  # not this test's
        while os.path.exists(os.path.join(folder, "m")) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not os.path.exists(os.path.join(folder, "m")), "an ssh master outlived its 15 s"
        shutil.rmtree(folder)


def test_a_push_over_ssh_after_one_killed_inside_git_init_finishes(
    cli, project, finished_run, ssh_remote, tmp_path
):
    from remote.test_folder import _half_made_git

    rid = finished_run()
    url = ssh_remote("half")
    _half_made_git(tmp_path / "ssh-remotes" / "half")
    assert cli("remote", "add", "lab", url).exit_code == 0
    pushed = cli("push")
    assert pushed.exit_code == 0, pushed.output
    assert (tmp_path / "ssh-remotes" / "half" / "records" / "runs" / f"{rid}.json").is_file()
    checked = cli("fsck", "--remote", "lab")
    assert checked.exit_code == 0, checked.output
