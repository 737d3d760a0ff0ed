"""Run GPU-stage consumers: one per (stage, host) pair given on the command line."""

import asyncio
from functools import partial
from typing import cast

import httpx

from services.gpu_stage.exchange import CallTimeouts
from services.gpu_stage.handler import GpuStageHandler
from services.gpu_stage.model_api import call_model, health_url, probe, stage_url
from services.gpu_stage.settings import GpuStageSettings
from shared import event_loop
from shared.breaker import CircuitBreaker
from shared.events import FileStageCompleted
from shared.groups import gpu_host_group
from shared.http_transport import model_api_transport
from shared.kafka import make_consumer
from shared.logging import configure_logging
from shared.model_http import ModelApiClient
from shared.pipeline import stages_of
from shared.retry import RetryPolicy
from shared.runtime.committed import committed_in_group
from shared.runtime.control import ControlView
from shared.runtime.heap import keep_large_buffers_out_of_the_heap
from shared.runtime.lifecycle import stop_event_on_signals
from shared.runtime.model_stage_wiring import ModelStageWiring
from shared.runtime.shared_consumer import SharedConsumer
from shared.runtime.stage_runner import StageRunner
from shared.settings_env import load_settings, service_parser
from shared.stages import GpuStage

GPU_STAGES = [row.name for row in stages_of("gpu_stage")]
# aiokafka sends one fetch at a time per broker: a partition whose look-ahead records were
# just taken is fetched again only once the long poll of the others returns. A short poll
# keeps the look-ahead topped up (`shared/runtime/idle_poll.py` lengthens it when caught up).
LOOKAHEAD_FETCH_WAIT_MS = 100


class DrainedHosts:
    """Hosts to hand files back from: marked `:down` in GPU_HOSTS, or drained (`cofi drain`)."""

    def __init__(self, settings: GpuStageSettings, control: ControlView) -> None:
        self.down = {h.ip for h in settings.gpu_hosts if h.down}
        self.control = control

    def __contains__(self, host: object) -> bool:
        return host in self.down or host in self.control.drained_hosts


def build_runner(
    wiring: ModelStageWiring,
    settings: GpuStageSettings,
    stage: GpuStage,
    host: str,
    client: ModelApiClient,
    breakers: list[CircuitBreaker] | None = None,
    shared: SharedConsumer | None = None,
) -> StageRunner[FileStageCompleted]:
    """The runner of `stage` on `host`: with a consumer of its own, or a view of `shared`."""
    port = settings.stage_port(stage)
    url, health = stage_url(host, port, stage), health_url(host, port)
    guarded = wiring.guard(
        stage,
        host,
        max_probe_s=settings.gpu_probe_max_delay_s,
        probe=lambda: probe(client, health),
    )
    if breakers is not None:
        breakers.append(guarded.breaker)
    handler = GpuStageHandler(
        stage=stage,
        host=host,
        topics=settings.topics,
        policy=RetryPolicy(
            max_attempts=settings.gpu_retry_max_attempts,
            base_delay_s=settings.gpu_retry_base_delay_s,
            max_delay_s=settings.gpu_retry_max_delay_s,
            budget_s=settings.gpu_retry_budget_s,
        ),
        breaker=guarded.breaker,
        call_model=lambda request, timeout_s: call_model(
            client, url, request, timeout_s, stage=stage
        ),
        failover_after_s=settings.gpu_host_failover_deadline_s,
        timeouts=CallTimeouts(
            base_s=settings.gpu_request_timeout_s,
            per_audio_s=settings.gpu_request_timeout_per_audio_s,
        ),
        cancelled=wiring.control.cancelled_batches,
        drained=DrainedHosts(settings, wiring.control),
        metrics=guarded.metrics,
        hosts=settings.gpu_hosts,
        audio_policy=settings.audio_uri_policy,
    )
    name, group = f"gpu_stage:{stage}@{host}", settings.group_id(stage, host)
    view = None
    if shared is not None:  # resumes where the stage's own group left off, if it did
        view = shared.view(name, earlier_group=partial(committed_in_group, settings.kafka, group))
    return wiring.add_runner(
        stage,
        host=host,
        name=name,
        group=group,
        consumer=view,
        handle=handler,
        metrics=guarded.metrics,
        max_in_flight=settings.in_flight_per_consumer(host),
        paused=handler.paused,
        priority=call_seconds,
        lookahead=settings.gpu_lookahead,
        fetch_max_wait_ms=LOOKAHEAD_FETCH_WAIT_MS,
    )


