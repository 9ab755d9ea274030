"""`python -m alerts` (what `make alerts` runs): regenerate alerts/build/ from the SLO catalog,
rule files first, then the backtest of those rules (backtest.json and backtest.md)."""

from __future__ import annotations

import sys

from alerts.backtest import BacktestError, backtest
from alerts.backtest import write as write_backtest
from alerts.rules import BUILD_DIR, write


def main() -> int:
    for path in write(BUILD_DIR):
        print(path.relative_to(BUILD_DIR.parent.parent))
    try:
        doc = backtest()
    except BacktestError as exc:
        print(f"alerts: backtest: {exc}", file=sys.stderr)
        return 1
    for path in write_backtest(doc, BUILD_DIR):
        print(path.relative_to(BUILD_DIR.parent.parent))
    if not doc["passed"]:
        failed = ", ".join(g["name"] for g in doc["gates"] if not g["passed"])
        print(f"alerts: the backtest failed its gates ({failed}): see alerts/build/backtest.md",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
