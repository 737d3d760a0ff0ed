"""Kill anything, at any moment, and lose nothing: one test per crash scenario.

Each runs a fresh pipeline (every service a process) on a batch of `CRASH_FILES` files, breaks
it while the batch runs (faults scheduled by the batch's progress in the tracker's tables),
waits for the batch to finish, and checks the invariants of `tests/crash/invariants.py`:
every file exactly one terminal state, no duplicated processing_logs row, flags and
batchStatus agreeing with fileDistribution, files == BatchClosed.file_count, terminal events
on the topics, and no stage redoing more model calls than the faults' in-flight bounds.
"""

from pathlib import Path

from tests.crash.harness import ChaosSettings
from tests.crash.infra import PrivateKafka, PrivateMariaDB
from tests.crash.invariants import Outcome
from tests.crash.scenario import Breakables
from tests.crash.scenarios import SCENARIOS, run_scenario


async def _run(
    name: str,
    settings: ChaosSettings,
    infra: Breakables,
    audio: list[Path],
    tmp_path: Path,
) -> Outcome:
    outcome = await run_scenario(SCENARIOS[name], settings, infra, audio, tmp_path / "logs")
    assert outcome.violations == [], f"{name} (logs in {tmp_path / 'logs'}):\n" + "\n".join(
        outcome.violations
    )
    assert outcome.lost == 0 and outcome.duplicates == 0
    assert sum(outcome.terminal.values()) == settings.files
    return outcome


async def test_kill_9_each_service_type_mid_batch_loses_nothing(
    breakables: Breakables, crash_settings: ChaosSettings, crash_audio: list[Path], tmp_path: Path
) -> None:
    outcome = await _run("kill_each_service", crash_settings, breakables, crash_audio, tmp_path)
    killed = [f["what"].split()[2] for f in outcome.faults]
    assert killed == ["distributor", "gpu-127.0.1.2", "llm", "tracker"]


async def test_kill_9_of_the_broker_mid_batch_loses_nothing(
    breakables: Breakables,
    private_kafka: PrivateKafka,
    crash_settings: ChaosSettings,
    crash_audio: list[Path],
    tmp_path: Path,
) -> None:
    breakables.kafka = private_kafka
    outcome = await _run("kill_broker", crash_settings, breakables, crash_audio, tmp_path)
    assert [f["what"] for f in outcome.faults][-1] == "broker restarted"


async def test_database_down_mid_batch_the_tracker_waits_and_catches_up(
    breakables: Breakables,
    private_mariadb: PrivateMariaDB,
    crash_settings: ChaosSettings,
    crash_audio: list[Path],
    tmp_path: Path,
) -> None:
    breakables.mariadb = private_mariadb
    outcome = await _run("stop_database", crash_settings, breakables, crash_audio, tmp_path)
    assert [f["what"] for f in outcome.faults][-1] == "MariaDB started again"


async def test_consumers_scaled_up_and_down_mid_batch_redo_nothing_beyond_the_bound(
    breakables: Breakables, crash_settings: ChaosSettings, crash_audio: list[Path], tmp_path: Path
) -> None:
    outcome = await _run("scale_consumers", crash_settings, breakables, crash_audio, tmp_path)
    assert len(outcome.faults) == 4


async def test_a_faulty_gpu_host_slows_only_its_own_files(
    breakables: Breakables, crash_settings: ChaosSettings, crash_audio: list[Path], tmp_path: Path
) -> None:
    outcome = await _run("faulty_host", crash_settings, breakables, crash_audio, tmp_path)
    assert outcome.redundant_calls == 0  # nothing was killed: every call is a logged attempt
    assert outcome.isolation_ratio is not None and outcome.isolation_ratio >= 0.9


async def test_a_gpu_host_dead_for_good_fails_its_files_over_and_fails_none(
    breakables: Breakables, crash_settings: ChaosSettings, crash_audio: list[Path], tmp_path: Path
) -> None:
    outcome = await _run("host_dead_fails_over", crash_settings, breakables, crash_audio, tmp_path)
    corrupt = int(crash_settings.files * crash_settings.corrupt_share)
    assert outcome.terminal.get("failed", 0) == corrupt  # only the corrupt audio
    assert outcome.isolation_ratio is not None and outcome.isolation_ratio >= 0.9


async def test_a_gpu_host_down_for_a_while_pauses_and_heals_and_fails_no_file(
    breakables: Breakables, crash_settings: ChaosSettings, crash_audio: list[Path], tmp_path: Path
) -> None:
    outcome = await _run("host_outage_recovers", crash_settings, breakables, crash_audio, tmp_path)
    assert [f["what"] for f in outcome.faults][-1].endswith("answers again")


async def test_an_llm_answering_401_for_a_while_pauses_the_llm_stages_and_fails_no_file(
    breakables: Breakables, crash_settings: ChaosSettings, crash_audio: list[Path], tmp_path: Path
) -> None:
    outcome = await _run("llm_auth_outage", crash_settings, breakables, crash_audio, tmp_path)
    assert [f["what"] for f in outcome.faults][-1] == "the LLM takes the key again"


async def test_an_upload_after_the_batch_completed_is_rejected_and_the_batch_stays_complete(
    breakables: Breakables, crash_settings: ChaosSettings, crash_audio: list[Path], tmp_path: Path
) -> None:
    await _run("late_upload", crash_settings, breakables, crash_audio, tmp_path)


async def test_a_rolling_restart_redoes_nothing_beyond_the_in_flight_bound(
    breakables: Breakables, crash_settings: ChaosSettings, crash_audio: list[Path], tmp_path: Path
) -> None:
    outcome = await _run("rolling_restart", crash_settings, breakables, crash_audio, tmp_path)
    assert len(outcome.faults) == 6


async def test_poison_messages_and_duplicates_on_every_topic_lose_nothing(
    breakables: Breakables, crash_settings: ChaosSettings, crash_audio: list[Path], tmp_path: Path
) -> None:
    await _run("poison_and_duplicates", crash_settings, breakables, crash_audio, tmp_path)


async def test_kill_9_of_a_gpu_stage_while_long_calls_run_redoes_only_what_held_a_slot(
    breakables: Breakables, crash_settings: ChaosSettings, crash_audio: list[Path], tmp_path: Path
) -> None:
    outcome = await _run("heavy_tail_gpu_kill", crash_settings, breakables, crash_audio, tmp_path)
    kill = outcome.faults[-1]
    assert kill["what"].startswith("kill -9") and sum(kill["in_flight"].values()) > 0
    assert outcome.notes, "the report states calls redone against calls in flight"


async def test_a_consumer_joining_a_host_mid_batch_redoes_nothing(
    breakables: Breakables, crash_settings: ChaosSettings, crash_audio: list[Path], tmp_path: Path
) -> None:
    outcome = await _run("scale_up_mid_batch", crash_settings, breakables, crash_audio, tmp_path)
    assert outcome.redundant_calls == 0
