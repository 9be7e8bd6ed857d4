"""Podman on this machine, set up for the stack test: installed when missing, run with runc and cgroupfs and a
containers.conf of the run's own, images built locally from Debian's packages (no registry is reachable),
and a Docker API socket for the real Compose binary.

Images (cached in podman's storage, rebuilt only when missing or when their recipe changed):
* localhost/keyturn-base:bookworm: `debootstrap --variant=minbase bookworm` + python3, python3-venv,
  ca-certificates, imported with `podman import`; Keyturn's image is built on it (BASE_IMAGE).
* localhost/keyturn-postgres:bookworm, localhost/keyturn-redis:bookworm: Debian's postgresql-15 and
  redis-server on that base (tests/stack/images/), for POSTGRES_IMAGE and REDIS_IMAGE.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IMAGES = Path(__file__).resolve().parent / "images"
BASE = "localhost/keyturn-base:bookworm"
POSTGRES = "localhost/keyturn-postgres:bookworm"
REDIS = "localhost/keyturn-redis:bookworm"
PACKAGES = ("debootstrap", "podman", "runc")
BASE_PACKAGES = "python3,python3-venv,ca-certificates"
MIRROR = "http://deb.debian.org/debian"
RECIPE_LABEL = "org.keyturn.recipe"
CONTAINERS_CONF = """\
# The stack test's engine settings: runc (crun is not there), cgroupfs (no systemd), no default ulimits
# (raising them is refused here), events and logs in files.
[containers]
default_ulimits = []
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""


class EngineUnavailable(Exception):
    """Podman cannot run here (the stack test skips with this message)."""


def install_missing() -> None:
    """apt-get install what the test needs (root on these machines); EngineUnavailable if it cannot."""
    missing = [p for p in PACKAGES if shutil.which(p) is None and not Path(f"/usr/sbin/{p}").exists()]
    if not missing:
        return
    if shutil.which("apt-get") is None:
        raise EngineUnavailable(f"{', '.join(missing)} missing and no apt-get to install them")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    apt = ["apt-get", "install", "-y", "-qq", *missing]
    if subprocess.run(apt, env=env, capture_output=True, check=False, timeout=600).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, check=False, timeout=600)
        result = subprocess.run(apt, env=env, capture_output=True, text=True, check=False, timeout=600)
        if result.returncode != 0:
            raise EngineUnavailable(f"`apt-get install {' '.join(missing)}` failed: {result.stderr[-500:]}")


