"""Each service's `/metrics`, `/healthz` and `/readyz`, scraped over HTTP while it runs.

Services run in-process (stages, tracker) or as a process (the faust distributor) against
the real broker, the simulator and MariaDB; the counters are checked against the events the
services published, so a metric that counts wrongly fails here.
"""

import asyncio
import contextlib
import json
import time
from pathlib import Path
from urllib.parse import urlsplit

from aiokafka.structs import ConsumerRecord

from cli.processes import ProcessGroup, service_argv
from services.gpu_stage.main import run as run_gpu_stage
from services.gpu_stage.settings import GpuStageSettings
from services.llm_stage.main import run as run_llm_stage
from services.llm_stage.settings import LlmStageSettings
from services.tracker.main import run as run_tracker
from services.tracker.settings import TrackerSettings
from shared.events import (
    Attempt,
    BatchClosed,
    FileContext,
    FileFailed,
    FileStageCompleted,
    FileUploaded,
    any_event,
    encode,
    file_key,
)
from shared.kafka import make_consumer, make_producer
from shared.observability.consumers import AiokafkaView
from shared.observability.service import Observability
from shared.provisioning import create_pipeline_topics
from shared.settings import CommonSettings
from shared.stages import GPU_STAGES, LLM_STAGES
from simulator.testing import running_simulator, write_corrupt_files, write_wav
from tests.kafka_helpers import read_topic
from tests.metrics_helpers import Scrape, free_metrics_port, get, scrape_until, status_until
from tests.stage_helpers import produce_events, running, stage_input

HOST = "127.0.0.2"
REFRESH_S = 0.5


async def _produce_raw(bootstrap: str, messages: list[tuple[str, bytes, bytes]]) -> None:
    producer = make_producer(bootstrap, "test")
    await producer.start()
    try:
        acks = [await producer.send(t, value=v, key=k) for t, k, v in messages]
        await asyncio.gather(*acks)
    finally:
        await producer.stop()


def _attempts_of(records: list[ConsumerRecord[bytes, bytes]]) -> list[Attempt]:
    events = [any_event.validate_json(r.value) for r in records]
    return [a for e in events if isinstance(e, FileStageCompleted | FileFailed) for a in e.attempts]


