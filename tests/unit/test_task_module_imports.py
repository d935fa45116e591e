"""The rule for task modules' imports, on the built-in types: the gateway imports every
registered task module (for the payload models) but not what only a handler needs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

# A fresh interpreter, so that no other test's imports count.
PROBE = """
import json, sys
import gateway.app
from contracts.registry import task_type_names
print(json.dumps({"types": task_type_names(),
                  "imported": sorted(m for m in (
                      "taskproc.tasks.send_email", "aiosmtplib",
                      "taskproc.tasks.webhook", "taskproc.tasks.webhook_call", "httpcore",
                      "taskproc.tasks.egress_transport") if m in sys.modules)}))
"""


def test_the_gateway_loads_the_built_in_types_without_their_handlers_libraries() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("TASK_MODULES", "DISABLED_TASK_TYPES")}

    ran = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                         timeout=60, check=False)

    assert ran.returncode == 0, ran.stderr
    seen = json.loads(ran.stdout)
    assert {"send_email", "webhook"} <= set(seen["types"])
    assert seen["imported"] == ["taskproc.tasks.send_email", "taskproc.tasks.webhook"]