def recipe_digest(*parts: str | Path) -> str:
    """What an image was built from (files' contents and strings): a changed recipe means a rebuild."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.read_bytes() if isinstance(part, Path) else part.encode())
    return digest.hexdigest()[:16]


class Podman:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        conf = workdir / "containers.conf"
        conf.write_text(CONTAINERS_CONF)
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf)}

    def run(self, *args: str, timeout: float = 120, check: bool = True,
            input: bytes | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(["podman", *args], env=self.env, capture_output=True, text=input is None,
                                input=input, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args)} exited {result.returncode}: {result.stderr!s:.3000}")
        return result

    def check_usable(self) -> None:
        """EngineUnavailable unless podman answers `info` (image builds and runs are checked later)."""
        result = self.run("info", check=False)
        if result.returncode != 0:
            raise EngineUnavailable(f"`podman info` (runc, cgroupfs) failed: {result.stderr[-800:]}")

    def recipe(self, image: str) -> str | None:
        """The recipe label of a local image; None when there is no such image."""
        if self.run("image", "exists", image, check=False).returncode != 0:
            return None
        result = self.run("image", "inspect", "--format", f'{{{{index .Labels "{RECIPE_LABEL}"}}}}', image)
        return str(result.stdout).strip()

    # ---- images ------------------------------------------------------------------------------------
    def ensure_base(self) -> bool:
        """The Debian base (debootstrap + podman import) unless present; True when it was built now."""
        recipe = recipe_digest("bookworm minbase", BASE_PACKAGES, MIRROR)
        if self.recipe(BASE) == recipe:
            return False
        with tempfile.TemporaryDirectory(dir=self.workdir) as tmp:
            rootfs = Path(tmp) / "rootfs"
            debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"  # root's PATH may lack sbin
            boot = subprocess.run(["nice", debootstrap, "--variant=minbase", f"--include={BASE_PACKAGES}",
                                   "bookworm", str(rootfs), MIRROR],
                                  capture_output=True, text=True, timeout=1200, check=False)
            if boot.returncode != 0:
                raise RuntimeError(f"debootstrap failed: {boot.stdout[-1500:]} {boot.stderr[-1500:]}")
            (rootfs / "etc/apt/sources.list").write_text(f"deb {MIRROR} bookworm main\n")
            shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
            tar = subprocess.run(["tar", "-C", str(rootfs), "-c", "."], capture_output=True, check=True,
                                 timeout=600)
            self.run("import", "--change", f"LABEL {RECIPE_LABEL}={recipe}", "--change", "CMD [\"/bin/bash\"]",
                     "-", BASE, input=tar.stdout, timeout=600)
        return True

    def ensure_service_image(self, image: str, context: Path) -> bool:
        """PostgreSQL's or Redis's image from tests/stack/images/, built on the base unless up to date."""
        files = sorted(p for p in context.iterdir() if p.is_file())
        recipe = recipe_digest(self.recipe(BASE) or "", *files)
        if self.recipe(image) == recipe:
            return False
        self.build(image, context, "--label", f"{RECIPE_LABEL}={recipe}", "--build-arg", f"BASE_IMAGE={BASE}")
        return True

    def build(self, image: str, context: Path, *args: str, timeout: float = 1200) -> None:
        """`podman build` on the host's network (the build's apt and pip reach the package indexes)."""
        self.run("build", "--quiet", "--network", "host", "--format", "docker", "--tag", image, *args, str(context),
                 timeout=timeout)

    # ---- the Docker API, for Compose -----------------------------------------------------------------
    @contextmanager
    def api_socket(self) -> Iterator[str]:
        """`podman system service` on a socket of this run's own: yields DOCKER_HOST's value."""
        sock = self.workdir / "podman.sock"
        log = (self.workdir / "podman-service.log").open("w")
        proc = subprocess.Popen(["podman", "system", "service", "--time=0", f"unix://{sock}"], env=self.env,
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while not sock.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"podman system service did not start: {self.service_log()}")
                time.sleep(0.1)
            yield f"unix://{sock}"
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            log.close()

    def service_log(self) -> str:
        path = self.workdir / "podman-service.log"
        return path.read_text()[-2000:] if path.exists() else ""

    @contextmanager
    def healthchecks(self, project: str, every: float = 2.0) -> Iterator[None]:
        """Run the healthchecks of the project's containers every few seconds.

        Podman schedules healthchecks with systemd timers; without systemd (these machines) nothing runs
        them and a container stays `starting` forever, so the test is the timer.
        """
        stop = threading.Event()

        def loop() -> None:
            while not stop.is_set():
                names = self.run("ps", "--filter", f"label=com.docker.compose.project={project}",
                                 "--format", "{{.Names}}", check=False).stdout.split()
                for name in names:
                    self.run("healthcheck", "run", name, check=False, timeout=60)
                stop.wait(every)

        thread = threading.Thread(target=loop, name="healthchecks", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(90)


def pip_build_secrets(podman: Podman, python: str = sys.executable) -> list[str]:
    """This machine's package-index settings as build secrets (`pip config list`, PIP_* included).

    A pip.conf of the build's own: the index URLs that are reachable from a build (http/https), the timeout,
    and the CA bundle (a TLS-intercepting proxy's CA is in the host's bundle, not in the image's) as a second
    secret. Local find-links, file:// indexes and constraint files stay behind: they are not in the build.
    """
    listed = subprocess.run([python, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False,
                            timeout=60).stdout
    settings: dict[str, str] = {}
    for line in listed.splitlines():  # `global.cert='...'`, `:env:.cert='...'` (the environment wins)
        key, _, value = line.partition("=")
        scope, _, name = key.rpartition(".")
        if name and (scope == ":env:" or name not in settings):
            settings[name] = value.strip().strip("'\"")
    lines = ["[global]"]
    for name in ("index-url", "extra-index-url", "trusted-host", "timeout", "default-timeout"):
        values = [v for v in settings.get(name, "").split() if name.endswith("host") or "timeout" in name
                  or v.startswith(("http://", "https://"))]
        if values:
            lines.append(f"{'timeout' if 'timeout' in name else name} = {' '.join(values)}")
    secrets: list[str] = []
    cert = settings.get("cert")
    if cert and Path(cert).is_file():
        lines.append("cert = /run/secrets/pip_cert")
        secrets += ["--secret", f"id=pip_cert,src={cert}"]
    conf = podman.workdir / "build-pip.conf"
    conf.write_text("\n".join(lines) + "\n")
    return [*secrets, "--secret", f"id=pip_conf,src={conf}"]
