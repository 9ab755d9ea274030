"""Running `meshsre chaos NAME` against a local cluster, as a user would, for the drill tests."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.clusterkit import MESHSRE


def chaos(state: Path, out: Path, name: str, *variables: str,
          timeout: float = 300) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """Run the drill with `--var` overrides; returns the process and its run record."""
    argv = [MESHSRE, "chaos", name, "--state-dir", str(state), "--out", str(out),
            "--run-id", name]
    for v in variables:
        argv += ["--var", v]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    path = out / name / f"chaos-{name}.json"
    assert path.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    return done, json.loads(path.read_text())
