"""The local cluster as `meshsre status --json` describes it. Read through a subprocess, so
load tests, drills and the nightly job depend on the launcher's contract, not its internals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["StatusUnavailable", "local_cluster"]

MESHSRE = str(Path(sys.executable).with_name("meshsre"))


class StatusUnavailable(Exception):
    """`meshsre status --json` could not be run or did not answer with JSON."""


def local_cluster(state_dir: str, timeout: float = 30.0) -> dict[str, Any]:
    try:
        done = subprocess.run(
            [MESHSRE, "status", "--json", "--state-dir", state_dir],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        info = json.loads(done.stdout or "{}")
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        raise StatusUnavailable(f"`meshsre status` failed: {exc}") from exc
    if not isinstance(info, dict):
        raise StatusUnavailable("`meshsre status --json` did not answer with an object")
    return info
