"""Every Prometheus metric cofi exposes, defined once, with labels in the pipeline's words.

A service process builds one `Metrics` (its own registry, nothing global), so two services
running in one test process never share a counter. Handlers and runners are given the narrow
views below, bound to their stage and host; the views' base classes record nothing, so code
built without metrics (unit tests, tools) needs no registry.
"""

import contextlib
import functools
import os
import platform
import subprocess
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Literal

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from shared.events import Attempt

# "reassigned": a GPU stage handed the file back for another host (failover, drain).
FileOutcome = Literal["done", "failed", "skipped", "cancelled", "reassigned"]
DeadLetterReason = Literal["undecodable", "handler_error", "publish_refused"]

# Model calls take milliseconds (simulator, LLM cache hits) to minutes (STT of a long call).
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
WRITE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# A tracker poll holds up to TRACKER_MAX_BATCH records (default 2000).
BATCH_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2000, 5000, 10000)

EXPOSITION_CONTENT_TYPE = CONTENT_TYPE_LATEST

# The image sets it (Dockerfile, build argument COFI_COMMIT); a git checkout is asked instead.
COMMIT_ENV = "COFI_COMMIT"


@functools.cache
def build_info() -> dict[str, str]:
    """What runs: cofi's version, the commit it was built from (or "unknown"), the Python."""
    try:
        version = metadata.version("cofi")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return {"version": version, "commit": _commit(), "python": platform.python_version()}


def _commit() -> str:
    if commit := os.environ.get(COMMIT_ENV, "").strip():
        return commit
    try:
        found = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=2,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return found.stdout.strip() or "unknown"


class StageMetrics:
    """What a stage reports about the files it handles. This base class records nothing."""

    def file_finished(self, outcome: FileOutcome) -> None:
        """The stage decided a file: it goes on (done), failed, was skipped or cancelled."""

    def attempts(self, attempts: Sequence[Attempt]) -> None:
        """Every call made for one file in one handling: its latency, and the retries."""

    def dead_lettered(self, reason: DeadLetterReason) -> None:
        """A message the stage could not handle went to the dead letters as raw bytes."""

    def count_in_flight(self, count: Callable[[], int]) -> None:
        """Read the number of records in flight whenever the metrics are scraped."""

    def circuit(self, reason: str | None) -> None:
        """The stage's circuit opened for `reason` (auth, unreachable, ...) or closed (None)."""


class SinkMetrics:
    """What the tracker reports about its writes. This base class records nothing."""

    def written(self, records: int, seconds: float, ok: bool) -> None:
        """One poll's records applied in one database transaction (or the attempt failed)."""


class PublishMetrics:
    """What a service's publisher reports. This base class records nothing."""

    def blocked(self, is_blocked: bool) -> None:
        pass

    def producer_replaced(self) -> None:
        pass


class LagMetrics:
    """Consumer lag per topic partition. This base class records nothing."""

    def set(self, topic: str, partition: int, lag: int) -> None:
        """Records the partition holds beyond the consumer's position."""

    def forget(self, topic: str, partition: int) -> None:
        """The partition was revoked: this process no longer reports its lag."""


class BatchMetrics:
    """The batches still open in the tracker's tables. This base class records nothing."""

    def open_batches(self, last_progress: Mapping[str, float]) -> None:
        """Every open batch and when it last moved (Unix seconds); batches not named closed."""

    def completed(self, seconds: float) -> None:
        """A batch completed, `seconds` after its first event (the batch completion SLO)."""


