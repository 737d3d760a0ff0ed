"""Crash scenarios about GPU hosts and the LLM: a faulty, dead or paused host, an LLM
refusing its key, heavy-tailed calls with a GPU stage killed, a stage scaled up; and
the throughput the healthy hosts keep meanwhile."""

import asyncio
import signal
from collections import Counter
from datetime import datetime

from sqlalchemy import text

from cli.audio import CallLengths
from shared.stages import GPU_STAGES
from tests.crash.harness import ChaosRun
from tests.crash.invariants import Outcome
from tests.crash.scenario import Breakables, hold


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
