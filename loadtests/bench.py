"""How much load one generator core can offer: our Locust workload against wrk, same route,
same run.

A load test whose generator saturates measures the generator. This starts one mesh process,
drives ``GET /health/live`` with wrk (Debian's ``wrk``: C, epoll, the reference) and with the
paced Locust health workload (pacer and recorder included), and compares requests per CPU
second of each generator: the server shares the machine, so raw requests/s would compare the
server, not the generators. It then runs the real mesh workload at a fixed rate to measure its
cost per request (signing included), which is what bounds a nightly run.

    $ python -m loadtests.bench --duration 10      # table on stdout, JSON in reports/out/bench/
"""

from __future__ import annotations

import json
import math
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import httpx

from loadtests.run import LoadRun, run

__all__ = ["main", "measure", "workers_for"]

ROUTE = "/health/live"
HEADROOM = 0.7
_WRK_REQUESTS = re.compile(r"(\d+) requests in ([\d.]+)(ms|s|m)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def mesh_server(token: str) -> Iterator[str]:
    """One `meshsre serve` on SQLite in a temporary directory, stopped for sure."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="meshsre-bench-") as tmp:
        env = {**os.environ, "MESH_ADMIN_TOKEN": token, "MESH_ACCESS_LOG": "false"}
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("meshsre")), "serve", "--host", "127.0.0.1",
             "--port", str(port), "--storage", f"sqlite:///{tmp}/mesh.db"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    if httpx.get(url + "/health/ready", timeout=0.5).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise click.ClickException("the mesh did not start for the benchmark")
                time.sleep(0.1)
            yield url
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(url: str, duration: int, connections: int) -> dict[str, Any]:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise click.ClickException("wrk is not installed: apt-get install -y wrk")
    cpu = _children_cpu()
    out = subprocess.run([wrk, "-t1", f"-c{connections}", f"-d{duration}s", url + ROUTE],
                         capture_output=True, text=True, timeout=duration + 30, check=True)
    cpu = _children_cpu() - cpu
    m = _WRK_REQUESTS.search(out.stdout)
    if m is None:
        raise click.ClickException(f"cannot read wrk's output:\n{out.stdout}")
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0}[m.group(3)]
    requests, seconds = int(m.group(1)), float(m.group(2)) * scale
    return {"tool": f"wrk (1 thread, {connections} connections)", "requests": requests,
            "seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2)}


def run_locust(url: str, workload: str, users: int, rate: float, duration: int,
               out_dir: Path, token: str) -> dict[str, Any]:
    result = run(LoadRun(host=url, users=users, rate=rate, duration=f"{duration}s",
                         workload=workload, run_id=f"bench-{workload}", out_dir=out_dir,
                         revocation_every=0, max_lag=1.0, quiet=True, log_to_file=True,
                         env={"MESH_ADMIN_TOKEN": token}), echo=lambda _: None)
    rec = result.record
    return {"tool": f"locust {workload} workload (1 process, {users} users, {rate:g}/s offered)",
            "requests": rec["totals"]["requests"], "seconds": rec["duration_s"],
            "cpu_seconds": rec["generator"]["cpu_seconds"],
            "saturated": rec["generator"]["saturated"],
            "p99_ms": rec["totals"]["service_ms"]["p99"]}


def _per_core(row: dict[str, Any]) -> dict[str, Any]:
    seconds, cpu = row["seconds"] or 1.0, row["cpu_seconds"]
    return {**row, "rps": round(row["requests"] / seconds, 1),
            "rps_per_core": round(row["requests"] / cpu, 1) if cpu else None}


def measure(duration: int = 10, users: int = 32, health_rate: float = 3000.0,
            mesh_rate: float = 300.0, work_dir: Path | None = None) -> dict[str, Any]:
    token = "bench-admin-token"
    with tempfile.TemporaryDirectory(prefix="meshsre-bench-runs-") as tmp, \
            mesh_server(token) as url:
        out_dir = work_dir or Path(tmp)
        wrk = _per_core(run_wrk(url, duration, users))
        health = _per_core(run_locust(url, "health", users, health_rate, duration, out_dir,
                                      token))
        mesh = _per_core(run_locust(url, "mesh", users, mesh_rate, duration, out_dir, token))
    ratio = (health["rps_per_core"] / wrk["rps_per_core"]
             if health["rps_per_core"] and wrk["rps_per_core"] else None)
    return {
        "route": ROUTE, "duration_s": duration, "cpu_count": os.cpu_count(),
        "rows": [wrk, health, mesh],
        "locust_to_wrk_per_core": round(ratio, 3) if ratio else None,
        # What one Locust process can offer of the real workload at 100% of one core.
        "mesh_workload_capacity_per_core": mesh["rps_per_core"],
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def table(result: dict[str, Any]) -> str:
    head = f"{'generator':<64} {'requests':>9} {'req/s':>9} {'cpu s':>7} {'req/s/core':>11}"
    lines = [head, "-" * len(head)]
    for r in result["rows"]:
        per_core = f"{r['rps_per_core']:.0f}" if r["rps_per_core"] else "-"
        lines.append(f"{r['tool']:<64} {r['requests']:>9} {r['rps']:>9.0f}"
                     f" {r['cpu_seconds']:>7.2f} {per_core:>11}")
    lines.append(f"locust/wrk requests per core on {result['route']}:"
                 f" {result['locust_to_wrk_per_core']}")
    capacity = result["mesh_workload_capacity_per_core"]
    lines.append(f"mesh workload: about {capacity} req/s per generator core (signing included)")
    if capacity:
        sizes = ", ".join(f"{rate:,} req/s -> {workers_for(rate, capacity)}"
                          for rate in (100, 500, 1000, 5000))
        lines.append(f"sizing at {HEADROOM:.0%} of a core per Locust process: {sizes}"
                     " (processes: 1 is plain `meshsre loadtest`, more is --workers N)")
    return "\n".join(lines)


def workers_for(rate: float, capacity_per_core: float) -> int:
    """Locust processes (one core each) a mesh-workload rate needs, kept at HEADROOM of a
    core: a generator near 100% delays its own sends and understates the system."""
    return max(1, math.ceil(rate / (capacity_per_core * HEADROOM)))


@click.command()
@click.option("--duration", default=10, show_default=True, type=click.IntRange(2, 600))
@click.option("--users", default=32, show_default=True, type=click.IntRange(1, 1000),
              help="Locust users, and wrk connections.")
@click.option("--health-rate", default=3000.0, show_default=True,
              type=click.FloatRange(min=0, min_open=True),
              help="Offered rate of the Locust /health/live row: high, but one it can send"
              " (an unsendable rate would bill the dropping of slots to the generator).")
@click.option("--mesh-rate", default=300.0, show_default=True,
              type=click.FloatRange(min=0, min_open=True),
              help="Offered rate of the mesh-workload row.")
@click.option("--out", "out_dir", default="reports/out/bench", show_default=True,
              type=click.Path(file_okay=False, path_type=Path))
def main(duration: int, users: int, health_rate: float, mesh_rate: float,
         out_dir: Path) -> None:
    """Compare the load generator's requests/s per core with wrk's on /health/live."""
    result = measure(duration, users, health_rate, mesh_rate)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "loadgen.json"
    path.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    click.echo(table(result))
    click.echo(f"written: {path}")


if __name__ == "__main__":
    main()
