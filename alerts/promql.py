"""The series a PromQL expression reads, found by parsing it rather than by pattern matching."""

from __future__ import annotations

import promql_parser

__all__ = ["selectors", "series_names"]


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
