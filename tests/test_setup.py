"""`make setup`'s system step: what a fresh machine lacks is installed as root, or named with
the one command to run; on a machine that has everything it says nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "system-packages"
PACKAGES = ("prometheus", "prometheus-alertmanager", "haproxy", "wrk", "nats-server", "chromium",
            "nftables", "patroni", "etcd-server")


def test_with_every_command_present_it_does_nothing_and_says_nothing() -> None:
    done = subprocess.run([str(SCRIPT)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout == done.stderr == ""


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("runuser") is None,
                    reason="needs root to run the script as another user")
def test_a_user_without_root_gets_the_one_command_to_run_and_a_failure(tmp_path: Path) -> None:
    # A PATH where none of the packages' commands exists.
    done = subprocess.run([shutil.which("runuser") or "runuser", "-u", "nobody", "--",
                           "/bin/bash", str(SCRIPT)],
                          env={"PATH": str(tmp_path)}, capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert lines[0] == f"meshsre needs the Debian packages: {' '.join(PACKAGES)}"
    assert f"apt-get install -y {' '.join(PACKAGES)}" in lines[1] and "sudo" in lines[1]
    assert done.stdout == ""
