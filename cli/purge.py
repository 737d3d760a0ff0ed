"""`cofi purge --older-than AGE`: empty the call content the tracker's tables keep.

Nulls `processing_logs.input_payload`/`output_payload` of attempts that started before now -
AGE and `deadLetters.valueB64` of letters logged before it (services/tracker/retention.py);
the tracker does the same periodically when `PAYLOAD_RETENTION_DAYS` is set.
"""

import asyncio
import sys

from sqlalchemy.ext.asyncio import create_async_engine

from services.tracker.retention import Purged, parse_age, purge_payloads


def run(database_url: str, older_than: str) -> int:
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

    purged = asyncio.run(purge())
    print(
        f"purged content older than {older_than}: payloads of {purged.attempts} attempts, "
        f"raw bytes of {purged.dead_letters} dead letters"
    )
    return 0
