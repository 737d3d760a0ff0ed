"""Scraping a service's `/metrics`, `/healthz` and `/readyz` in tests."""

import asyncio
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

# The range given to the observability tests, so concurrent runs never collide.
METRICS_PORTS = range(36_000, 37_000)


def free_metrics_port() -> int:
    """A port of our range that nothing listens on now (a service then binds it)."""
    for port in random.sample(METRICS_PORTS, 50):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {METRICS_PORTS}")


@dataclass(frozen=True)
class Scrape:
    """One `/metrics` answer, parsed: sample name + labels -> value."""

    values: dict[tuple[str, frozenset[tuple[str, str]]], float]

    def get(self, name: str, **labels: str) -> float | None:
        return self.values.get((name, frozenset(labels.items())))

    def total(self, name: str, **labels: str) -> float:
        """Sum of every series of `name` whose labels include `labels`."""
        wanted = set(labels.items())
        return sum(v for (n, ls), v in self.values.items() if n == name and wanted <= ls)

    def series(self, name: str) -> list[dict[str, str]]:
        return [dict(ls) for (n, ls) in self.values if n == name]


async def scrape(base_url: str) -> Scrape:
    async with httpx.AsyncClient(timeout=5.0) as client:
        response = await client.get(f"{base_url}/metrics")
    response.raise_for_status()
    assert response.headers["content-type"].startswith("text/plain")
    return Scrape(
        {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(response.text)
            for s in family.samples
        }
    )


async def get(base_url: str, path: str) -> httpx.Response | None:
    """The endpoint's answer, or None while nothing listens yet."""
    try:
        async with httpx.AsyncClient(timeout=5.0) as client:
            return await client.get(f"{base_url}{path}")
    except httpx.TransportError:
        return None


async def scrape_until(
    base_url: str, predicate: Callable[[Scrape], bool], timeout_s: float = 60.0, what: str = ""
) -> Scrape:
    """Scrape until `predicate` holds; the last scrape is in the error when it never does."""
    deadline = time.monotonic() + timeout_s
    last: Scrape | None = None
    while True:
        if await get(base_url, "/healthz") is not None:
            last = await scrape(base_url)
            if predicate(last):
                return last
        if time.monotonic() > deadline:
            shown = sorted(last.values.items()) if last else "nothing served"
            raise TimeoutError(f"metrics never showed {what or predicate}: {shown}")
        await asyncio.sleep(0.1)


async def status_until(
    base_url: str, path: str, status: int, timeout_s: float = 60.0
) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    while True:
        response = await get(base_url, path)
        if response is not None and response.status_code == status:
            return response
        if time.monotonic() > deadline:
            seen = f"{response.status_code} {response.text}" if response else "no answer"
            raise TimeoutError(f"{path} never answered {status}; last: {seen}")
        await asyncio.sleep(0.1)
