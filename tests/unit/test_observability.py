"""Metrics, readiness and the probes' logic, without a broker, database or HTTP server."""

import asyncio
import logging
import platform
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.distributor.reporting import RoutingReport
from services.distributor.routing import Incoming, route_after_lid, route_upload
from services.distributor.settings import DEFAULT_RULES
from services.distributor.triage import load_rules
from services.gpu_stage.handler import GpuStageHandler
from services.gpu_stage.main import dead_for
from shared.breaker import BreakerPolicy, CircuitBreaker
from shared.events import (
    Attempt,
    FileContext,
    FileStageCompleted,
    FileUploaded,
    encode,
)
from shared.metrics import COMMIT_ENV, Metrics, StageMetrics, build_info
from shared.observability.consumers import ConsumerProbe, consumer_lag
from shared.observability.health import Heartbeat, Readiness
from shared.observability.sink import observed_sink
from shared.retry import CallOutcome, RetryPolicy
from shared.settings import GpuHost
from shared.topics import Topics

TOPICS = Topics("c")


def samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = metrics.exposition().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((name, frozenset(labels.items())))


def _attempt(number: int, ok: bool, ms: float, kind: str | None = None) -> Attempt:
    return Attempt(
        number=number,
        ok=ok,
        error_kind=kind,
        started_at=datetime.now(UTC),
        duration_ms=ms,
    )


def test_attempts_give_latency_per_outcome_and_count_the_retries() -> None:
    metrics = Metrics()
    stage = metrics.stage("denoise", "127.0.0.2")
    retried = [
        _attempt(1, False, 40, "transient"),
        _attempt(2, False, 20, "transient"),
        _attempt(3, True, 10),
    ]
    stage.attempts(retried)
    stage.attempts([_attempt(1, False, 5, "permanent")])
    labels = {"stage": "denoise", "host": "127.0.0.2"}
    assert value(metrics, "cofi_retries_total", **labels) == 2
    count = "cofi_model_request_seconds_count"
    assert value(metrics, count, **labels, outcome="transient") == 2
    assert value(metrics, count, **labels, outcome="ok") == 1
    assert value(metrics, count, **labels, outcome="permanent") == 1
    assert value(
        metrics, "cofi_model_request_seconds_sum", **labels, outcome="transient"
    ) == pytest.approx(0.060)


def test_files_dead_letters_and_in_flight_carry_stage_and_host() -> None:
    metrics = Metrics()
    stage = metrics.stage("llm1", "127.0.0.1:8000")
    held = [1, 2, 3]
    stage.count_in_flight(lambda: len(held))
    stage.file_finished("done")
    stage.file_finished("done")
    stage.file_finished("failed")
    stage.dead_lettered("undecodable")
    labels = {"stage": "llm1", "host": "127.0.0.1:8000"}
    assert value(metrics, "cofi_files_total", **labels, outcome="done") == 2
    assert value(metrics, "cofi_files_total", **labels, outcome="failed") == 1
    assert value(metrics, "cofi_dead_letters_total", **labels, reason="undecodable") == 1
    assert value(metrics, "cofi_in_flight", **labels) == 3
    held.pop()
    assert value(metrics, "cofi_in_flight", **labels) == 2  # read when scraped


def test_two_services_in_one_process_do_not_share_counters() -> None:
    first, second = Metrics(), Metrics()
    first.stage("ivr", "h").file_finished("done")
    assert value(first, "cofi_files_total", stage="ivr", host="h", outcome="done") == 1
    assert value(second, "cofi_files_total", stage="ivr", host="h", outcome="done") is None


def test_the_base_views_record_nothing_and_need_no_registry() -> None:
    stage = StageMetrics()
    stage.file_finished("done")
    stage.attempts([_attempt(1, True, 1)])
    stage.dead_lettered("handler_error")
    stage.count_in_flight(lambda: 1)


def test_heartbeat_is_a_problem_until_answered_after_an_error_and_when_stale() -> None:
    now = [100.0]
    beat = Heartbeat("database", max_age_s=15, clock=lambda: now[0])
    assert beat.problem() == "database: no answer yet"
    beat.answered()
    assert beat.problem() is None
    beat.failed("OperationalError: connection refused")
    assert beat.problem() == "database: OperationalError: connection refused"
    beat.answered()
    now[0] += 16
    assert beat.problem() == "database: no answer for 16s"


def test_readiness_lists_every_failing_check_by_name() -> None:
    readiness = Readiness()
    readiness.add("broker", lambda: None)
    readiness.add("database", lambda: "database: no answer yet")
    assert readiness.problems() == {"database": "database: no answer yet"}
    with pytest.raises(ValueError, match="already registered"):
        readiness.add("broker", lambda: None)


def test_lag_is_highwater_minus_position_and_unknown_without_a_position() -> None:
    assert consumer_lag(120, 100) == 20
    assert consumer_lag(100, 100) == 0
    assert consumer_lag(100, None) is None
    assert consumer_lag(None, 5) is None


