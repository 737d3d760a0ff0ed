"""Run the whole pipeline as processes, break it while a batch runs, and watch it recover.

A `ChaosRun` is one batch on one freshly started pipeline (simulator, tracker, distributor,
one gpu-stage process per host, llm-stage), on its own topics and its own database
(`lifecycle.chaos_run` starts and ends one; `faults.Fault` records what was done). Scenarios
(`tests/crash/scenarios.py`) drive faults through it: kill and restart services, stop the
broker or the database, scale consumers, inject faults into the simulator, inject poison
messages. Faults are scheduled by the batch's progress as the tracker's tables show it, never
by wall-clock sleeps; `invariants.check` then says what was lost or duplicated.
"""

import asyncio
import json
import logging
import signal
import time
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from cli.local_stack import PipelineConfig
from cli.processes import ProcessGroup, ServiceProcess, service_argv
from services.dashboard.summary import BatchSummary, batch_summary
from shared.stages import GPU_STAGES
from shared.topics import Topics
from tests.crash.faults import DISTRIBUTOR_COMMIT_EVERY, Fault
from tests.kafka_helpers import wait_until

log = logging.getLogger(__name__)

# The crash suite's own addresses and ports, so it never collides with the demo or tests/e2e.
CRASH_HOSTS = ("127.0.1.2", "127.0.1.3", "127.0.1.4")
CRASH_PORTS = {
    "DENOISE_PORT": "25010",
    "IVR_PORT": "25011",
    "LID_PORT": "25012",
    "STT_PORT": "25013",
}
CRASH_LLM_PORT = 28000
CRASH_CONTROL_PORT = 25099
LLM_MAX_CONCURRENCY = 8


@dataclass(frozen=True)
class ChaosSettings:
    """How big and how fast a scenario's batch is."""

    files: int = 1000
    hosts: tuple[str, ...] = CRASH_HOSTS
    capacity: int = 4
    latency_scale: float = 0.05
    # How long the database stays down in the database scenario (the brief says 60 s).
    db_outage_s: float = 60.0
    # How long a GPU host is down, and the LLM refuses its key, in those scenarios (issue 11
    # says 90 s and 60 s; `make test` shortens them to keep its time).
    host_outage_s: float = 90.0
    llm_outage_s: float = 60.0
    finish_timeout_s: float = 600.0
    corrupt_share: float = 0.005
    short_share: float = 0.02

    @property
    def gpu_hosts(self) -> str:
        return ",".join(f"{h}:{self.capacity}" for h in self.hosts)


class ServiceDied(AssertionError):
    pass


