"""The settings of a long-running process (gateway, worker, projector, scheduler, mail sink),
from the environment alone: never `make run`'s development file, so a production process still
refuses guest/guest whatever file lies in its working directory.

Refused settings end the process with one line on stderr and status 1, as the command line's
verbs do (infra.runtime.local_settings): pydantic's own report quotes the input, which holds the
other settings and their secrets.
"""

from __future__ import annotations

import os
import sys
from typing import Any, TypeVar

from pydantic import ValidationError

from infra.runtime.local_settings import describe
from infra.runtime.settings.common import CommonSettings

S = TypeVar("S", bound=CommonSettings)


def process_settings(kind: type[S], **defaults: Any) -> S:
    """The environment's settings of `kind` (the process's own class), `defaults` filling what
    the environment does not set; SystemExit(1) after one line naming each problem."""
    unset = {name: value for name, value in defaults.items()
             if not any(key.lower() == name for key in os.environ)}
    try:
        return kind(**unset)
    except ValidationError as error:
        print(f"Error: {describe(error, None, hint=False)}", file=sys.stderr)
        raise SystemExit(1) from None
