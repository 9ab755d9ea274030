"""Writers from several replicas on one PostgreSQL: registrations (each appends to the audit
log under the cluster-wide write lock) and allowed decisions a second, summed over the
replicas, wrk driving each replica at once. A shared machine moves these figures: compare
runs made back to back.

    python -m mesh.bench.replicas [--replicas 3] [--seconds 5] [--connections 16]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg

from mesh.bench.__main__ import _pg_database
from mesh.bench.workload import decision_requests, registration_requests
from mesh.bench.wrk import WrkResult, run_wrk
from mesh.process import MeshProcess

# The limits stay on but out of reach, as in `make bench`.
ENV = {
    "MESH_RATE_LIMIT_PER_MINUTE": "100000000",
    "MESH_CLIENT_RATE_PER_SECOND": "100000000",
    "MESH_CLIENT_BURST": "100000000",
}


def _lock_waits(url: str, stop: threading.Event) -> list[int]:
    """Every 20 ms, how many sessions wait for the advisory write lock: whether writers
    queue for it, or for something else (CPU, the WAL)."""
    samples = []
    with psycopg.connect(url, autocommit=True) as conn:
        while not stop.wait(0.02):
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'advisory'"
            ).fetchone()
            samples.append(int(row[0]) if row else 0)
    return samples


def _at_once(url: str, urls: list[str], files: list[Path], secs: int, conns: int) -> dict[str, Any]:
    stop = threading.Event()
    with ThreadPoolExecutor(len(urls) + 1) as pool:
        waits = pool.submit(_lock_waits, url, stop)
        runs: list[WrkResult] = list(
            pool.map(lambda uf: run_wrk(uf[0], secs, conns, uf[1]), zip(urls, files, strict=True))
        )
        stop.set()
        samples = waits.result()
    return {
        "per_s": round(sum(r["requests_per_s"] for r in runs), 1),
        "errors": sum(r["errors"] for r in runs),
        "by_replica": [r["requests_per_s"] for r in runs],
        "sessions_waiting_for_the_lock_mean": round(statistics.fmean(samples or [0]), 2),
        "samples_with_a_waiter": round(sum(1 for n in samples if n) / max(1, len(samples)), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m mesh.bench.replicas")
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16, help="per replica")
    args = parser.parse_args()
    if min(args.replicas, args.seconds, args.connections) < 1:
        parser.error("--replicas, --seconds and --connections must be at least 1")
    work = Path(tempfile.mkdtemp(prefix="meshsre-bench-replicas-"))
    url, drop = _pg_database()
    procs = [MeshProcess(url, zone="a", replica=str(i), env=ENV) for i in range(args.replicas)]
    try:
        for p in procs:
            p.start()
        urls = [p.url for p in procs]
        n = args.seconds * 4000
        regs = [registration_requests(work / f"regs-{i}.tsv", n) for i in range(len(urls))]
        registrations = _at_once(url, urls, regs, args.seconds, args.connections)
        decide = [
            decision_requests(u, [work / f"decide-{i}.tsv"], agents=100, requests=n)[0]
            for i, u in enumerate(urls)
        ]
        decisions = _at_once(url, urls, decide, args.seconds, args.connections)
    finally:
        for p in procs:
            p.stop()
        drop()
    print(
        json.dumps(
            {
                "replicas": args.replicas,
                "seconds": args.seconds,
                "connections_per_replica": args.connections,
                "registrations": registrations,
                "decisions": decisions,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
