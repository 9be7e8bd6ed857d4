"""Keyturn as real processes for the integration tests: the fixtures live in tests/support/live.py."""

from tests.support.live import broker_url, catalog_path, fault_proxy, keyturn_procs  # noqa: F401 - fixtures
