"""The crash scenarios: what each does to a running batch, and what it checks beyond the
common invariants. Shared by the pytest suite (`tests/crash/test_*.py`, 1,000 files) and the
chaos runner (`tests/crash/chaos.py`, 10,000 files)."""

import asyncio
import base64
import json
import signal
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Literal

from sqlalchemy import text

from cli.audio import CallLengths
from services.tracker.letters import stage_of_topic
from shared.events import BatchClosed, FileUploaded, encode
from shared.kafka import make_producer
from shared.stages import GPU_STAGES
from tests.crash.audio import make_call_audio
from tests.crash.cluster import describe_quorum, leaders, wait_fully_replicated
from tests.crash.harness import ChaosRun, ChaosSettings, ServiceDied
from tests.crash.infra import CACHE, PrivateCluster, PrivateKafka, PrivateMariaDB, fresh_database
from tests.crash.invariants import Outcome, check
from tests.crash.lifecycle import Infra, chaos_run
from tests.crash.rebuild import lose_the_database, rebuild_agrees
from tests.kafka_helpers import read_to_end, wait_until


@dataclass
class Breakables:
    """The infrastructure a scenario may break, and what everything else runs on."""

    shared: Infra
    kafka: PrivateKafka | None = None
    mariadb: PrivateMariaDB | None = None
    cluster: PrivateCluster | None = None


Inject = Callable[[ChaosRun, Breakables], Awaitable[None]]
ExtraCheck = Callable[[ChaosRun, Outcome], Awaitable[None]]


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    inject: Inject
    runs_on: Literal["shared", "private-kafka", "private-mariadb", "private-cluster"] = "shared"
    extra_env: dict[str, str] = field(default_factory=dict)
    before_submit: Callable[[ChaosRun], Awaitable[None]] | None = None
    extra_check: ExtraCheck | None = None
    # Model latency (simulator scale) when the scenario needs a batch that lasts: a rolling
    # restart takes ~20 s, longer than a whole 1,000-file batch at instant latency on an idle
    # machine; 2.0 is about the seed's real model latencies doubled.
    latency_scale: float | None = None
    # Assert the healthy hosts keep >= 0.9 of their throughput in a run without the fault.
    isolation: bool = False
    # Calls of these heavy-tailed lengths instead of the suite's two-second calls.
    call_lengths: CallLengths | None = None


# -- 1. kill -9 each service type in turn ---------------------------------------------------
async def kill_each_service(run: ChaosRun, infra: Breakables) -> None:
    first_host = run.settings.hosts[0]
    plan = [
        ("distributor", "distributor", "distribute", 0.3),
        (f"gpu-{first_host}", "gpu-stage", "lid", 0.25),
        ("llm", "llm-stage", "llm1", 0.4),
        ("tracker", "tracker", "llm2", 0.6),
    ]
    for name, service, stage, share in plan:
        await run.wait_for(stage, share)
        run.record(f"kill -9 {name} (when {stage} had {share:.0%})", run.windows(service))
        await run.kill(name, signal.SIGKILL)
        await run.restart(name)


# -- 2. kill -9 the broker -------------------------------------------------------------------
async def kill_broker(run: ChaosRun, infra: Breakables) -> None:
    assert infra.kafka is not None
    await run.wait_for("llm1", 0.3)
    # Every consumer loses what it had not committed.
    run.record("kill -9 the broker (when llm1 had 30%)", run.all_windows())
    await asyncio.to_thread(infra.kafka.kill9)
    await asyncio.to_thread(infra.kafka.start)
    run.record("broker restarted", may_follow_batch=True)


# -- 3. stop the database --------------------------------------------------------------------
async def stop_database(run: ChaosRun, infra: Breakables) -> None:
    assert infra.mariadb is not None
    await run.wait_for("llm1", 0.3)
    tracker_pid = run.group.processes["tracker"].popen.pid
    run.record(f"stop MariaDB for {run.settings.db_outage_s:.0f}s (when llm1 had 30%)")
    await asyncio.to_thread(infra.mariadb.stop)
    await hold(run, run.settings.db_outage_s)
    await asyncio.to_thread(infra.mariadb.start)
    run.record("MariaDB started again", may_follow_batch=True)
    if run.group.processes["tracker"].popen.pid != tracker_pid:
        raise ServiceDied("the tracker was restarted during the database outage")


async def hold(run: ChaosRun, seconds: float) -> None:
    """Keep a fault on for `seconds`: an outage's length is the fault itself, so this one
    wait is on the clock (every service must stay alive meanwhile)."""
    loop = asyncio.get_running_loop()
    until = loop.time() + seconds
    while loop.time() < until:
        run.assert_alive()
        await asyncio.sleep(min(1.0, max(0.0, until - loop.time())))


