"""The security suite runs the HTTP rules on the fast tier's in-process gateway (its fixtures
are brought in here) and the store, CLI and round trip on the real services."""

from __future__ import annotations

from tests.fast.conftest import client_for, fakes, gateway, http, issue

__all__ = ["client_for", "fakes", "gateway", "http", "issue"]
