"""Run the LLM stages (llm1, llm2, or both) in one process under one concurrency limit."""

import asyncio
from typing import cast
from urllib.parse import urlsplit

import httpx

from services.llm_stage.answers import ANSWERS
from services.llm_stage.chat_api import complete, probe
from services.llm_stage.handler import LlmStageHandler
from services.llm_stage.prompting import load_templates
from services.llm_stage.settings import LlmStageSettings
from shared.breaker import BreakerPolicy, CircuitBreaker
from shared.http_transport import model_api_transport
from shared.kafka import make_consumer, make_producer
from shared.logging import configure_logging
from shared.model_http import ModelApiClient
from shared.model_stage import decoder_for
from shared.observability.service import Observability
from shared.pipeline import input_topic, stages_of
from shared.retry import CallOutcome, RetryPolicy
from shared.runtime.control import CancelledBatches
from shared.runtime.heap import keep_large_buffers_out_of_the_heap
from shared.runtime.lifecycle import stop_event_on_signals
from shared.runtime.stage_runner import StageRunner
from shared.runtime.stage_service import run_stage_runners
from shared.settings_env import load_settings, service_parser
from shared.stages import LlmStage

LLM_STAGES = [row.name for row in stages_of("llm_stage")]


async def run(settings: LlmStageSettings, stages: list[LlmStage], stop: asyncio.Event) -> None:
    templates = load_templates(settings.llm_prompts_dir)
    concurrency = asyncio.Semaphore(settings.llm_max_concurrency)
    policy = RetryPolicy(
        max_attempts=settings.llm_retry_max_attempts,
        base_delay_s=settings.llm_retry_base_delay_s,
        max_delay_s=settings.llm_retry_max_delay_s,
        budget_s=settings.llm_retry_budget_s,
    )
    observability = Observability(settings, "llm_stage")
    # The LLM API's address plays the GPU host's part in logs and metrics.
    api_host = urlsplit(settings.llm_api_url).netloc or settings.llm_api_url
    producer = make_producer(settings.kafka, "llm_stage")
    limits = httpx.Limits(max_connections=settings.llm_max_concurrency * 2)
    transport = model_api_transport(settings.http_transport, limits)
    async with ModelApiClient(transport, settings.llm_timeout_s) as client:

        async def chat(stage: LlmStage, messages: list[dict[str, str]], caller: str) -> CallOutcome:
            return await complete(
                client,
                settings.llm_api_url,
                settings.llm_api_key.get_secret_value(),
                settings.llm_model,
                messages,
                ANSWERS[stage],
                max_tokens=settings.llm_max_tokens,
                user=caller,
            )

        cancelled = CancelledBatches(settings.kafka, settings.topics.control)
        runners = []
        for stage in stages:
            stage_metrics = observability.metrics.stage(stage, api_host)
            breaker = CircuitBreaker(
                stage,
                api_host,
                BreakerPolicy(max_probe_s=settings.llm_probe_max_delay_s),
                probe=lambda: probe(
                    client, settings.llm_api_url, settings.llm_api_key.get_secret_value()
                ),
                on_change=stage_metrics.circuit,
            )
            observability.readiness.add(f"circuit ({stage}@{api_host})", breaker.problem)
            handler = LlmStageHandler(
                stage=stage,
                topics=settings.topics,
                template=templates[stage],
                policy=policy,
                chat=chat,
                concurrency=concurrency,
                breaker=breaker,
                cancelled=cancelled,
                host=api_host,
                metrics=stage_metrics,
                max_malformed=settings.llm_malformed_max_attempts,
            )
            name = f"llm_stage:{stage}"
            runners.append(
                StageRunner(
                    name=name,
                    consumer=make_consumer(settings.kafka, settings.group_id(stage), name),
                    producer=producer,
                    topics=[input_topic(stage, settings.topics)],
                    decode=decoder_for(stage),
                    handle=handler,
                    dead_letter_topic=settings.topics.failed,
                    # Hold a little more than the limit so a slot never waits on a fetch.
                    max_in_flight=settings.llm_max_concurrency * 2,
                    offset_metadata_max_bytes=settings.offset_metadata_max_bytes,
                    metrics=stage_metrics,
                    payload_limit=settings.event_payload_max_bytes,
                    drain_timeout_s=settings.drain_timeout_s,
                    paused=breaker.paused,
                )
            )
        await run_stage_runners("llm_stage", runners, producer, cancelled, observability, stop)


def main(argv: list[str] | None = None) -> None:
    keep_large_buffers_out_of_the_heap()
    parser = service_parser("cofi run llm-stage", __doc__, LlmStageSettings)
    parser.add_argument("--stage", default="llm1,llm2", help="llm1, llm2 or both (default)")
    args = parser.parse_args(argv)
    stages = [s.strip() for s in args.stage.split(",") if s.strip()]
    for stage in stages:
        if stage not in LLM_STAGES:
            parser.error(f"unknown LLM stage {stage!r}; choose from {', '.join(LLM_STAGES)}")
    settings = load_settings(LlmStageSettings, "cofi run llm-stage")
    configure_logging(settings.log_level, settings.log_json, service="llm_stage")

    async def _main() -> None:
        await run(settings, cast(list[LlmStage], stages), stop_event_on_signals())

    asyncio.run(_main())
