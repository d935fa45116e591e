"""The use cases: what the system does, apart from how it is reached (HTTP, CLI)."""
