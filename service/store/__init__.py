"""Persistence: SQLAlchemy models, sessions, repository functions and Alembic migrations."""
