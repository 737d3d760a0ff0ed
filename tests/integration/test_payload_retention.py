"""Call content in the tracker's tables, against MariaDB: payloads past the retention are
purged (by the function, `cofi purge` and the tracker's periodic task), and
`PAYLOAD_REDACT_FIELDS` keeps transcripts out of processing_logs altogether."""

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.tracker.engine import make_engine
from services.tracker.fold import RecordMeta, TrackedEvent, Undecodable
from services.tracker.migrate import migrate
from services.tracker.retention import purge_payloads, purge_periodically
from services.tracker.service import Tracker, TrackerOptions
from services.tracker.tables import dead_letters, processing_logs
from shared.events import (
    Attempt,
    FileContext,
    FileFailed,
    FileStageCompleted,
    FileUploaded,
)
from tests.tracker_scenario import wait_until

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime.now(UTC).replace(microsecond=0)
OLD = NOW - timedelta(days=40)
RECENT = NOW - timedelta(hours=2)
SECRET = "my card number is 4111 1111 1111 1111"


def _file_events(name: str, at: datetime) -> list[TrackedEvent]:
    context = FileContext(audio_uri=f"file:///a/{name}", host="h", language="en")
    stt = Attempt(
        number=1,
        host="h",
        ok=True,
        started_at=at,
        request={"audio_uri": f"file:///a/{name}", "inputs": {"language": "en"}},
        response={"transcript": SECRET, "words": 9},
    )
    after_stt = context.model_copy(update={"transcript": SECRET})
    llm = Attempt(
        number=1,
        ok=False,
        error_kind="permanent",
        error="HTTP 400",
        started_at=at + timedelta(seconds=1),
        request={
            "messages": [{"role": "system", "content": "x"}, {"role": "user", "content": SECRET}]
        },
    )
    stt_done = FileStageCompleted(
        batch_id="b",
        file_name=name,
        stage="stt",
        context=after_stt,
        attempts=(stt,),
        completed_at=at,
    )
    return [
        FileUploaded(batch_id="b", file_name=name, audio_uri=f"file:///a/{name}", uploaded_at=at),
        stt_done,
        FileFailed(
            batch_id="b",
            file_name=name,
            stage="llm1",
            error_kind="permanent",
            error="HTTP 400",
            attempts=(llm,),
            input_event=stt_done.model_dump(mode="json"),
            failed_at=at + timedelta(seconds=1),
        ),
        Undecodable(
            RecordMeta("cofi.llm1", 0, int(at.timestamp()), int(at.timestamp() * 1000)),
            SECRET.encode(),
            "undecodable: not json",
        ),
    ]


EVENTS = _file_events("old.wav", OLD) + _file_events("new.wav", RECENT)


async def _payloads(engine: AsyncEngine) -> dict[tuple[str, str], tuple[str | None, str | None]]:
    pl = processing_logs.c
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(pl.call_id, pl.stage_name, pl.input_payload, pl.output_payload)
        )
        return {(r.call_id, r.stage_name): (r.input_payload, r.output_payload) for r in rows}


async def _letters(engine: AsyncEngine) -> dict[int, str | None]:
    dl = dead_letters.c
    async with engine.connect() as conn:
        rows = await conn.execute(select(dl.sourceOffset, dl.valueB64))
        return {r.sourceOffset: r.valueB64 for r in rows}


async def test_purge_empties_old_content_only_and_a_replay_does_not_bring_it_back(
    mariadb_url: str,
) -> None:
    await migrate(mariadb_url)
    engine = make_engine(mariadb_url)
    try:
        tracker = Tracker(engine, TrackerOptions(topic_prefix="cofi"))
        await tracker.apply_events(EVENTS)
        before = await _payloads(engine)
        assert all(SECRET in (i or "") + (o or "") for i, o in before.values())

        purged = await purge_payloads(engine, timedelta(days=30), chunk=1)
        assert (purged.attempts, purged.dead_letters) == (2, 1)
        after = await _payloads(engine)
        assert after[("old.wav", "stt")] == after[("old.wav", "llm1")] == (None, None)
        assert after[("new.wav", "stt")] == before[("new.wav", "stt")]
        letters = await _letters(engine)
        assert letters[int(OLD.timestamp())] is None
        assert letters[int(RECENT.timestamp())] is not None

        await tracker.apply_events(EVENTS)  # a replay of the topics
        assert await _payloads(engine) == after
        assert (await purge_payloads(engine, timedelta(days=30))).attempts == 0
    finally:
        await engine.dispose()


async def test_cofi_purge_command(mariadb_url: str) -> None:
    await migrate(mariadb_url)
    engine = make_engine(mariadb_url)
    try:
        await Tracker(engine, TrackerOptions(topic_prefix="cofi")).apply_events(EVENTS)
        env = {**os.environ, "DATABASE_URL": mariadb_url}
        cofi = [sys.executable, "-m", "cli"]
        bad = subprocess.run(
            [*cofi, "purge", "--older-than", "soon"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert bad.returncode == 2
        assert "not an age like 30d" in bad.stderr and "Traceback" not in bad.stderr
        ok = await asyncio.to_thread(
            subprocess.run,
            [*cofi, "purge", "--older-than", "1h"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert ok.returncode == 0, ok.stderr
        assert "payloads of 4 attempts, raw bytes of 2 dead letters" in ok.stdout
        assert set((await _payloads(engine)).values()) == {(None, None)}
    finally:
        await engine.dispose()


async def test_the_trackers_periodic_task_purges_until_stopped(mariadb_url: str) -> None:
    await migrate(mariadb_url)
    engine = make_engine(mariadb_url)
    stop = asyncio.Event()
    try:
        await Tracker(engine, TrackerOptions(topic_prefix="cofi")).apply_events(EVENTS)
        task = asyncio.create_task(purge_periodically(engine, timedelta(days=30), 0.2, stop))
        payloads: dict[tuple[str, str], tuple[str | None, str | None]] = {}

        async def purged() -> bool:
            payloads.update(await _payloads(engine))
            return payloads[("old.wav", "stt")] == (None, None)

        await wait_until(purged, "the old payloads purged", timeout_s=30, task=task)
        stop.set()
        await asyncio.wait_for(task, timeout=10)
        assert payloads[("new.wav", "stt")][1] is not None
    finally:
        stop.set()
        await engine.dispose()


async def test_redacted_fields_never_reach_the_table(mariadb_url: str) -> None:
    await migrate(mariadb_url)
    engine = make_engine(mariadb_url)
    try:
        options = TrackerOptions(
            topic_prefix="cofi", redact_fields=frozenset({"transcript", "messages"})
        )
        await Tracker(engine, options).apply_events(EVENTS)
        rows = await _payloads(engine)
        assert len(rows) == 4
        for inp, out in rows.values():
            assert SECRET not in (inp or "") + (out or "")
        stt_in, stt_out = rows[("new.wav", "stt")]
        assert stt_out == '{"transcript":"[redacted]","words":9}'
        assert stt_in is not None and '"language":"en"' in stt_in
        llm_in, _ = rows[("new.wav", "llm1")]
        assert llm_in == '{"messages":"[redacted]"}'
    finally:
        await engine.dispose()
