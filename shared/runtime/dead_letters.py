"""Poison messages: keep their raw bytes on the dead-letter topic, never crash-loop."""

import base64
import hashlib
from typing import Protocol

from shared.events import DeadLetter


class Source(Protocol):
    """The input record an output answers: a consumer record, or the distributor's message."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...

    @property
    def key(self) -> bytes | None: ...

    @property
    def value(self) -> bytes | None: ...


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


def dead_letter_of(source: Source, consumer: str, error: str) -> DeadLetter:
    return dead_letter(
        topic=source.topic,
        partition=source.partition,
        offset=source.offset,
        key=source.key,
        value=source.value,
        consumer=consumer,
        error=error,
    )


def minimal_dead_letter(source: Source, consumer: str, error: str) -> DeadLetter:
    """The dead letter for when the full one was refused (its raw bytes, a third larger as
    base64, were over the topic's limit): it names the record, its size and digest, and
    carries neither key nor value. The raw bytes stay in the source topic, at the offset it
    names, until that topic's retention ends."""
    value = source.value or b""
    key = source.key or b""
    about = (
        f"raw record not kept here (value {len(value)} bytes, sha256 "
        f"{hashlib.sha256(value).hexdigest()}; key {len(key)} bytes): read it from the "
        "source topic at this offset"
    )
    return DeadLetter(
        source_topic=source.topic,
        partition=source.partition,
        offset=source.offset,
        consumer=consumer,
        error=f"{about}; {error[:1000]}",
        key_b64=None,
        value_b64="",
    )
