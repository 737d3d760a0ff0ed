"""The game day's clock: a fault drawn from the catalogue starts every 1-3 minutes and lasts
its own while, so faults overlap; and the monitor, which samples the tables while it runs
(files per stage for the chart, the first moment each batch says Complete or Cancelled, with
the topics' end offsets just before, for the invariants)."""

import asyncio
import random
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition
from sqlalchemy import text

from shared.pipeline import PIPELINE
from tests.gameday.day import ActiveFault, Day, utcnow
from tests.gameday.kinds import FaultKind

# The first fault comes early enough that a 5-minute game day sees two to four.
FIRST_FAULT_S = (10.0, 60.0)
FAULT_GAP_S = (60.0, 180.0)
# A share of the faults bring a second one along, started within 20 s: besides the long
# faults that outlast the next draw, this is how faults overlap.
COMPANION_SHARE = 0.3
COMPANION_LAG_S = (0.0, 20.0)
SAMPLE_EVERY_S = 2.0
# The stages the chart counts files through: the pipeline's, by their done flag or decision.
CHART_STAGES = [s for s in PIPELINE if s.flag_column or s.decision_column]


async def fault_loop(
    day: Day, kinds: list[FaultKind], duration_s: float, gap_s: tuple[float, float] = FAULT_GAP_S
) -> None:
    """Start a drawn fault every 1-3 minutes until `duration_s`; every fault still on then
    stops at `duration_s`."""
    tasks: list[asyncio.Task[None]] = []
    at = day.rng.uniform(*FIRST_FAULT_S)
    n = 0
    while at < duration_s:
        await asyncio.sleep(max(0.0, at - day.now()))
        n += 1
        rng = random.Random(f"{day.seed}-fault-{n}")
        kind = rng.choice(kinds)
        hold = rng.uniform(*kind.hold_s)
        tasks.append(asyncio.create_task(_one_fault(day, kind, rng, hold, duration_s)))
        if rng.random() < COMPANION_SHARE:  # real outages come together
            lag = rng.uniform(*COMPANION_LAG_S)
            other = random.Random(f"{day.seed}-fault-{n}-companion")
            second = other.choice(kinds)
            hold2 = other.uniform(*second.hold_s)
            tasks.append(
                asyncio.create_task(
                    _after(day, lag, duration_s, _one_fault(day, second, other, hold2, duration_s))
                )
            )
        at += rng.uniform(*gap_s)
    await asyncio.gather(*tasks)


async def _after(
    day: Day, seconds: float, duration_s: float, fault: Coroutine[Any, Any, None]
) -> None:
    await asyncio.sleep(seconds)
    if day.now() < duration_s:
        await fault
    else:
        fault.close()  # the game day's faults are over


async def _one_fault(
    day: Day, kind: FaultKind, rng: random.Random, hold_s: float, duration_s: float
) -> None:
    if any(f.kind == kind.name and f.stopped_s is None for f in day.faults):
        day.notes.append(f"{kind.name} drawn at {day.now()}s while one was on: not doubled")
        return
    fault = ActiveFault(kind.name, kind.title, day.now(), utcnow())
    day.faults.append(fault)
    ctx: dict[str, Any] = {"rng": rng}
    day.step("fault-start", f"{kind.name}: {kind.title}")
    try:
        await kind.start(day, ctx)
        until = min(fault.started_s + hold_s, duration_s)
        await asyncio.sleep(max(0.0, until - day.now()))
    except Exception as exc:  # the report says which fault could not be made
        fault.error = f"start: {type(exc).__name__}: {exc}"
    finally:
        await _stop(day, kind, ctx, fault)
        fault.detail = str(ctx.get("detail", ""))
        fault.stopped_s, fault.stopped_at = day.now(), utcnow()
        day.step("fault-stop", f"{kind.name}")


STOP_TRIES = 24  # a stop that fails (the broker killed meanwhile) is tried again for 2 minutes
STOP_RETRY_S = 5.0


