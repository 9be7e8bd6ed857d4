"""Worker and beat entry point: `celery -A workers.main:celery_app worker|beat`."""

from service.app import create_app

flask_app = create_app()
celery_app = flask_app.extensions["celery"]
