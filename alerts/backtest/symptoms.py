"""The fault matrix of the symptom alerts (``alerts/symptoms.py``): scenarios of their own.

Each scenario gives its input series in promtool's notation (one sample a minute unless
``step`` says otherwise), the minutes its fault lasts, and the alerts that must fire; every
other alert of the rule files must stay quiet. The first alert of ``fires`` is timed: its
condition holds from ``lag`` minutes after the fault's start (1: the scrape that sees it;
more when a rate window or a budget must fill first) until ``clears`` minutes after the
fault's end, and it fires once that has lasted the rule's ``for``. A series shows the fault
in its samples after ``fault[0]`` up to and including ``fault[1]``.

Adding an alert to ``alerts/symptoms.py`` means adding here a scenario where it fires and
one where it must not (``tests/test_backtest.py`` checks both exist).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SYMPTOM_MATRIX", "Symptom"]


@dataclass(frozen=True)
class Symptom:
    name: str
    title: str
    fires: tuple[str, ...]  # alerts that must fire, the timed one first; () all stay quiet
    minutes: int
    fault: tuple[int, int]  # (start, end) in minutes
    series: tuple[tuple[str, str], ...]
    lag: int = 1
    clears: int | None = 1  # None: still holds at the end of the run
    rule_files: tuple[str, ...] = ("mesh.rules.yml",)
    step: int = 1
    note: str = ""

    def scraped(self) -> tuple[tuple[str, str], ...]:
        """The series, with healthy replicas in zones a and b unless the scenario gives its
        own: without any target, MeshTargetsAbsent would page in every scenario."""
        if any(s.startswith("up{") for s, _ in self.series):
            return self.series
        return self.series + tuple((s, _hold((self.minutes // self.step + 1, 1)))
                                   for s, _ in _ok(("a", 0), ("b", 0)))


def _on(zone: str, n: int = 0, /, **labels: str) -> str:
    extra = "".join(f',{k}="{v}"' for k, v in labels.items())
    return f'{{job="mesh",instance="{zone}{n}",zone="{zone}",replica="{zone}{n}"{extra}}}'


def _count(*pieces: tuple[int, int]) -> str:
    """A counter at 0, then each piece adds ``inc`` at each of its ``n`` samples."""
    tokens, value = ["0"], 0
    for n, inc in pieces:
        tokens.append(f"{value + inc}{inc:+d}x{n - 1}" if n > 1 else str(value + inc))
        value += n * inc
    return " ".join(tokens)


def _hold(*pieces: tuple[int, float | str]) -> str:
    """A gauge holding each value for ``n`` samples (``_`` missing, ``stale`` a marker).
    promtool reads ``5x2`` as three samples but ``_x2`` as two."""
    return " ".join(f"_x{n}" if v == "_" else f"{v}x{n - 1}" if n > 1 else str(v)
                    for n, v in pieces)


def _ok(*targets: tuple[str, int]) -> tuple[tuple[str, str], ...]:
    """Healthy, scraped replicas: up and agentmesh_store_up at 1."""
    return tuple((f"{m}{_on(z, n)}", _hold((91, 1))) for z, n in targets
                 for m in ("up", "agentmesh_store_up"))


def _replica(zone: str, up: str, store: str) -> tuple[tuple[str, str], ...]:
    return ((f"up{_on(zone)}", up), (f"agentmesh_store_up{_on(zone)}", store))


def _down(zone: str, n: int = 0) -> tuple[tuple[str, str], ...]:
    """A replica that fails its scrapes after minute 30 until 60: up 0, its series stale."""
    return ((f"up{_on(zone, n)}", _hold((31, 1), (30, 0), (30, 1))),
            (f"agentmesh_store_up{_on(zone, n)}", _hold((31, 1), (1, "stale"), (29, "_"),
                                                        (30, 1))))


def _gone(zone: str, n: int, minutes: int) -> tuple[tuple[str, str], ...]:
    """A replica missing from service discovery for ``minutes`` after minute 30."""
    values = _hold((31, 1), (1, "stale"), *([(minutes - 1, "_")] if minutes > 1 else []),
                   (60 - minutes, 1))
    return tuple((f"{m}{_on(zone, n)}", values) for m in ("up", "agentmesh_store_up"))


def _scrape_seconds(a: str, b: str) -> tuple[tuple[str, str], ...]:
    """How long Prometheus's scrapes of zones a and b take (scrape_duration_seconds)."""
    return tuple((f"scrape_duration_seconds{_on(z)}", values) for z, values in (("a", a),
                                                                                ("b", b)))


