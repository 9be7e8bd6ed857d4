"""The Celery queues, in the order every worker polls them (workers/celery_app.py, service/runtime.py).

A worker always takes from the first non-empty queue. Ending access never waits behind anything (after a
worker outage the queues hold a backlog of everything; bench/RESULTS.md, benchmark 3). Slack interactions
and notifications go before the other syncs: they only touch the database and Slack, and a decision that
lands first is covered by the sync that follows it, so a burst of approvals on one role costs a few IAM
writes rather than one each (IAM writes are the scarce, rate-limited resource; benchmark 5).
"""

REVOKE_QUEUE = "keyturn.revoke"  # the sweep, and syncs that end access (expiry, "I'm done", admin revoke)
DEFAULT_QUEUE = "celery"  # Slack interactions, notifications
IAM_QUEUE = "keyturn.iam"  # every other sync (granting), reconcile-all
QUEUES = (REVOKE_QUEUE, DEFAULT_QUEUE, IAM_QUEUE)
