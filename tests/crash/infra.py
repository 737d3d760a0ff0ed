"""Private infrastructure for the crash suite: a broker and a MariaDB of our own to kill.

The shared broker (9092) and MariaDB (3306) serve every other engineer's tests, so the
scenarios that kill the broker or stop the database run their own instances, started by the
project's own scripts (`infra/kafka.sh`, `infra/mariadb.sh`) under a cache folder of their own.
"""

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from tests import database_helpers
from tests.process_helpers import pid_alive

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache"
# Where `make infra` keeps the broker's jars and Maven's repository (COFI_CACHE, as
# infra/kafka.sh reads it): private brokers link those jars instead of downloading them again.
SHARED_CACHE = Path(os.environ.get("COFI_CACHE") or CACHE).resolve()

# The crash suite's own port range (see the task: 39092/39093 broker, 33306 MariaDB).
PRIVATE_KAFKA_PORT = 39092
PRIVATE_KAFKA_CONTROLLER_PORT = 39093
PRIVATE_MARIADB_PORT = 33306
# The broker-loss scenarios' 3-node cluster: node n on 39192 + 2(n-1), its controller on +1.
PRIVATE_CLUSTER_PORT = 39192


def _script_env(**extra: str) -> dict[str, str]:
    skip = ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS")
    env = {k: v for k, v in os.environ.items() if k not in skip}
    env.setdefault("PYTHON", str(REPO / ".venv" / "bin" / "python"))
    env.update(extra)
    return env


def _run(argv: list[str], env: dict[str, str], timeout_s: float) -> None:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr[-2000:]}")


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _share_jars(cache: Path) -> None:
    lib = cache / "kafka" / "lib"
    shared = SHARED_CACHE / "kafka" / "lib"
    if not lib.exists() and shared.is_dir():
        lib.parent.mkdir(parents=True, exist_ok=True)
        lib.symlink_to(shared)


@dataclass
class PrivateKafka:
    """A single-node broker on 39092 with its data under `.cache/crash-kafka`; with
    `sasl_ssl_port`, also the SASL_SSL listener of `infra/kafka.sh start --sasl-ssl`; with
    `acls`, the authorizer and a SCRAM user per service too (`--acls`)."""

    cache: Path = CACHE / "crash-kafka"
    port: int = PRIVATE_KAFKA_PORT
    controller_port: int = PRIVATE_KAFKA_CONTROLLER_PORT
    sasl_ssl_port: int | None = None
    username: str = "cofi"
    password: str = "cofi-crash-secret"
    acls: bool = False

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> Path:
        """The CA that signed the broker's certificate (infra/kafka.sh makes it at start)."""
        return self.cache / "kafka" / "tls" / "ca.pem"

    def sasl_env(self, mechanism: str = "SCRAM-SHA-512") -> dict[str, str]:
        """The services' KAFKA_* settings for the SASL_SSL listener."""
        assert self.sasl_ssl_port is not None, "started without a SASL_SSL listener"
        return {
            "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{self.sasl_ssl_port}",
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": mechanism,
            "KAFKA_SASL_USERNAME": self.username,
            "KAFKA_SASL_PASSWORD": self.password,
            "KAFKA_SSL_CAFILE": str(self.ca_file),
        }

    def user_env(self, user: str) -> dict[str, str]:
        """The SASL_SSL settings of one service user (`acls`): its password is the file
        infra/kafka.sh generated for it."""
        password = (self.cache / "kafka" / "users" / user).read_text().strip()
        return self.sasl_env() | {"KAFKA_SASL_USERNAME": user, "KAFKA_SASL_PASSWORD": password}

    def _env(self) -> dict[str, str]:
        env = _script_env(
            COFI_CACHE=str(self.cache),
            KAFKA_PORT=str(self.port),
            KAFKA_CONTROLLER_PORT=str(self.controller_port),
            # The shared broker's jars and Maven repository: nothing to download again.
            COFI_MAVEN_REPO=str(SHARED_CACHE / "m2"),
            KAFKA_READY_TIMEOUT="120",
            KAFKA_HEAP_OPTS="-Xms128m -Xmx768m",
        )
        for name in (
            "KAFKA_SASL_SSL_PORT",
            "KAFKA_SASL_USERNAME",
            "KAFKA_SASL_PASSWORD",
            "KAFKA_ACLS",
            "KAFKA_USERS_DIR",
            "TOPIC_PREFIX",
        ):
            env.pop(name, None)
        if self.acls:
            env["KAFKA_ACLS"] = "1"
        if self.sasl_ssl_port is not None:
            env |= {
                "KAFKA_SASL_SSL_PORT": str(self.sasl_ssl_port),
                "KAFKA_SASL_USERNAME": self.username,
                "KAFKA_SASL_PASSWORD": self.password,
            }
        return env

    def _share_jars(self) -> None:
        _share_jars(self.cache)

    def start(self, fresh: bool = False) -> None:
        self._share_jars()
        if fresh and self.pid() is None:
            # Old topics of earlier runs only slow the broker's start down.
            shutil.rmtree(self.cache / "kafka" / "data", ignore_errors=True)
        _run([str(REPO / "infra" / "kafka.sh"), "start"], self._env(), timeout_s=300)
        if self.pid() is None:
            # The script found the port answering and left it at that: not ours to kill.
            raise RuntimeError(
                f"port {self.port} is served by a broker the crash suite did not start "
                "(another crash-suite run on this machine?)"
            )

    def stop(self) -> None:
        _run([str(REPO / "infra" / "kafka.sh"), "stop"], self._env(), timeout_s=120)

    def pid(self) -> int | None:
        pidfile = self.cache / "kafka" / "kafka.pid"
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        return pid if str(self.cache).encode() in cmdline else None

    def kill9(self) -> int:
        """SIGKILL the broker's JVM, the one our start() launched (never the shared one)."""
        pid = self.pid()
        if pid is None:
            raise RuntimeError(f"private broker on {self.bootstrap} is not running")
        os.kill(pid, signal.SIGKILL)
        # A start() that still found the dying JVM's port open would take it for a live
        # broker and wait on it in vain: return only once the process and its port are gone.
        deadline = time.monotonic() + 30
        while pid_alive(pid) or _port_open(self.port):
            if time.monotonic() > deadline:
                raise RuntimeError(f"private broker (pid {pid}) still alive 30 s after SIGKILL")
            time.sleep(0.05)
        return pid


