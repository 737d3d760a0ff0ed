"""A GPU-stage process with one consumer over its host's stages (`GPU_STAGE_CONSUMERS=per_host`),
on the real broker and the simulator: files go through every GPU stage, the host's group
commits them all, and the move from a group per stage neither replays nor skips."""

from pathlib import Path

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata, TopicPartition

from services.gpu_stage.main import run
from services.gpu_stage.settings import GpuStageSettings
from shared.events import FileStageCompleted, any_event
from shared.groups import gpu_host_group, gpu_stage_group
from shared.pipeline import input_topic, output_topic
from shared.provisioning import create_pipeline_topics
from shared.stages import GPU_STAGES
from simulator.testing import running_simulator, write_wav
from tests.kafka_helpers import read_topic, wait_until
from tests.stage_helpers import produce_events, running, stage_input

HOST = "127.0.0.2"


async def _end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
        return ends
    finally:
        await consumer.stop()


async def _commit_as(bootstrap: str, group: str, offsets: dict[TopicPartition, int]) -> None:
    """What a stopped consumer of `group` left behind: its last commit."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit({tp: OffsetAndMetadata(o, "") for tp, o in offsets.items()})
    finally:
        await consumer.stop()


async def _committed(bootstrap: str, group: str) -> dict[TopicPartition, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        found = await admin.list_consumer_group_offsets(group)
        return {tp: om.offset for tp, om in found.items() if om.offset >= 0}
    finally:
        await admin.close()


async def test_one_consumer_runs_every_stage_of_a_host_and_takes_over_the_stages_commits(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    async with running_simulator() as sim:
        ports = {
            f"{s}_port": int(sim.gpu_url(HOST, s).rsplit(":", 1)[1].split("/")[0])
            for s in GPU_STAGES
        }
        settings = GpuStageSettings(
            kafka_bootstrap_servers=kafka_bootstrap,
            topic_prefix=topic_prefix,
            gpu_hosts=f"{HOST}:4",
            gpu_stage_consumers="per_host",
            **ports,  # type: ignore[arg-type]
        )
        await create_pipeline_topics(settings)
        denoise_in = input_topic("denoise", settings.topics, HOST)
        wavs = [write_wav(tmp_path / f"call_{i}.wav", seconds=0.2) for i in range(12)]
        # The first four were done by the stage's own group before the switch.
        await produce_events(
            kafka_bootstrap, denoise_in, [stage_input("b", p, HOST) for p in wavs[:4]]
        )
        done_before = await _end_offsets(kafka_bootstrap, denoise_in, settings.stage_partitions)
        await _commit_as(
            kafka_bootstrap, gpu_stage_group(settings.topics, "denoise", HOST), done_before
        )
        await produce_events(
            kafka_bootstrap, denoise_in, [stage_input("b", p, HOST) for p in wavs[4:]]
        )

        # stt's input comes from triage (the distributor): fed here directly.
        stt_in = input_topic("stt", settings.topics, HOST)
        transcribed = wavs[8:]
        await produce_events(
            kafka_bootstrap,
            stt_in,
            [stage_input("b", p, HOST, stage="triage") for p in transcribed],
        )
        lid_out, stt_out = (output_topic(s, settings.topics, HOST) for s in ("lid", "stt"))
        async with running(lambda stop: run(settings, list(GPU_STAGES), [HOST], stop)):
            out = await read_topic(kafka_bootstrap, [lid_out, stt_out], lambda rs: len(rs) >= 12)
            host_group = gpu_host_group(settings.topics, HOST)

            async def all_committed() -> bool:
                committed = await _committed(kafka_bootstrap, host_group)
                for stage in GPU_STAGES:
                    topic = input_topic(stage, settings.topics, HOST)
                    ends = await _end_offsets(kafka_bootstrap, topic, settings.stage_partitions)
                    if any(committed.get(tp, 0) != end for tp, end in ends.items() if end):
                        return False
                return True

            await wait_until(all_committed, 30, "the host's group committing every stage's input")

    events = [any_event.validate_json(r.value) for r in out]
    completed = [e for e in events if isinstance(e, FileStageCompleted)]
    assert len(completed) == len(events) == 12
    # Every file after the switch went through denoise, ivr and lid once; none before it again.
    assert sorted(e.file_name for e in completed if e.stage == "lid") == sorted(
        p.name for p in wavs[4:]
    )
    assert sorted(e.file_name for e in completed if e.stage == "stt") == sorted(
        p.name for p in transcribed
    )
    # The stages' own groups were read, never joined: their commits are as they were left.
    denoise_group = gpu_stage_group(settings.topics, "denoise", HOST)
    assert await _committed(kafka_bootstrap, denoise_group) == done_before
    for stage in GPU_STAGES[1:]:
        assert (
            await _committed(kafka_bootstrap, gpu_stage_group(settings.topics, stage, HOST)) == {}
        )
