"""Each process reads its own settings class, assembled from mixins: docs/configuration.md's
"read by" column is what those classes hold, and every variable the whole system reads is in
the table."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic_settings import BaseSettings

from infra.runtime import local_settings
from infra.runtime.settings.cli import (
    BrokerAdminSettings,
    DeadLetterVerbSettings,
    KeysVerbSettings,
    ServicesVerbSettings,
    StoreVerbSettings,
)
from infra.runtime.settings.gateway import GatewaySettings
from infra.runtime.settings.projector import ProjectorSettings
from infra.runtime.settings.scheduler import SchedulerSettings
from infra.runtime.settings.worker import WorkerSettings

DOC = Path(__file__).parents[2] / "docs" / "configuration.md"
# Who reads a class, as the table's column names them: the processes, then the `taskproc`
# verbs that read settings (the HTTP verbs and `schemas` read none).
PROCESSES: dict[str, type[BaseSettings]] = {
    "gateway": GatewaySettings, "worker": WorkerSettings, "projector": ProjectorSettings,
    "scheduler": SchedulerSettings,
}
VERBS: dict[str, type[BaseSettings]] = {
    "`keys`": KeysVerbSettings,
    "`read-model`": StoreVerbSettings,
    "`topology`, `rabbitmq setup`": BrokerAdminSettings,
    "`dead-letters`": DeadLetterVerbSettings,
    "`services`": ServicesVerbSettings,
}


def variables(kind: type[BaseSettings]) -> set[str]:
    return {str(field.validation_alias or name).upper()
            for name, field in kind.model_fields.items()}


def read_by(variable: str) -> str:
    """The column's text for `variable`: the processes, then the verbs that read it."""
    processes = [name for name, kind in PROCESSES.items() if variable in variables(kind)]
    verbs = [name for name, kind in VERBS.items() if variable in variables(kind)]
    parts = ["all processes" if len(processes) == len(PROCESSES) else ", ".join(processes),
             "every verb" if len(verbs) == len(VERBS) else ", ".join(verbs)]
    return "; ".join(part for part in parts if part)


def table() -> dict[str, str]:
    """The documented variables and their "read by" cell."""
    rows = {}
    for line in DOC.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        names = re.findall(r"`([A-Z_]+)`", cells[0]) if line.startswith("| `") else []
        for name in names:
            rows[name] = cells[2]
    return rows


def test_every_setting_is_documented_with_who_reads_it() -> None:
    documented = table()

    assert set(documented) == set(local_settings.setting_names())
    assert {name: cell for name, cell in documented.items() if cell != read_by(name)} == {}


def test_each_process_validates_only_its_own_settings() -> None:
    assert "SMTP_PORT" not in variables(GatewaySettings)
    assert "GATEWAY_WORKERS" not in variables(WorkerSettings)
    assert "RABBITMQ_URL" not in variables(StoreVerbSettings)
    assert "MONGODB_URL" not in variables(BrokerAdminSettings)
    assert "API_KEY_CACHE_S" not in variables(SchedulerSettings)
