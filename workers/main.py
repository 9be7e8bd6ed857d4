"""Worker and beat entry point: `celery -A workers.main:celery_app worker|beat`."""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import worker_process_init, worker_ready

from service.app import create_app

log = logging.getLogger(__name__)

flask_app = create_app(http=False)  # no routes, Bolt or REST API: a quicker boot (service/app.py)
celery_app = flask_app.extensions["celery"]


@worker_process_init.connect
def warm_aws_clients(**_: Any) -> None:
    """Build each account's IAM client in a new pool process before its first task.

    After an outage the first tasks are overdue revocations; building a client (and assuming a manager
    role) inside the first of them would add to their lag (bench/RESULTS.md, revocation after a restart).
    """
    runtime = flask_app.extensions["keyturn"]
    for account in runtime.catalog.accounts:
        try:
            runtime.aws.clients.iam(account)
        except Exception:  # the first task that needs it builds it again and reports the error
            log.warning("could not prepare the IAM client", exc_info=True, extra={"account": account})


@worker_ready.connect
def sweep_now(**_: Any) -> None:
    """Sweep as soon as the worker is up, not at beat's next tick: a restart may follow missed expiries."""
    from workers.tasks import sweep

    try:
        sweep.delay()
    except Exception:  # beat's own schedule sweeps anyway
        log.warning("could not queue the start-up sweep", exc_info=True)
    # A worker starts with the catalogue as it is now: end the live grants of people it no longer maps to
    # the same identity (the periodic reconcile and every sync of their target check it too).
    try:
        from service.operations.sweep import end_unmapped

        end_unmapped(flask_app.extensions["keyturn"].ctx)
    except Exception:
        log.warning("could not check live grants against the catalogue", exc_info=True)
