"""The alert backtest: a fault matrix run through the real rule files by promtool, every
alert's firing, detection and reset beside the window arithmetic, and precision and recall.

>>> from alerts.backtest import SLO_MATRIX
>>> "outage" in [s.name for s in SLO_MATRIX]
True
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from alerts.backtest.judge import document
from alerts.backtest.matrix import classes, run
from alerts.backtest.render import markdown
from alerts.backtest.scenarios import SLO_MATRIX, Scenario
from alerts.backtest.series import BacktestError
from alerts.backtest.symptoms import SYMPTOM_MATRIX, Symptom
from alerts.catalog import CATALOG, SLO
from alerts.rules import BUILD_DIR

__all__ = ["JSON_FILE", "MD_FILE", "SLO_MATRIX", "SYMPTOM_MATRIX", "BacktestError",
           "backtest", "markdown", "write"]

JSON_FILE, MD_FILE = "backtest.json", "backtest.md"


def backtest(slos: Sequence[SLO] = CATALOG, scenarios: Sequence[Scenario] = SLO_MATRIX,
             symptoms: Sequence[Symptom] = SYMPTOM_MATRIX, rules_dir: Path = BUILD_DIR,
             jobs: int | None = None, generated: str = "") -> dict[str, Any]:
    """Run the matrix and judge it: the ``meshsre.backtest/v1`` document. ``generated``
    names rules this code generated into ``rules_dir`` (a what-if variant): SLOs with the
    same rules then share a run, as for ``alerts/build``."""
    own = rules_dir.resolve() == BUILD_DIR.resolve() or bool(generated)
    cells = run(slos, scenarios, symptoms, rules_dir, jobs or os.cpu_count() or 2, shared=own)
    stands_for = {k: v.id for k, v in classes(slos).items()} if own else {s.id: s.id for s in
                                                                         slos}
    try:
        shown = str(rules_dir.resolve().relative_to(Path.cwd()))
    except ValueError:
        shown = str(rules_dir)
    name = generated or ("alerts/build" if own else shown)
    return document(cells, slos, stands_for, name)


def _json(value: Any, depth: int = 0) -> str:
    """JSON with one line per cell, alert and row: a rule change shows as the lines it moves."""
    pad = " " * (depth + 1)
    if isinstance(value, dict) and depth < 2:
        items = [f"{pad}{json.dumps(k)}: {_json(value[k], depth + 1)}" for k in sorted(value)]
        return "{\n" + ",\n".join(items) + "\n" + " " * depth + "}"
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        items = [pad + json.dumps(v, sort_keys=True) for v in value]
        return "[\n" + ",\n".join(items) + "\n" + " " * depth + "]"
    return json.dumps(value, sort_keys=True)


def write(doc: dict[str, Any], out_dir: Path) -> list[Path]:
    """backtest.json and backtest.md into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / JSON_FILE, out_dir / MD_FILE]
    texts = [_json(doc) + "\n", markdown(doc)]
    for path, text in zip(paths, texts, strict=True):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    return paths
