"""The tracker under MariaDB's strict SQL mode (STRICT_TRANS_TABLES, a stock MariaDB's
default, set here on the session so the test holds whatever the server's default): values
over a column's bound are written with a mark saying how long they were, never cut bare,
and never a write the database refuses (a poll that fails forever)."""

from datetime import UTC, datetime

from sqlalchemy import select, text
from sqlalchemy.engine import make_url

from services.tracker.engine import make_engine
from services.tracker.settings import TrackerSettings
from services.tracker.tables import file_distribution
from shared.events import Attempt, BatchClosed, FileFailed, FileUploaded
from shared.settings import GpuHost
from tests.integration.test_tracker_rebuild import track_everything
from tests.tracker_scenario import HOSTS, produce

STRICT = "STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION"
# 4 bytes a character in utf8mb4: 40,000 of them are 160,000 bytes, past TEXT's 65,535.
HUGE = "\U0001f600" * 40_000


def strict_url(url: str) -> str:
    u = make_url(url).update_query_dict({"init_command": f"SET SESSION sql_mode='{STRICT}'"})
    return u.render_as_string(hide_password=False)


async def test_oversized_values_under_strict_mode_are_marked_and_the_poll_goes_on(
    mariadb_url: str, topic_prefix: str, kafka_bootstrap: str
) -> None:
    url = strict_url(mariadb_url)
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            mode = (await conn.execute(text("SELECT @@SESSION.sql_mode"))).scalar_one()
    finally:
        await engine.dispose()
    assert "STRICT_TRANS_TABLES" in mode

    host = "h" * 300  # over ip's VARCHAR(255)
    attempt = Attempt(
        number=1,
        host=host,
        ok=False,
        error=HUGE,
        error_kind="permanent",
        started_at=datetime.now(UTC),
    )
    events = [
        FileUploaded(batch_id="strict", file_name="a.wav", audio_uri="s3://audio/a.wav"),
        FileUploaded(batch_id="strict", file_name="b.wav", audio_uri="s3://audio/b.wav"),
        BatchClosed(batch_id="strict", file_count=2),
        FileFailed(
            batch_id="strict",
            file_name="a.wav",
            stage="denoise",
            host=host,
            error_kind="permanent",
            error=HUGE,
            attempts=(attempt,),
            input_event={"context": {"host": host}},
        ),
        FileFailed(
            batch_id="strict",
            file_name="b.wav",
            stage="denoise",
            host=HOSTS[0],
            error_kind="permanent",
            error="HTTP 422: undecodable audio",
            input_event={"context": {"host": HOSTS[0]}},
        ),
    ]
    settings = TrackerSettings(
        kafka_bootstrap_servers=kafka_bootstrap,
        topic_prefix=topic_prefix,
        gpu_hosts=[GpuHost(ip=h) for h in HOSTS],
        database_url=url,
        log_json=False,
    )
    produced = await produce(kafka_bootstrap, settings.topics, events, poison=False)
    await track_everything(settings, produced)

    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            files = {
                r.file: r.failedError
                for r in await conn.execute(
                    select(file_distribution.c.file, file_distribution.c.failedError)
                )
            }
    finally:
        await engine.dispose()
    assert files["b.wav"] == "HTTP 422: undecodable audio"
    assert files["a.wav"].startswith("\U0001f600")
    assert files["a.wav"].endswith("[cut: 40000 characters, the first 15954 kept]")
