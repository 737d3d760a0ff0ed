"""The checks of `cofi check-host`: one GPU host held to the model API contract.

Requests are built and answers folded by the stage's own code (`exchange.request_for`,
`exchange.context_after`), and every answer is validated by the contract's models, so a host
that passes here is read by cofi the same way.
"""

import random
import time
import wave
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
from pydantic import ValidationError

from services.gpu_stage import exchange
from services.gpu_stage.model_api import HEALTH_TIMEOUT_S
from services.gpu_stage.model_contract import (
    ErrorResponse,
    GpuAnswer,
    HealthResponse,
    describe,
    parse_answer,
)
from shared.events import FileContext, FileStageCompleted
from shared.retry import RetryPolicy
from shared.stages import GpuStage

Result = Literal["pass", "fail", "skip"]


@dataclass(frozen=True)
class Check:
    stage: str
    name: str
    result: Result
    detail: str = ""


@dataclass(frozen=True)
class TestAudio:
    """Files the host is sent, in a folder it can read at the same path (`file://` URIs)."""

    good: Path
    undecodable: tuple[Path, ...]
    missing: tuple[Path, ...]
    seconds: float

    @classmethod
    def write(cls, folder: Path, recording: Path | None = None) -> "TestAudio":
        folder.mkdir(parents=True, exist_ok=True)
        good = folder / "check-call.wav"
        if recording is not None:
            good.write_bytes(recording.read_bytes())
        else:
            _write_tone(good)
        with wave.open(str(good), "rb") as wav:
            seconds = wav.getnframes() / wav.getframerate()
        empty, noise = folder / "check-empty.wav", folder / "check-noise.wav"
        empty.write_bytes(b"")
        noise.write_bytes(random.Random(7).randbytes(4096))
        missing = (folder / "check-missing-1.wav", folder / "check-missing-2.wav")
        return cls(good, (empty, noise), missing, seconds)


