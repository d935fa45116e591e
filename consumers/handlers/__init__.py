"""One module per task type. A handler is `async def name(payload, ctx) -> JSON-able result`."""
