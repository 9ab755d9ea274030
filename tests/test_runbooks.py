"""Runbooks: one per alert, reachable from its runbook_url, complete, with PromQL that works."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from alerts.catalog import LINKS
from alerts.datatier import SERIES as DATA_TIER_SERIES
from alerts.promql import series_names
from alerts.rules import BUILD_DIR, alert_rules
from mesh.telemetry import exposed_names

ROOT = Path(__file__).resolve().parents[1]
RUNBOOKS = ROOT / "runbooks"
SECTIONS = ("Meaning", "Impact", "Confirm", "Mitigation", "Escalation")
ALERTS = sorted({r["alert"] for r in alert_rules()})


def _recorded() -> set[str]:
    return {
        rule["record"]
        for path in BUILD_DIR.glob("*.rules.yml")
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"] if "record" in rule
    }


def _blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, re.M | re.S)


def test_every_alert_has_a_runbook_and_every_runbook_an_alert() -> None:
    runbooks = sorted(p.stem for p in RUNBOOKS.glob("*.md") if p.name != "README.md")
    assert runbooks == ALERTS


@pytest.mark.parametrize("alert", ALERTS)
def test_runbook_url_follows_the_catalog_pattern_to_the_runbook_of_this_repository(
        alert: str) -> None:
    urls = {r["annotations"]["runbook_url"] for r in alert_rules() if r["alert"] == alert}
    (url,) = urls
    assert url == LINKS.runbook_url(alert)
    assert LINKS.alert_of(url) == alert
    assert (RUNBOOKS / f"{alert}.md").is_file(), f"{url} points nowhere"


@pytest.mark.parametrize("alert", ALERTS)
def test_runbook_has_every_section_and_a_meshsre_command(alert: str) -> None:
    text = (RUNBOOKS / f"{alert}.md").read_text()
    assert text.startswith(f"# {alert}\n")
    headings = re.findall(r"^## (.+)$", text, re.M)
    assert headings == list(SECTIONS), f"{alert}: sections {headings}"
    assert any("meshsre " in block for block in _blocks(text, "sh")), f"{alert}: no meshsre command"


@pytest.mark.parametrize("alert", ALERTS)
def test_runbook_promql_parses_and_names_only_real_series(alert: str) -> None:
    known = (exposed_names() | _recorded() | DATA_TIER_SERIES
             | {"up", "scrape_duration_seconds"})  # Prometheus's own
    blocks = _blocks((RUNBOOKS / f"{alert}.md").read_text(), "promql")
    assert blocks, f"{alert}: no ```promql block to confirm with"
    for query in blocks:
        names = series_names(query)
        assert names <= known, f"{alert}: unknown series {names - known}"


def test_links_between_runbooks_resolve_and_the_index_lists_every_alert() -> None:
    for path in RUNBOOKS.glob("*.md"):
        for target in re.findall(r"\]\(([^)#]+\.md)\)", path.read_text()):
            assert (RUNBOOKS / target).is_file(), f"{path.name} links to missing {target}"
    index = (RUNBOOKS / "README.md").read_text()
    assert all(f"[{a}]({a}.md)" in index for a in ALERTS)