def _revocations(fast: str, total: str) -> tuple[tuple[str, str], ...]:
    """Zone a's revocation histogram: fast ones by 0.1 s, the others between 1 and 2.5 s."""
    def bucket(le: str, values: str) -> tuple[str, str]:
        labels = _on("a", channel="poll", le=le)
        return f"agentmesh_revocation_propagation_seconds_bucket{labels}", values
    return (bucket("0.1", fast), bucket("1.0", fast), bucket("2.5", total),
            bucket("+Inf", total))


def _split(metric: str, good: dict[str, str], bad: dict[str, str],
           pieces: tuple[tuple[int, int, int], ...]) -> tuple[tuple[str, str], ...]:
    """Two counters of one metric from (minutes, good a minute, bad a minute) pieces."""
    return ((f"{metric}{_on('a', **good)}", _count(*((n, g) for n, g, _ in pieces))),
            (f"{metric}{_on('a', **bad)}", _count(*((n, b) for n, _, b in pieces))))


def _api(pieces: tuple[tuple[int, int, int], ...]) -> tuple[tuple[str, str], ...]:
    route = {"route": "/v1/agents", "method": "POST"}
    return _split("agentmesh_api_request_duration_seconds_count", {**route, "code": "201"},
                  {**route, "code": "503"}, pieces)


def _denials(pieces: tuple[tuple[int, int, int], ...]) -> tuple[tuple[str, str], ...]:
    std = {"policy": "standard"}
    calls = _split("agentmesh_tool_call_total", {**std, "decision": "allow"},
                   {**std, "decision": "deny"}, pieces)
    denied = f"agentmesh_policy_violation_count_total{_on('a', **std, rule='denylist')}"
    return (*calls, (denied, _count(*((n, b) for n, _, b in pieces))))


_SLO = ("slo-api-availability.rules.yml", "mesh.rules.yml")
_HOURS = 60  # the API's 1,000 requests a minute, per hourly sample
_HEALTHY = ((30, 60, 0), (30, 30, 30), (30, 60, 0))


