"""Counts the Kafka requests this process sends, by kind (Fetch, Produce, OffsetCommit, ...),
when `BENCH_KAFKA_REQUESTS_DIR` names a folder: every request aiokafka sends (faust's
included) goes through `AIOKafkaConnection.send`. A thread writes the counts to
`<folder>/<pid>.json` whenever they changed, at most twice a second, so a reader sees
them at most 0.5 s old (`bench.request_count`). Imported at start-up by Python itself, as
`sitecustomize`, only in processes the bench starts with this folder on PYTHONPATH."""

import json
import os
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

ENV = "BENCH_KAFKA_REQUESTS_DIR"
EVERY_S = 0.5


def _count_requests(counts: Counter[str]) -> bool:
    try:
        from aiokafka import conn
    except ImportError:  # not a Kafka client: nothing to count
        return False
    send = conn.AIOKafkaConnection.send

    def counted_send(self: Any, request: Any, expect_response: bool = True) -> Any:
        counts[type(request).__name__.removesuffix("Request")] += 1
        return send(self, request, expect_response)

    conn.AIOKafkaConnection.send = counted_send
    return True


def _write_changes(counts: Counter[str], path: Path) -> None:
    written: dict[str, int] = {}
    while True:
        time.sleep(EVERY_S)
        now = dict(counts)
        if now != written:
            part = path.with_suffix(".part")
            part.write_text(json.dumps(now))
            os.replace(part, path)
            written = now


def _start() -> None:
    folder = os.environ.get(ENV)
    if not folder:
        return
    counts: Counter[str] = Counter()
    if _count_requests(counts):
        path = Path(folder) / f"{os.getpid()}.json"
        threading.Thread(target=_write_changes, args=(counts, path), daemon=True).start()


_start()
