"""The task page: `GET /ui` and its script and style, static files over the JSON API.

The page holds no data, so it is open; every data call it makes goes through the authenticated
API with the key the user types in. Its Content-Security-Policy allows only this origin's script
and style and no inline script, so even a bug that rendered task data as markup could not run it.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter, HTTPException, Response

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
# The only files served: a fixed map, so no path from the URL ever reaches the file system.
_ASSETS = {"ui.js": "text/javascript; charset=utf-8", "ui.css": "text/css; charset=utf-8",
           "favicon.svg": "image/svg+xml"}

ui = APIRouter(include_in_schema=False)


def _static(name: str) -> bytes:
    return files("gateway").joinpath("static", name).read_bytes()


@ui.get("/ui")
async def task_page() -> Response:
    """The page itself."""
    return Response(_static("index.html"), media_type="text/html; charset=utf-8",
                    headers=_HEADERS)


@ui.get("/ui/static/{name}")
async def task_page_asset(name: str) -> Response:
    """The page's script, style sheet or icon."""
    media_type = _ASSETS.get(name)
    if media_type is None:
        raise HTTPException(status_code=404, detail="not found")
    return Response(_static(name), media_type=media_type, headers=_HEADERS)
