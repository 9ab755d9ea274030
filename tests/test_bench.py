"""The benchmark's parsers, on output captured from real wrk and mesh runs."""

import asyncio
from pathlib import Path

import pytest

from mesh.bench.__main__ import _pooled, _server_quantiles
from mesh.bench.inprocess import _measure
from mesh.bench.wrk import WrkResult, parse

WRK = """Running 3s test @ http://127.0.0.1:18181
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     5.91ms    1.21ms  21.43ms   88.40%
    Req/Sec     5.41k     0.98k    6.44k    76.67%
  Latency Distribution
     50%    5.63ms
     75%    6.10ms
     90%    7.02ms
     99%   10.50ms
  16184 requests in 3.00s, 2.58MB read
  Non-2xx or 3xx responses: 12
Requests/sec:   5389.51
Transfer/sec:    880.37KB
"""


def test_wrk_output_gives_rate_errors_and_percentiles() -> None:
    r = parse(WRK)
    assert (r["requests_per_s"], r["requests"], r["errors"]) == (5389.51, 16184, 12)
    assert (r["p50_ms"], r["p90_ms"], r["p99_ms"]) == (5.63, 7.02, 10.5)


def test_server_quantiles_interpolate_within_buckets_as_prometheus_does() -> None:
    name = "agentmesh_policy_decision_duration_seconds"
    metrics = "\n".join([
        f'{name}_bucket{{le="0.0005",policy="standard"}} 50.0',
        f'{name}_bucket{{le="0.001",policy="standard"}} 100.0',
        f'{name}_bucket{{le="+Inf",policy="standard"}} 100.0',
    ])
    q = _server_quantiles(metrics, name)
    assert q == {"p50_ms": 0.5, "p99_ms": 0.99}


def test_in_process_profile_costs_a_registration_more_than_a_hello(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every request must answer 2xx (or the run stops), and a registration does all a hello
    # does plus a signature check and a durable write.
    monkeypatch.setenv("MESH_STORAGE_URL", f"sqlite:///{tmp_path / 'm.db'}")
    monkeypatch.setenv("MESH_ACCESS_LOG", "false")
    result = asyncio.run(_measure(requests=100, concurrency=8, profile=False))
    assert 0 < result["hello_us"] < result["registration_us"]


def test_alternating_rounds_pool_into_the_mean_rate_and_the_cpu_of_every_request() -> None:
    rounds = [
        WrkResult(requests_per_s=4000.0, requests=12000.0, errors=0.0, server_cpu_us=240.0),
        WrkResult(requests_per_s=3000.0, requests=9000.0, errors=2.0, server_cpu_us=261.0),
    ]
    assert _pooled(rounds) == {
        "requests_per_s": 3500.0, "requests": 21000.0, "errors": 2.0, "server_cpu_us": 249.0}


@pytest.mark.parametrize("flag", ["--rounds", "--seconds", "--connections"])
def test_a_count_below_one_is_refused_in_one_line_before_anything_starts(flag: str) -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "mesh.bench", flag, "0"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.splitlines()[-1].endswith(f"error: {flag} must be at least 1")
