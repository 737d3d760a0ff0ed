"""Crash scenarios on a three-broker cluster: the leader of the partitions killed, the
controller killed, every broker restarted in turn."""

import asyncio

from tests.crash.cluster import describe_quorum, leaders, wait_fully_replicated
from tests.crash.harness import ChaosRun
from tests.crash.infra import PrivateCluster
from tests.crash.scenario import Breakables

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


def cluster_of(infra: Breakables) -> PrivateCluster:
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
    cluster = cluster_of(infra)
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
    cluster = cluster_of(infra)
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
    cluster = cluster_of(infra)
    await run.wait_for("denoise", 0.1)
    for node in cluster.nodes:
        run.record(f"SIGTERM broker {node}, then start it again", run.all_windows())
        await asyncio.to_thread(cluster.stop, node)
        await asyncio.to_thread(cluster.start, node)
        await back_in_sync(run, cluster, node)
