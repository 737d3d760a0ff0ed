"""The ACL plan (`shared.acl_plan`): every service gets exactly its topics and group."""

import pytest

from shared.acl_plan import OPERATOR, TRACKER, UPLOAD, Operation, granted, plan, user_of, users
from shared.groups import (
    distributor_group,
    gpu_host_group,
    gpu_stage_group,
    llm_stage_group,
    stage_groups,
    tracker_group,
)
from shared.pipeline import PIPELINE, StageSpec, input_topic, output_topic
from shared.topics import Topics

TOPICS = Topics("cofi")
HOSTS = ["gpu-a", "10.0.0.7"]
PLAN = plan(TOPICS)


def users_who(operation: Operation, topic: str) -> set[str]:
    return {u for u in users() if granted(PLAN, u, operation, "topic", topic)}


def routes(row: StageSpec) -> list[str | None]:
    """The routes a file may take out of the stage (None: the one way of a stage without)."""
    return [*row.routes] if row.routes else [None]


def test_the_upload_user_may_write_uploads_and_nothing_else() -> None:
    assert [str(g) for g in PLAN if g.user == UPLOAD] == ["User:upload WRITE topic cofi.uploads"]
    for topic in TOPICS.all_topics(HOSTS):
        assert granted(PLAN, UPLOAD, "WRITE", "topic", topic) == (topic == TOPICS.uploads)
        assert not granted(PLAN, UPLOAD, "READ", "topic", topic)


def test_only_the_operator_writes_control_and_the_tracker_alone_reads_done() -> None:
    assert users_who("WRITE", TOPICS.control) == {OPERATOR}
    assert users_who("READ", TOPICS.done) == {TRACKER}


def test_done_is_written_only_by_the_runners_of_stages_that_end_a_file() -> None:
    ending = {
        user_of(row.runner)
        for row in PIPELINE
        for route in routes(row)
        if output_topic(row.name, TOPICS, "h", route) == TOPICS.done
    }
    assert users_who("WRITE", TOPICS.done) == ending


@pytest.mark.parametrize("host", HOSTS)
def test_each_stage_runner_reads_its_input_and_writes_where_its_files_go(host: str) -> None:
    for row in PIPELINE:
        user = user_of(row.runner)
        source = input_topic(row.name, TOPICS, host)
        # `cofi submit` (the operator) reads the uploads too: is a batch id new?
        readers = {user, TRACKER} | ({OPERATOR} if source == TOPICS.uploads else set())
        assert users_who("READ", source) == readers, source
        for route in routes(row):
            target = output_topic(row.name, TOPICS, host, route)
            assert granted(PLAN, user, "WRITE", "topic", target), (user, target)
        assert granted(PLAN, user, "WRITE", "topic", TOPICS.failed)
        assert granted(PLAN, user, "READ", "topic", TOPICS.control)


def test_no_stage_runner_reads_another_runners_input() -> None:
    for row in PIPELINE:
        for other in PIPELINE:
            if other.runner != row.runner:
                topic = input_topic(other.name, TOPICS, HOSTS[0])
                assert not granted(PLAN, user_of(row.runner), "READ", "topic", topic), topic


@pytest.mark.parametrize("host", HOSTS)
def test_each_service_may_join_its_own_groups_only(host: str) -> None:
    own = {
        "distributor": [distributor_group(TOPICS)],
        "gpu-stage": [
            gpu_stage_group(TOPICS, r.name, host) for r in PIPELINE if r.runner == "gpu_stage"
        ]
        + [gpu_host_group(TOPICS, host)],  # GPU_STAGE_CONSUMERS=per_host
        "llm-stage": [llm_stage_group(TOPICS, r.name) for r in PIPELINE if r.runner == "llm_stage"],
        TRACKER: [tracker_group(TOPICS)],
        UPLOAD: [],
        OPERATOR: [],
    }
    assert set(own) == set(users())
    every_group = [g for groups in own.values() for g in groups]
    for user, groups in own.items():
        for group in every_group:
            assert granted(PLAN, user, "READ", "group", group) == (group in groups), (user, group)


def test_the_operator_sees_the_trackers_offsets_without_joining_its_group() -> None:
    """`cofi submit` checks the uploads the tracker has not applied yet (cli/batch_ids.py)."""
    group = tracker_group(TOPICS)
    assert granted(PLAN, OPERATOR, "DESCRIBE", "group", group)
    assert not granted(PLAN, OPERATOR, "READ", "group", group)
    assert granted(PLAN, OPERATOR, "READ", "topic", TOPICS.uploads)
    assert users_who("READ", TOPICS.uploads) == {"distributor", TRACKER, OPERATOR}


@pytest.mark.parametrize("host", HOSTS)
def test_the_operator_may_send_failed_files_back_to_any_stages_input(host: str) -> None:
    """`cofi retry` (cli/dead_letters.py) and the dead letters' replay (cli/replay.py)."""
    for row in PIPELINE:
        assert granted(PLAN, OPERATOR, "WRITE", "topic", input_topic(row.name, TOPICS, host))
    assert not granted(PLAN, OPERATOR, "WRITE", "topic", TOPICS.done)
    # Each replayed letter's `DeadLetterReplayed`, so a second retry skips it.
    assert granted(PLAN, OPERATOR, "WRITE", "topic", TOPICS.failed)


def test_the_tracker_reads_every_topic_and_writes_none() -> None:
    for topic in TOPICS.all_topics(HOSTS):
        assert granted(PLAN, TRACKER, "READ", "topic", topic), topic
    assert not [g for g in PLAN if g.user == TRACKER and g.operation == "WRITE"]


def test_a_prefixed_grant_covers_its_prefix_only() -> None:
    stt = [g for g in PLAN if g.user == "gpu-stage" and g.resource.name.startswith("cofi.stt")]
    assert stt and all(g.resource.prefixed and g.resource.name.endswith(".") for g in stt)
    assert not granted(PLAN, "gpu-stage", "READ", "topic", "cofi.sttx")


@pytest.mark.parametrize("host", HOSTS)
def test_the_tracker_sees_every_stage_groups_offsets_without_joining_them(host: str) -> None:
    """Its export of the groups' lag from the broker (shared/observability/group_lag.py)."""
    watched = [*stage_groups(TOPICS, [host]), *stage_groups(TOPICS, [host], "per_host")]
    for group in watched:
        assert granted(PLAN, TRACKER, "DESCRIBE", "group", group), group
        assert not granted(PLAN, TRACKER, "READ", "group", group), group
