"""`meshsre report` on the records of a real quick nightly run (tests/testdata/nightly-quick) and a
real Prometheus started on that run's own write-ahead log: every section present, every
figure equal to what the records say, verdicts, exit status, loud disagreements."""

from __future__ import annotations

import gzip
import json
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from reports.report import make_report
from tests.clusterkit import MESHSRE

DATA = Path(__file__).parent / "testdata" / "nightly-quick"
EXCLUDED = {"backup-restore"}  # a disaster drill: its outage is not charged to the SLOs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus serving the recorded run: its WAL, replayed at start."""
    root = tmp_path_factory.mktemp("prometheus")
    (root / "data" / "wal").mkdir(parents=True)
    with gzip.open(DATA / "prometheus-wal.gz") as src, \
            (root / "data" / "wal" / "00000000").open("wb") as dst:
        shutil.copyfileobj(src, dst)
    (root / "prometheus.yml").write_text("global: {scrape_interval: 1h}\n")
    url = f"http://127.0.0.1:{_free_port()}"
    with (root / "log").open("wb") as log:
        proc = subprocess.Popen(
            ["prometheus", f"--config.file={root / 'prometheus.yml'}",
             f"--storage.tsdb.path={root / 'data'}", "--storage.tsdb.retention.time=100y",
             f"--web.listen-address={url.removeprefix('http://')}"], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, \
                (root / "log").read_text()[-2000:]
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return Path(shutil.copytree(DATA / "run", tmp_path / "20261124T012649Z-nightly"))


def _json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _loads(run: Path) -> dict[str, dict[str, Any]]:
    return {str(p.parent.relative_to(run)).removeprefix("load-"): _json(p)
            for p in run.rglob("load.json")}


def test_every_section_is_present_and_every_figure_is_the_records_own(
        run_dir: Path, prometheus: str, tmp_path: Path) -> None:
    report = make_report(run_dir, prometheus, tmp_path / "history.jsonl").data
    loads, chaos = _loads(run_dir), {p.stem.removeprefix("chaos-"): _json(p)
                                     for p in run_dir.glob("chaos-*.json")}
    assert report["prometheus"]["available"], report["prometheus"]["why_not"]
    assert [r["id"] for r in report["slos"]] == [
        "api-availability", "registration-availability", "handshake-success",
        "policy-decision-latency", "revocation-propagation"]
    # Load: throughput and percentiles exactly as recorded.
    assert {ld["name"] for ld in report["loads"]} == set(loads)
    for ld in report["loads"]:
        totals = loads[ld["name"]]["totals"]
        assert ld["totals"]["requests"] == totals["requests"]
        assert ld["totals"]["rps"] == totals["rps"]
        assert ld["totals"]["service_ms"] == totals["service_ms"]
        assert ld["totals"]["corrected_ms"] == totals["corrected_ms"]
        # The phases of a load cover every one of its requests, once.
        assert sum(p["requests"] for p in report["phases"] if p["load"] == ld["name"]) \
            == totals["requests"]
    az_phases = [p["phase"] for p in report["phases"] if p["load"] == "az-failure"]
    assert az_phases == ["baseline", "fault", "recovery"]
    # The client view of an availability SLO: the load tests' own counts, disaster excepted.
    api = report["slos"][0]
    assert api["client"]["total"] == sum(
        t["events"] for name, rec in loads.items() if name not in EXCLUDED
        for t in rec["thresholds"] if t["id"] == "api-availability")
    assert api["server"]["total"] > 0 and api["server_same_windows"]["total"] > 0
    assert api["verdict"] == "met" and not report["disagreements"]
    assert report["excluded"][0]["drill"] == "backup-restore"
    # The chaos experiment and the drills: their measurements, unchanged.
    (az,) = report["chaos"]
    m = chaos["az-failure"]["measurements"]
    assert (az["ttd_s"], az["ttr_s"], az["errors_during_failure"], az["writes_lost"]) == (
        m["ttd_seconds"], m["ttr_seconds"], m["errors_during_failure"], m["writes_lost"])
    assert az["hypothesis"]["before"]["met"] and az["hypothesis"]["after"]["met"]
    drills = {d["name"]: d for d in report["drills"]}
    m = chaos["backup-restore"]["measurements"]
    assert (drills["backup-restore"]["rto_s"], drills["backup-restore"]["rpo_s"]) == (
        m["rto_seconds"], m["rpo_seconds"])
    assert drills["backup-restore"]["audit_chain_ok"] is m["chain_ok"] is True
    assert drills["backup-restore"]["rto_phases"] == m["rto_phases"]
    m = chaos["revocation"]["measurements"]
    assert drills["revocation"]["propagation"]["p99_seconds"] == m["p99_seconds"]
    # The alert timeline is the webhook's lines; Prometheus saw the page fire too.
    lines = (run_dir / "alerts.jsonl").read_text().splitlines()
    assert [a["name"] for a in report["alerts"]] == [json.loads(x)["name"] for x in lines]
    assert "MeshZoneDown" in {a["name"] for a in report["alerts_firing"]}
    # Every chart has data: server series, client series, zones, burn rates.
    series = report["series"]
    assert series["server_availability"] and series["client"]["p99_corrected"]
    assert set(series["zones"]) >= {"a", "b", "c"}
    assert all(series["burn_rates"].values())
    assert report["verdict"]["passed"] and not report["verdict"]["breaches"]


def test_the_html_is_self_contained_and_no_chart_is_empty(
        run_dir: Path, prometheus: str, tmp_path: Path) -> None:
    files = make_report(run_dir, prometheus, tmp_path / "history.jsonl").files
    html = files["html"].read_text()
    assert html.count("<svg") == 6
    assert 'data-empty="true"' not in html
    # Nothing is fetched at view time: no scripts, stylesheets, images or fonts from anywhere.
    assert not re.search(r"<(script|link|img|iframe)\b|@import|url\(", html)
    assert "DO NOT EDIT" in html and "DO NOT EDIT" in files["md"].read_text()
    assert _json(files["json"])["schema"] == "meshsre.report/v1"


def test_chromium_renders_the_report_to_a_png_that_is_not_blank(
        run_dir: Path, prometheus: str, tmp_path: Path) -> None:
    from PIL import Image

    chromium = shutil.which("chromium")
    assert chromium, "chromium is not installed: apt-get install -y chromium"
    html = make_report(run_dir, prometheus, tmp_path / "history.jsonl").files["html"]
    png = tmp_path / "report.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--hide-scrollbars",
                    f"--screenshot={png}", "--window-size=1100,3000", html.as_uri()],
                   capture_output=True, timeout=60, check=True)
    image = Image.open(png).convert("RGB")
    assert image.size == (1100, 3000)
    colors = image.getcolors(maxcolors=1 << 24) or []
    background = max(n for n, _ in colors)
    drawn = 1 - background / (image.width * image.height)
    assert drawn > 0.05, f"only {drawn:.1%} of the page differs from its background"
    assert len(colors) > 500  # text, charts and colours, not a flat page