@dataclass
class ChaosRun:
    scenario: str
    settings: ChaosSettings
    config: PipelineConfig
    group: ProcessGroup
    engine: AsyncEngine
    http: httpx.AsyncClient
    batch_id: str
    paths: list[Path]
    started: float = field(default_factory=time.monotonic)
    faults: list[Fault] = field(default_factory=list)
    # Services a scenario stopped on purpose and has not restarted yet.
    expected_down: set[str] = field(default_factory=set)
    last_summary: BatchSummary | None = None
    # (seconds since submit, files in a terminal state, files through llm2), twice a second.
    terminal_samples: list[tuple[float, int, int]] = field(default_factory=list)

    # -- what the tables say -------------------------------------------------------------
    @property
    def files(self) -> int:
        return len(self.paths)

    @property
    def topics(self) -> Topics:
        return self.config.settings().topics

    async def summary(self) -> BatchSummary | None:
        """The batch as the tables show it; None while the database does not answer."""
        try:
            summary = await batch_summary(self.engine, self.batch_id)
        except Exception:
            return None
        if summary is not None:
            self.last_summary = summary
        return summary

    async def progress(self, stage: str) -> int:
        """Files through `stage` (finished or failed there); `distribute`: files with a host."""
        summary = await self.summary()
        return 0 if summary is None else stage_count(summary, stage)

    def describe_progress(self) -> str:
        s = self.last_summary
        if s is None:
            return "no progress yet"
        parts = [f"{line.stage} {line.done + line.failed}" for line in s.stages]
        return f"distributed {s.distributed}, " + ", ".join(parts) + f" of {self.files}"

    async def wait_for(self, stage: str, share: float, timeout_s: float | None = None) -> None:
        """Wait until `share` of the batch went through `stage`; fail if a service died."""
        target = max(1, int(share * self.files))

        async def reached() -> bool:
            self.assert_alive()
            return await self.progress(stage) >= target

        await wait_until(
            reached,
            timeout_s or self.settings.finish_timeout_s,
            lambda: (
                f"{self.scenario}: {stage} to reach {target} files ({self.describe_progress()})"
            ),
            interval_s=0.2,
        )

    async def wait_advance(self, stage: str, files: int, timeout_s: float = 120.0) -> None:
        """Wait until `files` more files went through `stage` than now (the system moves)."""
        start = await self.progress(stage)
        await self.wait_for(stage, (start + files) / self.files, timeout_s)

    async def wait_finished(self) -> BatchSummary:
        summary: BatchSummary | None = None

        async def finished() -> bool:
            nonlocal summary
            self.assert_alive()
            summary = await self.summary()
            return summary is not None and summary.finished

        left = self.started + self.settings.finish_timeout_s - time.monotonic()
        await wait_until(
            finished,
            max(left, 0.0),
            lambda: f"{self.scenario}: batch {self.batch_id} to finish ({summary})",
            interval_s=0.3,
        )
        assert summary is not None
        return summary

    def longest_pause(self) -> tuple[float, float] | None:
        """The longest gap between successive increases of the files in a terminal state, and
        when it began (seconds since submit): how long the batch stood still at worst.

        Measured from the first file through llm2 to the last file finished: before that the
        pipeline is still filling (only corrupt or triaged-out files finish), and a wait for
        the first file through eight hops is latency, not a pause."""
        window = [(t, n) for t, n, llm2 in self.terminal_samples if llm2 > 0]
        if not window:
            return None
        increases = [window[0][0]]
        last = window[0][1]
        for seconds, terminal in window[1:]:
            if terminal > last:
                increases.append(seconds)
                last = terminal
        if len(increases) < 2:
            return None
        gap, began = max((b - a, a) for a, b in pairwise(increases))
        return round(gap, 1), round(began, 1)

    # -- processes -----------------------------------------------------------------------
    def assert_alive(self) -> None:
        dead = [p for p in self.group.dead() if p.name not in self.expected_down]
        if dead:
            raise ServiceDied(
                f"{self.scenario}: service exited unexpectedly: "
                + ", ".join(f"{p.name} (code {p.popen.returncode}, log {p.log_path})" for p in dead)
            )

    def record(
        self,
        what: str,
        windows: dict[str, int] | None = None,
        in_flight: dict[str, int] | None = None,
        *,
        may_follow_batch: bool = False,
    ) -> Fault:
        terminal = stage_count(self.last_summary, "terminal") if self.last_summary else 0
        fault = Fault(
            what,
            self.describe_progress(),
            round(time.monotonic() - self.started, 1),
            dict(windows or {}),
            terminal,
            dict(in_flight or {}),
            may_follow_batch,
        )
        self.faults.append(fault)
        return fault

    async def kill(self, name: str, sig: int = signal.SIGKILL) -> int | None:
        """Signal a service and wait for it to exit; returns its exit code."""
        self.expected_down.add(name)
        return await asyncio.to_thread(self.group.kill, name, sig)

    async def restart(self, name: str) -> ServiceProcess:
        proc = await asyncio.to_thread(self.group.restart, name)
        self.expected_down.discard(name)
        return proc

    async def start_service(self, name: str, service: str, *args: str) -> ServiceProcess:
        return await asyncio.to_thread(self.group.start, name, service_argv(service, *args))

    async def retire(self, name: str) -> int | None:
        """SIGTERM a service for good (scale down); it must stop cleanly."""
        code = await self.kill(name, signal.SIGTERM)
        self.group.processes.pop(name)
        self.expected_down.discard(name)
        return code

    def windows(self, service: str) -> dict[str, int]:
        """What one process of `service` may hold started and not recorded finished by a
        commit, per stage: what a kill -9 of it may make each stage redo. For the GPU and LLM
        stages that is their `max_in_flight` (a slot is held until a commit records the
        record finished, whatever runs below it; see ARCHITECTURE.md, Delivery semantics)."""
        if service == "gpu-stage":
            return {stage: self.settings.capacity for stage in GPU_STAGES}
        if service == "llm-stage":
            return {"llm1": 2 * LLM_MAX_CONCURRENCY, "llm2": 2 * LLM_MAX_CONCURRENCY}
        if service == "distributor":
            # faust commits every DISTRIBUTOR_COMMIT_EVERY acknowledged events, checked as
            # events arrive: allow one more batch acknowledged while a commit is under way.
            both = 2 * DISTRIBUTOR_COMMIT_EVERY
            return {"distribute": both, "triage": both}
        return {}

    def all_windows(self) -> dict[str, int]:
        """Every consumer's window: what a broker crash may make them all redo."""
        total: dict[str, int] = {}
        services = ["distributor", "llm-stage", *(["gpu-stage"] * len(self.settings.hosts))]
        for service in services:
            for stage, n in self.windows(service).items():
                total[stage] = total.get(stage, 0) + n
        return total

    def log_mark(self, name: str) -> int:
        """Where a service's log ends now; `wait_assigned` reads only what follows."""
        path = self.group.processes[name].log_path
        return path.stat().st_size if path.exists() else 0

    async def wait_assigned(
        self,
        name: str,
        consumers: int,
        partitions: int | None = None,
        since: int = 0,
        timeout_s: float = 90.0,
    ) -> None:
        """Wait until `consumers` consumers of a process logged, after `since`, that they got
        partitions (exactly `partitions` of them if given, else some): a scaled-up process
        works, or the one left after a scale-down took every partition back."""
        path = self.group.processes[name].log_path
        latest: dict[str, int] = {}

        def assigned() -> bool:
            self.assert_alive()
            with path.open("rb") as log:
                log.seek(since)
                for line in log:
                    if b"partitions assigned" not in line:
                        continue
                    entry = json.loads(line)
                    latest[entry["service"]] = int(entry["msg"].rsplit(":", 1)[1])
            ready = [
                n for n in latest.values() if (n == partitions if partitions is not None else n)
            ]
            return len(ready) >= consumers

        await wait_until(
            assigned,
            timeout_s,
            lambda: f"{name}: consumers assigned {partitions}: {latest}",
            interval_s=0.3,
        )

    # -- the simulator -------------------------------------------------------------------
    @property
    def control_url(self) -> str:
        return f"http://127.0.0.1:{self.config.control_port}"

    async def sim_stats(self) -> dict[str, Any]:
        response = await self.http.get(f"{self.control_url}/stats")
        response.raise_for_status()
        stats: dict[str, Any] = response.json()
        return stats

    async def gpu_in_flight(self, host: str) -> dict[str, int]:
        """Model calls the simulator is serving on `host` now, per GPU stage."""
        in_flight: dict[str, int] = (await self.sim_stats())["gpu"]["in_flight"][host]
        return {stage: int(in_flight.get(stage, 0)) for stage in GPU_STAGES}

    async def set_faults(self, **knobs: Any) -> dict[str, Any]:
        response = await self.http.post(f"{self.control_url}/faults", json=knobs)
        response.raise_for_status()
        faults: dict[str, Any] = response.json()
        return faults


def stage_count(summary: BatchSummary, stage: str) -> int:
    if stage == "distribute":
        return summary.distributed
    if stage == "terminal":
        return sum(summary.terminal.values())
    for line in summary.stages:
        if line.stage == stage:
            return line.done + line.failed
    raise KeyError(stage)