async def tracker_waited(run: ChaosRun, outcome: Outcome) -> None:
    tracker = run.group.processes["tracker"]
    log = tracker.log_path.read_text(errors="replace")
    if "sink failed" not in log:
        outcome.fail("the tracker never noticed the database outage (no 'sink failed' line)")
    restarts = log.count("tracker consuming")
    if restarts != 1:
        outcome.fail(f"the tracker started {restarts} times: a crash loop")


# -- 4. scale consumers up and down ----------------------------------------------------------
async def scale_consumers(run: ChaosRun, infra: Breakables) -> None:
    """Each step waits until the consumers hold their partitions (a process started, or the
    one left took every partition back), so every step happens while the batch runs."""
    host = run.settings.hosts[0]
    gpu, extra = f"gpu-{host}", [f"gpu-{host}-{n}" for n in (2, 3)]
    partitions = run.config.partitions
    await run.wait_for("denoise", 0.1)
    # A rebalance lets the revoked partitions' records finish and commits them first, so
    # nothing should be redone; the bound allowed is what the moving consumers held.
    run.record(f"scale gpu-stage --host {host} 1 -> 3", run.windows("gpu-stage"))
    for name in extra:
        await run.start_service(name, "gpu-stage", "--host", host)
    for name in extra:
        await run.wait_assigned(name, consumers=len(GPU_STAGES))
    run.record(f"scale gpu-stage --host {host} 3 -> 1 (SIGTERM)", run.windows("gpu-stage"))
    mark = run.log_mark(gpu)
    for name in extra:
        await retire(run, name)
    await run.wait_assigned(gpu, len(GPU_STAGES), partitions, since=mark)

    await run.wait_for("llm1", 0.2)
    run.record("scale llm-stage 1 -> 2", run.windows("llm-stage"))
    await run.start_service("llm-2", "llm-stage")
    await run.wait_assigned("llm-2", consumers=2)
    run.record("scale llm-stage 2 -> 1 (SIGTERM)", run.windows("llm-stage"))
    mark = run.log_mark("llm")
    await retire(run, "llm-2")
    await run.wait_assigned("llm", 2, partitions, since=mark)


async def retire(run: ChaosRun, name: str) -> None:
    code = await run.retire(name)
    if code != 0:
        raise ServiceDied(f"{name} exited with {code} on SIGTERM, not 0")


# -- 5. a faulty GPU host, and a GPU host that dies -------------------------------------------
async def faulty_host_faults(run: ChaosRun) -> None:
    host = run.settings.hosts[0]
    # Hangs outlast the client's timeout (1 s + 0.1 s per audio second): they time out.
    await run.set_faults(host=host, error_rate=0.2, timeout_rate=0.1, hang_s=4.0)
    run.record(f"{host}: 20% 503, 10% hang past the client timeout, for the whole batch")


async def nothing(run: ChaosRun, infra: Breakables) -> None:
    return None


async def healthy_hosts_unharmed(run: ChaosRun, outcome: Outcome) -> None:
    """Files on the other hosts finish as if nothing happened: only corrupt audio fails."""
    sick = run.settings.hosts[0] if run.scenario == "faulty_host" else run.settings.hosts[-1]
    if run.scenario == "host_dead_fails_over":
        # Its files moved to the healthy hosts (`ip` follows them): none may fail there.
        await only_corrupt_audio_failed(run, outcome)
        sick = ""
    async with run.engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT file, ip, failedStage, failedError FROM fileDistribution "
                    "WHERE batchId = :b AND terminalState = 'failed'"
                ),
                {"b": run.batch_id},
            )
        ).all()
    collateral = [
        r.file for r in rows if r.ip != sick and "undecodable" not in (r.failedError or "")
    ]
    if collateral:
        outcome.fail(f"{len(collateral)} files failed on healthy hosts", collateral)
    async with run.engine.connect() as conn:
        failed_attempts = (
            await conn.execute(
                text(
                    "SELECT COUNT(*) FROM processing_logs WHERE batch_id = :b AND host = :h "
                    "AND status = 'failure' AND errorKind = 'transient'"
                ),
                {"b": run.batch_id, "h": sick},
            )
        ).scalar_one()
    if not failed_attempts and sick:
        outcome.fail(f"no failed attempt on {sick}: the fault never showed")


async def host_dies(run: ChaosRun, infra: Breakables) -> None:
    host = run.settings.hosts[-1]
    await run.wait_for("denoise", 0.3)
    run.record(f"{host} goes down for good (when denoise had 30%)")
    await run.set_faults(host=host, down=True)


async def only_corrupt_audio_failed(run: ChaosRun, outcome: Outcome) -> None:
    """Every file that is not corrupt ended done or skipped: the fault failed none."""
    async with run.engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT file, failedStage, failedError FROM fileDistribution "
                    "WHERE batchId = :b AND terminalState = 'failed'"
                ),
                {"b": run.batch_id},
            )
        ).all()
    bad = [f"{r.file} at {r.failedStage}: {r.failedError}" for r in rows]
    bad = [b for b in bad if "undecodable" not in b]
    if bad:
        outcome.fail(f"{len(bad)} files failed that are not corrupt", bad)