def call_seconds(event: FileStageCompleted) -> float:
    """Longest call first (0 when the upload did not say)."""
    return event.context.duration_s or 0.0


def dead_for(breakers: list[CircuitBreaker], deadline_s: float) -> float:
    """Seconds past `deadline_s` one of a host's circuits has been open, whatever the
    reason (unreachable, or failing every call while its health route says 200; <= 0:
    not dead)."""
    return max((b.open_for() - deadline_s for b in breakers if b.is_open), default=-deadline_s)


async def run(
    settings: GpuStageSettings,
    stages: list[GpuStage],
    hosts: list[str],
    stop: asyncio.Event,
) -> None:
    wiring = ModelStageWiring(settings, "gpu_stage", settings.drain_timeout_s)
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=100)
    transport = model_api_transport(settings.http_transport, limits)
    async with ModelApiClient(transport, settings.gpu_request_timeout_s) as client:
        # Per host, its stages' circuits: dead while one is open past the failover
        # deadline (`cofi_gpu_host_dead`).
        host_breakers: dict[str, list[CircuitBreaker]] = {h: [] for h in hosts}
        for host in hosts:
            wiring.observability.metrics.watch_gpu_host(
                host,
                partial(dead_for, host_breakers[host], settings.gpu_host_failover_deadline_s),
            )
        for host in hosts:
            shared = host_consumer(settings, host, len(stages))
            for stage in stages:
                build_runner(wiring, settings, stage, host, client, host_breakers[host], shared)
        await wiring.run(stop)


def host_consumer(settings: GpuStageSettings, host: str, stages: int) -> SharedConsumer | None:
    """With `GPU_STAGE_CONSUMERS=per_host`, the one consumer of the host's stages."""
    if settings.gpu_stage_consumers != "per_host":
        return None
    group = gpu_host_group(settings.topics, host)
    consumer = make_consumer(
        settings.kafka, group, f"gpu_stage@{host}", fetch_max_wait_ms=LOOKAHEAD_FETCH_WAIT_MS
    )
    return SharedConsumer(consumer, views=stages)


def main(argv: list[str] | None = None) -> None:
    keep_large_buffers_out_of_the_heap()
    parser = service_parser("cofi run gpu-stage", __doc__, GpuStageSettings)
    parser.add_argument(
        "--stage",
        default=",".join(GPU_STAGES),
        help=f"comma-separated stages (default: all {len(GPU_STAGES)})",
    )
    parser.add_argument("--host", default="", help="comma-separated GPU hosts (default: all)")
    args = parser.parse_args(argv)
    settings = load_settings(GpuStageSettings, "cofi run gpu-stage")
    stages = [s.strip() for s in args.stage.split(",") if s.strip()]
    for stage in stages:
        if stage not in GPU_STAGES:
            parser.error(f"unknown GPU stage {stage!r}; choose from {', '.join(GPU_STAGES)}")
    hosts = [h.strip() for h in args.host.split(",") if h.strip()] or settings.host_ips
    for host in hosts:
        if host not in settings.host_ips:
            parser.error(f"GPU host {host!r} is not in GPU_HOSTS ({', '.join(settings.host_ips)})")
    configure_logging(settings.log_level, settings.log_json, service="gpu_stage")

    async def _main() -> None:
        await run(settings, cast(list[GpuStage], stages), hosts, stop_event_on_signals())

    event_loop.run(_main())
