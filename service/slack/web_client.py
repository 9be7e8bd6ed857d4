"""The one Slack Web API client, shared by Bolt in the web process and the notifier in the workers."""

from __future__ import annotations

from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from service.settings import Settings


def make_web_client(settings: Settings) -> WebClient:
    """Honours 429 Retry-After a few times before giving up."""
    token = settings.slack_bot_token or "xoxb-not-configured"
    client = WebClient(token=token, base_url=settings.slack_api_url, timeout=10)
    client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=3))
    return client
