"""One game day, start to end: the infrastructure, the pipeline, the workload, the faults,
the monitor, the wait for every batch to finish, the invariants and the report."""

import asyncio
import os
import random
import signal
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from aiokafka import AIOKafkaConsumer

from tests.crash.harness import ChaosSettings
from tests.crash.infra import (
    CACHE,
    REPO,
    PrivateCluster,
    PrivateKafka,
    PrivateMariaDB,
    fresh_database,
)
from tests.crash.lifecycle import Infra
from tests.crash.scenario import Breakables
from tests.gameday.catalogue import eligible
from tests.gameday.day import Day, pipeline
from tests.gameday.faults import Monitor, fault_loop
from tests.gameday.invariants import Invariant, check
from tests.gameday.report import RunFacts, write
from tests.gameday.workload import WorkloadSettings, audio_pool, batch_state, run_workload

# Ports of the game day's own broker and MariaDB, below the ephemeral range (32768-60999):
# while the broker is killed, the services' reconnects to a port in that range can connect
# to themselves (TCP simultaneous open) and hold it, and the broker cannot bind it again.
GAMEDAY_KAFKA_PORT = 29592
GAMEDAY_MARIADB_PORT = 23606


@dataclass(frozen=True)
class GameDaySettings:
    seed: int
    duration_s: float = 3600.0
    bound_s: float = 300.0
    broker: Literal["shared", "private", "cluster"] = "private"
    database: Literal["shared", "private"] = "private"
    latency_scale: float = 0.02
    reports: Path = REPO / "reports"
    command: str = "make gameday"
    # Draw only from these kinds (to try a fault or replay one); empty: the whole catalogue.
    only: tuple[str, ...] = ()
    # Seconds between fault starts (the 1-3 minutes unless told).
    fault_gap_s: tuple[float, float] = (60.0, 180.0)


@dataclass
class Result:
    passed: bool
    report: Path
    invariants: dict[str, Invariant]


def _breakables(s: GameDaySettings) -> tuple[Breakables, set[str]]:
    shared = Infra(
        os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        os.environ.get("TEST_DATABASE_URL", "mysql+asyncmy://cofi:cofi@127.0.0.1:3306/cofi"),
    )
    infra = Breakables(shared)
    if s.broker == "private":
        infra.kafka = PrivateKafka(
            CACHE / "gameday-kafka", GAMEDAY_KAFKA_PORT, GAMEDAY_KAFKA_PORT + 1
        )
    elif s.broker == "cluster":
        infra.cluster = PrivateCluster()
    if s.database == "private":
        infra.mariadb = PrivateMariaDB(CACHE / "gameday-mariadb", GAMEDAY_MARIADB_PORT)
    available = {
        name
        for name, there in (
            ("private-kafka", infra.kafka),
            ("private-cluster", infra.cluster),
            ("private-mariadb", infra.mariadb),
        )
        if there is not None
    }
    return infra, available


async def run_game_day(s: GameDaySettings) -> Result:
    infra, available = _breakables(s)
    # Topics as the broker can hold them: the 3-node cluster as production would (RF 3, min
    # ISR 2), a single broker with 1 and 1 (the settings' defaults suit three brokers).
    cluster = s.broker == "cluster"
    os.environ["TOPIC_REPLICATION_FACTOR"] = "3" if cluster else "1"
    os.environ["TOPIC_MIN_INSYNC_REPLICAS"] = "2" if cluster else "1"
    if infra.kafka is not None:
        await asyncio.to_thread(infra.kafka.start, True)
    if infra.cluster is not None:
        await asyncio.to_thread(infra.cluster.start, fresh=True)
    if infra.mariadb is not None:
        await asyncio.to_thread(infra.mariadb.start)
    try:
        return await _run(s, infra, available)
    finally:
        for stop in (
            infra.kafka and infra.kafka.stop,
            infra.cluster and infra.cluster.stop,
            infra.mariadb and infra.mariadb.stop,
        ):
            if stop:
                await asyncio.to_thread(stop)


