"""The alert rules and the Grafana dashboard in deploy/: promtool checks the rules and runs
their unit tests (each alert fires on the series that should fire it), every dashboard
query parses as PromQL, and every metric they name is one our processes expose (checked
against real scrapes in tests/test_metrics_stack.py, with `names_used`)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

from settings import ROOT

CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "drip.json"
# Our metric names all start drip_; PromQL's own words (sum, rate, le ...) never do.
NAME = re.compile(r"\bdrip_[a-zA-Z0-9_:]*")


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is required (Debian: apt-get install prometheus; .ci/run does it)")
    return found


def alert_exprs() -> dict[str, str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: rule["expr"] for group in groups for rule in group["rules"]}


def panel_exprs() -> dict[str, list[str]]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return {p["title"]: [t["expr"] for t in p["targets"]] for p in panels if p.get("type") != "row"}


def names_used() -> dict[str, set[str]]:
    """Metric names each alert and each dashboard panel asks for."""
    used = {f"alert {name}": set(NAME.findall(expr)) for name, expr in alert_exprs().items()}
    for title, exprs in panel_exprs().items():
        used[f"panel {title}"] = {n for e in exprs for n in NAME.findall(e)}
    return used


def test_the_rules_pass_promtool_check_and_their_unit_tests():
    tool = promtool()
    checked = subprocess.run([tool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(
        [tool, "test", "rules", RULE_TESTS.name],
        cwd=RULE_TESTS.parent,
        capture_output=True,
        text=True,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_has_a_unit_test_that_fires_it():
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired = {
        case["alertname"] for t in tests for case in t["alert_rule_test"] if case["exp_alerts"]
    }
    quiet = {
        case["alertname"] for t in tests for case in t["alert_rule_test"] if not case["exp_alerts"]
    }
    assert set(alert_exprs()) == fired == quiet


def test_every_dashboard_query_parses_as_promql(tmp_path):
    # promtool parses a rule file's expressions: each query becomes a recording rule.
    rules = [
        {"record": f"dashboard:query_{n}", "expr": expr}
        for n, expr in enumerate(e for exprs in panel_exprs().values() for e in exprs)
    ]
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = subprocess.run(
        [promtool(), "check", "rules", str(path)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_query_names_a_metric_and_the_dashboard_covers_the_issue():
    used = names_used()
    assert all(used.values()), [k for k, v in used.items() if not v]
    on_dashboard = set().union(*(v for k, v in used.items() if k.startswith("panel ")))
    for wanted in (
        "drip_send_outcomes_total",
        "drip_provider_requests_total",
        "drip_provider_request_duration_seconds_bucket",
        "drip_send_delay_seconds_bucket",
        "drip_due_backlog",
        "drip_queue_depth",
        "drip_unconfirmed_needs_ops",
        "drip_contact_requests_open",
        "drip_tick_duration_seconds_bucket",
    ):
        assert wanted in on_dashboard, wanted


def test_the_prometheus_config_is_valid_and_scrapes_what_compose_serves():
    checked = subprocess.run(
        [promtool(), "check", "config", CONFIG.name],
        cwd=CONFIG.parent,
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    jobs = {job["job_name"]: job for job in yaml.safe_load(CONFIG.read_text())["scrape_configs"]}
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    worker_env = services["worker"]["environment"]
    (workers,) = jobs["drip-worker"]["dns_sd_configs"]
    assert workers["names"] == ["worker"] and workers["port"] == int(
        worker_env["WORKER_METRICS_PORT"]
    )
    assert worker_env["WORKER_METRICS_HOST"] == "0.0.0.0"
    assert not services["worker"].get("ports")  # the metrics port stays off the host
    assert services["worker"]["environment"]["DATABASE_URL"]  # the shared settings still apply
    assert jobs["drip-web"]["static_configs"][0]["targets"] == ["web:8000"]
    assert "8000" in services["web"]["expose"]
