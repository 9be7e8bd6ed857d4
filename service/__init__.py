"""Keyturn: time-boxed access to sensitive AWS roles through Slack."""