def _write_tone(path: Path, seconds: float = 2.0, rate: int = 8000) -> None:
    """Telephone-band audio: a tone in a little noise (silence is a degenerate input)."""
    rng = random.Random(3)
    frames = bytearray()
    for i in range(int(seconds * rate)):
        tone = 3000 if (i * 440 * 2 // rate) % 2 else -3000
        frames += int(tone * 0.5 + rng.gauss(0, 300)).to_bytes(2, "little", signed=True)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(bytes(frames))


@dataclass
class HostChecker:
    """Checks one host: `urls[stage]` is the stage's base URL (`http://host:port`)."""

    client: httpx.AsyncClient
    urls: dict[GpuStage, str]
    audio: TestAudio
    timeouts: exchange.CallTimeouts
    checks: list[Check] = field(default_factory=list)
    batch_id: str = field(default_factory=lambda: f"check-host-{random.getrandbits(32):08x}")

    def _add(self, stage: str, name: str, result: Result, detail: str = "") -> None:
        self.checks.append(Check(stage, name, result, detail))

    async def _call(
        self, method: str, url: str, body: dict[str, Any] | None, timeout_s: float
    ) -> tuple[httpx.Response | str, float]:
        start = time.monotonic()
        try:
            response = await self.client.request(method, url, json=body, timeout=timeout_s)
        except httpx.TimeoutException:
            return f"no answer within {timeout_s:g} s", time.monotonic() - start
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}", time.monotonic() - start
        return response, time.monotonic() - start

    async def health(self, stage: GpuStage) -> None:
        url = f"{self.urls[stage]}/health"
        answer, took = await self._call("GET", url, None, HEALTH_TIMEOUT_S)
        if isinstance(answer, str):
            return self._add(stage, "GET /health", "fail", f"{url}: {answer}")
        if answer.status_code != 200:
            why = f"{url} answered {answer.status_code}, not 200"
            if answer.status_code == 404:
                why += " (without it cofi recovers only through trial calls)"
            return self._add(stage, "GET /health", "fail", why)
        problem = _json_problem(answer, HealthResponse)
        self._add(stage, "GET /health", "fail" if problem else "pass", problem or f"{took:.2f} s")

    def _request(self, stage: GpuStage, context: FileContext, audio: Path | None = None) -> Any:
        if audio is not None:
            context = context.model_copy(update={"audio_uri": audio.as_uri(), "denoised_uri": None})
        event = FileStageCompleted(
            batch_id=self.batch_id, file_name="check-call.wav", stage="distribute", context=context
        )
        return exchange.request_for(stage, event)

    async def answer(self, stage: GpuStage, context: FileContext) -> FileContext:
        """The stage on the good audio, twice; returns the context its answer makes."""
        url = f"{self.urls[stage]}/v1/{stage}"
        timeout_s, _ = self.timeouts.for_file(context, RetryPolicy())
        request = self._request(stage, context)
        reply, took = await self._call("POST", url, request, timeout_s)
        if isinstance(reply, str):
            self._add(stage, "200 for good audio", "fail", f"{url}: {reply}")
            self._add(stage, "within the call's timeout", "fail", reply)
            return context
        parsed = self._parse(stage, "200 for good audio", reply)
        within = took <= timeout_s
        self._add(
            stage,
            "within the call's timeout",
            "pass" if within else "fail",
            f"{took:.2f} s of {timeout_s:g} s",
        )
        if parsed is None:
            return context
        again, _ = await self._call("POST", url, request, timeout_s)
        if isinstance(again, str) or again.status_code != 200:
            what = again if isinstance(again, str) else f"HTTP {again.status_code}"
            self._add(stage, "same file again: same answer", "fail", what)
        else:
            fields = type(parsed).model_fields
            first = parsed.model_dump(include=set(fields))
            second = _safe_dump(stage, again, set(fields))
            same = first == second
            self._add(
                stage,
                "same file again: same answer",
                "pass" if same else "fail",
                "" if same else f"{first} then {second}",
            )
        return exchange.context_after(stage, context, reply.json())

    def _parse(self, stage: GpuStage, name: str, reply: httpx.Response) -> GpuAnswer | None:
        if reply.status_code != 200:
            self._add(stage, name, "fail", f"HTTP {reply.status_code}: {reply.text[:200]}")
            return None
        try:
            parsed = parse_answer(stage, reply.json())
        except ValueError as exc:
            why = describe(exc) if isinstance(exc, ValidationError) else f"not JSON: {exc}"
            self._add(stage, name, "fail", f"the contract refuses it: {why}")
            return None
        shown = parsed.model_dump(include=set(type(parsed).model_fields))
        self._add(stage, name, "pass", _short(str(shown)))
        return parsed

    async def errors(self, stage: GpuStage, context: FileContext) -> None:
        url = f"{self.urls[stage]}/v1/{stage}"
        timeout_s, _ = self.timeouts.for_file(context, RetryPolicy())
        messages = []
        for path in self.audio.missing:
            body = self._request(stage, context, path)
            messages.append(
                await self._status(
                    stage, "404 for missing audio", url, body, (404,), timeout_s, path.name
                )
            )
        if all(m is not None for m in messages) and len(set(messages)) < len(messages):
            self._add(
                stage,
                "404 names the file",
                "fail",
                f"the same message for two files ({messages[0]!r}): cofi reads that as "
                "a missing route and opens the circuit",
            )
        elif all(m is not None for m in messages):
            self._add(stage, "404 names the file", "pass")
        for path in self.audio.undecodable:
            body = self._request(stage, context, path)
            await self._status(
                stage, "422 for undecodable audio", url, body, (422,), timeout_s, path.name
            )
        bad = {"batch_id": self.batch_id, "file_name": "check-call.wav"}  # no audio_uri
        await self._status(
            stage, "400 for a bad request", url, bad, (400, 422), timeout_s, "no audio_uri"
        )

    async def unavailable(self, stage: GpuStage, context: FileContext) -> None:
        """While the host cannot serve: 503 with a Retry-After in seconds."""
        url = f"{self.urls[stage]}/v1/{stage}"
        timeout_s, _ = self.timeouts.for_file(context, RetryPolicy())
        reply, _ = await self._call("POST", url, self._request(stage, context), timeout_s)
        name = "503 with Retry-After"
        if isinstance(reply, str) or reply.status_code != 503:
            got = reply if isinstance(reply, str) else f"HTTP {reply.status_code}"
            return self._add(stage, name, "fail", f"{got}, not 503 (is the host unavailable?)")
        value = reply.headers.get("retry-after")
        try:
            ok = value is not None and float(value) >= 0
        except ValueError:
            ok = False
        problem = _json_problem(reply, ErrorResponse)
        if not ok:
            return self._add(stage, name, "fail", f"Retry-After {value!r}: not seconds")
        self._add(stage, name, "fail" if problem else "pass", problem or f"Retry-After {value}")

    async def _status(
        self,
        stage: GpuStage,
        name: str,
        url: str,
        body: dict[str, Any],
        expected: Sequence[int],
        timeout_s: float,
        case: str,
    ) -> str | None:
        """Check one error answer; returns its message when it is right."""
        reply, _ = await self._call("POST", url, body, timeout_s)
        label = f"{name} ({case})"
        if isinstance(reply, str):
            self._add(stage, label, "fail", reply)
            return None
        if reply.status_code not in expected:
            self._add(stage, label, "fail", f"HTTP {reply.status_code}: {reply.text[:120]}")
            return None
        problem = _json_problem(reply, ErrorResponse)
        self._add(stage, label, "fail" if problem else "pass", problem)
        return None if problem else str(reply.json()["error"])


def _json_problem(reply: httpx.Response, model: type[ErrorResponse | HealthResponse]) -> str:
    try:
        model.model_validate(reply.json())
    except ValueError as exc:
        why = describe(exc) if isinstance(exc, ValidationError) else "not JSON"
        return f"body is not a {model.__name__}: {why}"
    return ""


def _safe_dump(stage: GpuStage, reply: httpx.Response, fields: set[str]) -> object:
    try:
        return parse_answer(stage, reply.json()).model_dump(include=fields)
    except ValueError as exc:
        return f"an answer the contract refuses ({exc.__class__.__name__})"


def _short(text: str, limit: int = 90) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
