"""`cofi retry`'s second half: replay a batch's dead letters.

A dead letter (`DeadLetter` on the dead-letter topic) keeps the raw bytes of a message that a
consumer could not decode or handle, with the topic, partition and offset it came from. Once
the cause is fixed (a newer schema, a handler bug), the same bytes go back to the same topic
under the same key; a letter that still does not decode is reported with the reason, and
stays where it is. A letter replayed once is not replayed again: `cofi retry` writes a
`DeadLetterReplayed` naming its origin on the dead-letter topic, and reads them back.
"""

import base64
import binascii
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pydantic import ValidationError

from cli.dead_letters import Mark
from shared.events import DeadLetter, DeadLetterReplayed, any_event


@dataclass(frozen=True)
class Replay:
    topic: str
    key: bytes | None
    value: bytes
    about: str  # the file (or the letter's origin) in the operator's words
    letter: DeadLetter


@dataclass(frozen=True)
class ReplayPlan:
    replays: list[Replay]
    skipped: list[str]
    already: list[str]  # letters an earlier `cofi retry` replayed


def origin_of(letter: DeadLetter) -> tuple[str, int, int]:
    return (letter.source_topic, letter.partition, letter.offset)


def replay_marks(
    replays: Iterable[Replay],
    partitions: Mapping[tuple[str, int, int], int],
    topic: str,
    batch_id: str,
) -> list[Mark]:
    """One `DeadLetterReplayed` per replayed letter, for its own partition of the dead-letter
    topic `topic` (`partitions`: where each letter was read)."""
    return [
        Mark(
            topic,
            partitions[origin_of(r.letter)],
            r.key,
            DeadLetterReplayed(
                source_topic=r.letter.source_topic,
                partition=r.letter.partition,
                offset=r.letter.offset,
                batch_id=batch_id,
            ),
        )
        for r in replays
    ]


def origin(letter: DeadLetter) -> str:
    return f"{letter.source_topic}[{letter.partition}]@{letter.offset}"


def _key(letter: DeadLetter) -> bytes | None:
    return None if letter.key_b64 is None else base64.b64decode(letter.key_b64)


def of_batch(letter: DeadLetter, batch_id: str) -> bool:
    """Messages of a batch are keyed by its id (uploads) or `<batch>/<file>` (stage topics)."""
    try:
        key = (_key(letter) or b"").decode()
    except (binascii.Error, UnicodeDecodeError):
        return False
    return key == batch_id or key.startswith(f"{batch_id}/")


def plan_replays(
    letters: Iterable[DeadLetter],
    batch_id: str,
    file_name: str | None = None,
    finished: Iterable[str] = (),
    replayed: Iterable[tuple[str, int, int]] = (),
) -> ReplayPlan:
    """The batch's dead letters that now decode and were never replayed, to send back; why
    the others are not."""
    done = set(finished)
    before = set(replayed)
    replays: list[Replay] = []
    skipped: list[str] = []
    already: list[str] = []
    seen: set[tuple[str, int, int]] = set()
    for letter in letters:
        at = origin_of(letter)
        if at in seen or not of_batch(letter, batch_id):
            continue
        seen.add(at)
        try:
            value = base64.b64decode(letter.value_b64, validate=True)
            event = any_event.validate_json(value)
        except (binascii.Error, ValueError) as exc:
            if file_name is None:
                reason = _first_line(exc)
                skipped.append(f"dead letter {origin(letter)}: still does not decode: {reason}")
            continue
        name = getattr(event, "file_name", None)
        about = name if isinstance(name, str) else f"{event.type} {origin(letter)}"
        if file_name is not None and name != file_name:
            continue
        if at in before:
            already.append(f"{about}: already replayed (dead letter {origin(letter)})")
            continue
        if name in done:
            skipped.append(f"{about}: already finished (dead letter {origin(letter)})")
            continue
        replays.append(Replay(letter.source_topic, _key(letter), value, about, letter))
    return ReplayPlan(replays, skipped, already)


def _first_line(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        errors = exc.errors(include_url=False, include_input=False)
        return f"{exc.error_count()} errors, first: {errors[0]['msg']}" if errors else str(exc)
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