async def test_gpu_stage_counts_files_requests_retries_dead_letters_in_flight_and_lag(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    port = free_metrics_port()
    url = f"http://127.0.0.1:{port}"
    async with running_simulator(latency_scale=1.0, error_rate=0.3, seed=3) as sim:
        await sim.set_faults(host=HOST, stage="denoise", latency_s=0.3)
        ports = {f"{s}_port": int(urlsplit(sim.gpu_url(HOST, s)).port or 0) for s in GPU_STAGES}
        settings = GpuStageSettings(
            kafka_bootstrap_servers=kafka_bootstrap,
            topic_prefix=topic_prefix,
            gpu_hosts=f"{HOST}:4",
            gpu_retry_base_delay_s=0.05,
            gpu_retry_max_delay_s=0.2,
            gpu_retry_max_attempts=10,
            gpu_max_in_flight=1,  # one file at a time: a backlog that shows as lag
            metrics_port=port,
            metrics_refresh_s=REFRESH_S,
            **ports,  # type: ignore[arg-type]
        )
        await create_pipeline_topics(settings)
        good = [write_wav(tmp_path / f"call_{i}.wav", seconds=0.2) for i in range(10)]
        corrupt = write_corrupt_files(tmp_path)["random"]
        denoise = settings.topics.gpu("denoise", HOST)
        await produce_events(
            kafka_bootstrap, denoise, [stage_input("b", p, HOST) for p in [*good, corrupt]]
        )
        await _produce_raw(kafka_bootstrap, [(denoise, b"b/poison", b"\x00 not an event")])
        assert await get(url, "/healthz") is None  # nothing is served before the stage runs

        async with running(lambda stop: run_gpu_stage(settings, ["denoise"], [HOST], stop)):
            lag = await scrape_until(
                url,
                lambda s: s.total("cofi_consumer_lag", topic=denoise) > 0,
                what="a backlog on the denoise topic",
            )
            assert {d["partition"] for d in lag.series("cofi_consumer_lag")} <= {
                "0",
                "1",
                "2",
                "3",
            }
            passed = await read_topic(
                kafka_bootstrap, [settings.topics.gpu("ivr", HOST)], lambda rs: len(rs) >= 10
            )
            failed = await read_topic(
                kafka_bootstrap, [settings.topics.failed], lambda rs: len(rs) >= 2
            )
            labels = {"stage": "denoise", "host": HOST}
            final = await scrape_until(
                url,
                lambda s: (
                    s.get("cofi_files_total", **labels, outcome="done") == 10
                    and s.total("cofi_consumer_lag", topic=denoise) == 0
                    and len(s.series("cofi_consumer_lag")) == 4
                    and s.get("cofi_in_flight", **labels) == 0
                ),
                what="every file counted, no lag and nothing in flight",
            )
            alive = await get(url, "/healthz")
            ready = await status_until(url, "/readyz", 200)

    assert alive is not None and alive.status_code == 200
    assert ready.json() == {"ready": True}
    assert final.get("cofi_files_total", **labels, outcome="failed") == 1
    assert final.get("cofi_dead_letters_total", **labels, reason="undecodable") == 1
    kinds = [type(any_event.validate_json(r.value)) for r in failed]
    assert sorted(k.__name__ for k in kinds) == ["DeadLetter", "FileFailed"]
    # The histograms and the retry counter agree with the attempts the events carry.
    attempts = _attempts_of(passed) + _attempts_of(failed)
    by_outcome = {"ok": 0, "transient": 0, "permanent": 0}
    for a in attempts:
        by_outcome["ok" if a.ok else (a.error_kind or "transient")] += 1
    for outcome, count in by_outcome.items():
        seen = final.get("cofi_model_request_seconds_count", **labels, outcome=outcome)
        assert (seen or 0) == count, outcome
    assert by_outcome["transient"] > 0, "an error rate of 0.3 must have failed some calls"
    assert final.get("cofi_retries_total", **labels) == len(attempts) - 11
    assert final.get("cofi_model_request_seconds_bucket", **labels, outcome="ok", le="0.25") == 0
    assert final.get("cofi_model_request_seconds_bucket", **labels, outcome="ok", le="+Inf") == 10
    assert final.get("cofi_gpu_host_dead", host=HOST) == 0  # reached: 503s are answers
    assert_runtime_and_build_info(final)


def assert_runtime_and_build_info(scrape: Scrape) -> None:
    """The default collectors and cofi_build_info, as every service's endpoint serves them."""
    assert (scrape.get("process_cpu_seconds_total") or 0) > 0
    assert (scrape.get("process_resident_memory_bytes") or 0) > 0
    assert scrape.series("python_info")
    (build,) = scrape.series("cofi_build_info")
    assert (
        set(build) == {"version", "commit", "python"}
        and scrape.get("cofi_build_info", **build) == 1
    )


async def test_llm_stages_report_per_stage_with_the_llm_api_as_host(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    port = free_metrics_port()
    url = f"http://127.0.0.1:{port}"
    async with running_simulator() as sim:
        api = sim.llm_url.rsplit("/chat", 1)[0]
        settings = LlmStageSettings(
            kafka_bootstrap_servers=kafka_bootstrap,
            topic_prefix=topic_prefix,
            llm_api_url=api,
            metrics_port=port,
            metrics_refresh_s=REFRESH_S,
        )
        await create_pipeline_topics(settings)
        events = [
            stage_input("b", tmp_path / f"c{i}.wav", HOST, stage="stt", transcript="a bill")
            for i in range(3)
        ]
        await produce_events(kafka_bootstrap, settings.topics.llm("llm1"), events)
        api_host = urlsplit(api).netloc
        async with running(lambda stop: run_llm_stage(settings, list(LLM_STAGES), stop)):
            await read_topic(kafka_bootstrap, [settings.topics.done], lambda rs: len(rs) >= 3)
            final = await scrape_until(
                url,
                lambda s: all(
                    s.get("cofi_files_total", stage=st, host=api_host, outcome="done") == 3
                    for st in LLM_STAGES
                ),
                what="three files done by each LLM stage",
            )
            ready = await status_until(url, "/readyz", 200)
    for stage in LLM_STAGES:
        labels = {"stage": stage, "host": api_host}
        assert final.get("cofi_model_request_seconds_count", **labels, outcome="ok") == 3
        assert final.get("cofi_in_flight", **labels) == 0
    assert ready.json() == {"ready": True}


async def test_tracker_reports_write_latency_batch_size_and_is_ready_with_its_database(
    kafka_bootstrap: str, topic_prefix: str, mariadb_url: str
) -> None:
    port = free_metrics_port()
    url = f"http://127.0.0.1:{port}"
    settings = TrackerSettings(
        kafka_bootstrap_servers=kafka_bootstrap,
        topic_prefix=topic_prefix,
        database_url=mariadb_url,
        metrics_port=port,
        metrics_refresh_s=REFRESH_S,
    )
    await create_pipeline_topics(settings)
    uploads = [
        FileUploaded(batch_id="b", file_name=f"f{i}.wav", audio_uri=f"file:///f{i}.wav")
        for i in range(5)
    ]
    messages = [(settings.topics.uploads, b"b", encode(e)) for e in uploads]
    messages.append(
        (settings.topics.uploads, b"b", encode(BatchClosed(batch_id="b", file_count=5)))
    )
    await _produce_raw(kafka_bootstrap, messages)
    async with running(lambda stop: run_tracker(settings, stop)):
        final = await scrape_until(
            url,
            lambda s: (
                s.get("cofi_tracker_write_records_sum") == 6
                and s.total("cofi_consumer_lag", topic=settings.topics.uploads) == 0
                and len(s.series("cofi_consumer_lag")) > 0
                and s.get("cofi_batches_open") == 1  # closed, but no file finished yet
            ),
            what="six records written, no lag, one open batch",
        )
        ready = await status_until(url, "/readyz", 200)
    assert final.get("cofi_tracker_write_seconds_count", outcome="ok") == final.get(
        "cofi_tracker_write_records_count"
    )
    assert (final.get("cofi_tracker_write_seconds_count", outcome="ok") or 0) >= 1
    assert not final.get("cofi_tracker_write_seconds_count", outcome="error")
    assert ready.json() == {"ready": True}
    # When batch b last moved: its latest event's time (the records' broker timestamps).
    moved = final.get("cofi_batch_last_progress_timestamp_seconds", batch="b")
    assert moved is not None and abs(moved - time.time()) < 300
    assert_runtime_and_build_info(final)


async def test_tracker_is_alive_but_not_ready_while_its_database_does_not_answer(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    port = free_metrics_port()
    url = f"http://127.0.0.1:{port}"
    closed = free_metrics_port()  # nothing listens there: connections are refused
    settings = TrackerSettings(
        kafka_bootstrap_servers=kafka_bootstrap,
        topic_prefix=topic_prefix,
        database_url=f"mysql+asyncmy://cofi:cofi@127.0.0.1:{closed}/cofi",
        database_wait_s=300,
        metrics_port=port,
        metrics_refresh_s=REFRESH_S,
    )
    task = asyncio.create_task(run_tracker(settings, asyncio.Event()))
    try:
        alive = await status_until(url, "/healthz", 200)
        not_ready = await status_until(url, "/readyz", 503)
        # Stays so: the first answer is not a fluke of startup.
        await scrape_until(url, lambda s: True)
        again = await get(url, "/readyz")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert alive.json() == {"alive": True}
    body = not_ready.json()
    assert body["ready"] is False
    assert "database" in body["reasons"], body
    assert again is not None and again.status_code == 503
    assert "database" in again.json()["reasons"]
    assert await get(url, "/healthz") is None  # a stopped service serves nothing


async def test_a_consumer_is_not_ready_before_it_reaches_the_broker_and_ready_after(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    port = free_metrics_port()
    url = f"http://127.0.0.1:{port}"
    settings = CommonSettings(
        kafka_bootstrap_servers=kafka_bootstrap,
        topic_prefix=topic_prefix,
        metrics_port=port,
        metrics_refresh_s=REFRESH_S,
    )
    await create_pipeline_topics(settings)
    consumer = make_consumer(kafka_bootstrap, f"{topic_prefix}-probe", "probe")
    consumer.subscribe([settings.topics.done])
    observability = Observability(settings, "probe")
    observability.watch_consumer("probe", AiokafkaView(consumer))
    async with observability.serving():
        not_ready = await status_until(url, "/readyz", 503)
        await consumer.start()
        try:
            ready = await status_until(url, "/readyz", 200)
            lag = await scrape_until(
                url, lambda s: len(s.series("cofi_consumer_lag")) == settings.stage_partitions
            )
        finally:
            await consumer.stop()
    assert "broker (probe)" in not_ready.json()["reasons"]
    assert ready.json() == {"ready": True}
    assert lag.total("cofi_consumer_lag", topic=settings.topics.done) == 0


async def test_distributor_process_serves_routing_metrics_and_readiness(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    port = free_metrics_port()
    url = f"http://127.0.0.1:{port}"
    hosts = "127.0.0.2:4,127.0.0.3:4"
    settings = CommonSettings(
        kafka_bootstrap_servers=kafka_bootstrap,
        topic_prefix=topic_prefix,
        gpu_hosts=hosts,
    )
    await create_pipeline_topics(settings)
    topics = settings.topics
    uploads = [
        (
            topics.uploads,
            b"b",
            encode(FileUploaded(batch_id="b", file_name=f"f{i}", audio_uri=f"file:///f{i}")),
        )
        for i in range(4)
    ]
    poison = (topics.uploads, b"b", b"{not json")
    ivr_call = FileStageCompleted(
        batch_id="b",
        file_name="ivr.wav",
        stage="lid",
        context=FileContext(audio_uri="u", host="127.0.0.3", is_ivr=True, language="en"),
    )
    speech = ivr_call.model_copy(
        update={
            "file_name": "speech.wav",
            "context": FileContext(
                audio_uri="u", host="127.0.0.2", is_ivr=False, language="en", duration_s=30
            ),
        }
    )
    after_lid = [(topics.triage, file_key("b", e.file_name), encode(e)) for e in (ivr_call, speech)]
    await _produce_raw(kafka_bootstrap, [*uploads, poison, *after_lid])

    group = ProcessGroup(
        log_dir=tmp_path,
        env={
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "TOPIC_PREFIX": topic_prefix,
            "GPU_HOSTS": hosts,
            "METRICS_PORT": str(port),
            "METRICS_REFRESH_S": "0.5",
            "LOG_JSON": "true",
            "F_DATADIR": str(tmp_path / "distributor-data"),
        },
    )
    try:
        group.start("distributor", service_argv("distributor"))
        final: Scrape = await scrape_until(
            url,
            lambda s: (
                s.total("cofi_files_total", stage="distribute", outcome="done") == 4
                and s.total("cofi_files_total", stage="triage") == 2
                and s.total("cofi_dead_letters_total", stage="distribute") == 1
            ),
            timeout_s=120,
            what="four files distributed, two triaged, one dead letter",
        )
        ready = await status_until(url, "/readyz", 200, timeout_s=60)
        alive = await get(url, "/healthz")
    finally:
        await asyncio.to_thread(group.stop_all)
    distributed = {
        d["host"]: final.get("cofi_files_total", **d)
        for d in final.series("cofi_files_total")
        if d["stage"] == "distribute"
    }
    assert set(distributed) <= {"127.0.0.2", "127.0.0.3"}
    assert final.get("cofi_files_total", stage="triage", host="127.0.0.3", outcome="skipped") == 1
    assert final.get("cofi_files_total", stage="triage", host="127.0.0.2", outcome="done") == 1
    assert ready.json() == {"ready": True}
    assert alive is not None and alive.status_code == 200
    assert_runtime_and_build_info(final)  # from a real process this time
    log_lines = [
        json.loads(line)
        for line in (tmp_path / "distributor.log").read_text().splitlines()
        if line.startswith("{")
    ]
    [poisoned] = [e for e in log_lines if "poison message" in e["msg"]]
    assert (poisoned["stage"], poisoned["topic"]) == ("distribute", topics.uploads)
    assert not [e for e in log_lines if e["level"] == "error"], log_lines
