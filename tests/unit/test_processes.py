"""A run that is sent SIGTERM (demo, bench, chaos) stops the services it started."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.kafka_helpers import wait_until
from tests.process_helpers import pid_alive

REPO = Path(__file__).resolve().parents[2]

# A stand-in for `cofi demo`: starts one long-lived "service", then waits in a try/finally.
RUN = """
import sys, time
from pathlib import Path
from cli.processes import ProcessGroup, exit_on_sigterm

if sys.argv[2] == "handled":
    exit_on_sigterm()
group = ProcessGroup(log_dir=Path(sys.argv[1]), env={})
try:
    child = group.start("service", [sys.executable, "-c", "import time; time.sleep(600)"])
    print(child.popen.pid, flush=True)
    time.sleep(600)
finally:
    group.stop_all(timeout_s=10)
"""


def _terminated_run(tmp_path: Path, mode: str) -> int:
    run = subprocess.Popen(
        [sys.executable, "-c", RUN, str(tmp_path), mode],
        stdout=subprocess.PIPE,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert run.stdout is not None
    service_pid = int(run.stdout.readline())
    assert pid_alive(service_pid)
    run.send_signal(signal.SIGTERM)
    run.wait(timeout=30)
    return service_pid


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
async def test_a_terminated_run_stops_its_services(tmp_path: Path) -> None:
    service_pid = _terminated_run(tmp_path, "handled")
    await wait_until(lambda: not pid_alive(service_pid), 15, "the service to stop with its run")


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_without_the_handler_the_service_is_orphaned(tmp_path: Path) -> None:
    # The failure the handler prevents: Python's default SIGTERM skips every `finally`.
    service_pid = _terminated_run(tmp_path, "default")
    try:
        assert pid_alive(service_pid)
    finally:
        os.kill(service_pid, signal.SIGKILL)