class FakeView:
    def __init__(self) -> None:
        self.held: set[tuple[str, int]] = set()
        self.ends: dict[tuple[str, int], int] = {}
        self.positions: dict[tuple[str, int], int | None] = {}
        self.pings = 0

    def assignment(self) -> set[Any]:
        return set(self.held)

    async def end_offsets(self, partitions: list[Any]) -> Mapping[Any, int]:
        return {p: self.ends[p] for p in partitions}

    async def position(self, partition: Any) -> int | None:
        return self.positions[partition]

    async def ping(self) -> None:
        self.pings += 1


async def test_probe_reports_lag_of_held_partitions_and_forgets_revoked_ones() -> None:
    metrics = Metrics()
    view = FakeView()
    probe = ConsumerProbe(view, metrics.lag())
    view.held = {("c.denoise.h", 0), ("c.denoise.h", 1)}
    view.ends = {("c.denoise.h", 0): 10, ("c.denoise.h", 1): 7}
    view.positions = {("c.denoise.h", 0): 4, ("c.denoise.h", 1): None}
    await probe.refresh()
    assert value(metrics, "cofi_consumer_lag", topic="c.denoise.h", partition="0") == 6
    assert value(metrics, "cofi_consumer_lag", topic="c.denoise.h", partition="1") is None
    view.held = {("c.denoise.h", 1)}
    view.positions[("c.denoise.h", 1)] = 7
    await probe.refresh()
    assert value(metrics, "cofi_consumer_lag", topic="c.denoise.h", partition="0") is None
    assert value(metrics, "cofi_consumer_lag", topic="c.denoise.h", partition="1") == 0
    view.held = set()
    await probe.refresh()
    assert view.pings == 1  # nothing held: the broker is asked for metadata instead
    assert value(metrics, "cofi_consumer_lag", topic="c.denoise.h", partition="1") is None


async def test_observed_sink_times_writes_counts_records_and_tells_the_database_heartbeat() -> None:
    metrics = Metrics()
    database = Heartbeat("database", max_age_s=60)
    failing = [True]

    async def apply(records: Sequence[int]) -> None:
        if failing[0]:
            raise ConnectionError("MySQL server has gone away")

    sink = observed_sink(apply, metrics.sink(), database)
    with pytest.raises(ConnectionError):
        await sink([1, 2, 3])
    assert database.problem() == (
        "database: last write failed: ConnectionError: MySQL server has gone away"
    )
    failing[0] = False
    await sink([1, 2, 3])
    await sink([4])
    assert database.problem() is None
    assert value(metrics, "cofi_tracker_write_seconds_count", outcome="error") == 1
    assert value(metrics, "cofi_tracker_write_seconds_count", outcome="ok") == 2
    assert value(metrics, "cofi_tracker_write_records_sum") == 4  # failed writes not counted
    assert value(metrics, "cofi_tracker_write_records_count") == 2


