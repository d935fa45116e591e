"""API keys on the HTTP API: `Authorization: Bearer <key>`, checked once per request.

The task router depends on `api_key` as a whole, so every task route (those added later too)
needs a valid key; each route names the scope it needs with a `Submitter`, `Reader` or
`Replayer` parameter (`Security(authorized, scopes=[...])`). `api_key` is a FastAPI security
scheme itself, so the OpenAPI document shows the bearer scheme on every task route.

Two dependencies, neither with dependencies of its own: FastAPI spends about 10 us solving
each dependency of a request, more than the check itself costs (docs/security.md, "API keys").

FastAPI reads and parses a JSON body before it runs any dependency, so the task router's routes
are `KeyFirstRoute`s: they run the same key and scope checks before the body is touched, and
the dependencies then find the principal the route stored (the rate limit counts once).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Request, Response, Security
from fastapi.dependencies.models import Dependant
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.routing import APIRoute
from fastapi.security import SecurityScopes
from fastapi.security.base import SecurityBase
from fastapi.security.utils import get_authorization_scheme_param

from gateway.deps import Services
from service.auth import READ, REPLAY, SUBMIT, Principal
from service.errors import Forbidden, Unauthenticated


class ApiKeyAuth(SecurityBase):
    """The bearer scheme as OpenAPI shows it, and the check: the request's principal once its
    key is checked and its rate limit passed. Raises Unauthenticated or RateLimited
    (gateway/errors.py answers 401, with `WWW-Authenticate`, or 429)."""

    def __init__(self) -> None:
        self.model = HTTPBearerModel(
            bearerFormat="tp_<key_id>_<secret>",
            description="An API key from `taskproc keys create` (with `make run`: "
                        "`.run/api-key`).")
        self.scheme_name = "ApiKey"

    async def __call__(self, request: Request) -> Principal:
        # `KeyFirstRoute` has checked it already: once per request, so the rate limit too.
        checked: Principal | None = getattr(request.state, "principal", None)
        if checked is not None:
            return checked
        scheme, token = get_authorization_scheme_param(request.headers.get("Authorization"))
        services: Services = request.app.state.services
        principal = await services.auth.authenticate(
            token if scheme.lower() == "bearer" and token else None)
        services.limiter.admit(principal)
        request.state.principal = principal
        return principal


api_key = ApiKeyAuth()


class KeyFirstRoute(APIRoute):
    """A route that checks the API key and the scopes it names before FastAPI reads and parses
    the body: a caller without a valid key gets 401 (or 429), one without the scope 403, whatever
    the body holds, never a 400 or 422 verdict on it, and costs no JSON parsing. The router's
    `api_key` dependency and the route's `authorized` one then find the principal."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.required_scopes = _scopes_of(self.dependant)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def key_first(request: Request) -> Response:
            principal = await api_key(request)
            for scope in self.required_scopes:
                if scope not in principal.scopes:
                    raise Forbidden(scope)
            return await handler(request)

        return key_first


def _scopes_of(dependant: Dependant) -> tuple[str, ...]:
    """The scopes `authorized` asks for anywhere in a route's dependencies."""
    found: list[str] = []
    for sub in dependant.dependencies:
        if sub.call is authorized:
            found.extend(sub.own_oauth_scopes or ())
        found.extend(_scopes_of(sub))
    return tuple(dict.fromkeys(found))


async def authorized(request: Request, required: SecurityScopes) -> Principal:
    """The principal `api_key` found (the router's dependency runs before the route's), if its
    key has every scope the route asks for; else Forbidden (403)."""
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is None:
        # Used on a route outside the task router: refuse rather than serve it unguarded.
        raise Unauthenticated("this route is not behind the task router's key check")
    for scope in required.scopes:
        if scope not in principal.scopes:
            raise Forbidden(scope)
    return principal


# What the routes take: the caller, holding the scope the route needs.
Submitter = Annotated[Principal, Security(authorized, scopes=[SUBMIT])]
Reader = Annotated[Principal, Security(authorized, scopes=[READ])]
Replayer = Annotated[Principal, Security(authorized, scopes=[REPLAY])]