def _meshsre_report(run_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MESHSRE, "report", str(run_dir), *args], capture_output=True,
                          text=True, timeout=120)


def test_fail_on_chooses_which_breach_makes_the_exit_status_non_zero(
        run_dir: Path, prometheus: str) -> None:
    path = run_dir / "chaos-backup-restore.json"
    rec = _json(path)
    rec["passed"] = False
    rec["failures"] = ["objective rto missed: measured 300, target <= 120 s"]
    rec["objectives"]["rto"].update(measured=300, met=False)
    path.write_text(json.dumps(rec))
    codes = {fail_on: _meshsre_report(run_dir, "--prometheus", prometheus, "--fail-on",
                                      fail_on).returncode
             for fail_on in ("slo", "drill", "slo,drill", "none", "any")}
    assert codes == {"slo": 0, "drill": 1, "slo,drill": 1, "none": 0, "any": 1}
    bad = _meshsre_report(run_dir, "--prometheus", prometheus, "--fail-on", "slo,nope")
    assert bad.returncode == 2 and "unknown nope" in bad.stderr
    md = (run_dir / "slo-report.md").read_text()
    assert "FAILED" in md and "drill backup-restore" in md


def test_a_client_and_server_disagreement_is_reported_loudly(
        run_dir: Path, prometheus: str) -> None:
    path = run_dir / "steady" / "load.json"
    rec = _json(path)
    (api,) = [t for t in rec["thresholds"] if t["id"] == "api-availability"]
    api["observed"] = 0.2  # the client saw a fifth of its requests fail; the server did not
    path.write_text(json.dumps(rec))
    done = _meshsre_report(run_dir, "--prometheus", prometheus)
    assert done.returncode == 1  # the client view breaches the SLO
    assert "CLIENT AND SERVER DISAGREE on api-availability" in done.stderr
    report = _json(run_dir / "slo-report.json")
    (d,) = report["disagreements"]
    assert d["id"] == "api-availability" and d["delta_points"] < -1
    assert "CLIENT AND SERVER DISAGREE on api-availability" in \
        (run_dir / "slo-report.html").read_text()
    assert "CLIENT AND SERVER DISAGREE on api-availability" in \
        (run_dir / "slo-report.md").read_text()


