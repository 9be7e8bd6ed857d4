"""Slack: the Bolt app, one listener module per surface, Block Kit views and the notifier."""
