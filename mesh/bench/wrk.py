"""Driving wrk: pinned to its own core, replaying pre-generated requests, parsed output."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

__all__ = ["WrkResult", "run_wrk"]

REPLAY = Path(__file__).with_name("replay.lua")
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


class WrkResult(dict[str, float]):
    """requests_per_s, requests, errors (non-2xx and socket errors), p50/p90/p99 in ms."""


def _seconds(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError(f"unexpected wrk duration {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse(output: str) -> WrkResult:
    result = WrkResult()
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    if rate is None or total is None:
        raise ValueError(f"unexpected wrk output:\n{output}")
    result["requests_per_s"], result["requests"] = float(rate.group(1)), float(total.group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    sock = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    result["errors"] = float(non2xx.group(1) if non2xx else 0) + (
        sum(float(g) for g in sock.groups()) if sock else 0.0
    )
    for pct in ("50", "90", "99"):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", output, re.MULTILINE)
        if m:
            result[f"p{pct}_ms"] = round(_seconds(m.group(1)) * 1000, 3)
    return result


def run_wrk(
    url: str, seconds: int, connections: int, requests_file: Path | None = None, core: int = 1
) -> WrkResult:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    cmd = [
        "taskset",
        "-c",
        str(core),
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        url,
    ]
    if requests_file is not None:
        cmd[-1:-1] = ["-s", str(REPLAY)]
        cmd += ["--", str(requests_file)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=seconds + 30)
    return parse(out.stdout)
