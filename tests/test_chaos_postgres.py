"""The backup-restore drill on PostgreSQL, as `meshsre chaos backup-restore` against a local
cluster (3 zones x 1 replica) on a throwaway database: pg_dump under load, DROP DATABASE as the
disaster, pg_restore into a fresh database renamed into place, replicas reconnecting."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.chaoskit import chaos
from tests.clusterkit import meshsre
from tests.conftest import PG_ADMIN_URL, temporary_database

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    state = tmp_path_factory.mktemp("chaos-pg-cluster")
    with temporary_database() as url:
        done = meshsre("up", "--state-dir", str(state), "--base-port", "0",
                       "--replicas-per-zone", "1", "--storage", url, "--without", "prometheus",
                       "--without", "alertmanager")
        try:
            assert done.returncode == 0, done.stdout + done.stderr
            yield state, url
        finally:
            meshsre("down", "--state-dir", str(state))
            name = url.rsplit("/", 1)[1]
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}_restoring" WITH (FORCE)')


def test_backup_restore_on_postgresql_keeps_the_chain_and_measures_rto_and_rpo(
    cluster: tuple[Path, str], tmp_path: Path,
) -> None:
    state, _ = cluster
    done, rec = chaos(state, tmp_path, "backup-restore", "write_seconds=3")
    m = rec["measurements"]
    print(f"\nMEASURED backup-restore (PostgreSQL, under load): RTO {m['rto_seconds']} s"
          f" {m['rto_phases']}, RPO {m['rpo_seconds']} s, {m['writes_lost']} acknowledged"
          f" writes lost ({m['writes_lost_before_backup']} before the backup), archive"
          f" {m['backup']['size_bytes']} bytes")
    assert done.returncode == 0, "\n".join(rec["failures"]) + done.stderr[-2000:]
    assert m["backend"] == "postgresql" and m["backup"]["integrity"] == "pg_dump ok"
    assert m["chain_ok"] and m["manifest_match"] and m["smoke_write"]
    assert m["writes_lost_before_backup"] == 0
    assert 0 < m["rto_seconds"] <= 120 and m["rpo_seconds"] >= 3
    intact = next(r for r in rec["method"] if r["name"] == "backup-is-intact")
    assert intact["output"]["integrity"] == "pg_restore --list ok"
