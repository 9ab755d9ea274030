"""The security suite runs as users run it (`pytest suites --target URL`, JUnit XML out)
against a real mesh process with the production limits: every attack is refused, and the
figures land in the JUnit XML. Against a mesh whose limits are opened wide, the limit checks
fail, saying so. (Against a whole local cluster it runs in test_suites_prometheus.py.)"""

from __future__ import annotations

from pathlib import Path

from mesh.process import ADMIN_TOKEN, MeshProcess
from meshsre import checks as record
from tests.test_suites_api import suites

# What a mesh runs with unless told otherwise (MeshProcess opens the client limit for tests).
PRODUCTION_LIMITS = {"MESH_CLIENT_RATE_PER_SECOND": "300", "MESH_CLIENT_BURST": "600"}


def test_every_attack_is_refused_by_a_real_mesh(sqlite_url: str, tmp_path: Path) -> None:
    with MeshProcess(sqlite_url, env=PRODUCTION_LIMITS) as proc:
        result = suites(tmp_path, "suites/test_security.py", "--target", proc.url,
                        "--admin-token", ADMIN_TOKEN)
    assert result.returncode == 0, result.output
    assert set(result.outcomes().values()) == {"passed"}, result.outcomes()
    assert len(result.cases) == 11
    figures = result.properties
    assert figures["security.slow_bodies.slow_connections_held"] == "300"
    rec = record.from_junit("security", "Security", tmp_path / "junit.xml", proc.url, 1.0, 2.0)
    assert rec["passed"] and len(rec["checks"]) == 11
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
