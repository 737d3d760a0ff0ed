"""The broker's ACLs (`infra/kafka.sh start --acls`, plan in `shared.acl_plan`): a client
without rights is refused, a service with rights does its job.

A private broker (its own ports and cache folder) with the StandardAuthorizer; each service
authenticates as its own SCRAM user over SASL_SSL. The topics are created, and the transcripts
written, over the loopback PLAINTEXT listener, whose principal is a super user.
"""

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    KafkaConnectionError,
    TopicAuthorizationFailedError,
)
from pydantic import SecretStr

from cli.acls import apply
from cli.kafka_users import passwords, secret_name
from shared.acl_plan import OPERATOR, UPLOAD, plan, user_of, users
from shared.groups import llm_stage_group, tracker_group
from shared.kafka import make_consumer, make_producer
from shared.kafka_connection import KafkaConnection
from shared.pipeline import PIPELINE, input_topic
from shared.topics import Topics
from tests.crash.infra import CACHE, PrivateKafka
from tests.e2e.kafka_refusals import (
    REFUSED,
    UPLOADED,
    read_one,
    send,
    transcript_topics,
    upload_user_is_refused_all_but_uploads,
)

TOPICS = Topics()
HOST = "gpu-a"
TRANSCRIPT = b'{"text": "a transcript"}'
TRANSCRIPT_TOPICS = transcript_topics(TOPICS, HOST)


@pytest.fixture(scope="module")
def acl_kafka() -> Iterator[PrivateKafka]:
    kafka = PrivateKafka(
        cache=CACHE / "e2e-acl-kafka",
        port=26392,
        controller_port=26393,
        sasl_ssl_port=26394,
        acls=True,
    )
    kafka.start(fresh=True)
    try:
        yield kafka
    finally:
        kafka.stop()


def as_user(kafka: PrivateKafka, user: str) -> KafkaConnection:
    env = kafka.user_env(user)
    return KafkaConnection(
        bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"],
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username=user,
        sasl_password=SecretStr(env["KAFKA_SASL_PASSWORD"]),
        ssl_cafile=env["KAFKA_SSL_CAFILE"],
    )


@pytest.fixture(scope="module")
async def topics_with_transcripts(acl_kafka: PrivateKafka) -> AsyncIterator[None]:
    admin = AIOKafkaAdminClient(bootstrap_servers=acl_kafka.bootstrap)
    await admin.start()
    try:
        names = TOPICS.all_topics([HOST])
        await admin.create_topics([NewTopic(n, 1, 1) for n in names])
    finally:
        await admin.close()
    producer = make_producer(acl_kafka.bootstrap, "admin")
    await producer.start()
    try:
        for topic in TRANSCRIPT_TOPICS:
            await producer.send_and_wait(topic, TRANSCRIPT, key=b"b1")
    finally:
        await producer.stop()
    yield


@pytest.mark.usefixtures("topics_with_transcripts")
async def test_the_upload_user_writes_uploads_and_nothing_else(acl_kafka: PrivateKafka) -> None:
    await upload_user_is_refused_all_but_uploads(as_user(acl_kafka, UPLOAD), TOPICS, HOST)


@pytest.mark.usefixtures("topics_with_transcripts")
async def test_a_service_reads_and_writes_its_own_topics_only(acl_kafka: PrivateKafka) -> None:
    llm = as_user(acl_kafka, user_of("llm_stage"))
    first_llm = next(row.name for row in PIPELINE if row.runner == "llm_stage")
    consumer = make_consumer(llm, llm_stage_group(TOPICS, first_llm), "acl-test")
    consumer.subscribe([input_topic(first_llm, TOPICS)])
    assert await read_one(consumer) == TRANSCRIPT
    await send(llm, TOPICS.done)
    for topic in (TOPICS.control, TOPICS.uploads):
        with pytest.raises(TopicAuthorizationFailedError):
            await send(llm, topic)
    # Another service's group is not its to join, even on a topic it may read.
    stranger = make_consumer(llm, tracker_group(TOPICS), "acl-test")
    stranger.subscribe([input_topic(first_llm, TOPICS)])
    with pytest.raises(REFUSED):
        await read_one(stranger)


@pytest.mark.usefixtures("topics_with_transcripts")
async def test_the_tracker_reads_every_topic_and_writes_none(acl_kafka: PrivateKafka) -> None:
    tracker = as_user(acl_kafka, "tracker")
    consumer = make_consumer(tracker, tracker_group(TOPICS), "acl-test")
    consumer.subscribe(TOPICS.all_topics([HOST]))
    # The transcripts, or an upload another test wrote: whichever partition answers first.
    assert await read_one(consumer) in (TRANSCRIPT, UPLOADED)
    # Without WRITE on any topic, its producer is refused before it sends (KIP-679).
    with pytest.raises((TopicAuthorizationFailedError, ClusterAuthorizationFailedError)):
        await send(tracker, TOPICS.done)


@pytest.mark.usefixtures("topics_with_transcripts")
async def test_setup_makes_each_user_with_the_password_of_its_file(
    acl_kafka: PrivateKafka, tmp_path: Path
) -> None:
    """`python -m cli.acls setup` (compose's kafka-acls step): the operator's password is
    changed in its file, and the new one logs in where the old one no longer does."""
    for user in users():
        shutil.copy(acl_kafka.cache / "kafka" / "users" / user, tmp_path / secret_name(user))
    old = as_user(acl_kafka, OPERATOR)
    (tmp_path / secret_name(OPERATOR)).write_text("a-new-operator-password\n")
    await apply(KafkaConnection(bootstrap_servers=acl_kafka.bootstrap), plan(TOPICS),
                passwords(tmp_path, users()))  # fmt: skip
    new = old.model_copy(update={"sasl_password": SecretStr("a-new-operator-password")})
    await send(new, TOPICS.control)
    with pytest.raises(KafkaConnectionError):  # aiokafka's word for a failed SASL login
        await send(old, TOPICS.control)