async def _stop(day: Day, kind: FaultKind, ctx: dict[str, Any], fault: ActiveFault) -> None:
    """Undo the fault, trying again while another fault is in the way: a drain must be
    undone, a host brought back, whatever else is broken at the time."""
    tries = 1 if fault.error else STOP_TRIES  # a start that failed may have nothing to undo
    for attempt in range(1, tries + 1):
        try:
            await kind.stop(day, ctx)
            return
        except Exception as exc:
            fault.error += f" stop, try {attempt}: {type(exc).__name__}: {exc}"[:300]
            await asyncio.sleep(STOP_RETRY_S)


@dataclass
class Observation:
    """A batch first seen Complete or Cancelled: the topics' end offsets read just before
    the tables were, and its files' rows as the tables showed them then."""

    batch_id: str
    status: str
    at_s: float
    ends: dict[TopicPartition, int]
    rows: dict[str, dict[str, Any]]


@dataclass
class Monitor:
    day: Day
    # (seconds, files through each chart stage, files ended), every SAMPLE_EVERY_S.
    samples: list[tuple[float, dict[str, int]]] = field(default_factory=list)
    observations: list[Observation] = field(default_factory=list)
    # Sampling errors (the database or the broker out): first seen, last seen, how often.
    errors: dict[str, tuple[float, float, int]] = field(default_factory=dict)

    async def run(self, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.day.config.bootstrap)
        await consumer.start()
        try:
            while not stop.is_set():
                self.day.supervise()
                try:
                    await self._sample(consumer)
                except Exception as exc:  # the database or broker is out: a fault, not ours
                    self._unreachable(exc)
                await asyncio.wait([asyncio.create_task(stop.wait())], timeout=SAMPLE_EVERY_S)
        finally:
            await consumer.stop()

    def _unreachable(self, exc: Exception) -> None:
        """One note per kind of error, with when it was first and last seen and how often."""
        what = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
        first, _, count = self.errors.get(what, (self.day.now(), 0.0, 0))
        self.errors[what] = (first, self.day.now(), count + 1)

    def notes(self) -> list[str]:
        return [
            f"the monitor could not sample {n} times from {a:.0f} s to {b:.0f} s: {what}"
            for what, (a, b, n) in self.errors.items()
        ]

    async def _sample(self, consumer: AIOKafkaConsumer) -> None:
        settings = self.day.config.settings()
        topics = settings.topics.all_topics(settings.host_ips)
        parts = [TopicPartition(t, p) for t in topics for p in range(self.day.config.partitions)]
        ends = dict(await consumer.end_offsets(parts))
        counts = [
            f"SUM({s.flag_column} = 1)"
            if s.flag_column
            else f"SUM({s.decision_column} IS NOT NULL)"
            for s in CHART_STAGES
        ]
        async with self.day.run.engine.connect() as conn:
            status = (await conn.execute(text("SELECT batchId, status FROM batchStatus"))).all()
            totals = (
                await conn.execute(
                    text(
                        "SELECT COUNT(*), "
                        + ", ".join(counts)
                        + ", SUM(terminalState IS NOT NULL) FROM fileDistribution"
                    )
                )
            ).one()
            now = self.day.now()
            names = ["distribute", *(s.name for s in CHART_STAGES), "ended"]
            self.samples.append((now, {n: int(v or 0) for n, v in zip(names, totals, strict=True)}))
            for batch_id, state in status:
                batch = self.day.batches.get(batch_id)
                if batch is None or state not in ("Complete", "Cancelled"):
                    continue
                batch.status = state
                if batch.finished_s is None:
                    batch.finished_s = now
                    rows = await _file_rows(conn, batch_id)
                    self.observations.append(Observation(batch_id, state, now, ends, rows))


async def _file_rows(conn: Any, batch_id: str) -> dict[str, dict[str, Any]]:
    flags = [s.flag_column for s in PIPELINE if s.flag_column]
    found = await conn.execute(
        text(
            "SELECT file, terminalState, triageRoute, "
            + ", ".join(flags)
            + " FROM fileDistribution WHERE batchId = :b"
        ),
        {"b": batch_id},
    )
    return {str(r["file"]): dict(r) for r in found.mappings().all()}
