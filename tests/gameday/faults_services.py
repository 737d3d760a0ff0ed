"""Faults of processes and infrastructure: kill -9 and SIGSTOP services, scale consumers,
break the broker or the database, and the simulator's model-server knobs. Each fault is a
`start` and a `stop` over a context dict (what the start chose, for the stop to undo)."""

import asyncio
import os
import signal
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from shared.stages import GPU_STAGES
from tests.crash.cluster import describe_quorum
from tests.gameday.day import Day

Ctx = dict[str, Any]


def services(day: Day) -> list[str]:
    """The pipeline's long-running services (the simulator is the outside world)."""
    return ["distributor", "tracker", "llm", *(f"gpu-{h}" for h in day.hosts())]


# -- kill -9 and restart (a supervisor brings a killed process back) ------------------------
def kill9(which: str) -> tuple[Any, Any]:
    """`which`: a service name, "gpu" (a GPU host's stage, drawn), or "two" (two at once)."""

    async def start(day: Day, ctx: Ctx) -> None:
        if which == "gpu":
            names = [f"gpu-{ctx['rng'].choice(day.hosts())}"]
        elif which == "two":
            names = ctx["rng"].sample(services(day), 2)
        else:
            names = [which]
        ctx["names"] = names
        ctx["detail"] = "kill -9 " + " and ".join(names)
        await asyncio.gather(*(day.run.kill(n, signal.SIGKILL) for n in names))

    async def stop(day: Day, ctx: Ctx) -> None:
        for name in ctx["names"]:
            await day.run.restart(name)

    return start, stop


async def pause_tracker(day: Day, ctx: Ctx) -> None:
    os.kill(day.run.group.processes["tracker"].popen.pid, signal.SIGSTOP)
    ctx["detail"] = "SIGSTOP the tracker"


async def resume_tracker(day: Day, ctx: Ctx) -> None:
    os.kill(day.run.group.processes["tracker"].popen.pid, signal.SIGCONT)


async def rolling_restart(day: Day, ctx: Ctx) -> None:
    """SIGTERM every service in turn and start it again, as an operator's rollout does."""
    for name in services(day):
        await day.run.kill(name, signal.SIGTERM)
        await day.run.restart(name)
        await asyncio.sleep(3.0)
    ctx["detail"] = "SIGTERM and restart " + ", ".join(services(day))


async def nothing(day: Day, ctx: Ctx) -> None:
    return None


# -- scale consumers up for a while, then back down (SIGTERM) -------------------------------
async def scale_gpu_up(day: Day, ctx: Ctx) -> None:
    host = ctx["rng"].choice(day.hosts())
    names = [f"gpu-{host}-{n}" for n in (2, 3)]
    ctx["names"] = names
    ctx["detail"] = f"gpu-stage --host {host}: 1 -> 3 processes"
    for name in names:
        await day.run.start_service(name, "gpu-stage", "--host", host)


async def scale_llm_up(day: Day, ctx: Ctx) -> None:
    ctx["names"] = ["llm-2"]
    ctx["detail"] = "llm-stage: 1 -> 2 processes"
    await day.run.start_service("llm-2", "llm-stage")


async def scale_down(day: Day, ctx: Ctx) -> None:
    for name in ctx["names"]:
        await day.run.retire(name)


# -- the broker and the database -------------------------------------------------------------
async def kill_broker(day: Day, ctx: Ctx) -> None:
    assert day.infra.kafka is not None
    await asyncio.to_thread(day.infra.kafka.kill9)


async def start_broker(day: Day, ctx: Ctx) -> None:
    assert day.infra.kafka is not None
    await asyncio.to_thread(day.infra.kafka.start)


async def stop_database(day: Day, ctx: Ctx) -> None:
    assert day.infra.mariadb is not None
    await asyncio.to_thread(day.infra.mariadb.stop)


async def start_database(day: Day, ctx: Ctx) -> None:
    assert day.infra.mariadb is not None
    await asyncio.to_thread(day.infra.mariadb.start)


async def lose_database(day: Day, ctx: Ctx) -> None:
    """kill -9 the tracker, drop its database, start a tracker in a new consumer group: it
    rebuilds every table from the topics while the other services go on."""
    await day.run.kill("tracker", signal.SIGKILL)
    url = make_url(day.config.database_url)
    admin = create_async_engine(url.set(database=None), poolclass=NullPool)
    try:
        async with admin.begin() as conn:
            await conn.execute(text(f"DROP DATABASE `{url.database}`"))
            await conn.execute(text(f"CREATE DATABASE `{url.database}` CHARACTER SET utf8mb4"))
    finally:
        await admin.dispose()
    await day.run.engine.dispose()
    day.tracker_group = f"{day.config.topic_prefix}-tracker-rebuilt-{day.now():.0f}"
    day.run.group.env = {**day.run.group.env, "TRACKER_GROUP_ID": day.tracker_group}
    await day.run.restart("tracker")
    ctx["detail"] = f"a fresh tracker (group {day.tracker_group}) rebuilds the tables"