# Healthy hosts' STT throughput in a run without faults, per batch settings: the yardstick
# of the isolation checks (one baseline run per session, shared by the scenarios).
BASELINE: dict[tuple[int, float, str, tuple[str, ...]], float] = {}


async def stt_rate(run: ChaosRun, hosts: tuple[str, ...]) -> float:
    """STT successes per busy second on `hosts`: per host, its successes over the seconds in
    which it finished any (summed over hosts). Seconds without work do not count, so files
    that reach a host late (failed over from a dead one) do not read as a slower host."""
    async with run.engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT host, startedAt FROM processing_logs WHERE batch_id = :b "
                    "AND stage_name = 'stt' AND status = 'success'"
                ),
                {"b": run.batch_id},
            )
        ).all()
    busy: dict[str, set[int]] = {}
    done: Counter[str] = Counter()
    for r in rows:
        if r.host in hosts and isinstance(r.startedAt, datetime):
            busy.setdefault(r.host, set()).add(int(r.startedAt.timestamp()))
            done[r.host] += 1
    return sum(done[h] / len(seconds) for h, seconds in busy.items() if seconds)


# The isolation scenarios run with hosts bound by their model slots, as real GPUs are: at
# 0.05 the whole pipeline is bound by this machine's 2 cores, and the fault's own CPU (the
# faulty host's retries, the failover's re-publishing and probes) read as slower healthy hosts
# (CI measured 0.89 for both).
ISOLATION_LATENCY_SCALE = 2.0


def healthy_hosts(run: ChaosRun) -> tuple[str, ...]:
    sick = run.settings.hosts[0] if run.scenario == "faulty_host" else run.settings.hosts[-1]
    return tuple(h for h in run.settings.hosts if h != sick)


async def isolation_kept(run: ChaosRun, outcome: Outcome) -> None:
    """The healthy hosts keep >= 0.9 of the STT throughput they have without the fault."""
    hosts = healthy_hosts(run)
    key = (run.settings.files, run.settings.latency_scale, run.settings.gpu_hosts, hosts)
    without = BASELINE.get(key)
    if not without:
        outcome.fail("no baseline throughput to compare with (the baseline run failed)")
        return
    ratio = await stt_rate(run, hosts) / without
    outcome.isolation_ratio = round(ratio, 3)
    if ratio < 0.9:
        outcome.fail(
            f"healthy hosts {hosts} kept {ratio:.2f} of their STT throughput without the "
            "fault (must be >= 0.9)"
        )


# -- 8. a GPU host down for a while, then back ---------------------------------------------
async def host_outage(run: ChaosRun, infra: Breakables) -> None:
    host = run.settings.hosts[0]
    await run.wait_for("denoise", 0.3)
    run.record(f"{host} down for {run.settings.host_outage_s:.0f}s (when denoise had 30%)")
    await run.set_faults(host=host, down=True)
    await hold(run, run.settings.host_outage_s)
    await run.set_faults(host=host, down=False)
    run.record(f"{host} answers again")


async def host_paused_and_healed(run: ChaosRun, outcome: Outcome) -> None:
    await only_corrupt_audio_failed(run, outcome)
    log = run.group.processes[f"gpu-{run.settings.hosts[0]}"].log_path.read_text(errors="replace")
    for line in ("circuit open (unreachable)", "paused: taking no new records", "circuit closed"):
        if line not in log:
            outcome.fail(f"the down host's gpu-stage never logged {line!r}")


# -- 9. the LLM API refuses its key for a while --------------------------------------------
async def llm_auth_outage(run: ChaosRun, infra: Breakables) -> None:
    await run.wait_for("llm1", 0.2)
    run.record(f"the LLM answers 401 for {run.settings.llm_outage_s:.0f}s (when llm1 had 20%)")
    await run.set_faults(llm={"unauthorized": True})
    await hold(run, run.settings.llm_outage_s)
    await run.set_faults(llm={"unauthorized": False})
    run.record("the LLM takes the key again")


async def llm_paused_and_healed(run: ChaosRun, outcome: Outcome) -> None:
    await only_corrupt_audio_failed(run, outcome)
    log = run.group.processes["llm"].log_path.read_text(errors="replace")
    for line in ("circuit open (auth)", "circuit closed"):
        if line not in log:
            outcome.fail(f"the LLM stage never logged {line!r}")


# -- 10. an upload after the batch completed -----------------------------------------------
LATE_FILE = "uploaded_too_late.wav"
COMPLETED_AT: dict[str, object] = {}


