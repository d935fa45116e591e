"""In-memory stand-ins for the service layer's ports and for aio-pika messages: the fast tier and
the unit tests use them; they pass the same contract tests as the real adapters
(tests/integration)."""
