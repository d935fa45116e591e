"""The route template a request matched, the one route label of metrics and spans."""

from __future__ import annotations

from starlette.types import Scope

# A request no route matched (a 404 of an unknown path): one label, whatever the path was.
UNMATCHED = "unmatched"


def route_template(scope: Scope) -> str:
    """`/tasks/{task_id}`, not the path: Starlette's router puts the matched route in the
    scope, so a middleware outside it reads the template once the request has been answered."""
    return getattr(scope.get("route"), "path", None) or UNMATCHED