class Metrics:
    """One service process's metrics, in a registry of its own.

    Besides cofi's own metrics it carries the default process, platform and GC collectors
    (`process_*`, `python_info`, `python_gc_*`) and `cofi_build_info`.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        # The same collectors prometheus_client puts in its global registry, in ours.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.build_info = Gauge(
            "cofi_build_info",
            "Always 1; the labels say which cofi runs: version, commit, python",
            ["version", "commit", "python"],
            registry=r,
        )
        self.build_info.labels(**build_info()).set(1)
        self.gpu_host_dead = Gauge(
            "cofi_gpu_host_dead",
            "1 while a GPU host is dead: a stage's circuit open past GPU_HOST_FAILOVER_DEADLINE_S "
            "(unreachable, or failing every call), its files fail over to other hosts",
            ["host"],
            registry=r,
        )
        self.distributor_waiting = Gauge(
            "cofi_distributor_waiting_for_hosts",
            "1 while the distributor holds files because no GPU host may take them (every "
            "host drained or marked down); they are routed once one may",
            registry=r,
        )
        self.batch_last_progress = Gauge(
            "cofi_batch_last_progress_timestamp_seconds",
            "When an open batch last moved (its batchStatus.updatedAt, an event time)",
            ["batch"],
            registry=r,
        )
        self.batch_completion = Histogram(
            "cofi_batch_completion_seconds",
            "From a batch's first event to its completion (batchStatus createdAt to "
            "completedAt), observed once per batch as the tracker sees it complete",
            # The objective's threshold (deploy/prometheus/alerts.yml, 4 h) is one of them.
            buckets=(600, 1800, 3600, 7200, 14400, 28800, 86400),
            registry=r,
        )
        self.batches_open = Gauge(
            "cofi_batches_open",
            "Batches in the tracker's tables that are neither Complete nor Cancelled",
            registry=r,
        )
        self.files = Counter(
            "cofi_files",
            "Files a stage finished handling, by outcome (done, failed, skipped, cancelled, "
            "reassigned)",
            ["stage", "host", "outcome"],
            registry=r,
        )
        self.retries = Counter(
            "cofi_retries",
            "Model calls that repeated a failed call for the same file",
            ["stage", "host"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "cofi_model_request_seconds",
            "Latency of one model call, by outcome (ok, transient, permanent)",
            ["stage", "host", "outcome"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.dead_letters = Counter(
            "cofi_dead_letters",
            "Messages sent to the dead letters as raw bytes (undecodable, handler_error)",
            ["stage", "host", "reason"],
            registry=r,
        )
        self.in_flight = Gauge(
            "cofi_in_flight",
            "Records a stage consumer is working on right now",
            ["stage", "host"],
            registry=r,
        )
        self.circuit_open = Gauge(
            "cofi_stage_circuit_open",
            "1 while a stage's dependency is judged broken and the stage is paused, by reason "
            "(auth, unreachable, server_errors, not_found, rate_limited, unavailable, "
            "malformed); 0 once it closed",
            ["stage", "host", "reason"],
            registry=r,
        )
        self.publish_blocked = Gauge(
            "cofi_publish_blocked",
            "1 while a service cannot publish (its last try failed, its producer is being "
            "replaced, or even a minimal dead letter is refused); 0 once a publish succeeded",
            ["service"],
            registry=r,
        )
        self.producer_replaced = Counter(
            "cofi_producer_replaced",
            "Producers a service replaced after an error that leaves one broken for good "
            "(OutOfOrderSequenceNumber, UnknownProducerId)",
            ["service"],
            registry=r,
        )
        self.consumer_lag = Gauge(
            "cofi_consumer_lag",
            "Records in a topic partition beyond this consumer's position (highwater - position)",
            ["topic", "partition"],
            registry=r,
        )
        self.tracker_write_seconds = Histogram(
            "cofi_tracker_write_seconds",
            "Time to apply one poll's records in one database transaction, by outcome (ok, error)",
            ["outcome"],
            buckets=WRITE_BUCKETS,
            registry=r,
        )
        # Both outcomes exist from the start, so "no write for N minutes" is a flat counter.
        for outcome in ("ok", "error"):
            self.tracker_write_seconds.labels(outcome)
        self.tracker_write_records = Histogram(
            "cofi_tracker_write_records",
            "Records applied per database transaction (successful writes only)",
            buckets=BATCH_BUCKETS,
            registry=r,
        )

    def stage(self, stage: str, host: str) -> StageMetrics:
        return _StageMetrics(self, stage, host)

    def sink(self) -> SinkMetrics:
        return _SinkMetrics(self)

    def lag(self) -> LagMetrics:
        return _LagMetrics(self)

    def publish(self, service: str) -> PublishMetrics:
        return _PublishMetrics(self, service)

    def batches(self) -> BatchMetrics:
        return _BatchMetrics(self)

    def watch_gpu_host(self, host: str, dead_for: Callable[[], float]) -> None:
        """Whether `host` is declared dead (`dead_for() > 0`), read whenever scraped."""
        self.gpu_host_dead.labels(host).set_function(lambda: float(dead_for() > 0))

    def distributor_waits(self, waiting: bool) -> None:
        self.distributor_waiting.set(float(waiting))

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)


def retries_in(attempts: Sequence[Attempt]) -> int:
    """Every call after the first one of a handling repeated a failed call."""
    return max(0, len(attempts) - 1)


class _StageMetrics(StageMetrics):
    def __init__(self, metrics: Metrics, stage: str, host: str) -> None:
        self.metrics = metrics
        self.stage = stage
        self.host = host
        self.circuit_reasons: set[str] = set()

    def file_finished(self, outcome: FileOutcome) -> None:
        self.metrics.files.labels(self.stage, self.host, outcome).inc()

    def attempts(self, attempts: Sequence[Attempt]) -> None:
        for attempt in attempts:
            outcome = "ok" if attempt.ok else (attempt.error_kind or "transient")
            self.metrics.request_seconds.labels(self.stage, self.host, outcome).observe(
                attempt.duration_ms / 1000
            )
        if retries := retries_in(attempts):
            self.metrics.retries.labels(self.stage, self.host).inc(retries)

    def dead_lettered(self, reason: DeadLetterReason) -> None:
        self.metrics.dead_letters.labels(self.stage, self.host, reason).inc()

    def count_in_flight(self, count: Callable[[], int]) -> None:
        self.metrics.in_flight.labels(self.stage, self.host).set_function(count)

    def circuit(self, reason: str | None) -> None:
        gauge = self.metrics.circuit_open
        for opened_for in self.circuit_reasons:  # every reason it opened for so far reads 0
            gauge.labels(self.stage, self.host, opened_for).set(0)
        if reason is not None:
            self.circuit_reasons.add(reason)
            gauge.labels(self.stage, self.host, reason).set(1)


class _SinkMetrics(SinkMetrics):
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def written(self, records: int, seconds: float, ok: bool) -> None:
        self.metrics.tracker_write_seconds.labels("ok" if ok else "error").observe(seconds)
        if ok:
            self.metrics.tracker_write_records.observe(records)


class _PublishMetrics(PublishMetrics):
    def __init__(self, metrics: Metrics, service: str) -> None:
        self.metrics = metrics
        self.service = service
        self.metrics.publish_blocked.labels(service).set(0)

    def blocked(self, is_blocked: bool) -> None:
        self.metrics.publish_blocked.labels(self.service).set(1 if is_blocked else 0)

    def producer_replaced(self) -> None:
        self.metrics.producer_replaced.labels(self.service).inc()


class _LagMetrics(LagMetrics):
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def set(self, topic: str, partition: int, lag: int) -> None:
        self.metrics.consumer_lag.labels(topic, str(partition)).set(lag)

    def forget(self, topic: str, partition: int) -> None:
        # Never reported (revoked before its first refresh): nothing to forget.
        with contextlib.suppress(KeyError):
            self.metrics.consumer_lag.remove(topic, str(partition))


class _BatchMetrics(BatchMetrics):
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.reported: set[str] = set()

    def open_batches(self, last_progress: Mapping[str, float]) -> None:
        for batch in self.reported - set(last_progress):
            with contextlib.suppress(KeyError):
                self.metrics.batch_last_progress.remove(batch)
        for batch, at in last_progress.items():
            self.metrics.batch_last_progress.labels(batch).set(at)
        self.reported = set(last_progress)
        self.metrics.batches_open.set(len(last_progress))

    def completed(self, seconds: float) -> None:
        self.metrics.batch_completion.observe(max(seconds, 0.0))
