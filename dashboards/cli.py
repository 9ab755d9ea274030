"""`meshsre dashboards ...`: build, lint and push the Grafana dashboards."""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["dashboards"]


@click.group()
def dashboards() -> None:
    """Grafana dashboards generated from dashboards/*.py."""


@dashboards.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (default: dashboards/build).")
def build(out: Path | None) -> None:
    """Write the dashboard JSON and the sidecar ConfigMaps."""
    from dashboards.build import BUILD_DIR, write

    for path in write(out or BUILD_DIR):
        click.echo(str(path))


@dashboards.command()
def lint() -> None:
    """Check every dashboard against the telemetry contract and the dashboard rules."""
    from dashboards.build import all_dashboards
    from dashboards.lint import lint_dashboard

    problems = [p for board in all_dashboards() for p in lint_dashboard(board)]
    for problem in problems:
        click.echo(problem, err=True)
    if problems:
        raise SystemExit(1)
    click.echo("dashboards: no problems")


@dashboards.command()
@click.option("--grafana-url", envvar="GRAFANA_URL", required=True,
              help="Base URL of Grafana, e.g. http://127.0.0.1:3000 (env GRAFANA_URL).")
@click.option("--token", envvar="GRAFANA_TOKEN", required=True,
              help="Service account token with the Editor role (env GRAFANA_TOKEN).")
@click.option("--folder", default=None, help="Folder title; created when missing "
              "(default: the General folder).")
@click.option("--timeout", default=10.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Seconds to wait for each Grafana request.")
def push(grafana_url: str, token: str, folder: str | None, timeout: float) -> None:
    """Create or replace every dashboard in Grafana (matched by uid)."""
    from dashboards.build import all_dashboards
    from dashboards.push import GrafanaError, push_all

    try:
        answers = push_all(grafana_url, token, all_dashboards(), folder=folder, timeout=timeout)
    except GrafanaError as exc:
        raise click.ClickException(str(exc)) from None
    for answer in answers:
        click.echo(f"{answer.get('uid')}: {answer.get('status', 'ok')} version "
                   f"{answer.get('version')} {grafana_url.rstrip('/')}{answer.get('url', '')}")