def test_without_prometheus_the_report_is_written_and_says_the_server_view_is_missing(
        run_dir: Path) -> None:
    done = _meshsre_report(run_dir, "--prometheus", "http://127.0.0.1:1")
    assert done.returncode == 0, done.stderr
    assert "server view unavailable" in done.stderr
    report = _json(run_dir / "slo-report.json")
    assert report["prometheus"]["available"] is False
    rows = {r["id"]: r for r in report["slos"]}
    latency = rows.pop("policy-decision-latency")
    assert all(r["server"] is None for r in rows.values())
    assert report["slos"][0]["verdict"] == "met"  # judged on the client view alone
    # The load test read the mesh's own histogram from the replicas' /metrics: that stands in.
    assert latency["server"]["basis"] == "the mesh's /metrics, read by the load test"
    assert latency["verdict"] == "met"
    html = (run_dir / "slo-report.html").read_text()
    assert "Server view unavailable" in html
    empty = re.findall(r'aria-label="([^"]+)" data-empty="true"', html)
    assert empty == ["Error budget burn rate (1m window)", "Requests by zone (server)"]


def test_history_keeps_one_line_per_run_and_the_trend_shows_the_earlier_nights(
        run_dir: Path, prometheus: str, tmp_path: Path) -> None:
    history = tmp_path / "history.jsonl"
    earlier = [{"run_id": f"2026112{n}T010000Z-nightly", "started_at": 1795000000.0 + n,
                "ended_at": 1795000100.0 + n, "passed": n != 2,
                "slos": {"api-availability": {"sli": 0.998, "verdict": "breached",
                                              "budget_consumed": 2.0}},
                "load": None, "chaos": {}, "drills": {}} for n in (1, 2)]
    history.write_text("".join(json.dumps(e) + "\n" for e in earlier))
    make_report(run_dir, prometheus, history)
    built = make_report(run_dir, prometheus, history)
    lines = [json.loads(x) for x in history.read_text().splitlines()]
    assert [e["run_id"] for e in lines] == [
        "20261121T010000Z-nightly", "20261122T010000Z-nightly", "20261124T012649Z-nightly"]
    assert [e["run_id"] for e in built.data["trend"]] == [e["run_id"] for e in lines]
    html = built.files["html"].read_text()
    bars = re.findall(r'fill="(#\w+)" class="bar" data-series="budget used %"'
                      r' data-label="(\w+)"', html)
    assert bars == [("#0072B2", "20261121T010000Z"), ("#D55E00", "20261122T010000Z"),
                    ("#0072B2", "20261124T012649Z")]  # the failed night stands out


def test_a_directory_without_run_records_is_a_usage_error(tmp_path: Path) -> None:
    done = _meshsre_report(tmp_path)
    assert done.returncode == 2
    assert "no run records" in done.stderr


def test_a_record_of_an_unknown_schema_version_is_refused(run_dir: Path) -> None:
    path = run_dir / "chaos-revocation.json"
    path.write_text(json.dumps({**_json(path), "schema_version": 99}))
    done = _meshsre_report(run_dir, "--prometheus", "http://127.0.0.1:1")
    assert done.returncode == 2
    assert "version 99" in done.stderr


def test_a_suites_checks_are_shown_and_a_failed_one_fails_the_run_under_check(
        run_dir: Path, prometheus: str) -> None:
    from meshsre import checks as record

    start = _json(run_dir / "run.json")["started_at"]
    record.write(run_dir, {
        "schema": record.SCHEMA, "schema_version": record.SCHEMA_VERSION, "name": "security",
        "title": "Security suite (hostile clients)", "target": "http://127.0.0.1:18080",
        "started_at": start + 10, "ended_at": start + 40, "passed": False,
        "checks": [{"id": "test_the_query_string_is_signed", "outcome": "passed", "message": ""},
                   {"id": "test_a_flood_from_one_client_gets_429_with_retry_after",
                    "outcome": "failed", "message": "AssertionError: no 429 among 2000 requests"}],
        "figures": {"flood.answered_429": "0"}})
    codes = {fail_on: _meshsre_report(run_dir, "--prometheus", prometheus, "--fail-on",
                                      fail_on).returncode for fail_on in ("slo", "check")}
    assert codes == {"slo": 0, "check": 1}
    report = _json(run_dir / "slo-report.json")
    assert [(c["name"], c["passed"]) for c in report["checks"]] == [("security", False)]
    (breach,) = [b for b in report["verdict"]["breaches"] if b["kind"] == "check"]
    assert "no 429 among 2000 requests" in breach["detail"]
    md = (run_dir / "slo-report.md").read_text()
    assert "| a flood from one client gets 429 with retry after | **failed** |" in md
    html = (run_dir / "slo-report.html").read_text()
    assert "Checks against the deployment" in html and "flood.answered_429" in html