SYMPTOM_MATRIX: tuple[Symptom, ...] = (
    Symptom("zone-down", "zone a's only replica fails its scrapes for 30 min",
            ("MeshZoneDown", "MeshReplicaDown"), 90, (30, 60), _ok(("b", 0)) + _down("a")),
    Symptom("zone-targets-gone", "zone a's targets vanish from service discovery for 10 min",
            ("MeshZoneDown",), 90, (30, 40), _ok(("b", 0)) + _gone("a", 0, 10)),
    Symptom("zone-targets-blip", "zone a's targets are absent from one scrape",
            (), 90, (30, 31), _ok(("b", 0)) + _gone("a", 0, 1)),
    Symptom("zone-misses-1-scrape", "zone a's only replica fails one scrape", (), 90, (30, 31),
            _ok(("b", 0)) + _replica("a", _hold((31, 1), (1, 0), (59, 1)),
                                     _hold((31, 1), (1, "stale"), (59, 1)))),
    Symptom("zone-slow", "zone a's scrapes take 400 ms for 30 min (lost packets), zone b's 10 ms",
            ("MeshZoneSlow",), 90, (30, 60),
            _scrape_seconds(_hold((31, 0.01), (30, 0.4), (30, 0.01)), _hold((91, 0.01))),
            clears=2, note="the 2-minute average keeps the last slow scrape a minute longer"),
    Symptom("zones-all-slow", "every zone's scrapes take 400 ms for 30 min (a busy machine)",
            (), 90, (30, 60),
            _scrape_seconds(*[_hold((31, 0.01), (30, 0.4), (30, 0.01))] * 2)),
    Symptom("zone-a-bit-slower", "zone a's scrapes take 30 ms, zone b's 5 ms", (), 90,
            (30, 60), _scrape_seconds(_hold((31, 0.005), (30, 0.03), (30, 0.005)),
                                      _hold((91, 0.005)))),
    Symptom("replica-down", "one of zone a's two replicas fails its scrapes for 30 min",
            ("MeshReplicaDown",), 90, (30, 60), _ok(("a", 0), ("b", 0)) + _down("a", 1)),
    Symptom("store-unreachable", "zone b's replica is scraped but cannot reach its store",
            ("MeshZoneDown", "MeshReplicaDown"), 90, (30, 60),
            _ok(("a", 0)) + _replica("b", _hold((91, 1)), _hold((31, 1), (30, 0), (30, 1)))),
    Symptom("targets-absent", "every mesh target vanishes from service discovery for 15 min",
            ("MeshTargetsAbsent", "MeshZoneDown"), 90, (30, 45),
            _gone("a", 0, 15) + _gone("b", 0, 15), note="every zone pages as well: a zone"
            " whose targets are gone is down, and no inhibition rule silences it"),
    Symptom("targets-blip", "every mesh target is absent from one scrape", (), 90, (30, 31),
            _gone("a", 0, 1) + _gone("b", 0, 1)),
    Symptom("revocations-slow", "every revocation in zone a takes 1-2.5 s for 30 min",
            ("MeshRevocationLagHigh",), 90, (30, 60),
            _revocations(_count((30, 10), (30, 0), (30, 10)), _count((90, 10))), clears=10,
            note="p99 over 10 min stays above 1 s until the last slow revocation leaves it"),
    Symptom("revocations-few-slow", "0.5% of revocations in zone a take 1-2.5 s",
            (), 90, (30, 60), _revocations(_count((90, 199)), _count((90, 200)))),
    Symptom("audit-chain-broken", "a replica finds the audit chain broken for 30 min",
            ("MeshAuditChainBroken",), 90, (30, 60),
            ((f"agentmesh_audit_chain_valid{_on('a')}", _hold((31, 1), (30, 0), (30, 1))),
             (f"agentmesh_audit_chain_valid{_on('b')}", _hold((91, 1))))),
    Symptom("audit-gauge-restart", "a replica restarts and has not checked the chain yet",
            (), 90, (30, 35),
            ((f"agentmesh_audit_chain_valid{_on('a')}",
              _hold((31, 1), (1, "stale"), (4, "_"), (55, 1))),
             (f"agentmesh_audit_chain_valid{_on('b')}", _hold((91, 1))))),
    Symptom("audit-checkpoints-refused", "the witness refuses every replica's checkpoint for"
            " 30 min", ("MeshAuditCheckpointStale",), 90, (30, 60),
            tuple((f"agentmesh_audit_checkpoint_timestamp_seconds{_on(z)}",
                   "0+60x30 1800x29 3660+60x29") for z in ("a", "b")),
            lag=6, note="a checkpoint taken at minute 30 is over 300 s old from minute 36"),
    Symptom("audit-checkpoint-one-replica", "one replica stops signing checkpoints for 30 min,"
            " the other goes on", (), 90, (30, 60),
            ((f"agentmesh_audit_checkpoint_timestamp_seconds{_on('a')}",
              "0+60x30 1800x29 3660+60x29"),
             (f"agentmesh_audit_checkpoint_timestamp_seconds{_on('b')}", "0+60x90"))),
    Symptom("backup-stale", "the newest backup turns 24 h old; a new one comes 30 min later",
            ("MeshBackupStale",), 90, (30, 60),
            ((f"agentmesh_backup_last_success_timestamp_seconds{_on('a')}",
              _hold((61, 1800 - 86400), (30, 3600))),)),
    Symptom("backup-fresh", "a backup every hour", (), 90, (30, 60),
            ((f"agentmesh_backup_last_success_timestamp_seconds{_on('a')}",
              _hold((60, 0), (31, 3600))),)),
    Symptom("breaker-open", "zone a's breaker to postgres is open for 10 min",
            ("MeshCircuitBreakerOpen",), 90, (30, 40),
            ((f"agentmesh_circuit_breaker_state{_on('a', dependency='postgres')}",
              _hold((31, 0), (10, 2), (50, 0))),)),
    Symptom("breaker-flap", "zone a's breaker is open for one scrape", (), 90, (30, 31),
            ((f"agentmesh_circuit_breaker_state{_on('a', dependency='postgres')}",
              _hold((31, 0), (1, 2), (59, 0))),)),
    Symptom("handshakes-rejected", "half the handshakes (1 a second) are rejected for 30 min",
            ("MeshHandshakeFailureSpike",), 90, (30, 60),
            _split("agentmesh_handshake_total", {"result": "success"},
                   {"result": "bad_signature"}, _HEALTHY), lag=6, clears=5,
            note="the share of rejections over 10 min passes 25% after 6 min at 50%"),
    Symptom("handshakes-few-rejected", "half of 2 handshakes a minute are rejected",
            (), 90, (30, 60),
            _split("agentmesh_handshake_total", {"result": "success"},
                   {"result": "bad_signature"}, ((30, 2, 0), (30, 1, 1), (30, 2, 0)))),
    Symptom("tool-calls-denied", "half the standard-policy tool calls are denied for 30 min",
            ("MeshPolicyViolationSpike",), 90, (30, 60), _denials(_HEALTHY), lag=6, clears=5),
    Symptom("tool-calls-some-denied", "a tenth of the tool calls are denied", (), 90, (30, 60),
            _denials(((90, 54, 6),))),
    Symptom("replays", "12 replayed signed requests a minute, among 600 accepted, for 30 min",
            ("MeshReplaySpike",), 90, (30, 60),
            _split("agentmesh_signed_request_total", {"result": "accepted"},
                   {"result": "replayed"}, ((30, 600, 0), (30, 600, 12), (30, 600, 0))),
            lag=3, clears=8, note="over 10 min the rate passes 0.05/s after 3 min at 0.2/s"),
    Symptom("replays-stray", "one replayed signed request a minute", (), 90, (30, 60),
            _split("agentmesh_signed_request_total", {"result": "accepted"},
                   {"result": "replayed"}, ((30, 600, 0), (30, 600, 1), (30, 600, 0)))),
    Symptom("budget-exhausted", "30 days at half the API budget rate, then a 2-hour outage",
            ("MeshErrorBudgetExhausted", "ApiAvailabilityBudgetBurn"), 750 * 60,
            (720 * 60, 722 * 60),
            _api(((720, 1000 * _HOURS - 30, 30), (2, 0, 1000 * _HOURS),
                  (28, 1000 * _HOURS - 30, 30))),
            lag=22, clears=None, rule_files=_SLO, step=60,
            note="the budget is gone 21.6 min into the outage, but samples and evaluations"
            " are hourly: seen at 1 h, and the 15-minute `for` waits for the next hour"),
    Symptom("budget-nearly-spent", "30 days at 0.9x the API budget rate", (), 750 * 60,
            (720 * 60, 722 * 60), _api(((750, 1000 * _HOURS - 54, 54),)),
            rule_files=_SLO, step=60),
)


