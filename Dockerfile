# Keyturn: one image for every process. The default command is the web app (gunicorn);
# docker-compose.yml runs the same image as the Celery worker, Celery beat and the migration.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# Install the package (and its dependencies) from pyproject.toml. The source stays in /src;
# the processes run from /app and import the installed copy.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
COPY workers ./workers
RUN pip install . \
    && rm -rf build keyturn.egg-info \
    && useradd --system --uid 10001 --user-group --create-home --home-dir /home/keyturn keyturn

WORKDIR /app
# The example catalogue, so the image starts on its own; compose mounts ./config over it read-only.
COPY config/catalog.example.yaml /app/config/catalog.example.yaml
ENV KEYTURN_CATALOG=/app/config/catalog.example.yaml

USER keyturn
EXPOSE 8000

# Every gunicorn setting is in service/gunicorn_conf.py (installed with the package): 2 gevent workers on
# 0.0.0.0:8000 (compose publishes it on loopback), bounded connections, header and request deadlines, request
# limits. bench/ benchmarks the same file, so what is measured is what ships.
CMD ["gunicorn", "--config", "python:service.gunicorn_conf", "service.wsgi:app"]
