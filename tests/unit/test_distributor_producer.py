"""The distributor's faust producer is idempotent (faust enables it only in transactions)."""

import pytest

from services.distributor.app import create_app
from services.distributor.settings import DistributorSettings

pytestmark = pytest.mark.unit


async def test_the_routing_producer_is_idempotent_not_transactional() -> None:
    app = create_app(DistributorSettings(topic_prefix="p"))
    producer = app.producer._new_producer()  # the aiokafka producer faust would start
    try:
        # aiokafka keeps a transaction manager exactly when idempotence is on (acks=all).
        assert producer._txn_manager is not None
        assert producer._txn_manager.transactional_id is None
    finally:
        await producer.stop()
