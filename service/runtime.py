"""The composition root's product: every client and service object, built once and passed in."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis

from service.aws.clients import AwsClients
from service.aws.gateway import AwsGateway
from service.catalog import Catalog, load_catalog
from service.core.sealing import seal
from service.locks import RedisLocks
from service.operations.context import Context, Dispatcher, utcnow
from service.people import people_for
from service.queues import IAM_QUEUE, REVOKE_QUEUE
from service.settings import Settings
from service.slack.interactions import INTERACTION_TASK
from service.store.db import make_engine, make_session_factory
from service.task_publisher import TaskPublisher

log = logging.getLogger(__name__)
QUEUED_TTL = 60  # seconds a "sync already queued" flag may live if its task is lost


class CeleryDispatcher:
    """Sends wake-ups to workers; one queued sync per target at a time (later changes ride along)."""

    def __init__(self, celery_app: Any, redis_client: Any, *, signing_key: str = ""):
        self.celery, self.redis = celery_app, redis_client
        self.signing_key = signing_key  # seals each queued interaction: Redis is not trusted with identities
        # Its own client with short timeouts: a dead Redis must be told within Slack's 3 s, even to a sender
        # queued behind a slow write (group commit: up to two writes).
        self.publisher = TaskPublisher(
            redis.Redis.from_url(celery_app.conf.broker_url, socket_connect_timeout=1, socket_timeout=1),
            queue=celery_app.conf.task_default_queue or "celery")

    def sync(self, target_key: str, *, force: bool = False, urgent: bool = False) -> None:
        # One queued sync per target and lane is enough: the sync reads the latest state when it runs. An
        # urgent one is not held back by a normal one already waiting in the slower queue.
        flag = f"keyturn:queued:{'urgent:' if urgent else ''}{target_key}"
        flagged = False
        try:
            flagged = bool(self.redis.set(flag, "1", nx=True, ex=QUEUED_TTL))
            if force or flagged:
                self.celery.send_task("keyturn.sync_target", args=[target_key],
                                      queue=REVOKE_QUEUE if urgent else IAM_QUEUE)
        except Exception:
            # The change is committed and its target marked dirty: the sweeper re-sends the wake-up.
            log.exception("could not enqueue sync", extra={"target": target_key})
            if flagged:  # a flag without its task would hold back the next wake-ups for QUEUED_TTL
                self._unflag(flag)

    def sync_at(self, target_key: str, when: datetime) -> None:
        # One timed clean-up per target and second, whichever sweep saw it first.
        flag = f"keyturn:timed:{target_key}:{int(when.timestamp() * 10)}"
        try:
            if self.redis.set(flag, "1", nx=True, ex=QUEUED_TTL):
                self.celery.send_task("keyturn.sync_target", args=[target_key], queue=REVOKE_QUEUE, eta=when)
        except Exception:  # the sweep at or after the expiry sends it anyway
            log.exception("could not time a clean-up", extra={"target": target_key})

    def _unflag(self, flag: str) -> None:
        try:
            self.redis.delete(flag)
        except Exception:
            log.warning("could not clear a queued flag", extra={"flag": flag})

    def clear_queued(self, target_key: str) -> None:
        try:
            self.redis.delete(f"keyturn:queued:{target_key}", f"keyturn:queued:urgent:{target_key}")
        except Exception:  # the sync runs anyway; a stale flag only delays wake-ups until its TTL
            log.warning("could not clear the queued flags", extra={"target": target_key})

    def notify(self, event: str, **ids: Any) -> None:
        try:
            self.celery.send_task("keyturn.notify", args=[event], kwargs=ids)
        except Exception:
            log.exception("could not enqueue notification", extra={"event": event})

    def interact(self, kind: str, payload: dict[str, Any]) -> None:
        # Not swallowed (nor is a missing key): the web must tell the user nothing was done.
        sealed = seal(self.signing_key, INTERACTION_TASK, [kind, payload], at=int(utcnow().timestamp()))
        self.publisher.send(INTERACTION_TASK, [kind, payload, sealed], argsrepr=kind)


@dataclass
class Runtime:
    settings: Settings
    catalog: Catalog
    ctx: Context
    aws: AwsGateway
    locks: RedisLocks
    redis: Any
    engine: Any


def build_runtime(settings: Settings, *, celery_app: Any | None = None, dispatch: Dispatcher | None = None,
                  catalog: Catalog | None = None) -> Runtime:
    """Build clients once. Raises CatalogError on an invalid catalogue: the service refuses to start."""
    catalog = catalog or load_catalog(settings.catalog_path)
    engine = make_engine(settings.database_url)
    store = make_session_factory(engine)
    redis_client = redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
    if dispatch is None:
        if celery_app is None:
            raise ValueError("give a celery_app or a dispatcher")
        dispatch = CeleryDispatcher(celery_app, redis_client, signing_key=settings.task_signing_key)
    managers = {a.id: a.manager_role_arn for a in catalog.accounts.values() if a.manager_role_arn}
    aws = AwsGateway(AwsClients(manager_roles=managers), trust_policy_max_chars=catalog.trust_policy_max_chars,
                     session_cut_pages=catalog.session_cut_pages)
    locks = RedisLocks(redis_client, timeout=settings.lock_timeout.total_seconds())
    ctx = Context(store=store, catalog=catalog, dispatch=dispatch, console_url=settings.console_url)
    ctx.people = people_for(ctx, settings=settings, clients=aws.clients)  # opt-in: people found by Slack email
    return Runtime(settings=settings, catalog=catalog, ctx=ctx, aws=aws, locks=locks, redis=redis_client,
                   engine=engine)
