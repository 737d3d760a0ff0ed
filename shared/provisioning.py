"""Create every topic of the pipeline for the configured GPU hosts (`cofi topics`)."""

from shared.kafka import TopicReport, ensure_topics
from shared.settings import CommonSettings


async def create_pipeline_topics(
    settings: CommonSettings, reach_timeout_s: float | None = None
) -> TopicReport:
    return await ensure_topics(
        settings.kafka, settings.topic_plan(), reach_timeout_s=reach_timeout_s
    )
