"""The drills at the governance sidecars, for real: `meshsre chaos revocation` and `meshsre
chaos event-stream` against a local cluster with its own NATS JetStream and a sidecar per zone
(2 zones x 1 replica, SQLite, HAProxy, Prometheus) under a constant-rate Locust load.

Measurements are printed (run with -s to see them).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mesh.local.platform import LocalPlatform
from mesh.local.state import StateDir
from tests.chaoskit import chaos
from tests.clusterkit import describe, meshsre

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    state = tmp_path_factory.mktemp("governed-cluster")
    done = meshsre("up", "--state-dir", str(state), "--base-port", "0", "--zones", "a,b",
                   "--replicas-per-zone", "1", "--sidecars-per-zone", "1", "--without",
                   "alertmanager")
    try:
        assert done.returncode == 0, done.stdout + done.stderr
        yield state
    finally:
        meshsre("down", "--state-dir", str(state))


def _phase(rec: dict, phase: str) -> dict:
    return rec["measurements"]["sidecars"]["phases"][phase]


def test_the_revocation_drill_also_times_enforcement_on_every_sidecar(
    cluster: Path, tmp_path: Path,
) -> None:
    done, rec = chaos(cluster, tmp_path, "revocation", "rounds=4")
    assert done.returncode == 0, "\n".join(rec["failures"]) + done.stderr[-2000:]
    sidecars = rec["measurements"]["sidecars"]
    under_load = sidecars["phases"]["under load"]
    print(f"\nMEASURED at sidecars (2 zones, under load): {under_load}")
    assert under_load["samples"] == 4 * 2 and under_load["unenforced"] == 0
    assert under_load["channels"] == ["jetstream"] and under_load["p99_s"] < 1.0
    assert {row["sidecar"] for row in sidecars["per_sidecar"]} == {
        u.removeprefix("http://") for u in describe(cluster)["sidecars"]}
    assert rec["objectives"]["sidecar-revocation-under-load"]["met"] is True


def test_with_the_event_stream_stopped_sidecars_fall_back_and_still_enforce_revocations(
    cluster: Path, tmp_path: Path,
) -> None:
    done, rec = chaos(cluster, tmp_path, "event-stream", "rounds=3")
    assert done.returncode == 0, "\n".join(rec["failures"]) + done.stderr[-2000:]
    with_stream, without = _phase(rec, "with the stream"), _phase(rec, "without the stream")
    restored = _phase(rec, "stream restored")
    print(f"\nMEASURED revocation to enforcement at sidecars: with the stream {with_stream},"
          f" without it {without}, restored {restored}")
    assert with_stream["channels"] == restored["channels"] == ["jetstream"]
    assert without["channels"] == ["fallback"]
    for phase in (with_stream, without, restored):
        assert phase["samples"] == 3 * 2 and phase["unenforced"] == 0
    # Polling every 0.5 s: slower than the stream, and still far inside the PRD's 5 s.
    assert without["p99_s"] < 5.0
    assert rec["fault"]["activity"] == "stop-event-stream"
    assert rec["fault"]["ended_at"] > rec["fault"]["started_at"]
    platform = LocalPlatform(StateDir(cluster))
    assert platform.restore_event_stream(timeout=10)["started"] is None  # already back
