"""Celery: the app, thin tasks that call service functions, and the beat schedule."""
