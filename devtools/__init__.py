"""Development tooling: the local supervisor, service starter and SMTP sink (not in the image)."""