def test_distributor_counts_files_per_routed_host_and_logs_failures_with_file_fields(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = Metrics()
    hosts = [GpuHost(ip="127.0.0.2"), GpuHost(ip="127.0.0.3", down=True)]
    report = RoutingReport("distribute", TOPICS, ["127.0.0.2", "127.0.0.3"], metrics)
    upload = FileUploaded(batch_id="b", file_name="a.wav", audio_uri="file:///a.wav")
    good = Incoming("c.uploads", 0, 1, b"b", encode(upload))
    report.routed(good, route_upload(good, hosts, TOPICS))
    poison = Incoming("c.uploads", 0, 2, b"b", b"\xff not json")
    report.routed(poison, route_upload(poison, hosts, TOPICS))
    # A file that fails for its own content (an audio URI outside the allowlist).
    outside = upload.model_copy(update={"audio_uri": "ftp://elsewhere/a.wav"})
    bad = Incoming("c.uploads", 0, 3, b"b", encode(outside))
    with caplog.at_level(logging.WARNING):
        report.routed(bad, route_upload(bad, hosts, TOPICS))
    labels = {"stage": "distribute"}
    assert value(metrics, "cofi_files_total", **labels, host="127.0.0.2", outcome="done") == 1
    assert value(metrics, "cofi_files_total", **labels, host="", outcome="failed") == 1
    assert value(metrics, "cofi_dead_letters_total", **labels, host="", reason="undecodable") == 1
    [line] = [r for r in caplog.records if "distribute failed" in r.getMessage()]
    assert (line.batch, line.file, line.stage, line.attempt) == ("b", "a.wav", "distribute", 1)  # type: ignore[attr-defined]


def test_triage_skips_are_counted_on_the_files_host() -> None:
    metrics = Metrics()
    report = RoutingReport("triage", TOPICS, ["127.0.0.2"], metrics)
    after_lid = FileStageCompleted(
        batch_id="b",
        file_name="ivr.wav",
        stage="lid",
        context=FileContext(
            audio_uri="file:///u.wav", host="127.0.0.2", is_ivr=True, language="en"
        ),
    )
    message = Incoming("c.triage", 0, 0, b"b/ivr.wav", encode(after_lid))
    report.routed(message, route_after_lid(message, load_rules(DEFAULT_RULES), TOPICS))
    skipped = value(
        metrics, "cofi_files_total", stage="triage", host="127.0.0.2", outcome="skipped"
    )
    assert skipped == 1


async def test_gpu_stage_failure_logs_every_file_field_with_the_attempts_own_number(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def refuse(request: dict[str, Any], timeout_s: float) -> CallOutcome:
        return CallOutcome(error_kind="permanent", error="HTTP 422: undecodable audio")

    metrics = Metrics()
    handler = GpuStageHandler(
        stage="ivr",
        host="127.0.0.2",
        topics=TOPICS,
        policy=RetryPolicy(max_attempts=1),
        breaker=CircuitBreaker("ivr", "127.0.0.2"),
        call_model=refuse,
        metrics=metrics.stage("ivr", "127.0.0.2"),
    )
    # A file retried by `cofi retry`: its attempts continue from 4.
    event = FileStageCompleted(
        batch_id="b",
        file_name="bad.wav",
        stage="denoise",
        context=FileContext(audio_uri="file:///u.wav", host="127.0.0.2"),
        next_attempt=4,
    )
    with caplog.at_level(logging.WARNING):
        await handler(event)
    [line] = [r for r in caplog.records if "ivr failed" in r.getMessage()]
    fields = {k: getattr(line, k) for k in ("batch", "file", "stage", "host", "attempt")}
    assert fields == {
        "batch": "b",
        "file": "bad.wav",
        "stage": "ivr",
        "host": "127.0.0.2",
        "attempt": 4,
    }
    labels = {"stage": "ivr", "host": "127.0.0.2"}
    assert value(metrics, "cofi_files_total", **labels, outcome="failed") == 1
    assert value(metrics, "cofi_model_request_seconds_count", **labels, outcome="permanent") == 1


async def test_probe_refresh_does_not_wait_forever_on_a_position(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    metrics = Metrics()
    view = FakeView()
    view.held = {("t", 0)}
    view.ends = {("t", 0): 5}

    async def never(partition: Any) -> int | None:
        await asyncio.Event().wait()
        return None

    monkeypatch.setattr(view, "position", never)
    await asyncio.wait_for(ConsumerProbe(view, metrics.lag()).refresh(), 10)
    assert value(metrics, "cofi_consumer_lag", topic="t", partition="0") is None


def test_json_log_lines_are_utc_and_keep_a_consumers_own_service_name(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import json

    from shared.logging import configure_logging, fields

    configure_logging("INFO", json_lines=True, service="gpu_stage")
    log = logging.getLogger("t")
    log.info("one", extra=fields(service="gpu_stage:denoise@127.0.0.2", batch="b", file="f"))
    log.info("two")
    first, second = (json.loads(line) for line in capsys.readouterr().err.splitlines()[-2:])
    assert first["service"] == "gpu_stage:denoise@127.0.0.2"
    assert (first["batch"], first["file"]) == ("b", "f")
    assert second["service"] == "gpu_stage"
    logged = datetime.strptime(first["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - logged).total_seconds()) < 60


def test_every_registry_exports_the_process_collectors_and_the_build_info() -> None:
    metrics = Metrics()
    names = {name for name, _ in samples(metrics)}
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes", "python_info"} <= names
    assert any(name.startswith("python_gc_") for name in names)
    ((labels, one),) = [
        (ls, v) for (n, ls), v in samples(metrics).items() if n == "cofi_build_info"
    ]
    found = dict(labels)
    assert one == 1
    assert found["version"] == build_info()["version"] != ""
    assert found["python"] == platform.python_version()
    assert found["commit"]


def test_the_build_info_commit_comes_from_the_image_when_it_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    build_info.cache_clear()
    monkeypatch.setenv(COMMIT_ENV, "abc123")
    try:
        assert build_info()["commit"] == "abc123"
        assert value(Metrics(), "cofi_build_info", **build_info()) == 1
    finally:
        build_info.cache_clear()


async def test_a_dead_gpu_host_reads_1_when_scraped_and_0_again_once_reached() -> None:
    now = [0.0]
    breaker = CircuitBreaker(
        "denoise", "127.0.0.2", BreakerPolicy(unreachable_after=1), clock=lambda: now[0]
    )
    metrics = Metrics()
    metrics.watch_gpu_host("127.0.0.2", lambda: dead_for([breaker], 60))
    assert value(metrics, "cofi_gpu_host_dead", host="127.0.0.2") == 0
    breaker.observe(CallOutcome(error_kind="transient", error="refused", unreachable=True), "f")
    now[0] = 61  # open past the failover deadline: dead, its files fail over
    assert value(metrics, "cofi_gpu_host_dead", host="127.0.0.2") == 1
    breaker.observe(CallOutcome(response={}), "f")
    assert value(metrics, "cofi_gpu_host_dead", host="127.0.0.2") == 0
