"""The crash scenarios: what each does to a running batch, and what it checks beyond the
common invariants. Shared by the pytest suite (`tests/crash/test_*.py`, 1,000 files) and the
chaos runner (`tests/crash/chaos.py`, 10,000 files).

Here: killing services, the broker and the database, scaling and restarting, the registry
(`SCENARIOS`) and how one runs. GPU hosts and the LLM: `scenarios_hosts.py`; what reaches
the pipeline (late uploads, poison): `scenarios_inputs.py`; the three-broker cluster:
`scenarios_cluster.py`; what a scenario is: `scenario.py`."""

import asyncio
import signal
from dataclasses import replace
from pathlib import Path

from cli.audio import CallLengths
from shared.stages import GPU_STAGES
from tests.crash.audio import make_call_audio
from tests.crash.harness import ChaosRun, ChaosSettings, ServiceDied
from tests.crash.infra import CACHE, fresh_database
from tests.crash.invariants import Outcome, check
from tests.crash.lifecycle import Infra, chaos_run
from tests.crash.rebuild import lose_the_database, rebuild_agrees
from tests.crash.scenario import Breakables, Scenario, hold
from tests.crash.scenarios_cluster import (
    CLUSTER_LATENCY_SCALE,
    CLUSTER_ROLLING_LATENCY_SCALE,
    CLUSTER_TOPICS,
    broker_leader_killed,
    brokers_rolling_restart,
    cluster_of,
    controller_killed,
)
from tests.crash.scenarios_hosts import (
    BASELINE,
    HEAVY_TAIL,
    HEAVY_TAIL_LATENCY_SCALE,
    ISOLATION_LATENCY_SCALE,
    faulty_host_faults,
    healthy_hosts,
    healthy_hosts_unharmed,
    heavy_tail_gpu_kill,
    host_dies,
    host_outage,
    host_paused_and_healed,
    isolation_kept,
    llm_auth_outage,
    llm_paused_and_healed,
    nothing,
    nothing_redone,
    redone_against_in_flight,
    scale_up_mid_batch,
    stt_rate,
)
from tests.crash.scenarios_inputs import (
    late_upload,
    late_upload_rejected,
    poison_and_duplicates,
    poison_dead_lettered,
)


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
        on = Infra(cluster_of(infra).bootstrap, on.mariadb_server_url)
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
