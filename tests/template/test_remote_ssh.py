"""A real SSH remote: DVC's ssh plugin (dvc-ssh) against an sshd started on loopback.

The sshd runs as the current user on 127.0.0.1 and a free high port, with its
own host and user keys in a temporary folder; nothing outside that folder is
read or changed (except /run/sshd, the privilege-separation folder sshd insists
on when it runs as root). Under CI=true a missing sshd fails the test: .ci/run
installs openssh-server, and a skip would hide that it did not.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import make_clone, require_source, run
from tests.dvc_helpers import drop_local_data, output_hashes
from tests.history_dates import early_moments

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
# A small early snapshot (for the example: 2013-01-05): the transfer, not the pipeline, is under test.
AS_OF_RANK = 2
START_TIMEOUT_S = 20


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory):
    if not os.access(SSHD, os.X_OK):
        message = f"sshd not found at {SSHD}: install openssh-server (.ci/run does)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    base = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "user_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / name)], check=True)
    authorized = base / "authorized_keys"
    shutil.copy(base / "user_key.pub", authorized)
    authorized.chmod(0o600)
    port = free_port()
    (base / "sshd_config").write_text(
        "\n".join(
            [
                f"ListenAddress 127.0.0.1:{port}",
                f"HostKey {base / 'host_key'}",
                f"AuthorizedKeysFile {authorized}",
                f"PidFile {base / 'sshd.pid'}",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PermitRootLogin prohibit-password",
                "UsePAM no",
                "StrictModes no",  # pytest's temporary folders are not laid out as ~/.ssh would be
                "Subsystem sftp internal-sftp",
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    log = open(base / "sshd.log", "w", encoding="utf-8")  # noqa: SIM115 (sshd writes to it until the finally below)
    server = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", str(base / "sshd_config")],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not listening(port):
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"sshd did not start:\n{(base / 'sshd.log').read_text(encoding='utf-8')}")
            time.sleep(0.2)
        yield SimpleNamespace(
            port=port, key=base / "user_key", user=getpass.getuser(), storage=base / "storage", log=base / "sshd.log"
        )
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()


@pytest.mark.long
def test_push_clear_pull_over_ssh_gives_identical_bytes(sshd, tmp_path: Path):
    require_source()
    [as_of] = early_moments(AS_OF_RANK)
    root = make_clone(tmp_path / "clone")
    run(["python", "-m", "src.tools.data_version", "cut", as_of, "--no-push"], root)
    # A cut leaves the branch as it was; the small snapshot is on the tag.
    run(["python", "-m", "src.tools.data_version", "restore", f"data/{as_of}"], root)
    url = f"ssh://{sshd.user}@127.0.0.1:{sshd.port}{sshd.storage}"
    # As a team member would: the SSH remote becomes this machine's default in config.local.
    run(["dvc", "remote", "add", "--local", "--default", "ssh-test", url], root)
    run(["dvc", "remote", "modify", "--local", "ssh-test", "keyfile", str(sshd.key)], root)
    hashes = output_hashes(root)

    run(["dvc", "push"], root)
    assert sorted(p for p in sshd.storage.rglob("*") if p.is_file()), "nothing arrived in the SSH storage"
    assert "Accepted publickey" in sshd.log.read_text(encoding="utf-8")
    drop_local_data(root)
    run(["dvc", "pull"], root)

    assert output_hashes(root) == hashes
    assert "Data and pipelines are up to date." in run(["dvc", "status"], root).stdout
    assert "in sync" in run(["dvc", "status", "--cloud"], root).stdout
