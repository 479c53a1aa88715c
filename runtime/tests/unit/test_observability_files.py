"""The alert rules and the dashboard in deploy/observability watch metrics the platform has.

promtool checks their syntax and tests each alert (``make lint``); this checks that every
metric they name is one the code registers, so that a renamed metric cannot leave an alert
that never fires or a panel that stays empty.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]
OBSERVABILITY = REPO / "deploy" / "observability"
SOURCES = [REPO / "runtime" / "src", *(REPO / "services").glob("*/src")]
REGISTERED = re.compile(r'\.(?:counter|gauge|histogram)\(\s*"([a-z_]+)"')
HTTP_METRICS = {"http_requests_total", "http_request_duration_seconds"}
NOT_METRICS = {"event_type", "min_over_time", "histogram_quantile"}
"""Names with an underscore in the expressions that are labels or PromQL functions."""


def _registered() -> set[str]:
    names = set(HTTP_METRICS)
    for root in SOURCES:
        for path in root.rglob("*.py"):
            names |= set(REGISTERED.findall(path.read_text()))
    return names


def _metrics_in(expression: str) -> set[str]:
    unquoted = re.sub(r'"[^"]*"', "", expression)  # label values
    names = set(re.findall(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)+", unquoted)) - NOT_METRICS
    return {re.sub(r"_(total|bucket|count|sum)$", "", name) for name in names}


def _known(name: str, registered: set[str]) -> bool:
    return name in registered or f"{name}_total" in registered


def test_every_alert_watches_a_metric_the_platform_registers() -> None:
    registered = _registered()
    rules = yaml.safe_load((OBSERVABILITY / "alerts.yml").read_text())
    expressions = {
        rule["alert"]: rule["expr"] for group in rules["groups"] for rule in group["rules"]
    }
    unknown = {
        alert: sorted(name for name in _metrics_in(expr) if not _known(name, registered))
        for alert, expr in expressions.items()
    }

    assert len(expressions) >= 10
    assert {alert: names for alert, names in unknown.items() if names} == {}


def test_every_dashboard_panel_shows_metrics_the_platform_registers() -> None:
    registered = _registered()
    dashboard = json.loads((OBSERVABILITY / "dashboard.json").read_text())
    unknown = {
        panel["title"]: sorted(
            name
            for target in panel["targets"]
            for name in _metrics_in(target["expr"])
            if not _known(name, registered)
        )
        for panel in dashboard["panels"]
    }

    assert len(dashboard["panels"]) >= 10
    assert {title: names for title, names in unknown.items() if names} == {}


def test_the_metric_check_would_catch_a_renamed_metric() -> None:
    assert not _known("kafka_consumer_lagg", _registered())
    assert _metrics_in('sum by (consumer) (rate(events_consumed_total{outcome="x"}[5m]))') == {
        "events_consumed"
    }
