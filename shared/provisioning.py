"""Create every topic of the pipeline for the configured GPU hosts (`cofi topics`)."""

from shared.kafka import ensure_topics
from shared.settings import CommonSettings


async def create_pipeline_topics(settings: CommonSettings) -> list[str]:
    topics = settings.topics
    names = topics.all_topics(settings.host_ips)
    await ensure_topics(
        settings.kafka_bootstrap_servers,
        names,
        settings.stage_partitions,
        compacted=[topics.control],
    )
    return names
