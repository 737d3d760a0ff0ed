"""A batch's signature counts as they stand before a poll (batch_status.py `FileSignature`).

They are kept in `batchStatus.fileCounts`; a batch a previous version wrote (no counts yet)
is counted once, by a GROUP BY over its files, each group read as the file it stands for.
"""

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.tracker.batch_status import BatchStatusRow
from services.tracker.file_events import decode_events
from services.tracker.poll_changes import FileChange
from services.tracker.signatures import (
    FileSignature,
    SignatureKey,
    decode_counts,
    file_signature,
    signature_key,
)
from services.tracker.tables import FLAG_COLUMNS, file_distribution


async def counts_before(
    conn: AsyncConnection, existing: Mapping[str, BatchStatusRow]
) -> dict[str, dict[SignatureKey, int]]:
    """Each batch's signature counts as its row keeps them; a batch the previous version
    wrote (no counts yet) is counted once, by a GROUP BY over its files."""
    counts = {
        b: decode_counts(row.file_counts)
        for b, row in existing.items()
        if row.file_counts is not None
    }
    uncounted = sorted(b for b in existing if b not in counts)
    if uncounted:
        grouped = await _signatures(conn, uncounted)
        for b in uncounted:
            counts[b] = {}
            for sig in grouped.get(b, []):
                key = signature_key(sig)
                counts[b][key] = counts[b].get(key, 0) + sig.count
    return counts


async def _signatures(
    conn: AsyncConnection, batch_ids: list[str]
) -> dict[str, list[FileSignature]]:
    t = file_distribution
    keys = [
        t.c.batchId,
        *(t.c[name] for name in FLAG_COLUMNS),
        t.c.ip.is_not(None),
        t.c.triageRoute,
        t.c.terminalState,
        t.c.failedStage,
        t.c.appliedEvents,
    ]
    query = (
        select(*keys, func.count(), func.max(t.c.finishedAt))
        .where(t.c.batchId.in_(batch_ids))
        .group_by(*keys)
    )
    result: dict[str, list[FileSignature]] = {}
    for row in await conn.execute(query):
        values: tuple[Any, ...] = tuple(row)
        batch_id, marks = values[0], values[1 : 1 + len(FLAG_COLUMNS)]
        assigned, route, terminal, failed_stage, applied, count, finished_at = values[-7:]
        flags = frozenset(f for f, mark in zip(FLAG_COLUMNS, marks, strict=True) if mark)
        one = file_signature(
            FileChange(
                batch_id,
                "",
                finished_at,
                finished_at,
                ip="" if assigned else None,
                flags=flags,
                triage_route=route,
                terminal_state=terminal,
                failed_stage=failed_stage,
                applied_events=decode_events(applied),
            )
        )
        result.setdefault(batch_id, []).append(
            replace(one, count=int(count), finished_at=finished_at)
        )
    return result