async def _run(s: GameDaySettings, infra: Breakables, available: set[str]) -> Result:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    bootstrap = infra.shared.bootstrap
    if infra.kafka is not None:
        bootstrap = infra.kafka.bootstrap
    elif infra.cluster is not None:
        bootstrap = infra.cluster.bootstrap
    server = infra.mariadb.server_url if infra.mariadb else infra.shared.mariadb_server_url
    settings = replace(ChaosSettings(), latency_scale=s.latency_scale)
    workload = WorkloadSettings(s.duration_s)
    audio = await asyncio.to_thread(audio_pool, workload.lengths)
    kinds = [k for k in eligible(available) if not s.only or k.name in s.only]
    log_dir = CACHE / "gameday" / stamp
    wall = time.monotonic()
    async with (
        fresh_database(server) as database_url,
        pipeline(settings, infra, bootstrap, database_url, log_dir) as run,
    ):
        day = Day(s.seed, random.Random(s.seed), run, infra, audio, log_dir)
        day.tracker_group = f"{run.config.topic_prefix}-tracker"
        monitor = Monitor(day)
        stop = asyncio.Event()
        watching = asyncio.create_task(monitor.run(stop))
        deadline = s.duration_s + s.bound_s
        try:
            await asyncio.gather(
                run_workload(day, workload), fault_loop(day, kinds, s.duration_s, s.fault_gap_s)
            )
            await heal(day)
            cleared = max([f.stopped_s or 0.0 for f in day.faults] + [day.now()])
            deadline = cleared + s.bound_s
            await _settle(day, deadline)
            await _tracker_caught_up(day, timeout_s=max(60.0, deadline - day.now()))
        except Exception as exc:  # the report must still be written, saying so
            day.harness_errors.append(f"{type(exc).__name__}: {exc}"[:600])
            await heal(day)
        finally:
            stop.set()
            await watching
            for task in day.follow_ups:
                task.cancel()
        invariants = await check(day, monitor, s.bound_s, deadline)
        facts = RunFacts(
            stamp,
            s.duration_s,
            s.bound_s,
            deadline,
            time.monotonic() - wall,
            s.broker,
            s.database,
            kinds,
            f"{s.command} SEED={s.seed}",
        )
        report = write(day, monitor, invariants, facts, s.reports)
    passed = all(i.passed for i in invariants.values()) and not day.harness_errors
    return Result(passed, report, invariants)


async def heal(day: Day) -> None:
    """Whatever a fault left broken because its stop failed or two faults of one resource
    overlapped (a broker started by one while another killed it): the broker, the database
    and every cluster node up, the tracker running. The end of the faults, not a repair of
    the pipeline: no service of the pipeline is touched but the tracker's SIGCONT."""
    infra = day.infra
    broken = []
    if infra.kafka is not None and infra.kafka.pid() is None:
        broken.append("the broker")
        await asyncio.to_thread(infra.kafka.start)
    if infra.mariadb is not None and infra.mariadb.pid() is None:
        broken.append("MariaDB")
        await asyncio.to_thread(infra.mariadb.start)
    if infra.cluster is not None and any(infra.cluster.pid(n) is None for n in infra.cluster.nodes):
        broken.append("cluster nodes")
        await asyncio.to_thread(infra.cluster.start)
    os.kill(day.run.group.processes["tracker"].popen.pid, signal.SIGCONT)
    if broken:
        day.step("fault-stop", "end of the faults: start " + ", ".join(broken) + " again")
        day.notes.append(f"{', '.join(broken)} still down when the faults ended: started")


async def _settle(day: Day, deadline_s: float) -> None:
    """Wait until every batch is Complete or Cancelled and the workload's follow-ups (late
    uploads, retries) are done, or the deadline passes."""
    while day.now() < deadline_s:
        day.supervise()
        states = [await batch_state(day, b) for b in day.batches]
        if all(st in ("Complete", "Cancelled") for st in states) and all(
            t.done() for t in day.follow_ups
        ):
            return
        await asyncio.sleep(2.0)


async def _tracker_caught_up(day: Day, timeout_s: float) -> None:
    """Wait until the tracker's group has committed every topic's end: the tables then hold
    everything on the topics, and a rebuild from them must equal the tables."""
    ends = {tp: end for tp, end in (await day.end_offsets()).items() if end > 0}
    consumer = AIOKafkaConsumer(
        bootstrap_servers=day.config.bootstrap, group_id=day.tracker_group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        loop = asyncio.get_running_loop()
        until = loop.time() + timeout_s
        while loop.time() < until:
            behind = [tp for tp, end in ends.items() if (await consumer.committed(tp) or 0) < end]
            if not behind:
                return
            await asyncio.sleep(1.0)
        day.notes.append(f"the tracker had not committed the end of {len(behind)} partitions")
    finally:
        await consumer.stop()