@dataclass
class PrivateCluster:
    """Three KRaft nodes (broker and controller each) started by `infra/kafka.sh cluster-start`,
    their data under `.cache/crash-cluster`: the broker-loss scenarios kill and restart them."""

    cache: Path = CACHE / "crash-cluster"
    base_port: int = PRIVATE_CLUSTER_PORT
    nodes: tuple[int, ...] = (1, 2, 3)

    def port(self, node: int) -> int:
        return self.base_port + 2 * (node - 1)

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{self.port(n)}" for n in self.nodes)

    def _env(self) -> dict[str, str]:
        env = _script_env(
            COFI_CACHE=str(self.cache),
            KAFKA_CLUSTER_PORT=str(self.base_port),
            COFI_MAVEN_REPO=str(SHARED_CACHE / "m2"),
            KAFKA_READY_TIMEOUT="180",
        )
        env.pop("KAFKA_SASL_SSL_PORT", None)
        return env

    def _script(self, action: str, *nodes: int, timeout_s: float = 300) -> None:
        argv = [str(REPO / "infra" / "kafka.sh"), action, *map(str, nodes)]
        _run(argv, self._env(), timeout_s=timeout_s)

    def start(self, *nodes: int, fresh: bool = False) -> None:
        """Start the nodes (all when none named) that are not running; wait until every
        running node is a registered broker."""
        _share_jars(self.cache)
        if fresh and all(self.pid(n) is None for n in self.nodes):
            shutil.rmtree(self.cache / "kafka" / "cluster", ignore_errors=True)
        self._script("cluster-start", *nodes)
        missing = [n for n in (nodes or self.nodes) if self.pid(n) is None]
        if missing:
            raise RuntimeError(f"cluster nodes {missing} are not ours or did not start")

    def stop(self, *nodes: int) -> None:
        """SIGTERM (a controlled shutdown) the nodes, all when none named; wait until gone."""
        self._script("cluster-stop", *nodes, timeout_s=120)

    def log(self, node: int) -> Path:
        return self.cache / "kafka" / "cluster" / f"node{node}" / "kafka.log"

    def pid(self, node: int) -> int | None:
        pidfile = self.cache / "kafka" / "cluster" / f"node{node}" / "kafka.pid"
        try:
            pid = int(pidfile.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        return pid if str(self.cache).encode() in cmdline else None

    def kill9(self, node: int) -> int:
        """SIGKILL one node's JVM; returns once the process and its port are gone."""
        pid = self.pid(node)
        if pid is None:
            raise RuntimeError(f"cluster node {node} is not running")
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while pid_alive(pid) or _port_open(self.port(node)):
            if time.monotonic() > deadline:
                raise RuntimeError(f"cluster node {node} (pid {pid}) alive 30 s after SIGKILL")
            time.sleep(0.05)
        return pid


@dataclass
class PrivateMariaDB:
    """A MariaDB on 33306 with its datadir under `.cache/crash-mariadb` (socket path short)."""

    cache: Path = CACHE / "crash-mariadb"
    port: int = PRIVATE_MARIADB_PORT

    @property
    def server_url(self) -> str:
        return f"mysql+asyncmy://cofi:cofi@127.0.0.1:{self.port}/cofi"

    def _env(self) -> dict[str, str]:
        return _script_env(COFI_CACHE=str(self.cache), MARIADB_PORT=str(self.port))

    def start(self) -> None:
        _run([str(REPO / "infra" / "mariadb.sh"), "start"], self._env(), timeout_s=300)
        if self.pid() is None:
            raise RuntimeError(
                f"port {self.port} is served by a MariaDB the crash suite did not start "
                "(another crash-suite run on this machine?)"
            )

    def pid(self) -> int | None:
        datadir = self.cache / "mariadb" / "data"
        try:
            pid = int((self.cache / "mariadb" / "mariadbd.pid").read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        return pid if f"--datadir={datadir}".encode() in cmdline else None

    def stop(self) -> None:
        _run([str(REPO / "infra" / "mariadb.sh"), "stop"], self._env(), timeout_s=120)


@asynccontextmanager
async def fresh_database(server_url: str, keep: bool = False) -> AsyncIterator[str]:
    """A new, empty database on the server at `server_url`; dropped afterwards unless `keep`."""
    async with database_helpers.fresh_database(server_url, "cofi_crash", keep) as url:
        yield url
