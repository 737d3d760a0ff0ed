"""Run the LLM stages (one, some or all of them) in one process under one concurrency limit."""

import asyncio
from typing import cast
from urllib.parse import urlsplit

import httpx

from services.llm_stage.answers import ANSWERS
from services.llm_stage.chat_api import complete, probe
from services.llm_stage.handler import LlmStageHandler
from services.llm_stage.prompting import load_templates
from services.llm_stage.settings import LlmStageSettings
from shared import event_loop
from shared.http_transport import model_api_transport
from shared.logging import configure_logging
from shared.model_http import ModelApiClient
from shared.pipeline import stages_of
from shared.retry import CallOutcome, RetryPolicy
from shared.runtime.heap import keep_large_buffers_out_of_the_heap
from shared.runtime.lifecycle import stop_event_on_signals
from shared.runtime.model_stage_wiring import ModelStageWiring
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
    wiring = ModelStageWiring(settings, "llm_stage", settings.drain_timeout_s)
    # The LLM API's address plays the GPU host's part in logs and metrics.
    api_host = urlsplit(settings.llm_api_url).netloc or settings.llm_api_url
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

        for stage in stages:
            guarded = wiring.guard(
                stage,
                api_host,
                max_probe_s=settings.llm_probe_max_delay_s,
                probe=lambda: probe(
                    client, settings.llm_api_url, settings.llm_api_key.get_secret_value()
                ),
            )
            handler = LlmStageHandler(
                stage=stage,
                topics=settings.topics,
                template=templates[stage],
                policy=policy,
                chat=chat,
                concurrency=concurrency,
                breaker=guarded.breaker,
                cancelled=wiring.control.cancelled_batches,
                host=api_host,
                metrics=guarded.metrics,
                max_malformed=settings.llm_malformed_max_attempts,
            )
            wiring.add_runner(
                stage,
                name=f"llm_stage:{stage}",
                group=settings.group_id(stage),
                handle=handler,
                metrics=guarded.metrics,
                # Hold a little more than the limit so a slot never waits on a fetch.
                max_in_flight=settings.llm_max_concurrency * 2,
                paused=guarded.breaker.paused,
            )
        await wiring.run(stop)


def main(argv: list[str] | None = None) -> None:
    keep_large_buffers_out_of_the_heap()
    parser = service_parser("cofi run llm-stage", __doc__, LlmStageSettings)
    parser.add_argument(
        "--stage",
        default=",".join(LLM_STAGES),
        help=f"comma-separated, of {', '.join(LLM_STAGES)} (default: all)",
    )
    args = parser.parse_args(argv)
    stages = [s.strip() for s in args.stage.split(",") if s.strip()]
    for stage in stages:
        if stage not in LLM_STAGES:
            parser.error(f"unknown LLM stage {stage!r}; choose from {', '.join(LLM_STAGES)}")
    settings = load_settings(LlmStageSettings, "cofi run llm-stage")
    configure_logging(settings.log_level, settings.log_json, service="llm_stage")

    async def _main() -> None:
        await run(settings, cast(list[LlmStage], stages), stop_event_on_signals())

    event_loop.run(_main())
