"""Checks a pytest suite made against a live deployment: its JUnit XML read back, and the
run record ``reports/out/<run-id>/checks-<name>.json`` built from it, which the report shows
(the security suite in the nightly job). Versioned; a reader refuses a schema it does not know.

Fields (all always present): ``schema`` ("meshsre.checks/v1"), ``schema_version`` (1),
``name``, ``title``, ``target``, ``started_at``, ``ended_at`` (unix s), ``passed`` (no check
failed or errored, and at least one ran), ``checks`` (``[{id, outcome, message}]``, outcome
passed, failed, error or skipped; message its first line), ``figures`` (the JUnit suite
properties the checks recorded under ``<name>.``, e.g. ``security.flood.answered_429``).

>>> record_path(Path("run"), "security").name
'checks-security.json'
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meshsre import runrecord

__all__ = [
    "FIELDS",
    "SCHEMA",
    "SCHEMA_VERSION",
    "Case",
    "from_junit",
    "read",
    "read_junit",
    "record_path",
    "write",
]

SCHEMA = "meshsre.checks/v1"
SCHEMA_VERSION = 1
FIELDS = (
    "schema",
    "schema_version",
    "name",
    "title",
    "target",
    "started_at",
    "ended_at",
    "passed",
    "checks",
    "figures",
)


@dataclass(frozen=True)
class Case:
    suite: str  # the module, e.g. test_api
    name: str  # the test, with its parameters
    outcome: str  # passed, failed, error or skipped
    message: str


def read_junit(path: Path) -> tuple[tuple[Case, ...], dict[str, str]]:
    """The test cases of a JUnit XML file, and the suites' properties."""
    root = ET.parse(path).getroot()
    cases, properties = [], {}
    for suite in root.iter("testsuite"):
        for prop in suite.iter("property"):
            properties[prop.get("name", "")] = prop.get("value", "")
        for case in suite.iter("testcase"):
            outcome, message = "passed", ""
            for tag in ("failure", "error", "skipped"):
                found = case.find(tag)
                if found is not None:
                    outcome = "failed" if tag == "failure" else tag
                    message = (found.get("message") or "") + "\n" + (found.text or "")
            module = case.get("classname", "").rsplit(".", 1)[-1]
            cases.append(Case(module, case.get("name", ""), outcome, message.strip()))
    return tuple(cases), properties


def record_path(run_dir: Path, name: str) -> Path:
    return run_dir / f"checks-{name}.json"


def from_junit(
    name: str, title: str, junit: Path, target: str, started_at: float, ended_at: float
) -> dict[str, Any]:
    cases, properties = read_junit(junit)
    checks = [
        {
            "id": c.name,
            "outcome": c.outcome,
            "message": c.message.splitlines()[0] if c.message else "",
        }
        for c in cases
    ]
    prefix = f"{name}."
    figures = {
        k.removeprefix(prefix): v for k, v in sorted(properties.items()) if k.startswith(prefix)
    }
    ran = [c for c in checks if c["outcome"] != "skipped"]
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "name": name,
        "title": title,
        "target": target,
        "started_at": started_at,
        "ended_at": ended_at,
        "passed": bool(ran) and all(c["outcome"] == "passed" for c in ran),
        "checks": checks,
        "figures": figures,
    }


def write(run_dir: Path, record: dict[str, Any]) -> Path:
    return runrecord.write(record_path(run_dir, str(record["name"])), record)


def read(path: Path) -> dict[str, Any]:
    return runrecord.read(path, SCHEMA, SCHEMA_VERSION, FIELDS)
