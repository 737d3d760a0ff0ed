"""Broker loss on a real 3-node KRaft cluster (`infra/kafka.sh cluster-start`): topics with
replication factor 3 and min ISR 2, producers with acks=all and idempotence. Killing the
broker that leads most partitions, killing the active controller, or restarting every broker
in turn mid-batch loses nothing and duplicates no row; the batch completes, and each outcome
carries the longest pause in progress (`make chaos` prints it in its report).

Each takes 5-7 minutes here (a 3-node cluster and a 1,000-file batch that outlasts a broker's
loss and return on 2 shared cores), so `make test` runs only the first; the other two are
marked `slow_cluster`: `make test-broker-loss` runs all three, `make chaos` all three at
10,000 files.
"""

from pathlib import Path

import pytest

from tests.crash.harness import ChaosSettings
from tests.crash.infra import PrivateCluster
from tests.crash.invariants import Outcome
from tests.crash.scenario import Breakables
from tests.crash.scenarios import SCENARIOS, run_scenario


async def _run(
    name: str,
    settings: ChaosSettings,
    infra: Breakables,
    cluster: PrivateCluster,
    audio: list[Path],
    tmp_path: Path,
) -> Outcome:
    infra.cluster = cluster
    outcome = await run_scenario(SCENARIOS[name], settings, infra, audio, tmp_path / "logs")
    print(f"{name}: longest pause {outcome.longest_pause_s}s at t+{outcome.longest_pause_at_s}s")
    for fault in outcome.faults:
        print(f"  t+{fault['seconds']}s {fault['what']}")
    assert outcome.violations == [], f"{name} (logs in {tmp_path / 'logs'}):\n" + "\n".join(
        outcome.violations
    )
    assert outcome.lost == 0 and outcome.duplicates == 0
    assert sum(outcome.terminal.values()) == settings.files
    assert outcome.longest_pause_s is not None
    return outcome


async def test_kill_9_of_the_broker_leading_most_partitions_loses_nothing(
    breakables: Breakables,
    private_cluster: PrivateCluster,
    crash_settings: ChaosSettings,
    crash_audio: list[Path],
    tmp_path: Path,
) -> None:
    outcome = await _run(
        "broker_leader_killed", crash_settings, breakables, private_cluster, crash_audio, tmp_path
    )
    assert outcome.faults[0]["what"].startswith("kill -9 broker ")


@pytest.mark.slow_cluster
async def test_kill_9_of_the_active_controller_loses_nothing(
    breakables: Breakables,
    private_cluster: PrivateCluster,
    crash_settings: ChaosSettings,
    crash_audio: list[Path],
    tmp_path: Path,
) -> None:
    outcome = await _run(
        "controller_killed", crash_settings, breakables, private_cluster, crash_audio, tmp_path
    )
    killed, elected = outcome.faults[0]["what"], outcome.faults[1]["what"]
    assert killed.startswith("kill -9 the active controller")
    assert " is the active controller " in elected


@pytest.mark.slow_cluster
async def test_a_rolling_restart_of_the_three_brokers_loses_nothing(
    breakables: Breakables,
    private_cluster: PrivateCluster,
    crash_settings: ChaosSettings,
    crash_audio: list[Path],
    tmp_path: Path,
) -> None:
    outcome = await _run(
        "brokers_rolling_restart",
        crash_settings,
        breakables,
        private_cluster,
        crash_audio,
        tmp_path,
    )
    restarted = [f["what"] for f in outcome.faults if f["what"].startswith("SIGTERM broker")]
    assert len(restarted) == 3