STRICT = "STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION"


async def _global_sql_mode(day: Day, mode: str | None) -> str:
    engine = create_async_engine(day.config.database_url, poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            before = str((await conn.execute(text("SELECT @@GLOBAL.sql_mode"))).scalar_one())
            if mode is not None:
                await conn.execute(text("SET GLOBAL sql_mode = :m"), {"m": mode})
            return before
    finally:
        await engine.dispose()


async def strict_mode_on(day: Day, ctx: Ctx) -> None:
    """A stock MariaDB's strict mode: a value over its column fails the write instead of
    being cut. New connections take it; the hostile records that follow need it."""
    from tests.gameday.faults_inputs import key_70k_not_json, long_name_upload

    ctx["before"] = await _global_sql_mode(day, STRICT)
    await key_70k_not_json(day, ctx)
    await long_name_upload(day, ctx)
    ctx["detail"] = f"SET GLOBAL sql_mode = {STRICT}; " + ctx.get("detail", "")


async def strict_mode_off(day: Day, ctx: Ctx) -> None:
    await _global_sql_mode(day, ctx["before"])


# -- the 3-node cluster (make gameday BROKER=cluster) ----------------------------------------
async def kill_cluster_node(day: Day, ctx: Ctx) -> None:
    cluster = day.infra.cluster
    assert cluster is not None
    node = ctx["rng"].choice(cluster.nodes)
    ctx["node"] = node
    ctx["detail"] = f"kill -9 broker {node}"
    await asyncio.to_thread(cluster.kill9, node)


async def kill_controller(day: Day, ctx: Ctx) -> None:
    cluster = day.infra.cluster
    assert cluster is not None
    node = (await describe_quorum(cluster.bootstrap)).leader
    ctx["node"] = node
    ctx["detail"] = f"kill -9 the active controller, node {node}"
    await asyncio.to_thread(cluster.kill9, node)


async def start_cluster_node(day: Day, ctx: Ctx) -> None:
    assert day.infra.cluster is not None
    await asyncio.to_thread(day.infra.cluster.start, ctx["node"])


async def roll_cluster(day: Day, ctx: Ctx) -> None:
    cluster = day.infra.cluster
    assert cluster is not None
    for node in cluster.nodes:
        await asyncio.to_thread(cluster.stop, node)
        await asyncio.to_thread(cluster.start, node)


# -- the simulator's model servers -----------------------------------------------------------
def gpu_knobs(on: dict[str, Any], off: dict[str, Any], hosts: str = "one") -> tuple[Any, Any]:
    """Set `on` on one GPU host (drawn) or every one ("all"); `off` puts them back."""

    async def start(day: Day, ctx: Ctx) -> None:
        chosen = list(day.hosts()) if hosts == "all" else [ctx["rng"].choice(day.hosts())]
        ctx["hosts"] = chosen
        ctx["detail"] = f"{', '.join(chosen)}: {on}"
        for host in chosen:
            await day.run.set_faults(host=host, **on)

    async def stop(day: Day, ctx: Ctx) -> None:
        for host in ctx["hosts"]:
            await day.run.set_faults(host=host, **off)

    return start, stop


def slow_host() -> tuple[Any, Any]:
    async def start(day: Day, ctx: Ctx) -> None:
        host = ctx["rng"].choice(day.hosts())
        ctx["host"] = host
        scale = day.run.settings.latency_scale
        ctx["detail"] = f"{host}: model time x10"
        await day.run.set_faults(host=host, latency_scale=scale * 10)

    async def stop(day: Day, ctx: Ctx) -> None:
        await day.run.set_faults(host=ctx["host"], latency_scale=day.run.settings.latency_scale)

    return start, stop


def stt_only(on: dict[str, Any], off: dict[str, Any]) -> tuple[Any, Any]:
    """Set knobs on one host's STT server only (the stage whose text rides downstream)."""
    stt = GPU_STAGES[-1]

    async def start(day: Day, ctx: Ctx) -> None:
        host = ctx["rng"].choice(day.hosts())
        ctx["host"] = host
        ctx["detail"] = f"{host} {stt}: {on}"
        await day.run.set_faults(host=host, stage=stt, **on)

    async def stop(day: Day, ctx: Ctx) -> None:
        await day.run.set_faults(host=ctx["host"], stage=stt, **off)

    return start, stop


def llm_knobs(on: dict[str, Any], off: dict[str, Any]) -> tuple[Any, Any]:
    async def start(day: Day, ctx: Ctx) -> None:
        ctx["detail"] = f"LLM: {on}"
        await day.run.set_faults(llm=on)

    async def stop(day: Day, ctx: Ctx) -> None:
        await day.run.set_faults(llm=off)

    return start, stop
