"""Pure decision core: states, transitions, approval rules, durations and policy documents.

Nothing here imports Flask, Celery, boto3, slack_sdk or SQLAlchemy (tests/core/test_purity.py
proves it), so every rule can be tested with plain values.
"""
