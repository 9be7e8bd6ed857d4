# Keyturn: one image for every process. The default command is the web app (gunicorn);
# docker-compose.yml runs the same image as the Celery worker, Celery beat, Socket Mode and the migration.
#
# The base image is a build argument: any Debian-based image with python3 (3.11+) and its venv module.
# The default is the usual Python image; tests/stack builds one from Debian's packages instead
# (docker build --build-arg BASE_IMAGE=localhost/keyturn-base:bookworm .).
#
# Package-index settings (a mirror, a proxy's CA) are build secrets, used by pip and never kept in a layer:
#   docker build --secret id=pip_conf,src=my-pip.conf --secret id=pip_cert,src=my-ca.pem .
# A pip.conf given that way names the CA as `cert = /run/secrets/pip_cert`.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PATH=/opt/keyturn/bin:$PATH

# A virtualenv (the same on the Python image and on Debian's python3, which refuses a system-wide pip) and
# the unprivileged user every process runs as.
RUN python3 -m venv /opt/keyturn \
    && useradd --system --uid 10001 --user-group --create-home --home-dir /home/keyturn keyturn

# The dependencies first (a layer that survives source edits: only pyproject.toml invalidates it), then the
# package itself (and its dependencies, already there) from pyproject.toml. The source stays in /src;
# the processes run from /app and import the installed copy.
WORKDIR /src
COPY pyproject.toml ./
RUN --mount=type=secret,id=pip_conf --mount=type=secret,id=pip_cert \
    if [ -f /run/secrets/pip_conf ]; then export PIP_CONFIG_FILE=/run/secrets/pip_conf; fi \
    && mkdir -p service workers && touch README.md service/__init__.py workers/__init__.py \
    && pip install . && pip uninstall -y keyturn \
    && rm -rf build keyturn.egg-info service workers README.md
COPY README.md ./
COPY service ./service
COPY workers ./workers
RUN --mount=type=secret,id=pip_conf --mount=type=secret,id=pip_cert \
    if [ -f /run/secrets/pip_conf ]; then export PIP_CONFIG_FILE=/run/secrets/pip_conf; fi \
    && pip install . \
    && rm -rf build keyturn.egg-info

WORKDIR /app
# The example catalogue, so the image starts on its own; compose mounts ./config over it read-only.
COPY config/catalog.example.yaml /app/config/catalog.example.yaml
ENV KEYTURN_CATALOG=/app/config/catalog.example.yaml

USER keyturn
EXPOSE 8000

# Without compose (docker run): the web answers on /healthz. Compose sets a healthcheck for each process.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=3)"

# Every gunicorn setting is in service/gunicorn_conf.py (installed with the package): 2 gevent workers on
# 0.0.0.0:8000 (compose publishes it on loopback), bounded connections, header and request deadlines, request
# limits. bench/ benchmarks the same file, so what is measured is what ships.
CMD ["gunicorn", "--config", "python:service.gunicorn_conf", "service.wsgi:app"]