# The data tier (alerts/datatier.py): Patroni members and etcd members of zones a, b and c.

def _member(metric: str, zone: str, values: str, job: str = "patroni") -> tuple[str, str]:
    port = 8008 if job == "patroni" else 2379
    return f'{metric}{{job="{job}",instance="{zone}:{port}",zone="{zone}"}}', values


def _wal(lag_from_31_to_45: int, lag: int = 0) -> tuple[tuple[str, str], ...]:
    """pg-a writes 10 MB of WAL a minute; pg-b receives it ``lag`` bytes behind, and
    ``lag_from_31_to_45`` behind during the fault."""
    late = lag + lag_from_31_to_45
    return (_member("patroni_replica", "a", _hold((61, 0))),
            _member("patroni_replica", "b", _hold((61, 1))),
            _member("patroni_xlog_location", "a", "100000000+10000000x60"),
            _member("patroni_xlog_received_location", "b",
                    f"{100000000 - lag}+10000000x30 {410000000 - late}+10000000x14"
                    f" {560000000 - lag}+10000000x14"))


def _etcd(*down: str) -> tuple[tuple[str, str], ...]:
    """Three etcd members; those named fail their scrapes from 31 to 45 min. The mesh's own
    replicas are healthy (with an `up` series given, Symptom adds none)."""
    return _ok(("a", 0), ("b", 0)) + tuple(
        _member("up", z, _hold((31, 1), (15, 0), (15, 1)) if z in down else _hold((61, 1)),
                "etcd") for z in "abc")


DATA_TIER_MATRIX: tuple[Symptom, ...] = (
    Symptom("db-no-primary", "the primary dies and no standby is promoted for 15 min",
            ("MeshDatabaseNoPrimary",), 60, (30, 45),
            (_member("patroni_primary", "a", _hold((31, 1), (15, 0), (15, 1))),
             _member("patroni_primary", "b", _hold((61, 0))))),
    Symptom("db-failover", "the primary dies; a standby is primary from the next scrape on",
            ("MeshDatabasePrimaryChanged",), 60, (30, 31),
            (_member("patroni_primary", "a", _hold((31, 1), (30, 0))),
             _member("patroni_primary", "b", _hold((32, 0), (29, 1))),
             _member("patroni_postgres_timeline", "a", _hold((31, 1), (30, 0))),
             _member("patroni_postgres_timeline", "b", _hold((32, 1), (29, 2)))),
            lag=2, clears=11,
            note="one scrape without a primary does not page; the ticket lasts until the"
            " promotion is 10 minutes old"),
    Symptom("db-standby-restart", "a standby restarts (timeline 0 for 3 scrapes)", (), 60,
            (30, 33),
            (_member("patroni_primary", "a", _hold((61, 1))),
             _member("patroni_postgres_timeline", "a", _hold((61, 1))),
             _member("patroni_postgres_timeline", "b", _hold((31, 1), (3, 0), (27, 1)))),
            ),
    Symptom("db-standby-lagging", "a standby receives WAL 2 MiB behind for 15 min",
            ("MeshDatabaseReplicationLagHigh",), 60, (30, 45), _wal(2097152),
            ),
    Symptom("db-standby-slightly-behind", "a standby stays 1,000 bytes behind", (), 60,
            (30, 45), _wal(0, lag=1000)),
    Symptom("etcd-quorum-lost", "two of three etcd members are down for 15 min",
            ("MeshEtcdQuorumLost",), 60, (30, 45), _etcd("b", "c")),
    Symptom("etcd-member-down", "one of three etcd members is down for 15 min", (), 60,
            (30, 45), _etcd("c")),
)
SYMPTOM_MATRIX += DATA_TIER_MATRIX
