"""The governance job end to end (Locust through real sidecars and directly to a real tool,
revocations through a real mesh on a real NATS JetStream), its record, and the report's
governance section built from it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alerts.catalog import GOVERNANCE_OVERHEAD
from loadtests.governance import GovernanceRun, overhead, read, run_governance
from mesh.process import ADMIN_TOKEN
from reports.report import make_report
from tests.sidecarkit import rig


def _load(via: tuple[float, float] | None, direct: tuple[float, float] | None,
          suffix: str = "") -> dict[str, object]:
    routes = {}
    for name, ms in ((f"GET via sidecar{suffix}", via), (f"GET direct{suffix}", direct)):
        if ms is not None:
            routes[name] = {"requests": 100, "failures": 0,
                            "service_ms": {"p50": ms[0], "p99": ms[1]}}
    return {"totals": {"routes": routes}}


def test_the_overhead_is_sidecar_p99_minus_direct_p99_held_to_the_catalog_goal() -> None:
    fast = overhead(_load((1.0, 2.5), (0.5, 1.0)))
    assert (fast["p99_overhead_ms"], fast["p50_overhead_ms"], fast["p99_ratio"]) == (1.5, 0.5,
                                                                                    2.5)
    assert fast["objective"] == {"id": GOVERNANCE_OVERHEAD.id, "max_p99_ms": 5.0, "met": True,
                                 "goal_p99_ms": 2.0, "goal_met": True}
    over_goal = overhead(_load((1.0, 4.0), (0.5, 1.0)))
    assert (over_goal["objective"]["met"], over_goal["objective"]["goal_met"]) == (True, False)
    slow = overhead(_load((1.0, 7.0), (0.5, 1.0)))
    assert slow["objective"]["met"] is False
    unmeasured = overhead(_load(None, (0.5, 1.0)))
    assert unmeasured["p99_overhead_ms"] is None and unmeasured["objective"]["met"] is None
    revoking = overhead(_load((2.0, 9.0), (0.5, 1.0), " while revoking"), " while revoking")
    assert revoking["p99_overhead_ms"] == 8.0


@pytest.mark.slow
def test_the_job_measures_overhead_and_enforcement_on_every_sidecar_and_the_report_shows_them(
    tmp_path: Path,
) -> None:
    with rig(tmp_path / "rig") as r:
        sidecars = [r.sidecar(instance=f"gov-{i}") for i in range(2)]
        rec = run_governance(GovernanceRun(
            sidecars=tuple(s.url for s in sidecars), upstream=r.tool.url,
            replicas=(r.mesh.url,), admin_token=ADMIN_TOKEN, users=6, rate=40.0,
            duration="10s", revoke_every=1.0, run_id="gov", out_dir=tmp_path / "out"),
            echo=lambda _: None)
    path = tmp_path / "out" / "gov" / "governance" / "governance.json"
    assert read(path) == rec
    o = rec["overhead"]
    assert o["via_sidecar"]["requests"] > 50 and o["direct"]["requests"] > 50
    assert o["via_sidecar"]["failures"] == 0 and o["direct"]["failures"] == 0
    assert o["p99_overhead_ms"] == round(o["via_sidecar"]["p99_ms"] - o["direct"]["p99_ms"], 3)
    assert rec["overhead_while_revoking"]["via_sidecar"]["requests"] > 0
    for row in rec["sidecars"]:
        revocations = row["revocations"]
        assert revocations["samples"] >= 2 and revocations["unenforced"] == 0, row
        assert revocations["channels"] == ["jetstream"]
        assert revocations["p99_s"] < 1.0, row  # milliseconds on loopback; 1 s is the goal
        assert row["outcomes"].get("cached", 0) > 0 and row["governance_p99_ms"] is not None
    assert rec["revocation"]["met"] is True and not rec["probe_errors"]

    built = make_report(tmp_path / "out" / "gov")
    governance = built.data["governance"]
    assert [j["name"] for j in governance["jobs"]] == ["governance"]
    assert governance["jobs"][0]["overhead"] == o
    assert built.data["loads"] == []  # tool calls are not the mesh API's load
    html = built.files["html"].read_text()
    assert "Governance sidecars" in html and "Revocation to enforcement on every sidecar" in html
    for row in rec["sidecars"]:
        assert row["url"].removeprefix("http://") in html
    assert "Governance (governance)" in built.files["md"].read_text()
    history = [json.loads(line) for line in
               (tmp_path / "out" / "history.jsonl").read_text().splitlines()]
    assert history[-1]["governance"]["p99_overhead_ms"] == o["p99_overhead_ms"]
