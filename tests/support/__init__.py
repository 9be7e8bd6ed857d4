"""Real-component test infrastructure: moto server, Redis, PostgreSQL/SQLite, a fake Slack Web API,
signed Slack requests and managed subprocesses. Nothing here imports `service` or `workers`."""
