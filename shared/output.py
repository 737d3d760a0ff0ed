"""What a handler or router asks to publish: an event, its topic and its key.

Handlers stay pure and return events; the runner that owns the producer encodes them.
"""

from dataclasses import dataclass

from shared.events import Event


@dataclass(frozen=True)
class Output:
    topic: str
    key: bytes | None
    event: Event
