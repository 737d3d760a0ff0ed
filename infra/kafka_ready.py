#!/usr/bin/env python3
"""Wait until a Kafka broker answers a real metadata request.

Usage: kafka_ready.py [--bootstrap HOST:PORT[,HOST:PORT...]] [--timeout SECONDS] [--brokers N]

Defaults come from KAFKA_BOOTSTRAP_SERVERS (127.0.0.1:9092) and KAFKA_READY_TIMEOUT (60).
Exits 0 once the cluster reports at least N brokers (default 1) and a controller, 1 on timeout.
The client speaks what the services' settings say: KAFKA_SECURITY_PROTOCOL (PLAINTEXT),
KAFKA_SASL_MECHANISM (SCRAM-SHA-512), KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD, KAFKA_SSL_CAFILE.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import ssl
import sys
import time
from typing import Any


def security_options() -> dict[str, Any]:
    """aiokafka's security keywords from the services' KAFKA_* variables (standalone: this
    script runs before, and without, the project's packages)."""
    protocol = os.environ.get("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")
    options: dict[str, Any] = {"security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = ssl.create_default_context(
            cafile=os.environ.get("KAFKA_SSL_CAFILE") or None
        )
    if protocol.startswith("SASL"):
        options["sasl_mechanism"] = os.environ.get("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
        options["sasl_plain_username"] = os.environ.get("KAFKA_SASL_USERNAME")
        options["sasl_plain_password"] = os.environ.get("KAFKA_SASL_PASSWORD")
    return options


async def probe(bootstrap: str, attempt_timeout: float, brokers_wanted: int = 1) -> str:
    """One metadata round trip; returns a short description of the cluster."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        request_timeout_ms=int(attempt_timeout * 1000),
        client_id="cofi-kafka-ready",
        **security_options(),
    )
    try:
        await asyncio.wait_for(admin.start(), attempt_timeout)
        cluster = await asyncio.wait_for(admin.describe_cluster(), attempt_timeout)
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
    brokers = cluster.get("brokers") or []
    controller = cluster.get("controller_id", -1)
    if len(brokers) < max(1, brokers_wanted):
        raise RuntimeError(f"metadata lists {len(brokers)} brokers, not {brokers_wanted} yet")
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
    parser.add_argument("--brokers", type=int, default=1, help="brokers the metadata must list")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    try:
        import aiokafka  # noqa: F401
    except ModuleNotFoundError:
        # A missing client is not a broker that is not ready yet: say so at once.
        print(
            f"kafka_ready: {sys.executable} lacks aiokafka; run `make install` "
            "or set PYTHON to the project's venv python",
            file=sys.stderr,
        )
        return 2

    # aiokafka logs every refused connection at ERROR; keep the helper quiet unless it fails.
    logging.basicConfig(level=logging.CRITICAL)

    deadline = time.monotonic() + args.timeout
    last_error = "no attempt made"
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            info = await probe(args.bootstrap, max(1.0, min(5.0, remaining)), args.brokers)
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
