"""OpenAI-compatible chat completions endpoint (the subset vLLM/Ollama/TGI all serve).

Handling order: validate (400) -> injected rate limit (429 + Retry-After) or error (503), both
immediate as a gateway would answer -> latency -> answer, possibly deliberately malformed.
Errors use OpenAI's `{"error": {"message", "type", "code"}}` shape so real client code paths run.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import uuid
from typing import Any

from aiohttp import web

from simulator.config import LlmKnobs, LlmKnobsUpdate
from simulator.listener import Listener
from simulator.prompt import build_content, count_tokens, first_line, message_text, user_text
from simulator.stats import ServerStats

log = logging.getLogger(__name__)

DEFAULT_MODEL = "sim-llm"


def _error(status: int, message: str, kind: str, **headers: str) -> web.Response:
    body = {"error": {"message": message, "type": kind, "code": status}}
    return web.json_response(body, status=status, headers=headers or None)


def _unauthorized() -> web.Response:
    return _error(401, "Incorrect API key provided (injected)", "invalid_api_key")


def validate_messages(data: Any) -> list[dict[str, Any]]:
    """The request's messages, or ValueError with the reason a real server would give."""
    if not isinstance(data, dict):
        raise ValueError("request body must be a JSON object")
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ValueError("'messages' is required and must be a non-empty list")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise ValueError(f"messages[{i}] must be an object with a string 'role'")
        if not isinstance(message.get("content"), str | list):
            raise ValueError(f"messages[{i}].content must be a string or a list of parts")
    if data.get("stream"):
        raise ValueError("stream=true is not supported by the simulator")
    return messages


class LlmServer:
    def __init__(self, host: str, port: int, knobs: LlmKnobs, *, rng: random.Random) -> None:
        self.knobs = knobs
        self.stats = ServerStats()
        self._rng = rng
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/health", self._health)
        self.listener = Listener(app, host, port)

    @property
    def url(self) -> str:
        return f"{self.listener.url}/v1/chat/completions"

    async def start(self) -> None:
        await self.listener.up()
        if self.knobs.down:
            await self.listener.down()

    async def close(self) -> None:
        await self.listener.close()

    async def apply(self, update: LlmKnobsUpdate) -> None:
        for key, value in update.model_dump(exclude_none=True).items():
            setattr(self.knobs, key, value)
        if update.down is True:
            await self.listener.down()
        elif update.down is False:
            await self.listener.up()

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _models(self, request: web.Request) -> web.Response:
        if self.knobs.unauthorized:
            return _unauthorized()
        return web.json_response(
            {"object": "list", "data": [{"id": DEFAULT_MODEL, "object": "model"}]}
        )

    async def _handle(self, request: web.Request) -> web.Response:
        status = "dropped"
        try:
            response = await self._serve(request)
            status = str(response.status)
            return response
        finally:
            self.stats.responses[status] += 1

    async def _serve(self, request: web.Request) -> web.Response:
        if self.knobs.unauthorized:
            return _unauthorized()
        try:
            data = json.loads(await request.read())
            messages = validate_messages(data)
        except ValueError as exc:  # JSONDecodeError is a ValueError
            return _error(400, str(exc), "invalid_request_error")
        text = user_text(messages)
        # cofi names the file by an opaque `user` reference; other clients by their first line.
        self.stats.calls[str(data.get("user") or first_line(text))] += 1

        with self.stats.concurrency.track():
            knobs = self.knobs
            roll = self._rng.random()
            if roll < knobs.rate_limit_rate:
                return _error(
                    429,
                    "rate limit exceeded (injected)",
                    "rate_limit_error",
                    **{"Retry-After": str(knobs.retry_after_s)},
                )
            if roll < knobs.rate_limit_rate + knobs.error_rate:
                return _error(503, "model overloaded (injected)", "server_error")

            scale = 1.0 if knobs.latency_scale is None else knobs.latency_scale
            await asyncio.sleep((knobs.latency_s + self._rng.uniform(0, knobs.jitter_s)) * scale)

            content = json.dumps(build_content(messages))
            if self._rng.random() < knobs.malformed_rate:
                # What small models really do: chatter around a truncated object.
                content = "Sure! Here is the JSON you asked for:\n" + content[: len(content) // 2]
            return web.json_response(self._completion(data, messages, content))

    @staticmethod
    def _completion(
        data: dict[str, Any], messages: list[dict[str, Any]], content: str
    ) -> dict[str, Any]:
        prompt_tokens = sum(count_tokens(message_text(m.get("content"))) for m in messages)
        completion_tokens = count_tokens(content)
        model = data.get("model")
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model if isinstance(model, str) and model else DEFAULT_MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
