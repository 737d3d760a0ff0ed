"""Structured logs: one JSON object per line, naming batch, file, stage, host and attempt."""

import json
import logging
import sys
import time
from typing import Any

FILE_FIELDS = (
    "service",
    "batch",
    "file",
    "stage",
    "host",
    "attempt",
    "topic",
    "partition",
    "offset",
    "error",
)


class JsonFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        # UTC, as the trailing Z of every timestamp says.
        return time.strftime(datefmt or "%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in FILE_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        fields = " ".join(
            f"{n}={record.__dict__[n]}" for n in FILE_FIELDS if record.__dict__.get(n) is not None
        )
        return f"{base} {fields}".rstrip()


def configure_logging(level: str = "INFO", json_lines: bool = True, service: str = "") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if json_lines
        else TextFormatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    )
    if service:
        handler.addFilter(_ServiceFilter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "kafka", "faust", "mode", "httpx", "httpcore", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


class _ServiceFilter(logging.Filter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        # A line that names its own consumer (e.g. "gpu_stage:denoise@127.0.0.2") keeps it.
        if getattr(record, "service", None) is None:
            record.service = self.service
        return True


def fields(**values: Any) -> dict[str, Any]:
    """`log.info("...", extra=fields(batch=..., file=...))`."""
    return {k: v for k, v in values.items() if v is not None}
