"""faust's producer, made idempotent: faust turns idempotence on only inside transactions.

Without it a producer retry after a lost acknowledgement duplicates routing events, and with
them the GPU calls that follow (docs: ARCHITECTURE.md, "Delivery semantics").
"""

from collections.abc import Mapping
from typing import Any

import faust
from faust.transport.drivers.aiokafka import Producer


class IdempotentProducer(Producer):
    def _settings_extra(self) -> Mapping[str, Any]:
        return {"acks": "all", "enable_idempotence": True}


class DistributorApp(faust.App):
    def _new_producer(self) -> Any:
        return IdempotentProducer(self.transport, loop=self.loop, beacon=self.beacon)
