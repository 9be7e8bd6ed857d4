"""moto in server mode, in this process, on a free loopback port, reached over real HTTP."""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from moto.server import ThreadedMotoServer

from tests.support.ports import wait_for_port


def aws_env(endpoint_url: str) -> dict[str, str]:
    """What the session sets so boto3, given no explicit endpoint, talks to moto and never to AWS."""
    return {
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }


def aws_env_to_clear() -> list[str]:
    """Variables that could send boto3 elsewhere or to real credentials; unset for the session."""
    names = {"AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_DEFAULT_PROFILE"}
    names.update(name for name in os.environ if name.startswith("AWS_ENDPOINT_URL_"))
    return sorted(names)


@contextmanager
def running_moto_server() -> Iterator[str]:
    """Start moto on 127.0.0.1 (port chosen by the OS), yield its URL, stop it afterwards."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        wait_for_port(host, port, timeout=10)
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def reset_moto(endpoint_url: str) -> None:
    """Forget every resource in every moto backend (empty IAM, STS, Identity Center...)."""
    req = urllib.request.Request(f"{endpoint_url}/moto-api/reset", data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        if resp.status != 200:
            raise RuntimeError(f"moto reset answered HTTP {resp.status}")
