"""Run the suites in a child pytest and read back their JUnit XML, as CI does after
`make validate`: one outcome per test case, with the failure or skip message."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from meshsre.checks import Case, read_junit

__all__ = ["Case", "Run", "read_junit", "run"]

SUITES_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Run:
    returncode: int
    cases: tuple[Case, ...]
    properties: dict[str, str]
    output: str

    def outcomes(self, suite: str | None = None) -> dict[str, str]:
        return {c.name: c.outcome for c in self.cases if suite in (None, c.suite)}

    def case(self, name: str) -> Case:
        return next(c for c in self.cases if c.name == name)


def run(args: list[str], junit: Path, env: dict[str, str] | None = None,
        timeout: float = 600.0) -> Run:
    """``pytest <args> --junitxml=<junit>`` from the repository root; ``args`` name the suites
    (e.g. ``suites/test_api.py``) and the targets."""
    cmd = [sys.executable, "-m", "pytest", *args, "-p", "no:cacheprovider",
           f"--junitxml={junit}", "-o", "junit_family=xunit2"]
    done = subprocess.run(cmd, cwd=SUITES_DIR.parent, env=env, capture_output=True, text=True,
                          timeout=timeout)
    cases, properties = read_junit(junit) if junit.exists() else ((), {})
    return Run(done.returncode, cases, properties, done.stdout[-6000:] + done.stderr[-3000:])
