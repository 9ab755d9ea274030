"""`meshsre alerts backtest`: the fault matrix through the rule files, printed and written.

Exit status: 0 every gate passed; 1 a gate failed; 2 the backtest could not run.
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
from pathlib import Path

import click

__all__ = ["alerts"]

EXIT_FAILED, EXIT_ERROR = 1, 2


@click.group()
def alerts() -> None:
    """The alerting rules generated from the SLO catalog."""


def _pick(kind: str, wanted: tuple[str, ...], known: list[str]) -> list[str]:
    unknown = [w for w in wanted if w not in known]
    if unknown:
        raise click.BadParameter(f"unknown {kind} {', '.join(unknown)}: choose from"
                                 f" {', '.join(known)}", param_hint=f"--{kind}")
    return list(wanted) or known


@alerts.command("backtest")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("reports/out/backtest"), show_default=True,
              help="Where backtest.json and backtest.md go.")
@click.option("--rules", "rules_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Measure these rule files (slo-<id>.rules.yml and"
              " mesh.rules.yml) instead of alerts/build, e.g. an older version's.")
@click.option("--slo", "slo_ids", multiple=True, metavar="ID", help="Only this SLO (repeat).")
@click.option("--scenario", "names", multiple=True, metavar="NAME",
              help="Only this scenario of the SLO or symptom matrix (repeat).")
@click.option("--low-traffic", "policy", metavar="POLICY", default=None,
              help="What if every SLO had this low-traffic policy: off, min-errors=N or"
              " min-events=N (the catalog's rules, regenerated in a temporary directory).")
@click.option("--for", "fors", multiple=True, metavar="SEVERITY=DURATION",
              help="What if the burn alerts of a severity had this `for`, e.g. page=2m"
              " (repeat for ticket=1h).")
@click.option("--jobs", type=click.IntRange(1), default=None,
              help="promtool processes at once (default: one per CPU).")
@click.option("--quiet", is_flag=True, help="Print only the verdict, not the tables.")
def backtest(out_dir: Path, rules_dir: Path | None, slo_ids: tuple[str, ...],
             names: tuple[str, ...], policy: str | None, fors: tuple[str, ...],
             jobs: int | None, quiet: bool) -> None:
    """Run every SLO and symptom alert through its fault matrix in promtool (no waiting:
    days of evaluations take seconds), then print each alert's firing, detection and reset
    times beside the window arithmetic, precision, recall and the gates."""
    from alerts.backtest import SLO_MATRIX, SYMPTOM_MATRIX, BacktestError, markdown, write
    from alerts.backtest import backtest as run
    from alerts.backtest.variant import parse_for, parse_policy, write_rules
    from alerts.catalog import CATALOG
    from alerts.rules import BUILD_DIR

    ids = _pick("slo", slo_ids, [s.id for s in CATALOG])
    every = [s.name for s in SLO_MATRIX] + [s.name for s in SYMPTOM_MATRIX]
    chosen = set(_pick("scenario", names, every))
    slos = [s for s in CATALOG if s.id in ids]
    try:
        low_traffic = parse_policy(policy) if policy else None
        what_if = parse_for(fors)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    if low_traffic is not None:
        slos = [dataclasses.replace(s, low_traffic=low_traffic) for s in slos]
    rules = rules_dir or BUILD_DIR
    with tempfile.TemporaryDirectory(prefix="meshsre-what-if-") as tmp:
        generated = ""
        if low_traffic is not None or what_if:
            rules, generated = Path(tmp), " ".join(
                ([f"--low-traffic {policy}"] if policy else []) + [f"--for {f}" for f in fors])
            write_rules(rules, slos, low_traffic, what_if)
        for needed in ["mesh.rules.yml", *(f"slo-{i}.rules.yml" for i in ids)]:
            if not (rules / needed).is_file():
                raise click.ClickException(f"{rules / needed} does not exist: run `make"
                                           " alerts` or point --rules at rule files")
        try:
            doc = run(slos, [s for s in SLO_MATRIX if s.name in chosen],
                      [s for s in SYMPTOM_MATRIX if s.name in chosen], rules, jobs,
                      generated=f"the catalog's rules with {generated}" if generated else "")
        except BacktestError as exc:
            click.echo(f"backtest: {exc}", err=True)
            sys.exit(EXIT_ERROR)
    paths = write(doc, out_dir)
    if not quiet:
        click.echo(markdown(doc), nl=False)
    for gate in doc["gates"]:
        if not gate["passed"]:
            click.echo(f"backtest: FAILED {gate['name']}: {'; '.join(gate['failures'][:5])}",
                       err=True)
    click.echo(f"backtest {'passed' if doc['passed'] else 'FAILED'}: {paths[0]}, {paths[1]}",
               err=True)
    sys.exit(0 if doc["passed"] else EXIT_FAILED)
