"""API keys on the HTTP API: `Authorization: Bearer <key>`, checked once per request.

The task router depends on `authenticated` as a whole, so every task route (those added later
too) needs a valid key; each route names the scope it needs with `Security(authorized,
scopes=[...])`. The bearer scheme shows in the OpenAPI document.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, SecurityScopes

from gateway.deps import ServicesDep
from service.auth import READ, REPLAY, SUBMIT, Principal
from service.errors import Forbidden

bearer = HTTPBearer(
    auto_error=False,  # 401 with WWW-Authenticate is ours to answer (gateway/errors.py)
    bearerFormat="tp_<key_id>_<secret>",
    description="An API key from `taskproc keys create` (with `make run`: `.run/api-key`).",
)


async def authenticated(
    request: Request, services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """The request's principal, once its key is checked and its rate limit passed; raises
    Unauthenticated or RateLimited (gateway/errors.py answers 401 or 429)."""
    # Once per request however many routes' dependencies ask: FastAPI caches a dependency per
    # set of scopes, and a second pass would take a second token from the rate limit.
    known: Principal | None = getattr(request.state, "principal", None)
    if known is not None:
        return known
    principal = await services.auth.authenticate(
        credentials.credentials if credentials is not None else None)
    services.limiter.admit(principal)
    request.state.principal = principal
    return principal


async def authorized(
    required: SecurityScopes, principal: Annotated[Principal, Depends(authenticated)],
) -> Principal:
    """The principal, if its key has every scope the route asks for; else Forbidden (403)."""
    for scope in required.scopes:
        if scope not in principal.scopes:
            raise Forbidden(scope)
    return principal


# What the routes take: the caller, holding the scope the route needs.
Submitter = Annotated[Principal, Security(authorized, scopes=[SUBMIT])]
Reader = Annotated[Principal, Security(authorized, scopes=[READ])]
Replayer = Annotated[Principal, Security(authorized, scopes=[REPLAY])]
