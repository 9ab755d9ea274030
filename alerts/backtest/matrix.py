"""Run the whole fault matrix through the rule files and set every alert's outcome beside
what should have happened: one ``Cell`` per scenario, SLO (if any), alert and severity.

SLOs whose rule files are the same but for names and selectors (the three 99.9%
availability SLOs, the two 99% latency ones) evaluate identically: the series are built from
each SLO's own selectors, so only label values differ. Each such class runs once, through
its first SLO's file, and its figures stand for the others (``measured_as``). Measuring
other rule files (``rules_dir``) runs every SLO.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from alerts.backtest import arithmetic
from alerts.backtest.outcome import Firing
from alerts.backtest.promtool import Case, Measured, run_cases
from alerts.backtest.scenarios import Scenario
from alerts.backtest.series import slo_series
from alerts.backtest.symptoms import Symptom
from alerts.backtest.timeline import RESOLUTIONS, Timeline, timeline
from alerts.catalog import SLI, SLO, LowTraffic
from alerts.rules import BUILD_DIR, render, slo_file
from alerts.sloth import SLI_MISSING
from alerts.windows import Severity, seconds

__all__ = ["Cell", "classes", "rule_for", "run"]


@dataclass(frozen=True)
class Cell:
    alert: str
    severity: str
    slo: str  # empty for a symptom alert
    scenario: str
    step: int  # minutes between evaluations
    fault: tuple[int, int]  # minutes from the start of the run
    horizon: int
    should: bool  # what the catalog's policy says (the gates use it)
    should_budget: bool  # what the error budget alone says
    expected: Firing | None
    measured: Firing | None
    timed: bool  # detection and reset are compared with the arithmetic
    note: str = ""
    low_traffic: bool = False
    unpolicied: Firing | None = None  # low traffic: measured without the policy
    # Seconds to detect by the arithmetic alone, before scrapes and evaluations round it up
    # (a constant fault only): what another Prometheus's intervals are added to.
    arithmetic_s: float | None = None

    def detection(self, f: Firing | None) -> int | None:
        return None if f is None else f.detection(self.fault[0])

    def reset(self, f: Firing | None) -> int | None:
        return None if f is None else f.reset(self.fault[1], self.horizon)

    @property
    def agrees(self) -> bool:
        """Fired as expected and, where timed, within one evaluation of the arithmetic."""
        if (self.expected is None) != (self.measured is None):
            return False
        if not self.timed or self.expected is None:
            return True
        pairs = ((self.detection(self.expected), self.detection(self.measured)),
                 (self.reset(self.expected), self.reset(self.measured)))
        return all(a == b or (a is not None and b is not None and abs(a - b) <= self.step)
                   for a, b in pairs)


def _canonical(slo: SLO) -> str:
    sli = SLI(total="t", errors="e") if slo.sli.errors else SLI(total="t", good="g")
    same = dataclasses.replace(slo, id="slo", title="SLO", description="", service="s",
                               dashboard="d", sli=sli)
    return render(slo_file(same))


def classes(slos: Sequence[SLO]) -> dict[str, SLO]:
    """SLO id -> the SLO whose run stands for it (itself, or the first with the same rules)."""
    first: dict[str, SLO] = {}
    return {slo.id: first.setdefault(_canonical(slo), slo) for slo in slos}


def rule_for(path: Path, alert: str, severity: str) -> str:
    """The ``for`` of an alert of a severity in a rule file ("0m" without one; the first
    rule's when several share name and severity)."""
    for group in yaml.safe_load(path.read_text())["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == alert and rule["labels"].get("severity") == severity:
                return str(rule.get("for", "0m"))
    return "0m"


def _minutes(duration: str) -> int:
    return seconds(duration) // 60 if duration != "0m" else 0


def _slo_cases(slo: SLO, scenarios: Sequence[Scenario], rules: Path, suffix: str = "",
               ) -> dict[str, tuple[Case, Scenario, Timeline]]:
    out = {}
    for scenario in scenarios:
        if scenario.applies(slo):
            continue
        for res in RESOLUTIONS:
            if res.name == "page" and not scenario.paged:
                continue
            line = timeline(scenario, slo, res)
            name = f"{slo.id}/{scenario.name}/{res.name}{suffix}"
            case = Case(name, (rules,), res.step, line.horizon,
                        tuple(slo_series(slo, line, scenario)))
            out[name] = (case, scenario, line)
    return out


def _continuous(slo: SLO, scenario: Scenario, severity: Severity, rules: Path,
                key: tuple[str, str]) -> float | None:
    """The Workbook's detection time of a constant burn from a clean history, plus the
    rule's ``for``; None for any other scenario."""
    if len(scenario.fault) != 1 or scenario.low_traffic or scenario.noise:
        return None
    found = arithmetic.workbook_detection(slo, severity, scenario.fault[0].error_ratio(slo))
    return None if found is None else found + _minutes(rule_for(rules, *key)) * 60.0


def _slo_cells(slo: SLO, run_as: SLO, scenario: Scenario, line: Timeline, measured: Measured,
               rules: Path) -> list[Cell]:
    """The cells of ``slo`` in one scenario, from the run of ``run_as`` (the same rules)."""
    res = line.resolution
    case = f"{run_as.id}/{scenario.name}/{res.name}"
    got = measured[case]
    burn = (run_as.alert_name, res.name)
    cells = [Cell(
        slo.alert_name, res.name, slo.id, scenario.name, res.step,
        (line.fault_start, line.fault_end), line.horizon,
        should=arithmetic.should(slo, line, res.name),
        should_budget=arithmetic.should(slo, line, res.name, policy=False),
        expected=arithmetic.expected(slo, line, res.name, _minutes(rule_for(rules, *burn))),
        measured=got.get(burn), timed=True, note=scenario.note,
        low_traffic=scenario.low_traffic,
        unpolicied=measured.get(case + "/no-policy", {}).get(burn),
        arithmetic_s=_continuous(slo, scenario, res.name, rules, burn))]
    if slo.sli.bucket and res.name == "page":
        for_ = _minutes(rule_for(rules, SLI_MISSING, "ticket"))
        cells.append(Cell(
            SLI_MISSING, "ticket", slo.id, scenario.name, res.step,
            (line.fault_start, line.fault_end), line.horizon,
            should=scenario.good_missing, should_budget=scenario.good_missing,
            expected=arithmetic.expected_sli_missing(line, for_) if scenario.good_missing
            else None, measured=got.get((SLI_MISSING, "ticket")), timed=True,
            note=scenario.note, arithmetic_s=for_ * 60.0))
    return cells


def _symptom_cells(symptom: Symptom, got: dict[tuple[str, str], Firing],
                   alerts: list[tuple[str, str, str]]) -> list[Cell]:
    """One cell per alert of ``alerts`` (name, severity, for) in one symptom scenario."""
    start, end = symptom.fault
    cells = []
    for name, severity, for_ in alerts:
        timed = bool(symptom.fires) and name == symptom.fires[0]
        expected = None
        if name in symptom.fires:
            last = symptom.minutes if symptom.clears is None else end + symptom.clears - 1
            held = [t for t in range(0, symptom.minutes + 1, symptom.step)
                    if start + symptom.lag <= t <= last]
            expected = Firing.of([t for t in held if held and t - held[0] >= _minutes(for_)],
                                 symptom.step)
        # A lag of one minute is the scrape that sees the fault; the rest is arithmetic.
        lag = (symptom.lag - 1) * 60.0 + _minutes(for_) * 60.0
        cells.append(Cell(name, severity, "", symptom.name, symptom.step, symptom.fault,
                          symptom.minutes, should=name in symptom.fires,
                          should_budget=name in symptom.fires, expected=expected,
                          measured=got.get((name, severity)), timed=timed, note=symptom.note,
                          arithmetic_s=lag if timed else None))
    return cells


def _alerts_of(path: Path) -> list[tuple[str, str, str]]:
    return [(r["alert"], r["labels"]["severity"], str(r.get("for", "0m")))
            for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"]
            if "alert" in r]


def run(slos: Sequence[SLO], scenarios: Sequence[Scenario], symptoms: Sequence[Symptom],
        rules_dir: Path = BUILD_DIR, jobs: int = 2, shared: bool = True) -> list[Cell]:
    """Every cell of the matrix, from one batch of promtool runs; ``shared``: one run for
    the SLOs whose generated rules differ only by names and selectors (only for rules this
    code generated; then the low-traffic policy's two sides are measured too)."""
    stands_for = classes(slos) if shared else {s.id: s for s in slos}
    runs = {s.id: s for s in stands_for.values()}
    cases: dict[str, tuple[Case, Scenario, Timeline]] = {}
    with tempfile.TemporaryDirectory(prefix="meshsre-rules-") as tmp:
        for slo in runs.values():
            rules = rules_dir / f"slo-{slo.id}.rules.yml"
            cases.update(_slo_cases(slo, scenarios, rules))
            if shared and slo.low_traffic != LowTraffic():
                # The same rules without the low-traffic policy: what the policy removes.
                bare = Path(tmp) / f"slo-{slo.id}.rules.yml"
                bare.write_text(render(slo_file(dataclasses.replace(
                    slo, low_traffic=LowTraffic()))))
                cases.update(_slo_cases(slo, [s for s in scenarios if s.low_traffic], bare,
                                        "/no-policy"))
        symptom_cases = [Case(f"symptom/{s.name}", tuple(rules_dir / f for f in s.rule_files),
                              s.step, s.minutes, s.scraped()) for s in symptoms]
        measured = run_cases([c for c, _, _ in cases.values()] + symptom_cases, jobs)
    cells: list[Cell] = []
    for slo in slos:
        run_as = stands_for[slo.id]
        for name, (_, scenario, line) in cases.items():
            if name.startswith(f"{run_as.id}/") and not name.endswith("/no-policy"):
                cells += _slo_cells(slo, run_as, scenario, line, measured,
                                    rules_dir / f"slo-{run_as.id}.rules.yml")
    mesh_alerts = _alerts_of(rules_dir / "mesh.rules.yml")
    for s in symptoms:
        cells += _symptom_cells(s, measured[f"symptom/{s.name}"], mesh_alerts)
    return cells