async def late_upload(run: ChaosRun, infra: Breakables) -> None:
    await run.wait_finished()
    COMPLETED_AT[run.batch_id] = await _completed_at(run)
    event = FileUploaded(
        batch_id=run.batch_id, file_name=LATE_FILE, audio_uri=run.paths[-1].resolve().as_uri()
    )
    # The distributor cannot know the batch is full: the file runs through the stages once,
    # the tracker writes none of it.
    run.record(
        f"upload {LATE_FILE} after the batch completed", {"distribute": 1}, may_follow_batch=True
    )
    producer = make_producer(run.config.bootstrap, "crash-late-upload")
    await producer.start()
    try:
        await producer.send_and_wait(run.topics.uploads, encode(event), key=run.batch_id.encode())
    finally:
        await producer.stop()

    async def rejected() -> bool:
        run.assert_alive()
        async with run.engine.connect() as conn:
            found = await conn.execute(
                text("SELECT COUNT(*) FROM deadLetters WHERE batchId = :b AND fileName = :f"),
                {"b": run.batch_id, "f": LATE_FILE},
            )
            return bool(found.scalar_one())

    await wait_until(rejected, 120.0, f"the tracker to reject {LATE_FILE}", interval_s=0.3)


async def _completed_at(run: ChaosRun) -> object:
    async with run.engine.connect() as conn:
        found = await conn.execute(
            text("SELECT completedAt FROM batchStatus WHERE batchId = :b"), {"b": run.batch_id}
        )
        return found.scalar_one()


async def late_upload_rejected(run: ChaosRun, outcome: Outcome) -> None:
    before = COMPLETED_AT.pop(run.batch_id, None)
    after = await _completed_at(run)
    if before is None or after != before:
        outcome.fail(f"completedAt moved: {before} -> {after}")
    async with run.engine.connect() as conn:
        reasons = (
            (
                await conn.execute(
                    text("SELECT error FROM deadLetters WHERE batchId = :b AND fileName = :f"),
                    {"b": run.batch_id, "f": LATE_FILE},
                )
            )
            .scalars()
            .all()
        )
    if not any("closed with its" in (r or "") for r in reasons):
        outcome.fail(f"no dead letter says why {LATE_FILE} was rejected: {reasons}")


