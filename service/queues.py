"""The Celery queues, in the order every worker polls them (workers/celery_app.py, service/runtime.py).

A worker always takes from the first non-empty queue: ending access never waits behind granting it, and
neither waits behind Slack interactions or notifications (after a worker outage the queues hold a backlog
of all three; bench/RESULTS.md, benchmark 3).
"""

REVOKE_QUEUE = "keyturn.revoke"  # the sweep, and syncs that end access (expiry, "I'm done", admin revoke)
IAM_QUEUE = "keyturn.iam"  # every other sync, reconcile-all
DEFAULT_QUEUE = "celery"  # Slack interactions, notifications
QUEUES = (REVOKE_QUEUE, IAM_QUEUE, DEFAULT_QUEUE)
