#!/usr/bin/env python3
"""Wait until a Kafka broker answers a real metadata request.

Usage: kafka_ready.py [--bootstrap HOST:PORT[,HOST:PORT...]] [--timeout SECONDS]

Defaults come from KAFKA_BOOTSTRAP_SERVERS (127.0.0.1:9092) and KAFKA_READY_TIMEOUT (60).
Exits 0 once the cluster reports at least one broker and a controller, 1 on timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import time


async def probe(bootstrap: str, attempt_timeout: float) -> str:
    """One metadata round trip; returns a short description of the cluster."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        request_timeout_ms=int(attempt_timeout * 1000),
        client_id="cofi-kafka-ready",
    )
    try:
        await asyncio.wait_for(admin.start(), attempt_timeout)
        cluster = await asyncio.wait_for(admin.describe_cluster(), attempt_timeout)
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
    brokers = cluster.get("brokers") or []
    controller = cluster.get("controller_id", -1)
    if not brokers:
        raise RuntimeError("metadata lists no brokers yet")
    if controller is None or controller < 0:
        raise RuntimeError("metadata reports no active controller yet")
    return f"cluster_id={cluster.get('cluster_id')} brokers={len(brokers)} controller={controller}"


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--bootstrap",
        default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=float(os.environ.get("KAFKA_READY_TIMEOUT", "60")),
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()

    # aiokafka logs every refused connection at ERROR; keep the helper quiet unless it fails.
    logging.basicConfig(level=logging.CRITICAL)

    deadline = time.monotonic() + args.timeout
    last_error = "no attempt made"
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            info = await probe(args.bootstrap, max(1.0, min(5.0, remaining)))
        except Exception as exc:
            last_error = f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
            continue
        if args.verbose:
            print(f"kafka ready at {args.bootstrap}: {info}")
        return 0

    print(
        f"kafka_ready: broker at {args.bootstrap} not ready after {args.timeout:g}s "
        f"(last error: {last_error})",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
