"""The pipeline's graph table: every derived fact agrees with the flow in DESIGN.md."""

import dataclasses

import pytest

from shared import pipeline
from shared.status import Status
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


def test_triage_routes_are_in_the_table() -> None:
    topics = Topics("t")
    assert pipeline.spec("triage").routes == {"stt": "stt", "skip": None}
    assert pipeline.next_stage("triage", "stt") == pipeline.spec("stt")
    assert pipeline.next_stage("triage", "skip") is None
    assert pipeline.output_topic("triage", topics, "h1", route="stt") == "t.stt.h1"
    assert pipeline.output_topic("triage", topics, "h1", route="skip") == topics.done
    assert [s.name for s in pipeline.skipped_by("triage", "skip")] == ["stt", "llm1", "llm2"]
    assert pipeline.skipped_by("triage", "stt") == ()
    assert pipeline.skipped_by("lid") == ()


def test_a_route_is_named_where_needed_and_only_there() -> None:
    topics = Topics("t")
    with pytest.raises(ValueError, match="triage routes each file by one of stt, skip"):
        pipeline.output_topic("triage", topics, "h1")
    with pytest.raises(ValueError, match="got 'maybe'"):
        pipeline.next_stage("triage", "maybe")
    with pytest.raises(ValueError, match="stage lid has no routes"):
        pipeline.next_stage("lid", "skip")


def test_a_route_must_lead_forward() -> None:
    rows = list(pipeline.PIPELINE)
    triage = pipeline.index("triage")
    rows[triage] = dataclasses.replace(rows[triage], routes={"back": "ivr"})
    with pytest.raises(ValueError, match="route 'back' of triage leads to 'ivr'"):
        pipeline.check(tuple(rows))
    with pytest.raises(ValueError, match="distribute first"):
        pipeline.check(tuple(reversed(pipeline.PIPELINE)))


def test_status_words() -> None:
    assert pipeline.BATCH_STATUSES == (
        "Pending",
        "dbInsertionDone",
        "denoiseDone",
        "ivrDone",
        "lidDone",
        "triagingDone",
        "sttDone",
        "llm1Done",
        "Complete",
        "Cancelled",
    )
    assert [str(s) for s in Status] == ["Pending", "InProgress", "Complete", "Cancelled"]
    assert f"{Status.IN_PROGRESS}" == "InProgress" and "Complete" in pipeline.BATCH_STATUSES
