"""Poison messages: keep their raw bytes on the dead-letter topic, never crash-loop."""

import base64

from shared.events import DeadLetter


def dead_letter(
    *,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    consumer: str,
    error: str,
) -> DeadLetter:
    return DeadLetter(
        source_topic=topic,
        partition=partition,
        offset=offset,
        consumer=consumer,
        error=error[:2000],
        key_b64=base64.b64encode(key).decode() if key is not None else None,
        value_b64=base64.b64encode(value or b"").decode(),
    )
