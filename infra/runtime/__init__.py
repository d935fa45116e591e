"""What every process runs on: the settings, the process loop and signals, retrying through an
outage, batching, and the webhook allowlist."""
