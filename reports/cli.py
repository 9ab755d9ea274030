"""`meshsre report RUN_DIR` and `meshsre nightly`.

Exit codes of `report`: 0 nothing in --fail-on was breached; 1 something was; 2 bad input
(no run records, an unreadable record).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

__all__ = ["nightly", "report"]

EXIT_USAGE = 2


def _fail_on(ctx: click.Context, param: click.Parameter, value: str) -> frozenset[str]:
    from reports.report import parse_fail_on

    try:
        return parse_fail_on(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


@click.command("report")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--prometheus", envvar="PROMETHEUS_URL", default=None,
              help="Prometheus base URL (default: PROMETHEUS_URL, else the run's manifest).")
@click.option("--fail-on", default="slo,drill,alerts,check", show_default=True, callback=_fail_on,
              help="What makes the exit status non-zero: a comma-separated list of slo,"
              " drill, chaos, load, disagreement, alerts; or any; or none.")
@click.option("--history", "history_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="History file (default: RUN_DIR/../history.jsonl).")
@click.option("--rate-window", default=15.0, show_default=True, type=click.FloatRange(1),
              help="Seconds of the rate() window of the charts (at least a few scrape"
              " intervals of your Prometheus).")
def report(run_dir: Path, prometheus: str | None, fail_on: frozenset[str],
           history_path: Path | None, rate_window: float) -> None:
    """Write slo-report.html, .md and .json into RUN_DIR from its run records and Prometheus."""
    from reports.records import RecordError
    from reports.report import exit_code, make_report

    if prometheus is None:
        prometheus = _manifest_prometheus(run_dir)
    try:
        built = make_report(run_dir, prometheus, history_path, rate_window=rate_window)
    except RecordError as exc:
        click.echo(f"report: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    data = built.data
    for d in data["disagreements"]:
        click.echo(f"report: CLIENT AND SERVER DISAGREE on {d['id']}:"
                   f" {d['delta_points']:+.3f} points", err=True)
    if not data["prometheus"]["available"]:
        click.echo(f"report: server view unavailable: {data['prometheus']['why_not']}",
                   err=True)
    failures = built.failures(fail_on)
    for line in failures:
        click.echo(f"report: FAILED {line}", err=True)
    word = "passed" if data["verdict"]["passed"] else "FAILED"
    click.echo(f"report {word}: {built.files['html']}", err=True)
    sys.exit(exit_code(built, fail_on))


def _manifest_prometheus(run_dir: Path) -> str | None:
    import json

    try:
        manifest = json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError):
        return None
    url = manifest.get("prometheus_url") if isinstance(manifest, dict) else None
    return str(url) if url else None


@click.command("nightly")
@click.option("--out", "out_dir", default=os.environ.get("NIGHTLY_OUT", "reports/out"),
              show_default=True, type=click.Path(file_okay=False, path_type=Path))
def nightly(out_dir: Path) -> None:
    """The nightly job: up (on the zonal Patroni tier), steady load, governance, AZ failure
    under load in each fault mode, backup-restore, revocation, event-stream and data-failover
    drills, the security suite, report, down. Durations and rates come from NIGHTLY_* variables
    (NIGHTLY_QUICK=1: the blackhole mode and the data fault, under five minutes)."""
    from reports.nightly import main

    sys.exit(main(out_dir))
