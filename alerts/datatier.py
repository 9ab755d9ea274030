"""Alerts of the zonal data tier (`--storage patroni`): a PostgreSQL per zone under Patroni,
with etcd holding the leader key. They read Patroni's and etcd's own metrics, scraped as the
jobs ``patroni`` and ``etcd``; the mesh's telemetry contract does not cover them, so the
series they name are listed here (``SERIES``) and checked against the real endpoints by
``tests/test_datatier.py``.
"""

from __future__ import annotations

from typing import Any

from alerts.symptoms import _alert as alert  # one shape for every alert rule

__all__ = ["ETCD_JOB", "GROUP", "LAG_BYTES", "PATRONI_JOB", "SERIES", "data_tier_groups"]

PATRONI_JOB, ETCD_JOB = "patroni", "etcd"
GROUP = "agentmesh-data-tier"
# Patroni's maximum_lag_on_failover (mesh/local/datatier.py): a standby further behind than
# this is not promoted, so the tier has one standby fewer to fail over to.
LAG_BYTES = 1048576
SERIES = frozenset({
    "patroni_primary",
    "patroni_replica",
    "patroni_postgres_timeline",
    "patroni_xlog_location",
    "patroni_xlog_received_location",
    "etcd_server_has_leader",
})

_P, _E = f'{{job="{PATRONI_JOB}"}}', f'{{job="{ETCD_JOB}"}}'


def _alerts() -> list[dict[str, Any]]:
    return [
        alert(
            "MeshDatabaseNoPrimary",
            f"max by (job) (patroni_primary{_P}) == 0",
            "1m", "page",
            "The data tier has no PostgreSQL primary.",
            "No member of {{ $labels.job }} has been the primary for a minute: every write of"
            " the mesh fails. A failover takes about 20 s; this one did not happen.",
        ),
        alert(
            "MeshDatabasePrimaryChanged",
            # The highest timeline grows only when a standby is promoted; a member that
            # restarts (its timeline 0 while down) does not move the maximum. Against the
            # lowest maximum of the last 10 minutes, not the value 10 minutes ago, so that a
            # failover in a cluster younger than that tickets too.
            f"max by (job) (patroni_postgres_timeline{_P})\n"
            f"> min_over_time((max by (job) (patroni_postgres_timeline{_P}))[10m:])",
            "0m", "ticket",
            "The PostgreSQL primary changed.",
            "{{ $labels.job }} promoted a standby in the last 10 minutes (timeline now"
            " {{ $value }}): find out why the old primary failed and whether it rejoined.",
        ),
        alert(
            "MeshDatabaseReplicationLagHigh",
            f"max by (job) (patroni_xlog_location{_P})\n"
            "- on (job) group_right ()\n"
            f"(patroni_xlog_received_location{_P} and on (instance) patroni_replica{_P} == 1)\n"
            f"> {LAG_BYTES}",
            "2m", "ticket",
            "A PostgreSQL standby lags behind the primary.",
            "Standby {{ $labels.instance }} in zone {{ $labels.zone }} is {{ $value | humanize1024"
            " }}B behind the primary: beyond maximum_lag_on_failover, it would not be promoted.",
        ),
        alert(
            "MeshEtcdQuorumLost",
            # A majority of members must see a leader: one member cut off from the others
            # (its zone partitioned) has none, and the cluster is still whole. Members down
            # have no sample, and count against the majority through `up`.
            f"sum by (job) (etcd_server_has_leader{_E}) * 2 <= count by (job) (up{_E})\n"
            f"or\nsum by (job) (up{_E}) * 2 <= count by (job) (up{_E})",
            "1m", "page",
            "The etcd cluster has lost its quorum.",
            "{{ $labels.job }} has had no majority of its members seeing a leader for a"
            " minute: Patroni cannot renew the leader key, so the primary demotes itself and"
            " no failover can happen.",
        ),
    ]


def data_tier_groups() -> list[dict[str, Any]]:
    return [{"name": GROUP, "rules": _alerts()}]
