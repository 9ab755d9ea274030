"""The series a PromQL expression reads, found by parsing it rather than by pattern matching."""

from __future__ import annotations

import re

import promql_parser

__all__ = ["counter_selector", "selectors", "series_names"]

_WINDOW = re.compile(r"\{\{\s*\.window\s*\}\}")  # Sloth's and OpenSLO's window placeholder


def selectors(expr: str) -> list[promql_parser.VectorSelector]:
    """Every vector selector of ``expr``, in order; raises ValueError when it does not parse."""
    found: list[promql_parser.VectorSelector] = []

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


def series_names(expr: str) -> set[str]:
    """Metric names ``expr`` selects by name: ``{"up"}`` for ``absent(up{job="mesh"})``."""
    return {s.name for s in selectors(expr) if s.name}


def counter_selector(query: str) -> str:
    """The counter a Sloth or OpenSLO events query counts: ``x_total{a="b"}`` for
    ``sum(rate(x_total{a="b"}[{{.window}}]))``, ``increase`` or a bare selector alike.

    >>> counter_selector('sum(rate(x_total{code=~"5.."}[{{.window}}]))')
    'x_total{code=~"5.."}'

    Raises ValueError saying which shape is expected.
    """
    shape = "sum(rate(METRIC{...}[{{.window}}])) over one counter"
    try:
        node = promql_parser.parse(_WINDOW.sub("5m", query).strip())
    except ValueError as exc:
        raise ValueError(f"cannot parse {query.strip()!r}: {exc}") from exc
    if isinstance(node, promql_parser.AggregateExpr) and str(node.op) == "sum" \
            and node.modifier is None:
        node = node.expr
    if isinstance(node, promql_parser.Call) and node.func.name in ("rate", "increase") \
            and isinstance(node.args[0], promql_parser.MatrixSelector):
        node = node.args[0].vector_selector
    if not isinstance(node, promql_parser.VectorSelector):
        raise ValueError(f"{query.strip()!r} is not {shape}")
    return str(node).removesuffix("{}")
