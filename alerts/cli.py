"""`meshsre slo`: list the SLO catalog, export it as OpenSLO, import OpenSLO and Sloth specs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import yaml

from alerts.catalog import SLO, CatalogError
from alerts.openslo import Objective, export_documents, import_documents
from alerts.sloth_spec import import_sloth, is_sloth

__all__ = ["slo"]


@click.group()
def slo() -> None:
    """The SLO catalog that drives rules, alerts, dashboards and reports."""


def _row(obj: Objective) -> str:
    goal = f"{obj.objective:g}%" if isinstance(obj, SLO) else f"< {obj.max_age_seconds // 3600}h"
    return f"{obj.id:<28} {goal:>8}  {obj.window:>4}  {obj.title}"


@slo.command("list")
def list_() -> None:
    """Print every objective of the catalog."""
    for doc in import_documents(export_documents()):
        click.echo(_row(doc))


@slo.command("export")
@click.option("--openslo", "target", required=True, metavar="DIR|-",
              help="Write OpenSLO v1 documents: one file per document into DIR, or all to stdout.")
def export(target: str) -> None:
    """Export the catalog as OpenSLO v1 documents."""
    docs = export_documents()
    if target == "-":
        click.echo(yaml.safe_dump_all(docs, sort_keys=False), nl=False)
        return
    out = Path(target)
    out.mkdir(parents=True, exist_ok=True)
    for doc in docs:
        path = out / f"{doc['kind'].lower()}-{doc['metadata']['name']}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        click.echo(str(path))


def _objectives(docs: list[Any]) -> list[Objective]:
    sloth = [d for d in docs if is_sloth(d)]
    return [o for d in sloth for o in import_sloth(d)] + import_documents(
        [d for d in docs if not is_sloth(d)])


@slo.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, allow_dash=True))
def import_(files: tuple[str, ...]) -> None:
    """Read OpenSLO (v1, v1alpha) and Sloth (prometheus/v1) SLO specs, check them against the
    telemetry contract, and list them."""
    objectives: list[Objective] = []
    for name in files:
        try:
            text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
            objectives += _objectives([d for d in yaml.safe_load_all(text) if d is not None])
        except OSError as exc:
            raise click.ClickException(f"cannot read {exc.filename}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise click.ClickException(f"{name}: not YAML: {exc}") from exc
        except CatalogError as exc:
            raise click.ClickException(f"{name}: {exc}") from exc
    if not objectives:
        raise click.ClickException("no SLO found: give OpenSLO v1 or v1alpha SLO documents, or"
                                   " Sloth prometheus/v1 specs")
    for obj in objectives:
        click.echo(_row(obj))
