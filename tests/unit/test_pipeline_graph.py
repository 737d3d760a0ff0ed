"""The pipeline's graph table: every derived fact agrees with the flow in DESIGN.md."""

import pytest

from shared import pipeline
from shared.topics import Topics

pytestmark = pytest.mark.unit


def test_flow_order_and_neighbours() -> None:
    names = [row.name for row in pipeline.PIPELINE]
    assert names == ["distribute", "denoise", "ivr", "lid", "triage", "stt", "llm1", "llm2"]
    assert pipeline.previous("distribute") is None
    assert pipeline.following("llm2") is None
    assert pipeline.previous("stt") == pipeline.spec("triage")
    assert pipeline.following("lid") == pipeline.spec("triage")


def test_topics_follow_the_flow() -> None:
    topics = Topics("t")
    assert pipeline.input_topic("distribute", topics) == "t.uploads"
    assert pipeline.input_topic("denoise", topics, "h1") == "t.denoise.h1"
    assert pipeline.output_topic("lid", topics, "h1") == topics.triage
    assert pipeline.output_topic("stt", topics, "h1") == topics.llm("llm1")
    assert pipeline.output_topic("llm2", topics) == topics.done
    with pytest.raises(ValueError, match="per GPU host"):
        pipeline.input_topic("ivr", topics)


def test_unknown_stage_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown stage 'nope'"):
        pipeline.spec("nope")


def test_columns_match_the_seed() -> None:
    assert pipeline.FLAG_COLUMNS == (
        "denoiseDone",
        "ivrDone",
        "lidDone",
        "sttDone",
        "llm1Done",
        "llm2Done",
    )
    assert pipeline.STATUS_COLUMNS[0] == "dbInsertionStatus"
    assert pipeline.spec("llm2").done_value == "Complete"
