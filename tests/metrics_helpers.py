"""Scraping a service's `/metrics`, `/healthz` and `/readyz` in tests."""

import random
import socket
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.kafka_helpers import wait_until

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
    last: Scrape | None = None

    async def shows() -> bool:
        nonlocal last
        if await get(base_url, "/healthz") is None:
            return False
        last = await scrape(base_url)
        return predicate(last)

    def shown() -> str:
        values = sorted(last.values.items()) if last else "nothing served"
        return f"metrics showing {what or predicate}: {values}"

    await wait_until(shows, timeout_s, shown, interval_s=0.1)
    assert last is not None
    return last


async def status_until(
    base_url: str, path: str, status: int, timeout_s: float = 60.0
) -> httpx.Response:
    response: httpx.Response | None = None

    async def answers() -> bool:
        nonlocal response
        response = await get(base_url, path)
        return response is not None and response.status_code == status

    def seen() -> str:
        last = f"{response.status_code} {response.text}" if response else "no answer"
        return f"{path} to answer {status}; last: {last}"

    await wait_until(answers, timeout_s, seen, interval_s=0.1)
    assert response is not None
    return response
