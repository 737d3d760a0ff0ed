"""docker-compose.yml booted with podman on this machine (tests/e2e/test_compose_boot.py).

docker-compose (v1, Debian's) drives podman's Docker-compatible API, started here on a socket
of its own with the project's containers.conf; the images come from infra/images.sh. Podman
schedules healthchecks with systemd timers, and these machines have no systemd: a thread runs
each running container's healthcheck instead (`podman healthcheck run`), so that compose's
`service_healthy` conditions hold as they would under Docker.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONTAINERS_CONF = ROOT / "infra" / "containers.conf"
IMAGES = ROOT / "infra" / "images.sh"
# Grafana is not in Debian: no image of it can be built here.
NOT_HERE = ("grafana",)


def missing_tools() -> list[str]:
    missing = [t for t in ("podman", "docker-compose", "debootstrap") if not shutil.which(t)]
    if os.geteuid() != 0:
        missing.append("root (debootstrap, rootful podman)")
    return missing


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def podman_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def podman(*args: str, check: bool = True, timeout: float = 120) -> str:
    run = subprocess.run(
        ["podman", *args], env=podman_env(), capture_output=True, text=True, timeout=timeout
    )
    if check and run.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: {run.stderr.strip()}")
    return run.stdout


def images_built() -> bool:
    out = subprocess.run([str(IMAGES), "list"], env=podman_env(), capture_output=True, text=True)
    return out.returncode == 0 and "missing" not in out.stdout


def background_build(cache: Path) -> str | None:
    """The state of the images' background build that `make test` starts (`infra/images.sh
    background`): running, ok or failed; None if none was started."""
    status = cache / "images" / "build.status"
    return status.read_text().strip() if status.exists() else None


def background_log(cache: Path, lines: int = 30) -> str:
    log = cache / "images" / "build.log"
    return "\n".join(log.read_text().splitlines()[-lines:]) if log.exists() else "(no log)"


def build_images(cache: Path) -> dict[str, str]:
    """The Debian-built images (cached: built once), as compose variables."""
    env = {**podman_env(), "COFI_CACHE": str(cache)}
    subprocess.run([str(IMAGES), "build"], env=env, check=True, timeout=3600)
    out = subprocess.run([str(IMAGES), "env"], env=env, check=True, capture_output=True, text=True)
    return dict(line.split("=", 1) for line in out.stdout.split())


@dataclass
class Stack:
    project: str
    env: dict[str, str]
    secrets: Path
    services: list[str] = field(default_factory=list)

    def compose(self, *args: str, timeout: float = 600, check: bool = True) -> str:
        run = subprocess.run(
            ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "-p", self.project, *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and run.returncode != 0:
            raise AssertionError(f"docker-compose {' '.join(args)}:\n{run.stderr[-4000:]}")
        return run.stdout

    def containers(self, service: str) -> list[str]:
        out = podman(
            "ps", "--format", "{{.Names}}",
            "--filter", f"label=com.docker.compose.project={self.project}",
            "--filter", f"label=com.docker.compose.service={service}",
        )  # fmt: skip
        return sorted(out.split())

    def healthy(self, service: str) -> bool:
        """Every container of the service passes its healthcheck."""
        names = self.containers(service)
        states = [
            podman("inspect", "--format", "{{.State.Health.Status}}", n).strip() for n in names
        ]
        return bool(states) and all(state == "healthy" for state in states)

    def sql(self, query: str) -> list[list[str]]:
        """Rows of a query on the stack's database, as the root user inside its container."""
        (db,) = self.containers("mariadb")
        password = (self.secrets / "db_root_password").read_text().strip()
        out = podman(
            "exec", db, "mariadb", "-uroot", f"-p{password}", "-N", "-B",
            self.env.get("DB_NAME", "cofi"), "-e", query,
        )  # fmt: skip
        return [line.split("\t") for line in out.splitlines()]


def _run_healthchecks(project: str, stop: threading.Event) -> None:
    while not stop.wait(3):
        names = podman(
            "ps", "--format", "{{.Names}}", "--filter", f"label=com.docker.compose.project={project}",
            check=False,
        ).split()  # fmt: skip
        for name in names:
            # Exits non-zero for an unhealthy container and for one without a healthcheck.
            podman("healthcheck", "run", name, check=False, timeout=30)


@contextmanager
def podman_service(sock: Path) -> Iterator[None]:
    """Podman's Docker-compatible API on `sock`, for docker-compose."""
    proc = subprocess.Popen(
        ["podman", "system", "service", "--time=0", f"unix://{sock}"],
        env=podman_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not sock.exists():
            assert proc.poll() is None, "podman system service exited"
            assert time.monotonic() < deadline, "podman's API socket did not appear"
            time.sleep(0.2)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@contextmanager
def booted(
    tmp: Path, images: dict[str, str], scale: dict[str, int], extra: dict[str, str]
) -> Iterator[Stack]:
    """The simulator profile's stack up (less what cannot be built here), then torn down."""
    sock = tmp / "podman.sock"
    secrets = tmp / "secrets"
    subprocess.run(
        [str(ROOT / "scripts" / "compose-secrets.sh"), str(secrets)],
        check=True,
        capture_output=True,
    )
    project = f"cofitest{uuid.uuid4().hex[:8]}"
    env = {
        **podman_env(),
        **images,
        **extra,
        "DOCKER_HOST": f"unix://{sock}",
        "COMPOSE_PROFILES": "simulator",
        "SECRETS_DIR": str(secrets),
        "KAFKA_EXTERNAL_PORT": str(free_port()),
        "WEB_PUBLISHED_PORT": str(free_port()),
        "PROMETHEUS_PUBLISHED_PORT": str(free_port()),
        "ALERTMANAGER_PUBLISHED_PORT": str(free_port()),
        "GRAFANA_PUBLISHED_PORT": str(free_port()),
    }
    stack = Stack(project, env, secrets)
    stop = threading.Event()
    checker = threading.Thread(target=_run_healthchecks, args=(project, stop), daemon=True)
    with podman_service(sock):
        checker.start()
        try:
            stack.services = _services(stack, exclude=(*NOT_HERE, "upload-demo"))
            scales = [f"--scale={name}={n}" for name, n in scale.items()]
            # One build: every cofi service shares the image (compose would build it per service).
            stack.compose("build", "migrate", timeout=3600)
            stack.compose("up", "-d", "--no-build", *scales, *stack.services, timeout=3600)
            yield stack
        finally:
            stop.set()
            checker.join(timeout=60)
            stack.compose("down", "--volumes", "--remove-orphans", "--timeout", "10", check=False)


def _services(stack: Stack, exclude: Sequence[str]) -> list[str]:
    return [s for s in stack.compose("config", "--services").split() if s not in exclude]
