"""The security suite runs as users run it (`pytest suites --target URL`, JUnit XML out)
against a real mesh process with the production limits: every attack is refused, and the
figures land in the JUnit XML. Against a mesh whose limits are opened wide, the limit checks
fail, saying so. (Against a whole local cluster it runs in test_suites_prometheus.py.)"""

from __future__ import annotations

import json
import time
from pathlib import Path

from mesh.process import ADMIN_TOKEN, MeshProcess
from meshsre import checks as record
from tests.apiclient import register
from tests.test_suites_api import suites

# What a mesh runs with unless told otherwise (MeshProcess opens the client limit for tests).
PRODUCTION_LIMITS = {"MESH_CLIENT_RATE_PER_SECOND": "300", "MESH_CLIENT_BURST": "600"}


def test_every_attack_is_refused_by_a_real_mesh(sqlite_url: str, tmp_path: Path) -> None:
    with MeshProcess(sqlite_url, env=PRODUCTION_LIMITS) as proc:
        result = suites(tmp_path, "suites/test_security.py", "--target", proc.url,
                        "--admin-token", ADMIN_TOKEN, "--audit-storage", sqlite_url)
    assert result.returncode == 0, result.output
    assert set(result.outcomes().values()) == {"passed"}, result.outcomes()
    assert len(result.cases) == 13
    figures = result.properties
    assert figures["security.slow_bodies.slow_connections_held"] == "300"
    rec = record.from_junit("security", "Security", tmp_path / "junit.xml", proc.url, 1.0, 2.0)
    assert rec["passed"] and len(rec["checks"]) == 13
    assert rec["figures"]["slow_bodies.slow_connections_held"] == "300"
    assert int(figures["security.flood.answered_429"]) > 0
    assert int(figures["security.agent_rate.signed_requests_before_429"]) <= 125


def test_the_limit_checks_fail_against_a_mesh_with_its_limits_opened(
    sqlite_url: str, tmp_path: Path
) -> None:
    opened = {"MESH_RATE_LIMIT_PER_MINUTE": "1000000"}  # and MeshProcess's open client limit
    with MeshProcess(sqlite_url, env=opened) as proc:
        result = suites(tmp_path, "suites/test_security.py", "--target", proc.url,
                        "-k", "rate_limit or flood")
    failed = {c.name: c.message for c in result.cases if c.outcome == "failed"}
    assert set(failed) == {"test_an_agent_over_its_rate_limit_gets_429_and_loses_no_trust",
                           "test_a_flood_from_one_client_gets_429_with_retry_after"}, failed
    assert "no 429 after 2000 signed requests" in failed[
        "test_an_agent_over_its_rate_limit_gets_429_and_loses_no_trust"]
    assert "no 429 among 2000 requests" in failed[
        "test_a_flood_from_one_client_gets_429_with_retry_after"]


def test_the_audit_checkpoint_is_kept_and_extended_from_run_to_run(
    sqlite_url: str, tmp_path: Path
) -> None:
    kept = tmp_path / "kept" / "audit-checkpoint.json"
    args = ("suites/test_security.py", "-k", "audit", "--admin-token", ADMIN_TOKEN,
            "--audit-checkpoint", str(kept))
    with MeshProcess(sqlite_url, env={"MESH_AUDIT_CHECK_SECONDS": "0.2"}) as proc, \
            proc.client() as client:
        first = suites(tmp_path / "1", *args, "--target", proc.url)
        assert first.returncode == 0, first.output
        assert first.properties["security.checkpoint.previous_size"].startswith("none")
        size = first.properties["security.checkpoint.size"]
        register(client)
        time.sleep(0.5)
        second = suites(tmp_path / "2", *args, "--target", proc.url)
    assert second.returncode == 0, second.output
    assert second.properties["security.checkpoint.previous_size"] == size
    assert int(second.properties["security.checkpoint.size"]) > int(size)
    assert json.loads(kept.read_text())["size"] == int(second.properties[
        "security.checkpoint.size"])
    # Without the store, the tamper check says what it needs.
    skipped = {c.name: c.message for c in second.cases if c.outcome == "skipped"}
    assert "--audit-storage" in skipped["test_a_tampered_or_truncated_audit_log_is_detected"]
