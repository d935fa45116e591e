"""The `thumbnail` task type: a small PNG of an image, at the width asked for.

Every taskproc process imports this module, the gateway too (it validates payloads with
`Thumbnail` and shows its schema in `/docs`), so it imports only what the payload model needs.
What only the handler needs (here `thumbnails.render`, where a real one would use an image
library) is imported inside the handler, and so only by the worker that runs it.
"""

from __future__ import annotations

import hashlib
from pathlib import PurePosixPath

from pydantic import ConfigDict, Field, HttpUrl

from taskproc import Payload, PermanentFailure, TaskContext, task_type

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".webp"})


class Thumbnail(Payload):
    """An image to shrink to `width` pixels; `height` defaults to 3/4 of the width."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"image_url": "https://images.example.com/cat.jpg", "width": 320}]})

    image_url: HttpUrl
    width: int = Field(gt=0, le=4096)
    height: int | None = Field(default=None, gt=0, le=4096)


@task_type("thumbnail", timeout_s=60, max_attempts=5)
async def thumbnail(payload: Thumbnail, ctx: TaskContext) -> dict[str, str | int]:
    """Render the thumbnail; its name comes from the image's URL and size, so a second attempt
    of the same task makes the same file."""
    from thumbnails import render  # the handler's own dependency: see the module's docstring

    suffix = PurePosixPath(payload.image_url.path or "").suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        # Retrying would not make it an image.
        raise PermanentFailure(f"not an image URL (suffix {suffix or 'none'!r})")
    height = payload.height or max(1, payload.width * 3 // 4)
    digest = hashlib.sha256(str(payload.image_url).encode()).hexdigest()
    png = render.png(payload.width, height, colour=bytes.fromhex(digest[:6]))
    await ctx.progress(1.0, f"rendered {payload.width}x{height}")
    return {"name": f"{digest[:16]}-{payload.width}x{height}.png", "width": payload.width,
            "height": height, "bytes": len(png),
            "sha256": hashlib.sha256(png).hexdigest()}
