"""Poison messages: keep their raw bytes on the dead-letter topic, never crash-loop."""

import base64

from aiokafka.structs import ConsumerRecord

from shared.events import DeadLetter


def dead_letter(record: ConsumerRecord[bytes, bytes], consumer: str, error: str) -> DeadLetter:
    return DeadLetter(
        source_topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        consumer=consumer,
        error=error[:2000],
        key_b64=base64.b64encode(record.key).decode() if record.key is not None else None,
        value_b64=base64.b64encode(record.value or b"").decode(),
    )
