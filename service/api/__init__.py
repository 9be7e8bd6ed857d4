"""HTTP surfaces other than Slack: the REST API (OpenAPI) and Prometheus metrics."""
