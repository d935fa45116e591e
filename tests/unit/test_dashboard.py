"""The provisioned Grafana dashboard and the Prometheus scrape config agree with the code: every
query names a metric some process exports (or RabbitMQ's own), and Prometheus scrapes each
process on the port it serves on."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

import infra.observability.metrics  # noqa: F401  (registers the instruments)
from contracts.registry import task_type_names
from infra.runtime.settings.system import SystemSettings

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "taskproc.json"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
COMPOSE = ROOT / "docker-compose.yml"

_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"),
             "gauge": ("",), "summary": ("_count", "_sum", ""), "info": ("_info",)}
_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right", "offset",
                       "bool", "and", "or", "unless", "inf", "nan"})
_IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def exported_series() -> set[str]:
    """Every series name the registry can expose, including families with no child yet."""
    found: set[str] = set()
    for family in REGISTRY.collect():
        found.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
        found.update(sample.name for sample in family.samples)
    return found


def metric_names(expression: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, labels and keywords left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expression)  # strings: label values, regexes
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors, $__rate_interval
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        rest = text[match.end():].lstrip()
        if rest.startswith("(") or match.group().lower() in _KEYWORDS:
            continue  # a function or aggregation, or a keyword
        if text[max(match.start() - 1, 0)] == "$":
            continue  # a Grafana variable
        names.add(match.group())
    return names


def dashboard_expressions() -> list[str]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    expressions = [target["expr"] for panel in dashboard["panels"]
                   for target in panel.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query or "")
        # label_values(metric, label): the metric is the first argument.
        expressions += re.findall(r"label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)", text)
    return expressions


def test_the_dashboard_has_a_panel_for_each_thing_users_watch() -> None:
    named = set().union(*(metric_names(expression) for expression in dashboard_expressions()))
    for prefix in ("taskproc_submissions", "taskproc_task_outcomes", "taskproc_tasks_in_flight",
                   "taskproc_task_handler_duration", "taskproc_task_queue_wait",
                   "taskproc_task_retries", "taskproc_dead_letters", "taskproc_quarantined",
                   "taskproc_projector_lag", "taskproc_projector_batch", "rabbitmq_"):
        assert any(name.startswith(prefix) for name in named), prefix


@pytest.mark.parametrize("expression", dashboard_expressions())
def test_every_dashboard_query_names_only_exported_metrics(expression: str) -> None:
    names = metric_names(expression)
    assert names, f"no metric found in {expression!r}"
    unknown = {name for name in names
               if not name.startswith("rabbitmq_") and name not in exported_series()}
    assert not unknown, f"{expression!r} names metrics nothing exports: {sorted(unknown)}"


def test_the_parser_finds_metrics_and_skips_functions_labels_and_variables() -> None:
    expression = ('histogram_quantile(0.95, sum by (le, route) (rate(x_seconds_bucket'
                  '{route=~"/tasks.*", job!="y"}[$__rate_interval]))) / on (job) up')
    assert metric_names(expression) == {"x_seconds_bucket", "up"}


def test_prometheus_scrapes_each_process_on_the_port_it_serves() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    ports: dict[str, int] = {}
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, port = target.rsplit(":", 1)
                ports.setdefault(host, int(port))
        for dns in job.get("dns_sd_configs", []):
            for host in dns["names"]:
                ports[host] = dns["port"]
    compose = yaml.safe_load(COMPOSE.read_text())
    settings = SystemSettings(metrics_port=int(compose["x-environment"]["METRICS_PORT"]))

    assert ports["gateway"] == settings.gateway_port
    # Every process serves on the METRICS_PORT it is given, each in its own container.
    assert ports["projector"] == settings.metrics_port
    assert ports["worker"] == settings.metrics_port
    assert ports["rabbitmq"] == 15692
    # Every scraped host is a service of the compose file.
    assert set(ports) <= set(compose["services"])


@pytest.mark.parametrize(("profile", "suffix"), [(None, ""), ("cluster", "-cluster")])
def test_one_generic_worker_service_runs_the_types_a_variable_names(
    profile: str | None, suffix: str,
) -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = {name: service for name, service in compose["services"].items()
                if service.get("profiles", [None]) == [profile]}
    workers = [name for name, service in services.items()
               if service.get("command", [])[:3] == ["python", "-m", "consumers"]]

    assert workers == [f"worker{suffix}"]
    command = services[f"worker{suffix}"]["command"]
    assert command[3:5] == ["worker", "--types"]
    assert command[5].startswith("${WORKER_TYPES:?")
    # rabbitmq-setup makes the user of a worker that runs exactly those types.
    setup = services[f"rabbitmq-setup{suffix}"]["command"]
    assert setup[setup.index("--worker-types") + 1] == command[5]
    # Its user comes from its types (consumers/command.py), not from the compose file.
    assert "RABBITMQ_CREDENTIALS_USER" not in services[f"worker{suffix}"].get("environment", {})


@pytest.mark.parametrize("path", [COMPOSE, *sorted(
    path for path in (ROOT / "deploy").rglob("*") if path.is_file())],
    ids=lambda path: str(path.relative_to(ROOT)))
def test_neither_the_compose_file_nor_deploy_names_a_task_type(path: Path) -> None:
    text = path.read_text()
    named = [name for name in task_type_names()
             if re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", text)]
    assert named == [], f"{path.name} names {named}"
