"""`cofi purge --older-than AGE [--delete-batches]`: empty the call content the tracker's tables
keep, or delete whole batches that ended before now - AGE.

Nulls `processing_logs.input_payload`/`output_payload` of attempts that started before now -
AGE and `deadLetters.valueB64` of letters logged before it (services/tracker/retention.py);
the tracker does the same periodically when `PAYLOAD_RETENTION_DAYS` is set.
"""

import asyncio
import sys
from datetime import timedelta

from sqlalchemy.ext.asyncio import create_async_engine

from services.tracker.retention import Purged, delete_batches, parse_age, purge_payloads


def run(database_url: str, older_than: str, whole_batches: bool = False) -> int:
    try:
        age = parse_age(older_than)
    except ValueError as exc:
        print(f"cofi purge: --older-than {exc}", file=sys.stderr)
        return 2

    async def purge() -> Purged:
        engine = create_async_engine(database_url)
        try:
            return await purge_payloads(engine, age)
        finally:
            await engine.dispose()

    if whole_batches:
        return _delete(database_url, older_than, age)
    purged = asyncio.run(purge())
    print(
        f"purged content older than {older_than}: payloads of {purged.attempts} attempts, "
        f"raw bytes of {purged.dead_letters} dead letters"
    )
    return 0


def _delete(database_url: str, older_than: str, age: timedelta) -> int:
    async def delete() -> list[str]:
        engine = create_async_engine(database_url)
        try:
            return await delete_batches(engine, age)
        finally:
            await engine.dispose()

    gone = asyncio.run(delete())
    print(f"deleted {len(gone)} batches that ended more than {older_than} ago: {', '.join(gone)}")
    return 0
