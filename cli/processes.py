"""Start the pipeline's services as real OS processes, and stop them (demo, e2e, crash tests)."""

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path


def exit_on_sigterm() -> None:
    """Let SIGTERM unwind like Ctrl-C, so a run's `finally` stops the services it started.

    Without it, `kill` of a demo or a bench leaves its services and simulator running,
    holding their ports, and the next run cannot start.
    """

    def _exit(signum: int, _frame: object) -> None:
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)


@dataclass
class ServiceProcess:
    name: str
    argv: list[str]
    log_path: Path
    popen: subprocess.Popen[bytes]

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None


def service_argv(service: str, *args: str) -> list[str]:
    modules = {
        "distributor": "services.distributor",
        "gpu-stage": "services.gpu_stage",
        "llm-stage": "services.llm_stage",
        "tracker": "services.tracker",
        "web": "services.dashboard",
        "simulator": "simulator",
        "model-host": "model_host",
    }
    return [sys.executable, "-m", modules[service], *args]


@dataclass
class ProcessGroup:
    """Services started by one run; logs go to one file per process."""

    log_dir: Path
    env: dict[str, str]
    processes: dict[str, ServiceProcess] = field(default_factory=dict)

    def start(self, name: str, argv: list[str]) -> ServiceProcess:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("ab") as log:
            popen = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # faust keeps a folder of table data in its working directory (the
                # repository's root here): beside the run's logs instead, unless set.
                env={"F_DATADIR": str(self.log_dir / f"{name}-data"), **os.environ, **self.env},
                cwd=Path(__file__).resolve().parent.parent,
            )
        proc = ServiceProcess(name, argv, log_path, popen)
        self.processes[name] = proc
        return proc

    def restart(self, name: str) -> ServiceProcess:
        old = self.processes[name]
        return self.start(name, old.argv)

    def kill(self, name: str, sig: int = signal.SIGKILL, timeout_s: float = 30.0) -> int | None:
        proc = self.processes[name]
        if proc.alive:
            proc.popen.send_signal(sig)
        try:
            return proc.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.popen.kill()
            return proc.popen.wait(timeout=10)

    def dead(self) -> list[ServiceProcess]:
        return [p for p in self.processes.values() if not p.alive]

    def wait_for_log(self, name: str, text: str, timeout_s: float = 60.0) -> None:
        proc = self.processes[name]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if text in proc.log_path.read_text(errors="replace"):
                return
            if not proc.alive:
                raise RuntimeError(
                    f"{name} exited (code {proc.popen.returncode}) before "
                    f"logging {text!r}; see {proc.log_path}"
                )
            time.sleep(0.1)
        raise TimeoutError(f"{name} did not log {text!r} within {timeout_s}s; see {proc.log_path}")

    def stop_all(self, timeout_s: float = 30.0) -> None:
        for proc in self.processes.values():
            if proc.alive:
                proc.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for proc in self.processes.values():
            try:
                proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait(timeout=10)