# -- 6. rolling restart ----------------------------------------------------------------------
async def rolling_restart(run: ChaosRun, infra: Breakables) -> None:
    """One service at a time: SIGTERM (it must exit 0), start it again, and go on once it
    works again, as an operator's rolling restart would."""
    await run.wait_for("denoise", 0.05)
    step = max(1, run.files // 100)
    run.record("SIGTERM tracker, then start it again", run.windows("tracker"))
    await stop_gracefully(run, "tracker")
    await run.restart("tracker")
    await run.wait_advance("denoise", step)  # the tables move again

    run.record("SIGTERM distributor, then start it again", run.windows("distributor"))
    await stop_gracefully(run, "distributor")
    await run.restart("distributor")
    await run.wait_advance("triage", step)

    for name, service, consumers in (
        *((f"gpu-{h}", "gpu-stage", len(GPU_STAGES)) for h in run.settings.hosts),
        ("llm", "llm-stage", 2),
    ):
        run.record(f"SIGTERM {name}, then start it again", run.windows(service))
        mark = run.log_mark(name)
        await stop_gracefully(run, name)
        await run.restart(name)
        await run.wait_assigned(name, consumers, since=mark)


async def stop_gracefully(run: ChaosRun, name: str) -> None:
    code = await run.kill(name, signal.SIGTERM)
    if code != 0:
        raise ServiceDied(f"{name} exited with {code} on SIGTERM, not 0")


# -- 7. poison messages and duplicates ---------------------------------------------------------
POISON = (
    b"\xff\xfe\x00 not json at all",
    b'{"v": 1, "type": "FileStageCompleted", "batch_id": "%s", "file_name": "poison"}',
    b"[1, 2, 3]",
)


@dataclass
class Injected:
    poison: list[tuple[str, int, int]] = field(default_factory=list)


INJECTED: dict[str, Injected] = {}


async def poison_and_duplicates(run: ChaosRun, infra: Breakables) -> None:
    await run.wait_for("denoise", 0.3)
    injected = INJECTED.setdefault(run.batch_id, Injected())
    topics = run.topics.all_topics(run.config.settings().host_ips)
    windows: Counter[str] = Counter()
    producer = make_producer(run.config.bootstrap, "crash-poison")
    await producer.start()
    try:
        for topic in topics:
            for i, raw in enumerate(POISON):
                value = raw.replace(b"%s", run.batch_id.encode())
                # Keyed: a compacted topic (control) refuses a record without a key.
                key = f"poison-{i}".encode()
                meta = await producer.send_and_wait(topic, value, key=key)
                injected.poison.append((topic, meta.partition, meta.offset))
        # Duplicate uploads (2% of the files) and a second BatchClosed.
        for path in run.paths[len(run.paths) // 2 :][: max(1, run.files // 50)]:
            event = FileUploaded(
                batch_id=run.batch_id, file_name=path.name, audio_uri=path.resolve().as_uri()
            )
            await producer.send_and_wait(
                run.topics.uploads, encode(event), key=run.batch_id.encode()
            )
            windows["distribute"] += 1
        closed = BatchClosed(batch_id=run.batch_id, file_count=run.files)
        await producer.send_and_wait(run.topics.uploads, encode(closed), key=run.batch_id.encode())
        # Copies of events already on every stage topic, as a redelivery would make them.
        stage_topics = [t for t in topics if t not in (run.topics.uploads, run.topics.failed)]
        seen = [
            r
            for r in await read_to_end(run.config.bootstrap, stage_topics, run.config.partitions)
            if _is_batch_event(r.value, run.batch_id)
        ]
        for r in seen[:: max(1, len(seen) // 60)]:
            await producer.send_and_wait(r.topic, r.value, key=r.key)
            stage = stage_of_topic(r.topic, run.config.topic_prefix)
            windows[stage or "done"] += 1
    finally:
        await producer.stop()
    # A duplicate makes its stage, and possibly every later one, run once more.
    run.record(
        f"{len(injected.poison)} poison messages on {len(topics)} topics; duplicate events "
        f"{dict(windows)} (when denoise had 30%)",
        dict(windows),
    )


def _is_batch_event(value: bytes | None, batch_id: str) -> bool:
    try:
        return bool(json.loads(value or b"").get("batch_id") == batch_id)
    except (ValueError, AttributeError):
        return False


async def poison_dead_lettered(run: ChaosRun, outcome: Outcome) -> None:
    injected = INJECTED.pop(run.batch_id, Injected())
    async with run.engine.connect() as conn:
        rows = (
            await conn.execute(
                text("SELECT sourceTopic, sourcePartition, sourceOffset, valueB64 FROM deadLetters")
            )
        ).all()
    letters = {(r.sourceTopic, r.sourcePartition, r.sourceOffset): r.valueB64 for r in rows}
    missing = [p for p in injected.poison if p not in letters]
    if missing:
        outcome.fail(f"{len(missing)} poison messages without a deadLetters row", missing)
    raw_kept = all(
        base64.b64decode(letters[p]) in {v.replace(b"%s", run.batch_id.encode()) for v in POISON}
        for p in injected.poison
        if p in letters
    )
    if not raw_kept:
        outcome.fail("a deadLetters row does not keep the poison message's raw bytes")


# -- 8. long calls: kill -9 a GPU consumer while they run, add a consumer while they run -------
# Real call lengths (issue 10): lognormal, median 3.5 minutes, up to an hour, so a model call
# takes from ~0.1 s to ~3 s at this latency scale and long calls are in flight while the calls
# after them finish (the finished offsets above the low-water mark ride in the commits'
# metadata). At 0.02 the simulated GPU work of 10,000 such calls takes ~4 minutes on 3 hosts.
HEAVY_TAIL = CallLengths()
HEAVY_TAIL_LATENCY_SCALE = 0.02


async def wait_calls_in_flight(run: ChaosRun, host: str, at_least: int) -> dict[str, int]:
    """Wait until the simulator serves `at_least` calls on `host`; returns them per stage."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60.0
    while True:
        run.assert_alive()
        in_flight = await run.gpu_in_flight(host)
        if sum(in_flight.values()) >= at_least:
            return in_flight
        if loop.time() > deadline:
            raise TimeoutError(f"{host}: fewer than {at_least} model calls in flight for 60s")
        await asyncio.sleep(0.05)


async def heavy_tail_gpu_kill(run: ChaosRun, infra: Breakables) -> None:
    host = run.settings.hosts[0]
    name = f"gpu-{host}"
    await run.wait_for("denoise", 0.3)
    in_flight = await wait_calls_in_flight(run, host, at_least=run.settings.capacity * 2)
    run.record(
        f"kill -9 {name} with {sum(in_flight.values())} model calls in flight "
        "(when denoise had 30%)",
        run.windows("gpu-stage"),
        in_flight,
    )
    await run.kill(name, signal.SIGKILL)
    await run.restart(name)


async def redone_against_in_flight(run: ChaosRun, outcome: Outcome) -> None:
    """The report's figure: GPU calls redone after the kill against the calls in flight at
    it. A redone call is one of a record that held a slot at the kill: in flight, or finished
    and not yet recorded by a commit (at most the capacity per stage); at a later stage also
    the copy of such a record whose output had been published."""
    kill = next(f for f in run.faults if f.in_flight)
    redone = {s: outcome.redundant_by_stage.get(s, 0) for s in GPU_STAGES}
    outcome.notes.append(
        f"GPU calls redone {sum(redone.values())} {redone} against "
        f"{sum(kill.in_flight.values())} {kill.in_flight} in flight at the kill "
        f"(bound: capacity {run.settings.capacity} per stage, plus upstream copies)"
    )


async def scale_up_mid_batch(run: ChaosRun, infra: Breakables) -> None:
    """A second gpu-stage process joins a host's groups while long calls run there. The
    revoked partitions' calls finish and are committed with their finished offsets before
    the partitions move, so nothing may be redone: the fault allows no redundant call."""
    host = run.settings.hosts[0]
    second = f"gpu-{host}-2"
    await run.wait_for("denoise", 0.2)
    in_flight = await wait_calls_in_flight(run, host, at_least=run.settings.capacity * 2)
    run.record(
        f"scale gpu-stage --host {host} 1 -> 2 with {sum(in_flight.values())} model calls "
        "in flight (when denoise had 20%)",
        {},
        in_flight,
    )
    await run.start_service(second, "gpu-stage", "--host", host)
    await run.wait_assigned(second, consumers=len(GPU_STAGES))


async def nothing_redone(run: ChaosRun, outcome: Outcome) -> None:
    scale = next(f for f in run.faults if f.in_flight)
    # The fault allows no redundant call: the common check already fails on any.
    outcome.notes.append(
        f"model calls redone {outcome.redundant_calls} with "
        f"{sum(scale.in_flight.values())} {scale.in_flight} in flight at the scale-up"
    )


# -- 8. broker loss on a 3-node cluster (RF 3, min ISR 2) ------------------------------------
# Topics as a production cluster would have them: the settings' defaults, which the suite's
# environment (tests/conftest.py, the Makefile) sets to 1/1 for the shared single broker.
CLUSTER_TOPICS = {"TOPIC_REPLICATION_FACTOR": "3", "TOPIC_MIN_INSYNC_REPLICAS": "2"}
CLUSTER_REPLICAS = 3
# A broker's loss and return take 10-40 s on this machine (session timeout 9 s, a JVM start,
# catching up): the batch must outlast them, as a 10,000-file batch of real calls does.
CLUSTER_LATENCY_SCALE = 1.0
CLUSTER_ROLLING_LATENCY_SCALE = 2.0
# The internal topic of the consumer groups' offsets: its leaders move with the brokers too.
OFFSETS_TOPIC = "__consumer_offsets"


def _cluster(infra: Breakables) -> PrivateCluster:
    assert infra.cluster is not None, "a broker-loss scenario needs the 3-node cluster"
    return infra.cluster


def _run_topics(run: ChaosRun) -> list[str]:
    return run.topics.all_topics(run.config.settings().host_ips)


async def moves_on(run: ChaosRun, what: str) -> None:
    """Wait until more files finish (or the batch does): the pipeline works through `what`."""
    step = max(5, run.files // 100)
    start = await run.progress("terminal")
    target = min(run.files, start + step)
    await run.wait_for("terminal", target / run.files, timeout_s=180)
    run.record(
        f"{what}: {await run.progress('terminal') - start} more files finished",
        may_follow_batch=True,
    )


async def back_in_sync(run: ChaosRun, cluster: PrivateCluster, node: int) -> None:
    took = await wait_fully_replicated(
        cluster.bootstrap, [*_run_topics(run), OFFSETS_TOPIC], CLUSTER_REPLICAS
    )
    run.record(
        f"broker {node} back: every partition has {CLUSTER_REPLICAS} in-sync replicas "
        f"{took:.1f}s after its start returned",
        may_follow_batch=True,
    )


async def broker_leader_killed(run: ChaosRun, infra: Breakables) -> None:
    cluster = _cluster(infra)
    await run.wait_for("llm2", 0.03)
    led = await leaders(cluster.bootstrap, _run_topics(run))
    node, count = led.most_common(1)[0]
    run.record(
        f"kill -9 broker {node}, leader of {count} of the run's {sum(led.values())} partitions "
        f"(leaders {dict(sorted(led.items()))}, when llm2 had 3%)",
        run.all_windows(),
    )
    await asyncio.to_thread(cluster.kill9, node)
    await moves_on(run, f"broker {node} down")
    await asyncio.to_thread(cluster.start, node)
    run.record(f"broker {node} restarted", may_follow_batch=True)
    await back_in_sync(run, cluster, node)


async def controller_killed(run: ChaosRun, infra: Breakables) -> None:
    """The active controller is the metadata quorum's leader (DescribeQuorum, see
    tests/crash/cluster.py); in combined mode it is a broker too, so its partitions move."""
    cluster = _cluster(infra)
    await run.wait_for("llm2", 0.03)
    before = await describe_quorum(cluster.bootstrap)
    node = before.leader
    run.record(
        f"kill -9 the active controller, node {node} (quorum epoch {before.epoch}, "
        "when llm2 had 3%)",
        run.all_windows(),
    )
    killed = asyncio.get_running_loop().time()
    await asyncio.to_thread(cluster.kill9, node)
    others = ",".join(f"127.0.0.1:{cluster.port(n)}" for n in cluster.nodes if n != node)
    while True:
        after = await describe_quorum(others)
        if after.leader != node and after.epoch > before.epoch:
            break
        run.assert_alive()
        await asyncio.sleep(0.2)
    elected = asyncio.get_running_loop().time() - killed
    run.record(
        f"node {after.leader} is the active controller (epoch {after.epoch}) "
        f"{elected:.1f}s after the kill"
    )
    await moves_on(run, f"controller {node} down")
    await asyncio.to_thread(cluster.start, node)
    run.record(f"node {node} restarted", may_follow_batch=True)
    await back_in_sync(run, cluster, node)


async def brokers_rolling_restart(run: ChaosRun, infra: Breakables) -> None:
    """Each broker in turn: SIGTERM (a controlled shutdown that hands its leaders over), start
    it again, and go on once every partition is fully in sync again, as an operator would.
    Three JVM restarts take a minute or more on a busy machine, so it begins early (denoise
    at 10%): the longest pause, measured once files finish, covers the later restarts."""
    cluster = _cluster(infra)
    await run.wait_for("denoise", 0.1)
    for node in cluster.nodes:
        run.record(f"SIGTERM broker {node}, then start it again", run.all_windows())
        await asyncio.to_thread(cluster.stop, node)
        await asyncio.to_thread(cluster.start, node)
        await back_in_sync(run, cluster, node)


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "kill_each_service",
            "kill -9 the distributor, a GPU-stage process, the LLM stage, the tracker; restart each",
            kill_each_service,
        ),
        Scenario(
            "kill_broker", "kill -9 the broker mid-batch, restart it", kill_broker, "private-kafka"
        ),
        Scenario(
            "stop_database",
            "stop MariaDB mid-batch, start it again",
            stop_database,
            "private-mariadb",
            extra_check=tracker_waited,
        ),
        Scenario(
            "scale_consumers",
            "a GPU host's consumers 1 -> 3 -> 1, the LLM consumers 1 -> 2 -> 1",
            scale_consumers,
            latency_scale=2.0,
        ),
        Scenario(
            "faulty_host",
            "a GPU host answering 20% 5xx and 10% timeouts for the whole batch",
            nothing,
            # Above the healthy model times at this scale (0.2-0.3 s), below the hangs (4 s).
            extra_env={"GPU_REQUEST_TIMEOUT_S": "1.0"},
            before_submit=faulty_host_faults,
            extra_check=healthy_hosts_unharmed,
            isolation=True,
            latency_scale=ISOLATION_LATENCY_SCALE,
        ),
        Scenario(
            "host_dead_fails_over",
            "a GPU host goes down for good mid-batch; its files fail over to the others",
            host_dies,
            extra_env={"GPU_HOST_FAILOVER_DEADLINE_S": "5", "GPU_PROBE_MAX_DELAY_S": "2"},
            extra_check=healthy_hosts_unharmed,
            isolation=True,
            latency_scale=ISOLATION_LATENCY_SCALE,
        ),
        Scenario(
            "host_outage_recovers",
            "a GPU host down for a while mid-batch, then back: its stage pauses and heals",
            host_outage,
            extra_env={"GPU_HOST_FAILOVER_DEADLINE_S": "3600", "GPU_PROBE_MAX_DELAY_S": "2"},
            extra_check=host_paused_and_healed,
        ),
        Scenario(
            "llm_auth_outage",
            "the LLM API answers 401 for a while mid-batch: the LLM stages pause and heal",
            llm_auth_outage,
            extra_env={"LLM_PROBE_MAX_DELAY_S": "2"},
            extra_check=llm_paused_and_healed,
        ),
        Scenario(
            "late_upload",
            "an upload after the batch completed: rejected, the batch stays Complete",
            late_upload,
            extra_check=late_upload_rejected,
        ),
        Scenario(
            "rolling_restart",
            "SIGTERM every service in turn, restart it",
            rolling_restart,
            latency_scale=2.0,
        ),
        Scenario(
            "database_lost",
            "the tracker's database dropped mid-batch; a fresh tracker rebuilds from the topics",
            lose_the_database,
            extra_check=rebuild_agrees,
        ),
        Scenario(
            "poison_and_duplicates",
            "poison messages on every topic, duplicate uploads and stage events",
            poison_and_duplicates,
            extra_check=poison_dead_lettered,
        ),
        Scenario(
            "heavy_tail_gpu_kill",
            "kill -9 a GPU-stage process while long model calls run on its host; restart it",
            heavy_tail_gpu_kill,
            extra_check=redone_against_in_flight,
            latency_scale=HEAVY_TAIL_LATENCY_SCALE,
            call_lengths=HEAVY_TAIL,
        ),
        Scenario(
            "scale_up_mid_batch",
            "a second GPU-stage process joins a host while long model calls run there",
            scale_up_mid_batch,
            extra_check=nothing_redone,
            latency_scale=HEAVY_TAIL_LATENCY_SCALE,
            call_lengths=HEAVY_TAIL,
        ),
        # Broker loss: the 3-node cluster (tests/crash/test_broker_loss.py).
        Scenario(
            "broker_leader_killed",
            "3-node cluster: kill -9 the broker leading most partitions mid-batch, restart it",
            broker_leader_killed,
            "private-cluster",
            extra_env=CLUSTER_TOPICS,
            latency_scale=CLUSTER_LATENCY_SCALE,
        ),
        Scenario(
            "controller_killed",
            "3-node cluster: kill -9 the active controller mid-batch, restart it",
            controller_killed,
            "private-cluster",
            extra_env=CLUSTER_TOPICS,
            latency_scale=CLUSTER_LATENCY_SCALE,
        ),
        Scenario(
            "brokers_rolling_restart",
            "3-node cluster: restart the three brokers one after another mid-batch",
            brokers_rolling_restart,
            "private-cluster",
            extra_env=CLUSTER_TOPICS,
            latency_scale=CLUSTER_ROLLING_LATENCY_SCALE,
        ),
    )
}


async def run_scenario(
    scenario: Scenario,
    settings: ChaosSettings,
    infra: Breakables,
    paths: list[Path],
    log_dir: Path,
) -> Outcome:
    """Run one scenario on a fresh pipeline and database; never raises on a violation."""
    if scenario.latency_scale is not None:
        settings = replace(settings, latency_scale=scenario.latency_scale)
    if scenario.call_lengths is not None:
        paths = await asyncio.to_thread(heavy_tailed_audio, settings, scenario.call_lengths)
    if scenario.isolation:
        await ensure_baseline(settings, infra, paths, log_dir.parent / "baseline")
    on = infra.shared
    if scenario.runs_on == "private-kafka":
        assert infra.kafka is not None
        on = Infra(infra.kafka.bootstrap, on.mariadb_server_url)
    elif scenario.runs_on == "private-mariadb":
        assert infra.mariadb is not None
        on = Infra(on.bootstrap, infra.mariadb.server_url)
    elif scenario.runs_on == "private-cluster":
        on = Infra(_cluster(infra).bootstrap, on.mariadb_server_url)
        # Three JVMs and a slower batch share the cores: a minute of broker loss on top.
        settings = replace(settings, finish_timeout_s=max(settings.finish_timeout_s, 900.0))
    async with (
        fresh_database(on.mariadb_server_url) as database_url,
        chaos_run(
            scenario.name,
            settings,
            on,
            database_url,
            paths,
            log_dir,
            extra_env=scenario.extra_env,
            before_submit=scenario.before_submit,
        ) as run,
    ):
        problems: list[str] = []
        try:
            await scenario.inject(run, infra)
            await run.wait_finished()
        except (TimeoutError, AssertionError) as exc:
            problems.append(f"{type(exc).__name__}: {exc}")
        outcome = await check(run)
        pause = run.longest_pause()
        if pause is not None:
            outcome.longest_pause_s, outcome.longest_pause_at_s = pause
        outcome.violations[:0] = problems
        if scenario.extra_check is not None:
            await scenario.extra_check(run, outcome)
        if scenario.isolation:
            await isolation_kept(run, outcome)
        return outcome


def heavy_tailed_audio(settings: ChaosSettings, lengths: CallLengths) -> list[Path]:
    corrupt = int(settings.files * settings.corrupt_share)
    short = int(settings.files * settings.short_share)
    folder = CACHE / "crash-audio" / f"{settings.files}-{corrupt}-{short}-{lengths.label()}"
    return make_call_audio(folder, settings.files, corrupt, short, lengths)


async def ensure_baseline(
    settings: ChaosSettings, infra: Breakables, paths: list[Path], log_dir: Path
) -> None:
    """The healthy hosts' STT throughput with no fault at all, measured once per settings."""
    key = (settings.files, settings.latency_scale, settings.gpu_hosts)
    if any(k[:3] == key for k in BASELINE):
        return
    on = infra.shared
    async with (
        fresh_database(on.mariadb_server_url) as database_url,
        chaos_run("baseline", settings, on, database_url, paths, log_dir) as run,
    ):
        await run.wait_finished()
        for scenario in ("faulty_host", "host_dead_fails_over"):
            run.scenario = scenario  # which hosts are the healthy ones
            hosts = healthy_hosts(run)
            BASELINE[(*key, hosts)] = await stt_rate(run, hosts)
        run.scenario = "baseline"
